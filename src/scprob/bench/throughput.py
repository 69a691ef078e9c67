"""SCVI training throughput, scprob against scvi-tools on the same simulated counts, and
the peak memory of training on a large sparse input.

Throughput (:func:`run_benchmark`): counts ``(n_cells, n_genes)`` (default 20,000 ×
2,000) of :func:`simulate_counts`, stored CSR; both engines train the same :data:`NETWORK`
(ZINB, ``n_latent=10``, ``n_hidden=128``, one hidden layer, the batch as the only
covariate) on the *same* 90 % of the cells (``train_validation_split``) for the same
epochs, validating once per epoch on the same 10 %, with the same torch threads. Each
measurement starts with an untimed warm-up fit of a separate model (first-call costs and,
for scprob with ``compile=True``, the kernel compilation, reported as ``warmup_s``), then
times ``train`` of a fresh seeded model:

    cells/s = (training cells × epochs) / wall seconds of train()

and reads that model's held-out ELBO (mean per cell, ``log x!`` included, higher is
better). scvi-tools runs in its own environment through a peer script the caller names
(``peer_script``), right before scprob at each batch size. Memory
(:func:`sparse_training_memory`): peak resident memory by phase of SCVI training on the
paper's largest runtime-study input, a CSR stand-in built in row blocks. What the profile
showed and what each optimisation gave: ``docs/performance.md``.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from scprob.bench.measure import GIB, measure, paper_train_size, peak_rss_bytes
from scprob.data.loader import train_validation_split

# The network both engines train.
NETWORK: dict[str, Any] = {
    "n_latent": 10,
    "n_hidden": 128,
    "n_layers": 1,
    "dropout_rate": 0.1,
    "gene_likelihood": "zinb",
    "dispersion": "gene",
}
ELBO_CONVENTION = ("mean per-cell ELBO on the validation cells: log p(x | z) including "
                   "log x!, minus KL(q(z | x) || p(z)); higher is better")


@dataclass
class ThroughputSettings:
    """What one benchmark run measures (the ``benchmarks: throughput:`` config block)."""

    n_cells: int = 20_000
    n_genes: int = 2_000
    n_batches: int = 2
    epochs: int = 3
    batch_sizes: list[int] = field(default_factory=lambda: [128, 1024])
    train_size: float = 0.9
    seed: int = 0
    threads: int = 0  # 0: torch's default (all cores)
    compile: bool = True
    warmup_batches: int = 20
    repeats: int = 1
    peer: bool = False
    peer_python: str = ".venv-peer/bin/python"
    peer_script: str = ""  # the peer script's path; needed with peer=True
    peer_timeout_s: int = 3600
    accelerators: list[str] = field(default_factory=lambda: ["cpu", "gpu"])

    def __post_init__(self) -> None:
        problems = _setting_problems(self)
        if problems:
            raise ValueError("; ".join(problems) + ".")


def _setting_problems(settings: ThroughputSettings) -> list[str]:
    """What is wrong with ``settings``, one message each."""
    s = settings
    unknown = sorted(set(s.accelerators) - {"cpu", "gpu"})
    checks = [
        (s.n_cells >= 10 and s.n_genes >= 1 and s.n_batches >= 1,
         f"need at least 10 cells, 1 gene and 1 batch, got n_cells={s.n_cells}, "
         f"n_genes={s.n_genes}, n_batches={s.n_batches}"),
        (s.epochs >= 1 and s.repeats >= 1,
         f"epochs and repeats must be at least 1, got {s.epochs} and {s.repeats}"),
        (min(s.batch_sizes, default=0) >= 3,
         f"batch_sizes must be a non-empty list of sizes >= 3, got {s.batch_sizes}"),
        (not unknown, f"accelerators must be 'cpu' and/or 'gpu', got {unknown}"),
        (bool(s.peer_script) or not s.peer,
         "peer=True needs peer_script, the script that times scvi-tools in the peer "
         "environment"),
    ]
    return [message for holds, message in checks if not holds]


def simulate_counts(
    n_cells: int = 20_000, n_genes: int = 2_000, n_batches: int = 2, seed: int = 0
) -> ad.AnnData:
    """Negative-binomial counts ``(n_cells, n_genes)`` with cell types and batch effects,
    CSR float32, and ``obs["batch"]``.

    Ten cell types each shift 20 % of the genes (log-fold N(0, 0.8²)); each batch shifts
    every gene by N(0, 0.3²); gene baselines are N(0, 1.2²) on the log scale, library
    sizes lognormal around 2,000 UMIs, inverse dispersions log-uniform on [0.5, 20]. That
    gives about 38 % nonzero entries at 2,000 genes: a denser matrix than most droplet data,
    which makes the likelihood (evaluated on every entry) a larger share of a step. Rows
    are drawn in blocks, so memory stays at a few blocks whatever ``n_cells``.
    """
    rng = np.random.default_rng([seed, 7])
    n_types = 10
    baseline = rng.normal(0.0, 1.2, n_genes)
    programs = rng.normal(0.0, 0.8, (n_types, n_genes)) * (rng.random((n_types, n_genes)) < 0.2)
    batch_effect = rng.normal(0.0, 0.3, (n_batches, n_genes))
    theta = np.exp(rng.uniform(np.log(0.5), np.log(20.0), n_genes))
    cell_type = rng.integers(0, n_types, n_cells)
    batch = rng.integers(0, n_batches, n_cells)
    library = np.exp(np.log(2000.0) + rng.normal(0.0, 0.35, n_cells))
    blocks = []
    for start in range(0, n_cells, 4096):
        rows = slice(start, min(start + 4096, n_cells))
        eta = baseline + programs[cell_type[rows]] + batch_effect[batch[rows]]
        frequencies = np.exp(eta - eta.max(axis=1, keepdims=True))
        frequencies /= frequencies.sum(axis=1, keepdims=True)
        mean = library[rows, None] * frequencies
        counts = rng.poisson(rng.gamma(theta, mean / theta))
        blocks.append(sp.csr_matrix(counts.astype(np.float32)))
    adata = ad.AnnData(sp.vstack(blocks, format="csr"))
    adata.obs_names = [f"cell_{i}" for i in range(n_cells)]
    adata.var_names = [f"gene_{j}" for j in range(n_genes)]
    adata.obs["batch"] = pd.Categorical([f"batch_{b}" for b in batch])
    adata.obs["cell_type"] = pd.Categorical([f"type_{t}" for t in cell_type])
    return adata


# scprob side --------------------------------------------------------------------------------
def time_scprob(
    adata: ad.AnnData,
    batch_size: int,
    epochs: int,
    *,
    train_size: float = 0.9,
    seed: int = 0,
    accelerator: str = "cpu",
    compile: bool = True,
    warmup_batches: int = 20,
) -> dict[str, Any]:
    """One measurement: an untimed warm-up fit, then ``SCVI.train`` of a fresh seeded model
    timed by the wall clock, and its held-out ELBO. ``adata`` needs raw counts in ``X`` and
    ``obs["batch"]``."""
    from scprob.models import SCVI

    adata = adata.copy()
    SCVI.setup_anndata(adata, batch_key="batch")
    fit_kwargs: dict[str, Any] = {
        "batch_size": batch_size, "train_size": train_size, "seed": seed,
        "accelerator": accelerator, "devices": 1, "plan_kwargs": {"compile": compile},
        "enable_progress_bar": False,
    }
    warmup_start = time.perf_counter()
    SCVI(adata, seed=seed, **NETWORK).train(
        max_epochs=1, limit_train_batches=warmup_batches, limit_val_batches=1, **fit_kwargs
    )
    warmup_s = time.perf_counter() - warmup_start

    model = SCVI(adata, seed=seed, **NETWORK)
    start = time.perf_counter()
    model.train(max_epochs=epochs, **fit_kwargs)
    wall = time.perf_counter() - start
    n_train = len(model.train_indices)
    return {
        "engine": "scprob",
        "version": _package_version("scprob"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "accelerator": accelerator,
        "threads": torch.get_num_threads(),
        "batch_size": batch_size,
        "epochs": epochs,
        "n_train_cells": n_train,
        "n_validation_cells": len(model.validation_indices),
        "wall_s": wall,
        "cells_per_s": n_train * epochs / wall,
        "elbo_validation": model.get_elbo(),
        "elbo_convention": "scprob.models.SCVI.get_elbo: " + ELBO_CONVENTION,
        "likelihood_kernel": model.likelihood_kernel,
        "warmup_s": warmup_s,
    }


def _package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


# peer side ----------------------------------------------------------------------------------
def write_peer_inputs(
    adata: ad.AnnData, directory: Path, train_size: float, seed: int
) -> tuple[Path, Path]:
    """The counts (h5ad: ``X``, ``obs["batch"]``) and scprob's train/validation split
    (npz) that the peer script reads."""
    directory.mkdir(parents=True, exist_ok=True)
    data_path, split_path = directory / "counts.h5ad", directory / "split.npz"
    ad.AnnData(adata.X, obs=adata.obs[["batch"]].copy(), var=adata.var[[]].copy()).write_h5ad(
        data_path
    )
    train, validation = train_validation_split(adata.n_obs, train_size, seed)
    np.savez(split_path, train=train, validation=validation)
    return data_path, split_path


def time_peer(
    peer_python: str | Path,
    peer_script: str | Path,
    data_path: Path,
    split_path: Path,
    batch_size: int,
    epochs: int,
    *,
    seed: int = 0,
    threads: int = 0,
    accelerator: str = "cpu",
    warmup_batches: int = 20,
    timeout_s: int = 3600,
) -> dict[str, Any]:
    """Run the peer script in the peer environment; its JSON record."""
    peer_python, peer_script = Path(peer_python), Path(peer_script)
    if not peer_python.exists():
        raise ValueError(
            f"the peer interpreter {peer_python} does not exist: create the scvi-tools "
            "environment from envs/scvi-tools.lock (`make peer-env`, or python3 -m venv "
            ".venv-peer && .venv-peer/bin/pip install -r envs/scvi-tools.lock) or set "
            "peer: false."
        )
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "peer.json"
        command = [
            str(peer_python), str(peer_script), "--data", str(data_path),
            "--split", str(split_path), "--batch-size", str(batch_size),
            "--epochs", str(epochs), "--seed", str(seed), "--threads", str(threads),
            "--accelerator", accelerator, "--warmup-batches", str(warmup_batches),
            "--out", str(out),
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s,
                              check=False)
        if done.returncode != 0 or not out.exists():
            raise RuntimeError(
                f"the scvi-tools peer run failed (exit {done.returncode}):\n"
                f"{done.stderr[-4000:]}"
            )
        return json.loads(out.read_text())


# the benchmark ------------------------------------------------------------------------------
def available_accelerators(requested: Sequence[str]) -> list[str]:
    """``requested`` without ``"gpu"`` where no CUDA device is visible."""
    return [a for a in requested if a == "cpu" or torch.cuda.is_available()]


def run_benchmark(settings: ThroughputSettings, work_dir: Path,
                  log: Any = print) -> dict[str, Any]:
    """Every measurement of one run; the document written as ``throughput.json``."""
    if settings.threads > 0:
        torch.set_num_threads(settings.threads)
    threads = torch.get_num_threads()
    log(f"simulating {settings.n_cells} x {settings.n_genes} counts, {settings.n_batches} "
        "batches")
    adata = simulate_counts(settings.n_cells, settings.n_genes, settings.n_batches,
                            settings.seed)
    density = adata.X.nnz / (adata.n_obs * adata.n_vars)
    if settings.peer:
        data_path, split_path = write_peer_inputs(adata, work_dir, settings.train_size,
                                                  settings.seed)
    comparisons = []
    for accelerator in available_accelerators(settings.accelerators):
        for batch_size in settings.batch_sizes:
            # Repeats alternate the engines, so a slow spell of a shared machine hits both.
            peer_runs, our_runs = [], []
            for repeat in range(settings.repeats):
                tag = f"{accelerator}, batch {batch_size}, run {repeat + 1}/{settings.repeats}"
                if settings.peer:
                    load = _load_average()
                    peer_runs.append(time_peer(
                        settings.peer_python, settings.peer_script, data_path, split_path,
                        batch_size, settings.epochs, seed=settings.seed, threads=threads,
                        accelerator=accelerator, warmup_batches=settings.warmup_batches,
                        timeout_s=settings.peer_timeout_s))
                    peer_runs[-1]["load_average_before"] = load
                    log(f"scvi-tools, {tag}: {peer_runs[-1]['cells_per_s']:.0f} cells/s, "
                        f"ELBO {peer_runs[-1]['elbo_validation']:.2f}")
                load = _load_average()
                our_runs.append(time_scprob(
                    adata, batch_size, settings.epochs, train_size=settings.train_size,
                    seed=settings.seed, accelerator=accelerator, compile=settings.compile,
                    warmup_batches=settings.warmup_batches))
                our_runs[-1]["load_average_before"] = load
                log(f"scprob, {tag}: {our_runs[-1]['cells_per_s']:.0f} cells/s, "
                    f"ELBO {our_runs[-1]['elbo_validation']:.2f}")
            comparisons.append(_comparison(_fastest_run(our_runs),
                                           _fastest_run(peer_runs) if peer_runs else None))
    return {
        "benchmark": "SCVI training throughput",
        "settings": asdict(settings),
        "data": {"n_cells": adata.n_obs, "n_genes": adata.n_vars,
                 "n_batches": settings.n_batches, "nonzero_fraction": density,
                 "storage": "CSR float32"},
        "network": NETWORK,
        "protocol": (
            "same cells, split (train_size), network, epochs and torch threads for both; "
            "validation once per epoch for both; one untimed warm-up fit per measurement; "
            "cells/s = training cells x epochs / wall seconds of train(); with repeats > 1 "
            "the engines alternate and each engine's fastest run is reported (the one least "
            "disturbed by other processes, as timeit does); every run's cells/s and the "
            "load average before it are kept, with the ratio of the medians"
        ),
        "elbo_convention": ELBO_CONVENTION + "; both engines report it with this sign, so "
                           "no conversion is needed (relative_elbo_gap = (scprob - "
                           "scvi-tools) / |scvi-tools|)",
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpu_count": os.cpu_count(), "torch_threads": threads,
                    "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "comparisons": comparisons,
    }


def _fastest_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of highest throughput, with every run's cells/s and load average attached.

    On a shared machine another process can take a core for part of a run, and a torch
    step waits for its slowest thread: such a run measures the neighbour, not the engine.
    The fastest of several runs is the least disturbed estimate (the convention of
    ``timeit``); the median is reported beside it."""
    fastest = dict(max(runs, key=lambda run: run["cells_per_s"]))
    fastest["cells_per_s_all_runs"] = [run["cells_per_s"] for run in runs]
    fastest["load_average_before_runs"] = [run["load_average_before"] for run in runs]
    # The first warm-up of a process carries scprob's kernel compilation, if any.
    fastest["warmup_s_all_runs"] = [run.get("warmup_s") for run in runs]
    fastest["cells_per_s_median"] = float(np.median(fastest["cells_per_s_all_runs"]))
    return fastest


