"""Running a peer implementation (scvi-tools, the original Stereoscope) in its own
environment, as a subprocess whose output goes to the calling rule's log."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger(__name__)


def require_interpreter(python: str | os.PathLike[str], peer: str, fix: str,
                        config_key: str) -> Path:
    """``python`` as a path; a FileNotFoundError naming the fix where it does not exist."""
    python = Path(python)
    if not python.exists():
        raise FileNotFoundError(
            f"the {peer} interpreter {python} does not exist: {fix}, or set peer: false, or "
            f"leave {peer} out of {config_key}.")
    return python


def run_logged(command: list[str], timeout_s: int, env: Mapping[str, str], what: str
               ) -> float:
    """Run ``command``; its output goes to the log (the tail, for long progress output).
    Returns its wall seconds; a failure raises naming ``what`` with the output's tail."""
    start = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=timeout_s, env={**os.environ, **env})
    seconds = time.perf_counter() - start
    # Progress bars redraw a line with carriage returns and colour it: one line each.
    text = re.sub(r"\x1b\[[0-9;]*m", "", done.stdout.replace("\r", "\n"))
    lines = [line for line in text.splitlines() if line.strip()]
    log.info("%s output (last 200 of %d lines):\n%s", what, len(lines),
             "\n".join(lines[-200:]))
    if done.returncode != 0:
        tail = "\n".join(lines[-30:])
        raise RuntimeError(f"{what} failed (exit {done.returncode}):\n{tail}")
    return seconds
