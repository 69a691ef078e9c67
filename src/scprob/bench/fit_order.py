"""Training speed across the fits of one process and across input formats.

A user trains several models in one process (a notebook, reference then query, the peer
comparisons) and hands scprob CSR or dense counts. Neither should change how fast a fit
runs. This benchmark trains SCVI on one data set (the runtime study's subsample: CSR
counts with 2 categorical and 10 continuous covariates) the way that study does (batches
of ``batch_size``, at most ``limit_train_batches`` an epoch, ``epochs`` epochs) and times
``train`` alone:

- each process (:func:`run_fit_sequence`, in a fresh interpreter) first trains an untimed
  warm-up model on a few hundred cells (first-call costs, and the kernel's compilation
  where the setting compiles), then three timed fits, each of a fresh model: the first
  two on one input format, the third on the other (``csr, csr, dense`` or
  ``dense, dense, csr``);
- per kernel setting (``compile``: True, False or ``"auto"``), both orders are run, so
  every format is timed as a first, a second and a third fit.

Each fit reports wall and CPU seconds, the kernel that ran, the kernel graphs compiled
during the fit (0 for a fit that reuses what an earlier fit compiled), and the minor page
faults (memory the process had to map afresh). :func:`fit_order_table` compares every fit
with the fastest fit of its input format; ``spread`` > ``tolerance`` flags a fit slowed by
what ran before it or by its format.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

FORMATS = ("csr", "dense")
# The benchmark's names for the training plan's ``compile`` settings.
KERNEL_SETTINGS: dict[str, bool | str] = {"compiled": True, "eager": False, "auto": "auto"}


@dataclass(frozen=True)
class FitSettings:
    """How every timed fit trains (the runtime study's protocol: minibatches of
    ``batch_size`` cells, at most ``limit_train_batches`` an epoch) and the process around
    it: the warm-up's cells, torch threads (0: torch's default) and the seed."""

    epochs: int = 2
    batch_size: int = 1024
    limit_train_batches: int = 20
    warmup_cells: int = 500
    threads: int = 0
    seed: int = 0


def fit_orders() -> list[list[str]]:
    """The format sequences, one per process: each format first twice, then the other."""
    return [[first, first, second] for first, second in (FORMATS, FORMATS[::-1])]


def _compiled_graphs() -> int:
    """Graphs the compiler has made in this process (0 before any compilation)."""
    if "torch._dynamo" not in sys.modules:
        return 0
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def run_fit_sequence(
    data_path: str | Path,
    formats: Sequence[str],
    kernel: str,
    categorical_keys: Sequence[str],
    continuous_keys: Sequence[str],
    settings: FitSettings = FitSettings(),
) -> dict[str, Any]:
    """The warm-up and one timed fit per entry of ``formats``, in this process."""
    import anndata as ad
    import scipy.sparse as sp
    import torch

    from scprob.models import SCVI

    if kernel not in KERNEL_SETTINGS:
        raise ValueError(f"kernel must be one of {sorted(KERNEL_SETTINGS)}, got {kernel!r}.")
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ValueError(f"formats must be among {FORMATS}, got {unknown}.")
    if settings.threads > 0:
        torch.set_num_threads(settings.threads)
    stored = ad.read_h5ad(data_path)
    stored.X = sp.csr_matrix(stored.X)
    setup = {"categorical_covariate_keys": list(categorical_keys),
             "continuous_covariate_keys": list(continuous_keys)}
    train_kwargs: dict[str, Any] = {
        "batch_size": settings.batch_size, "train_size": 0.9, "seed": settings.seed,
        "accelerator": "cpu",
        "enable_progress_bar": False, "plan_kwargs": {"compile": KERNEL_SETTINGS[kernel]},
    }

    def model_on(adata: ad.AnnData) -> SCVI:
        SCVI.setup_anndata(adata, **setup)
        return SCVI(adata, seed=settings.seed)

    rng = np.random.default_rng(settings.seed)
    warm = stored[rng.choice(stored.n_obs, min(settings.warmup_cells, stored.n_obs),
                             replace=False)].copy()
    start = time.perf_counter()
    model_on(warm).train(max_epochs=1, limit_train_batches=2, **train_kwargs)
    warmup_s = time.perf_counter() - start
    del warm

    fits = []
    for position, data_format in enumerate(formats, start=1):
        adata = stored.copy()
        if data_format == "dense":
            adata.X = adata.X.toarray()
        model = model_on(adata)
        graphs, faults = _compiled_graphs(), _minor_faults()
        cpu, wall = time.process_time(), time.perf_counter()
        model.train(max_epochs=settings.epochs,
                    limit_train_batches=settings.limit_train_batches, **train_kwargs)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        n_trained = settings.epochs * min(len(model.train_indices),
                                          settings.limit_train_batches * settings.batch_size)
        fits.append({
            "position": position, "format": data_format, "kernel_setting": kernel,
            "likelihood_kernel": model.likelihood_kernel, "wall_s": wall, "cpu_s": cpu,
            "cells_per_s": n_trained / wall, "graphs_compiled": _compiled_graphs() - graphs,
            "minor_page_faults": _minor_faults() - faults,
            "threads": torch.get_num_threads(),
        })
        del model, adata
    return {"formats": list(formats), "kernel_setting": kernel, "warmup_s": warmup_s,
            "n_cells": stored.n_obs, "n_genes": stored.n_vars,
            "nonzero_fraction": stored.X.nnz / (stored.n_obs * stored.n_vars), "fits": fits}


def _minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def run_benchmark(
    data_path: str | Path,
    categorical_keys: Sequence[str],
    continuous_keys: Sequence[str],
    kernels: Sequence[str],
    settings: FitSettings = FitSettings(),
    *,
    repeats: int = 1,
    log: Any = print,
) -> dict[str, Any]:
    """Every kernel setting × fit order, each order in a fresh interpreter, ``repeats``
    times (the settings alternating, so a slow spell of a shared machine hits all)."""
    sequences = []
    for repeat in range(1, repeats + 1):
        for kernel in kernels:
            for formats in fit_orders():
                arguments = {
                    "data_path": str(data_path), "formats": formats, "kernel": kernel,
                    "categorical_keys": list(categorical_keys),
                    "continuous_keys": list(continuous_keys), "settings": asdict(settings),
                }
                sequences.append({**_in_fresh_process(arguments), "repeat": repeat})
                walls = ", ".join(f"{f['format']} {f['wall_s']:.1f} s"
                                  for f in sequences[-1]["fits"])
                log(f"{kernel}, {' -> '.join(formats)}, run {repeat}/{repeats}: {walls}")
    return {
        "benchmark": "SCVI training speed by fit order and input format",
        "settings": {"kernels": list(kernels), **asdict(settings), "repeats": repeats,
                     "categorical_keys": list(categorical_keys),
                     "continuous_keys": list(continuous_keys)},
        "protocol": (
            "one fresh interpreter per kernel setting, fit order and repeat; an untimed "
            "warm-up fit on a few hundred cells, then three fits of fresh models, train() "
            "timed alone: two on one input format, the third on the other; with repeats > 1 "
            "each fit's fastest run is compared (the one least disturbed by other "
            "processes, as timeit does)"
        ),
        "machine": {"cpu_count": os.cpu_count(),
                    "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default")},
        "sequences": sequences,
    }


def _in_fresh_process(arguments: dict[str, Any]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="fit_order_") as scratch:
        request, out = Path(scratch) / "request.json", Path(scratch) / "out.json"
        request.write_text(json.dumps(arguments))
        # The child imports this very scprob, installed or not.
        source = str(Path(__file__).resolve().parents[2])
        paths = [source, *filter(None, [os.environ.get("PYTHONPATH")])]
        done = subprocess.run([sys.executable, "-m", "scprob.bench.fit_order", str(request),
                               str(out)], capture_output=True, text=True, check=False,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(paths)})
        if done.returncode != 0 or not out.exists():
            raise RuntimeError(f"the fit sequence {arguments['formats']} "
                               f"({arguments['kernel']}) failed (exit {done.returncode}):\n"
                               f"{done.stderr[-4000:]}")
        return json.loads(out.read_text())


def fit_order_table(document: dict[str, Any]) -> pd.DataFrame:
    """One row per kernel setting, fit order and position: the fit's fastest run
    (``wall_s``, with every run's seconds in ``wall_s_runs``) and its ``spread``: that time
    over the fastest fit of the same format and kernel setting (1.0 for the fastest)."""
    runs = pd.DataFrame([{**fit, "order": " -> ".join(sequence["formats"]),
                          "repeat": sequence.get("repeat", 1)}
                         for sequence in document["sequences"] for fit in sequence["fits"]])
    keys = ["kernel_setting", "order", "position"]
    best = runs.loc[runs.groupby(keys, sort=False)["wall_s"].idxmin()].reset_index(drop=True)
    all_runs = runs.groupby(keys, sort=False)["wall_s"].apply(
        lambda walls: ";".join(f"{w:.2f}" for w in walls)).rename("wall_s_runs")
    table = best.merge(all_runs.reset_index(), on=keys).drop(columns="repeat")
    fastest = table.groupby(["kernel_setting", "format"])["wall_s"].transform("min")
    table["spread"] = table["wall_s"] / fastest
    return table


def plot_fit_order(table: pd.DataFrame, path_stem: str | Path) -> list[Path]:
    """Seconds of each fit by its position in its process and its input format, one panel
    per kernel setting; written as ``<path_stem>.png`` and ``.pdf``."""
    import matplotlib.pyplot as plt

    from scprob.bench.plotting import apply_style, method_color, save_figure

    apply_style()
    settings = list(dict.fromkeys(table["kernel_setting"]))
    fig, axes = plt.subplots(1, len(settings), figsize=(3.2 * len(settings), 3.4),
                             layout="constrained", sharey=True, squeeze=False)
    for ax, setting in zip(axes[0], settings, strict=True):
        part = table[table["kernel_setting"] == setting]
        for offset, data_format in zip((-0.12, 0.12), FORMATS, strict=True):
            rows = part[part["format"] == data_format]
            ax.scatter(rows["position"] + offset, rows["wall_s"], zorder=3,
                       color=method_color(data_format), label=f"{data_format} input")
        ax.set_xticks([1, 2, 3], ["1st", "2nd", "3rd"])
        ax.set_xlabel("fit in its process")
        kernels = ", ".join(sorted(set(part["likelihood_kernel"])))
        ax.set_title(f"compile={setting} (ran: {kernels})")
        ax.set_ylim(bottom=0)
    axes[0][0].set_ylabel("train() wall time (s)")
    axes[0][0].legend(frameon=False)
    return save_figure(fig, path_stem)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m scprob.bench.fit_order REQUEST.json OUT.json``: one fit sequence."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        raise SystemExit("usage: python -m scprob.bench.fit_order REQUEST.json OUT.json")
    request = json.loads(Path(args[0]).read_text())
    request["settings"] = FitSettings(**request["settings"])
    Path(args[1]).write_text(json.dumps(run_fit_sequence(**request), indent=2))


if __name__ == "__main__":
    main()
