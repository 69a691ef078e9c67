"""How the benchmarks measure one call: wall and CPU seconds and peak resident memory
(:func:`measure`), the named sections of one stage (:class:`StageClock`), and the paper's
training-set size rule for its runtime study.

Protocol of one measured call (:func:`measure`):

- wall time: ``time.perf_counter`` immediately before and after the call, nothing else
  inside;
- CPU time: ``time.process_time`` over the same span, the CPU seconds of every thread of
  the process (torch, BLAS, numba), so a loaded machine shows up as wall >> CPU / threads;
- peak memory: the kernel's high-water mark of the process's resident set (``VmHWM``),
  reset right before the call by writing ``5`` to ``/proc/self/clear_refs`` (Linux), so it
  is the highest resident memory *while the call ran*, data already loaded included. Where
  the reset is not possible it is the process's peak since start (``ru_maxrss``), and
  the measurement says so in ``peak_rss_scope``.
"""

from __future__ import annotations

import gc
import logging
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

GIB = 1024**3
# The paper keeps every validation set below 20,000 cells: 10 % of the cells below
# 200,000 cells, 20,000 cells above.
LARGE_DATA_SET_CELLS = 200_000
MAX_VALIDATION_CELLS = 20_000
log = logging.getLogger(__name__)
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


@dataclass(frozen=True)
class Measurement:
    """Wall and CPU seconds and memory of one measured call (see the module docstring)."""

    seconds: float
    cpu_seconds: float
    peak_rss_gib: float
    rss_before_gib: float
    peak_rss_scope: str


def status_bytes(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``) in bytes, or None."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def reset_peak_rss() -> bool:
    """Restart the kernel's resident-set high-water mark of this process from the current
    resident set (Linux >= 4.0); False where that is not possible."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def process_peak_rss_bytes() -> int:
    """The process's peak resident set since start; ``ru_maxrss`` is in KiB on Linux and
    in bytes on macOS."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def peak_rss_bytes() -> int:
    """The high-water mark of the resident set since the last :func:`reset_peak_rss`
    (``VmHWM``), or since the start of the process where ``/proc`` is missing."""
    peak = status_bytes("VmHWM")
    return process_peak_rss_bytes() if peak is None else peak


def measure(call: Callable[[], T]) -> tuple[T, Measurement]:
    """Run ``call()`` once and return its result with its :class:`Measurement`."""
    gc.collect()  # garbage of the preparation is not the call's memory
    rss_before = status_bytes("VmRSS")
    scope = "timed call" if reset_peak_rss() and rss_before is not None else "process"
    cpu_start = time.process_time()
    wall_start = time.perf_counter()
    result = call()
    seconds = time.perf_counter() - wall_start
    cpu_seconds = time.process_time() - cpu_start
    peak = status_bytes("VmHWM") if scope == "timed call" else None
    if peak is None:
        peak, scope = process_peak_rss_bytes(), "process"
    return result, Measurement(
        seconds=seconds,
        cpu_seconds=cpu_seconds,
        peak_rss_gib=peak / GIB,
        rss_before_gib=(rss_before or 0) / GIB,
        peak_rss_scope=scope,
    )


class StageClock:
    """The :class:`Measurement` of each named section of one stage (e.g. the scArches
    query step: surgery, training, latents), in the order they ran."""

    def __init__(self) -> None:
        self.sections: dict[str, Measurement] = {}

    def run(self, name: str, call: Callable[[], T]) -> T:
        """``call()``, measured as section ``name``; its result."""
        result, self.sections[name] = measure(call)
        log.info("%s: %.1f s wall, %.1f s CPU", name, self.sections[name].seconds,
                 self.sections[name].cpu_seconds)
        return result

    def total(self, names: Sequence[str], field: str = "seconds") -> float:
        """The sum of one :class:`Measurement` field over the sections ``names``."""
        return float(sum(getattr(self.sections[n], field) for n in names))

    def as_dict(self) -> dict[str, dict[str, float | str]]:
        """Every section's measurement, by name (for a JSON record)."""
        return {name: asdict(m) for name, m in self.sections.items()}


def paper_train_size(n_cells: int) -> float:
    """The scVI training fraction of the paper's runtime study: 0.9 below 200,000 cells,
    else ``1 - 20,000 / n_cells`` (the validation set never exceeds 20,000 cells)."""
    if n_cells < 2:
        raise ValueError(f"n_cells must be at least 2, got {n_cells}.")
    if n_cells < LARGE_DATA_SET_CELLS:
        return 0.9
    return 1.0 - MAX_VALIDATION_CELLS / n_cells
