"""What the timing scripts of the runtime study (paper Supp. Fig. 2) share: how one call is
timed, the paper's training-set size rule, the warm-up cells and the per-job JSON record.

Protocol of one timed call (:func:`measure`):

- wall time: ``time.perf_counter`` immediately before and after the call, nothing else
  inside (data loading, log-normalisation, model construction and the warm-up happen
  before; writing results after);
- CPU time: ``time.process_time`` over the same span, the CPU seconds of every thread of
  the process (torch, BLAS, numba), so a loaded machine shows up as wall >> CPU / threads;
- peak memory: the kernel's high-water mark of the process's resident set (``VmHWM``),
  reset right before the call by writing ``5`` to ``/proc/self/clear_refs`` (Linux), so it
  is the highest resident memory *while the call ran*, data already loaded included. Where
  the reset is not possible it is the process's peak since start (``ru_maxrss``), and
  the record says so in ``peak_rss_scope``.

The JSON of a job holds the measurement, the method's settings and the machine (CPU model,
threads, library versions), so a table built from it can be read without the config.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from workflow_helpers import atomic_output

T = TypeVar("T")

GIB = 1024**3
# The paper keeps every validation set below 20,000 cells: 10 % of the cells below
# 200,000 cells, 20,000 cells above.
LARGE_DATA_SET_CELLS = 200_000
MAX_VALIDATION_CELLS = 20_000
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


@dataclass(frozen=True)
class Measurement:
    """Wall and CPU seconds and memory of one timed call (see the module docstring)."""

    seconds: float
    cpu_seconds: float
    peak_rss_gib: float
    rss_before_gib: float
    peak_rss_scope: str


def _status_bytes(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``) in bytes, or None."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's resident-set high-water mark of this process (Linux >= 4.0)."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def _process_peak_rss_bytes() -> int:
    """The process's peak resident set since start; ``ru_maxrss`` is in KiB on Linux and
    in bytes on macOS."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def measure(call: Callable[[], T]) -> tuple[T, Measurement]:
    """Run ``call()`` once and return its result with its :class:`Measurement`."""
    gc.collect()  # garbage of the preparation is not the call's memory
    rss_before = _status_bytes("VmRSS")
    scope = "timed call" if _reset_peak_rss() and rss_before is not None else "process"
    cpu_start = time.process_time()
    wall_start = time.perf_counter()
    result = call()
    seconds = time.perf_counter() - wall_start
    cpu_seconds = time.process_time() - cpu_start
    peak = _status_bytes("VmHWM") if scope == "timed call" else None
    if peak is None:
        peak, scope = _process_peak_rss_bytes(), "process"
    return result, Measurement(
        seconds=seconds,
        cpu_seconds=cpu_seconds,
        peak_rss_gib=peak / GIB,
        rss_before_gib=(rss_before or 0) / GIB,
        peak_rss_scope=scope,
    )


def paper_train_size(n_cells: int) -> float:
    """The scVI training fraction of the paper's runtime study: 0.9 below 200,000 cells,
    else ``1 - 20,000 / n_cells`` (the validation set never exceeds 20,000 cells)."""
    if n_cells < 2:
        raise ValueError(f"n_cells must be at least 2, got {n_cells}.")
    if n_cells < LARGE_DATA_SET_CELLS:
        return 0.9
    return 1.0 - MAX_VALIDATION_CELLS / n_cells


def combined_labels(obs: pd.DataFrame, keys: Sequence[str]) -> np.ndarray:
    """One label per cell naming its combination of the categorical ``keys``
    (``"Sanger-Cells|D3"``): how two categorical covariates enter a method that takes one."""
    missing = [k for k in keys if k not in obs]
    if not keys or missing:
        raise ValueError(f"categorical keys {list(keys)} must be non-empty columns of obs; "
                         f"missing: {missing}.")
    labels = obs[keys[0]].astype(str).to_numpy(dtype=object)
    for key in keys[1:]:
        labels = labels + "|" + obs[key].astype(str).to_numpy(dtype=object)
    return labels.astype(str)


def warmup_indices(obs: pd.DataFrame, keys: Sequence[str], n_cells: int) -> np.ndarray:
    """Sorted row positions of about ``n_cells`` cells for the untimed warm-up: the first
    ``ceil(n_cells / n_groups)`` cells of every combination of ``keys``, so each batch of
    the full data is present (bbknn needs every batch) whatever its size."""
    if n_cells < 1:
        raise ValueError(f"n_cells must be positive, got {n_cells}.")
    labels = pd.Series(combined_labels(obs, keys))
    per_group = -(-n_cells // labels.nunique())
    positions = labels.groupby(labels, sort=False).head(per_group).index.to_numpy()
    return np.sort(positions)


def machine() -> dict[str, Any]:
    """Where the numbers were taken: CPU model, cores, Python and library versions."""
    from importlib.metadata import version

    import torch

    cpu_model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "scanpy": version("scanpy"),
        "cuda_available": bool(torch.cuda.is_available()),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
    }


def write_record(record: dict[str, Any], measurement: Measurement, path: str) -> None:
    """Write the job's record (settings + :class:`Measurement` + machine) as JSON."""
    document = {**record, **asdict(measurement), "machine": machine()}
    with atomic_output(path) as partial:
        partial.write_text(json.dumps(document, indent=2, default=float) + "\n")