def _load_average() -> float | None:
    """The 1-minute load average (runnable processes), where the system tells it."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def _comparison(ours: dict[str, Any], peer: dict[str, Any] | None) -> dict[str, Any]:
    row: dict[str, Any] = {"accelerator": ours["accelerator"], "batch_size": ours["batch_size"],
                           "scprob": ours, "scvi_tools": peer}
    if peer is not None:
        row["throughput_ratio"] = ours["cells_per_s"] / peer["cells_per_s"]
        row["throughput_ratio_of_medians"] = (ours["cells_per_s_median"]
                                              / peer["cells_per_s_median"])
        row["relative_elbo_gap"] = ((ours["elbo_validation"] - peer["elbo_validation"])
                                    / abs(peer["elbo_validation"]))
    return row


def results_table(document: dict[str, Any]) -> pd.DataFrame:
    """One row per engine and setting: the CSV beside the JSON."""
    rows = []
    for comparison in document["comparisons"]:
        for engine in ("scprob", "scvi_tools"):
            record = comparison[engine]
            if record is None:
                continue
            rows.append({
                "engine": record["engine"], "version": record["version"],
                "accelerator": record["accelerator"], "batch_size": record["batch_size"],
                "threads": record["threads"], "epochs": record["epochs"],
                "n_train_cells": record["n_train_cells"], "wall_s": record["wall_s"],
                "cells_per_s": record["cells_per_s"],
                "cells_per_s_median": record["cells_per_s_median"],
                "n_runs": len(record["cells_per_s_all_runs"]),
                "elbo_validation": record["elbo_validation"],
                "throughput_ratio_vs_scvi_tools": comparison.get("throughput_ratio"),
            })
    return pd.DataFrame(rows)


def _engine_throughputs(table: pd.DataFrame, engine: str,
                        settings: Sequence[tuple[str, int]]) -> list[float]:
    """The engine's cells/s at each (accelerator, batch size); 0 where it did not run."""
    heights = []
    for accelerator, batch_size in settings:
        match = table[(table["engine"] == engine) & (table["accelerator"] == accelerator)
                      & (table["batch_size"] == batch_size)]
        heights.append(float(match["cells_per_s"].iloc[0]) if len(match) else 0.0)
    return heights


