"""The runtime study (paper Supp. Fig. 2): wall time, CPU time and peak memory of scVI
and the scanpy baselines against the number of cells.

Each job times one method on every subsample ``(n_cells, n_genes)`` of the simulated
Heart Cell Atlas with 2 categorical and 10 continuous covariates, smallest first, one
timed call per size. Untimed before each call: reading, log-normalising (baselines) or
registering and building the model (scVI); and once per job, before the first, a warm-up
run on a few hundred cells that pays the libraries' first-call costs (numba compilation,
the likelihood kernel) outside the timing. One process times every size, as a user's
session would: a fit's speed does not depend on the fits before it in the process. Timed, with
:func:`scprob.bench.measure.measure`: ``SCVI.train`` with the paper's settings, or the
baseline's steps (:func:`scprob.bench.baselines.run_baseline`). A job's record holds the
measurement, the method's settings and the machine, so the table built from the records
reads without the config.
"""

from __future__ import annotations

import logging
import os
import platform
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from scprob.bench.baselines import Representation, combined_labels, run_baseline
from scprob.bench.measure import Measurement, measure, paper_train_size

log = logging.getLogger(__name__)

# The runtime table: one row per method and size.
RUNTIME_COLUMNS = [
    "method", "display_name", "n_cells", "n_genes", "seconds", "cpu_seconds",
    "peak_rss_gib", "peak_rss_scope", "epochs", "max_epochs", "early_stopped",
    "seconds_per_epoch", "likelihood_kernel", "threads", "device", "job_seconds",
    "job_max_rss_gib",
]


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
    """Where the numbers were taken: CPU model, cores, Python and library versions, and
    the OpenMP wait policy (spinning waiters distort timings on a shared machine)."""
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


def timing_record(settings: Mapping[str, Any], measurement: Measurement) -> dict[str, Any]:
    """One job's record: its settings, the :class:`Measurement` and the :func:`machine`."""
    return {**settings, **asdict(measurement), "machine": machine()}


# scVI ---------------------------------------------------------------------------------


def scvi_max_epochs(settings: Mapping[str, Any]) -> int:
    """The paper's ``max_epochs``, lowered to ``max_epochs_cap`` where the config sets one."""
    cap = settings["max_epochs_cap"]
    return settings["max_epochs"] if cap is None else min(settings["max_epochs"], cap)


