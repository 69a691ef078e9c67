"""What the timing scripts of the runtime study (paper Supp. Fig. 2) share: how one call is
timed, the paper's training-set size rule (both from :mod:`scprob.bench.measure`, whose
docstring gives the protocol), the warm-up cells and the per-job JSON record.

Data loading, log-normalisation, model construction and the warm-up happen before the
timed call; writing results after.

The JSON of a job holds the measurement, the method's settings and the machine (CPU model,
threads, library versions), so a table built from it can be read without the config.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from workflow_helpers import atomic_output

# Re-exported: the timing scripts take the whole protocol from this module.
from scprob.bench.measure import Measurement, measure, paper_train_size  # noqa: F401


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