def plot_throughput(document: dict[str, Any], paths: Sequence[Path]) -> None:
    """Grouped bars: cells/s per batch size (and accelerator), one bar per engine, the
    ratio written above each pair."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = results_table(document)
    settings = [(c["accelerator"], c["batch_size"]) for c in document["comparisons"]]
    engines = [e for e in ("scprob", "scvi-tools") if (table["engine"] == e).any()]
    colours = {"scprob": "#1f77b4", "scvi-tools": "#ff7f0e"}
    width = 0.8 / len(engines)
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(settings), 3.6), layout="constrained")
    for k, engine in enumerate(engines):
        positions = np.arange(len(settings)) + (k - (len(engines) - 1) / 2) * width
        ax.bar(positions, _engine_throughputs(table, engine, settings), width, label=engine,
               color=colours[engine])
    for i, comparison in enumerate(document["comparisons"]):
        if comparison.get("throughput_ratio") is not None:
            top = max(comparison["scprob"]["cells_per_s"],
                      comparison["scvi_tools"]["cells_per_s"])
            ax.text(i, top * 1.02, f"{comparison['throughput_ratio']:.2f}×", ha="center",
                    va="bottom", fontsize=9)
    ax.set_xticks(np.arange(len(settings)),
                  [f"{a.upper()}\nbatch {b}" for a, b in settings])
    ax.set_ylabel("training throughput (cells/s)")
    data = document["data"]
    ax.set_title(f"SCVI training, {data['n_cells']:,} × {data['n_genes']:,} counts, "
                 f"{document['settings']['epochs']} epochs", fontsize=10)
    ax.set_ylim(0, ax.get_ylim()[1] * 1.1)
    ax.legend(frameon=False, fontsize=9)
    ax.spines[["top", "right"]].set_visible(False)
    for path in paths:
        fig.savefig(path, dpi=150)
    plt.close(fig)


# memory on a large sparse input --------------------------------------------------------------
def sparse_covariate_counts(
    n_cells: int, n_genes: int, density: float = 0.05, seed: int = 0
) -> ad.AnnData:
    """A CSR count matrix with about ``density`` nonzero entries (values 1 + Geometric(0.5))
    and the Heart Cell Atlas covariates of the paper's runtime study: ``cell_source``
    (4 categories, the batch), ``donor`` (14) and 10 continuous covariates. Built in row
    blocks; no dense ``n_cells × n_genes`` array ever exists."""
    if not 0.0 < density <= 1.0:
        raise ValueError(f"density must be in (0, 1], got {density}.")
    rng = np.random.default_rng([seed, 11])
    blocks = []
    for start in range(0, n_cells, 16_384):
        n = min(16_384, n_cells - start)
        row_nnz = rng.binomial(n_genes, density, n)
        columns = np.concatenate([np.sort(rng.choice(n_genes, k, replace=False))
                                  for k in row_nnz]) if n else np.zeros(0, np.int64)
        values = (1 + rng.geometric(0.5, columns.size)).astype(np.float32)
        indptr = np.concatenate([[0], np.cumsum(row_nnz)])
        blocks.append(sp.csr_matrix((values, columns.astype(np.int32), indptr),
                                    shape=(n, n_genes)))
    adata = ad.AnnData(sp.vstack(blocks, format="csr"))
    adata.obs["cell_source"] = pd.Categorical(rng.choice(
        ["Harvard-Nuclei", "Sanger-Nuclei", "Sanger-Cells", "Sanger-CD45"], n_cells))
    adata.obs["donor"] = pd.Categorical(rng.choice([f"D{i}" for i in range(14)], n_cells))
    adata.obs["percent_mito"] = rng.uniform(0, 20, n_cells)
    adata.obs["percent_ribo"] = rng.uniform(0, 20, n_cells)
    for k in range(1, 9):
        adata.obs[f"cont_cov_{k}"] = rng.normal(size=n_cells)
    return adata


def sparse_training_memory(
    n_cells: int = 486_134,
    n_genes: int = 4_000,
    density: float = 0.05,
    *,
    batch_size: int = 1024,
    epochs: int = 1,
    limit_train_batches: int = 20,
    seed: int = 0,
) -> dict[str, Any]:
    """Peak RSS of SCVI training with all covariates on a large CSR input, as the paper's
    runtime study trains it (``batch_size=1024``, ``limit_train_batches=20``, the paper's
    training fraction, so the validation pass covers up to 20,000 cells), by phase:
    building the data, ``setup_anndata`` with the model (the registry validates every
    stored count), and ``train``. The high-water mark is reset between phases (Linux), so
    each number is the process's resident memory at its highest during that phase, and
    ``peak_rss_bytes_max`` is the process's peak. Run it in a fresh process."""
    from scprob.models import SCVI

    adata = sparse_covariate_counts(n_cells, n_genes, density, seed)
    matrix_bytes = adata.X.data.nbytes + adata.X.indices.nbytes + adata.X.indptr.nbytes
    phases: dict[str, int] = {"building_data": peak_rss_bytes()}

    def build_model() -> SCVI:
        SCVI.setup_anndata(
            adata, batch_key="cell_source", categorical_covariate_keys=["donor"],
            continuous_covariate_keys=["percent_mito", "percent_ribo",
                                       *[f"cont_cov_{k}" for k in range(1, 9)]])
        return SCVI(adata, seed=seed, **NETWORK)

    model, setup = measure(build_model)
    train_size = paper_train_size(n_cells)
    _, training = measure(lambda: model.train(
        max_epochs=epochs, batch_size=batch_size, train_size=train_size,
        limit_train_batches=limit_train_batches, enable_progress_bar=False))
    phases["setup_anndata_and_model"] = round(setup.peak_rss_gib * GIB)
    phases["training"] = round(training.peak_rss_gib * GIB)
    return {
        "n_cells": n_cells, "n_genes": n_genes,
        "nonzero_fraction": adata.X.nnz / n_cells / n_genes,
        "csr_bytes": int(matrix_bytes),
        "dense_matrix_bytes": int(4 * n_cells * n_genes),
        "peak_rss_bytes": phases,
        "peak_rss_bytes_max": int(max(phases.values())),
        "peak_rss_scope": training.peak_rss_scope,
        "training_wall_s": training.seconds,
        "training_cpu_s": training.cpu_seconds,
        "batch_size": batch_size, "epochs": epochs,
        "limit_train_batches": limit_train_batches,
        "train_size": train_size,
        "n_validation_cells": len(model.validation_indices),
    }


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m scprob.bench.throughput memory [n_cells n_genes density]``: print the
    JSON of :func:`sparse_training_memory` (run in its own process)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] != "memory":
        raise SystemExit("usage: python -m scprob.bench.throughput memory "
                         "[n_cells n_genes density]")
    n_cells = int(args[1]) if len(args) > 1 else 486_134
    n_genes = int(args[2]) if len(args) > 2 else 4_000
    density = float(args[3]) if len(args) > 3 else 0.05
    print(json.dumps(sparse_training_memory(n_cells, n_genes, density), indent=2))


if __name__ == "__main__":
    main()