def time_scvi(adata: ad.AnnData, settings: Mapping[str, Any], categorical_keys: Sequence[str],
              continuous_keys: Sequence[str], warmup_cells: int, seed: int,
              threads: int, warm_up: bool = True) -> tuple[dict[str, Any], pd.DataFrame]:
    """``SCVI.train`` on the raw counts of ``adata`` with every covariate and the paper's
    settings: early stopping, minibatches of ``batch_size`` cells, at most
    ``limit_train_batches`` a epoch, :func:`paper_train_size`. ``warm_up``: run the
    warm-up on ``warmup_cells`` cells first (the first size of a job). Returns the size's
    record and the training history."""
    from scprob.data.loader import train_validation_split
    from scprob.models import SCVI
    from scprob.train import fit_entries, should_compile

    max_epochs = scvi_max_epochs(settings)
    train_size = paper_train_size(adata.n_obs)
    train_kwargs = {
        "batch_size": settings["batch_size"],
        "early_stopping": True,
        "early_stopping_patience": settings["early_stopping_patience"],
        "limit_train_batches": settings["limit_train_batches"],
        "accelerator": settings["accelerator"],
        "enable_progress_bar": False,
        "seed": seed,
    }
    setup = {"categorical_covariate_keys": list(categorical_keys),
             "continuous_covariate_keys": list(continuous_keys)}

    # The kernel of the fit the paper ran (early stopping within max_epochs), not of the
    # epoch-capped one timed here: the study measures that fit's cost per epoch, and the
    # warm-up then compiles the kernel outside the timing, as it pays for other one-off costs.
    n_train, n_validation = (len(part) for part in
                             train_validation_split(adata.n_obs, train_size, seed))
    paper_fit = fit_entries(adata.n_vars,
                            min(n_train, settings["limit_train_batches"] * settings["batch_size"]),
                            n_validation, settings["max_epochs"])
    plan_kwargs = {"compile": should_compile("auto", paper_fit)}
    if warm_up and warmup_cells:
        warm = adata[warmup_indices(adata.obs, categorical_keys, warmup_cells)].copy()
        SCVI.setup_anndata(warm, **setup)
        warm_model = SCVI(warm, seed=seed)
        _, warmup = measure(lambda: warm_model.train(
            **{**train_kwargs, "max_epochs": 1, "limit_train_batches": 2, "train_size": 0.9},
            plan_kwargs=plan_kwargs))
        log.info("warm-up on %d cells: %.1f s (likelihood kernel: %s)", warm.n_obs,
                 warmup.seconds, warm_model.likelihood_kernel)
        del warm, warm_model

    SCVI.setup_anndata(adata, **setup)
    model = SCVI(adata, seed=seed)
    log.info("scVI on %d cells x %d genes: train_size %.4f, max_epochs %d, %d threads",
             adata.n_obs, adata.n_vars, train_size, max_epochs, threads)
    _, measurement = measure(
        lambda: model.train(max_epochs=max_epochs, train_size=train_size,
                            plan_kwargs=plan_kwargs, **train_kwargs))
    history = model.history
    epochs = len(history)
    log.info("trained %d epochs in %.1f s (%.1f CPU s), peak RSS %.2f GiB",
             epochs, measurement.seconds, measurement.cpu_seconds, measurement.peak_rss_gib)
    n_train = len(model.train_indices)
    settings_record = {
        "method": "scvi",
        "n_cells": adata.n_obs,
        "n_genes": adata.n_vars,
        "threads": threads,
        "device": str(model.device),
        "likelihood_kernel": model.likelihood_kernel,
        "epochs": epochs,
        "max_epochs": max_epochs,
        "early_stopped": epochs < max_epochs,
        "train_size": train_size,
        "n_train_cells": n_train,
        "n_validation_cells": len(model.validation_indices),
        "batches_per_epoch": min(settings["limit_train_batches"],
                                 -(-n_train // settings["batch_size"])),
        "elbo_validation": float(history["elbo_validation"].iloc[-1])
        if "elbo_validation" in history else None,
        "warmup_cells": warmup_cells,
    }
    history = history.assign(method="scvi", n_cells=adata.n_obs)
    return timing_record(settings_record, measurement), history


# The baselines ------------------------------------------------------------------------


def _output_size(output: np.ndarray | Representation) -> object:
    """What a baseline's output is, for the log: the graph's edges or the array's shape.
    The timed call returns only this, so the output is freed inside the timing, as a
    pipeline that moves on would free it."""
    if isinstance(output, Representation):
        return output.connectivities.nnz
    return output.shape


def time_baseline(adata: ad.AnnData, method: str, categorical_keys: Sequence[str],
                  continuous_keys: Sequence[str], n_pcs: int, warmup_cells: int, seed: int,
                  threads: int, warm_up: bool = True) -> dict[str, Any]:
    """The baseline's steps on the log-normalised counts of ``adata`` (CSR, as a scanpy
    user holds them): regress_out of the continuous covariates, then PCA and bbknn (the
    categorical covariates' combination) or Harmony (all of them). ``warm_up``: run them
    on ``warmup_cells`` cells first (the first size of a job). Returns the size's record."""
    from scprob.data.preprocess import log_normalize

    log_normalized = log_normalize(adata.X)
    continuous = adata.obs[list(continuous_keys)]
    categorical = adata.obs[list(categorical_keys)]
    n_batches = len(set(combined_labels(adata.obs, categorical_keys)))

    def run(x: Any, continuous: pd.DataFrame, categorical: pd.DataFrame) -> object:
        return _output_size(run_baseline(method, x, continuous, categorical, n_pcs=n_pcs,
                                         seed=seed))

    if warm_up and warmup_cells:
        rows = warmup_indices(adata.obs, categorical_keys, warmup_cells)
        _, warmup = measure(lambda: run(log_normalized[rows], continuous.iloc[rows],
                                        categorical.iloc[rows]))
        log.info("warm-up on %d cells: %.1f s", rows.size, warmup.seconds)

    log.info("%s on %d cells x %d genes: %d continuous covariates, %d batches (%s), "
             "%d threads", method, adata.n_obs, adata.n_vars, len(continuous_keys), n_batches,
             " x ".join(categorical_keys), threads)
    output, measurement = measure(lambda: run(log_normalized, continuous, categorical))
    log.info("%s: %.1f s (%.1f CPU s), peak RSS %.2f GiB; output %s", method,
             measurement.seconds, measurement.cpu_seconds, measurement.peak_rss_gib, output)
    return timing_record({
        "method": method,
        "n_cells": adata.n_obs,
        "n_genes": adata.n_vars,
        "threads": threads,
        "device": "cpu",
        "n_pcs": None if method == "regress" else n_pcs,
        "n_continuous_covariates": len(continuous_keys),
        "categorical_covariates": list(categorical_keys),
        "n_batches": n_batches,
        "warmup_cells": warmup_cells,
    }, measurement)


# The table ----------------------------------------------------------------------------


def runtime_table(records: Sequence[Mapping[str, Any]], jobs: Mapping[str, Mapping[str, float]],
                  display_names: Mapping[str, str], methods: Sequence[str]) -> pd.DataFrame:
    """One row per method (in ``methods``' order) and size: the timed call from each
    size's record, and the method's whole job (every size, reading and warm-up included)
    from Snakemake's benchmark of it (``jobs``: by method, its ``s`` and ``max_rss`` in
    MiB)."""
    missing = sorted({record["method"] for record in records} - set(jobs))
    if missing:
        raise ValueError(f"no job benchmark for the timings of {missing}.")
    rows = [{**record, "display_name": display_names[record["method"]],
             "job_seconds": float(jobs[record["method"]]["s"]),
             "job_max_rss_gib": float(jobs[record["method"]]["max_rss"]) / 1024}
            for record in records]
    table = pd.DataFrame(rows).reindex(columns=RUNTIME_COLUMNS)
    table["method"] = pd.Categorical(table["method"], categories=list(methods), ordered=True)
    table = table.sort_values(["method", "n_cells"]).reset_index(drop=True)
    table["method"] = table["method"].astype(str)
    table["epochs"] = table["epochs"].astype("Int64")
    table["max_epochs"] = table["max_epochs"].astype("Int64")
    table["seconds_per_epoch"] = table["seconds"] / table["epochs"].astype(float)
    return table


# The claim ----------------------------------------------------------------------------


def log_log_slope(n_cells: Sequence[float], seconds: Sequence[float]) -> float:
    """Least-squares slope of log(seconds) against log(cells): the exponent ``b`` of
    ``seconds ∝ cells^b`` (1: linear growth, 0: none). NaN with fewer than two sizes."""
    x, y = np.log(np.asarray(n_cells, float)), np.log(np.asarray(seconds, float))
    if len(np.unique(x)) < 2:
        return float("nan")
    return float(np.polyfit(x, y, 1)[0])


def scaling_claims(table: pd.DataFrame, plateau_cells: int, max_plateau_slope: float
                   ) -> pd.DataFrame:
    """The claim of Supp. Fig. 2 checked on the runtime table: scVI's cost grows more slowly
    with the number of cells than every baseline's, because an epoch trains a fixed number
    of minibatches.

    Growth between the two largest sizes is the log–log slope of scVI's time per epoch
    (its epochs vary with early stopping) and of each baseline's time. Flatness is the
    slope of scVI's time per epoch over every size of at least ``plateau_cells`` (where 20
    minibatches of 1,024 cells no longer cover the training cells), at most
    ``max_plateau_slope``. Needs scVI, a baseline and two sizes, two of them at least
    ``plateau_cells``."""
    from scprob.bench.claims import Claim, Criterion, claims_table

    sizes = sorted(int(n) for n in table["n_cells"].unique())
    if "scvi" not in set(table["method"]) or len(set(table["method"])) < 2:
        raise ValueError("the scaling claim needs scVI and at least one baseline in the table.")
    plateau = [n for n in sizes if n >= plateau_cells]
    if len(plateau) < 2:
        raise ValueError(
            f"the scaling claim needs two sizes of at least {plateau_cells} cells, got "
            f"{sizes}: add a larger size to scaling.n_cells."
        )
    largest = sizes[-2:]

    def growth(method: str, column: str, cells: Sequence[int]) -> float:
        rows = table[(table["method"] == method) & table["n_cells"].isin(cells)]
        return log_log_slope(rows["n_cells"], rows[column])

    span = f"{largest[0]:,} → {largest[1]:,} cells"
    scvi_growth = growth("scvi", "seconds_per_epoch", largest)
    claims = []
    for method in dict.fromkeys(table["method"]):
        if method == "scvi":
            continue
        baseline_growth = growth(method, "seconds", largest)
        claims.append(Claim(
            f"scVI's time grows more slowly with the cells than {method}'s",
            f"log-log slope of time vs cells, {span} (scVI: per epoch)",
            {"scvi": scvi_growth, "baseline": baseline_growth},
            baseline_growth - scvi_growth,
            Criterion("baseline slope - scVI slope", ">", 0.0)))
    plateau_growth = growth("scvi", "seconds_per_epoch", plateau)
    claims.append(Claim(
        f"scVI's time per epoch stays flat beyond {plateau_cells:,} cells",
        f"log-log slope of scVI's time per epoch, {plateau[0]:,} → {plateau[-1]:,} cells",
        {"scvi": plateau_growth, "baseline": float("nan")},
        plateau_growth,
        Criterion("scVI slope", "<=", max_plateau_slope)))
    return claims_table(claims, "scVI scales better than the regress-out workflows",
                        value_column="value")

