"""Rule time_scvi: the runtime of scVI's ``train`` on one subsample (paper Supp. Fig. 2,
Methods "Runtime").

The model reads the raw counts of the 4,000 selected genes with ``cell_source`` and
``donor`` as categorical and the 10 continuous covariates (``percent_mito``,
``percent_ribo``, ``cont_cov_1..8``). Timed is ``train`` only, with the paper's settings:
early stopping on the validation ELBO with patience 45, ``max_epochs=10000`` (or the
config's ``max_epochs_cap``, the one deviation, for short CPU runs), minibatches of 1,024
cells, at most 20 minibatches an epoch, and 90 % of the cells for training below 200,000
cells, else all but 20,000. Before it, untimed: reading the data, registering it, building
the model, and a warm-up fit of a separate model on a few hundred cells (the libraries'
first-call costs, which would otherwise inflate the smallest sizes only).
"""

import os

# Threads that wait for each other sleep instead of spinning. With spinning (OpenMP's
# default) a 2-thread torch fit on a 2-core machine slowed down 100-fold whenever any other
# process took a core (measured: 2 epochs of 5,000 cells, 201 s instead of 2.5 s), so the
# timings would measure the machine's other load, not the method. OpenMP reads this
# once, when torch or numba load it: hence before every import.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import logging
from typing import Any

import anndata as ad
from scaling_timing import measure, paper_train_size, warmup_indices, write_record
from workflow_helpers import limit_threads, logged_to, write_csv

from scprob.models import SCVI
from scprob.train import should_compile

log = logging.getLogger(snakemake.rule)


def main(
    data_path: str,
    n_cells: int,
    settings: dict[str, Any],
    categorical_keys: list[str],
    continuous_keys: list[str],
    warmup_cells: int,
    seed: int,
    threads: int,
    timing_path: str,
    history_path: str,
) -> None:
    adata = ad.read_h5ad(data_path)
    if adata.n_obs != n_cells:
        raise ValueError(f"{data_path} holds {adata.n_obs} cells, expected {n_cells}; "
                         "rerun rule subsample_heart.")
    cap = settings["max_epochs_cap"]
    max_epochs = settings["max_epochs"] if cap is None else min(settings["max_epochs"], cap)
    train_size = paper_train_size(n_cells)
    train_kwargs = {
        "batch_size": settings["batch_size"],
        "early_stopping": True,
        "early_stopping_patience": settings["early_stopping_patience"],
        "limit_train_batches": settings["limit_train_batches"],
        "accelerator": settings["accelerator"],
        "enable_progress_bar": False,
        "seed": seed,
    }
    setup = {"categorical_covariate_keys": categorical_keys,
             "continuous_covariate_keys": continuous_keys}

    if warmup_cells:
        # The training plan compiles its likelihood kernel (once per process) when a fit is
        # long enough to repay it; the warm-up then compiles it too, so the timed fit
        # reuses the kernel instead of paying seconds of compilation inside the timing.
        n_train = round(train_size * n_cells)
        compile_kernel = should_compile("auto", n_train, adata.n_vars, max_epochs)
        warm = adata[warmup_indices(adata.obs, categorical_keys, warmup_cells)].copy()
        SCVI.setup_anndata(warm, **setup)
        warm_model = SCVI(warm, seed=seed)
        _, warmup = measure(lambda: warm_model.train(
            **{**train_kwargs, "max_epochs": 1, "limit_train_batches": 2, "train_size": 0.9},
            plan_kwargs={"compile": compile_kernel}))
        log.info("warm-up on %d cells: %.1f s (likelihood kernel: %s)", warm.n_obs,
                 warmup.seconds, warm_model.likelihood_kernel)
        del warm

    SCVI.setup_anndata(adata, **setup)
    model = SCVI(adata, seed=seed)
    log.info("scVI on %d cells x %d genes: train_size %.4f, max_epochs %d, %d threads",
             adata.n_obs, adata.n_vars, train_size, max_epochs, threads)
    _, measurement = measure(
        lambda: model.train(max_epochs=max_epochs, train_size=train_size, **train_kwargs)
    )
    history = model.history
    epochs = len(history)
    log.info("trained %d epochs in %.1f s (%.1f CPU s), peak RSS %.2f GiB",
             epochs, measurement.seconds, measurement.cpu_seconds, measurement.peak_rss_gib)

    n_train = len(model.train_indices)
    record = {
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
    write_record(record, measurement, timing_path)
    write_csv(history.assign(method="scvi", n_cells=adata.n_obs), history_path)


with logged_to(snakemake.log[0]):
    limit_threads(snakemake.threads)
    main(
        data_path=snakemake.input.data,
        n_cells=int(snakemake.wildcards.n_cells),
        settings=dict(snakemake.params.settings),
        categorical_keys=list(snakemake.params.categorical_keys),
        continuous_keys=list(snakemake.params.continuous_keys),
        warmup_cells=snakemake.params.warmup_cells,
        seed=snakemake.params.seed,
        threads=snakemake.threads,
        timing_path=snakemake.output.timing,
        history_path=snakemake.output.history,
    )
