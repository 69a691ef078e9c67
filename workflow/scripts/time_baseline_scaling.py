"""Rule time_baseline: the runtime of a scanpy baseline on one subsample (paper Supp. Fig. 2,
Methods "Runtime").

Untimed preparation: read the counts of the 4,000 selected genes and log-normalise them
(scaled to the median total count, ``log1p``; CSR, as a scanpy user holds them). Timed,
exactly the steps the paper lists per method:

- ``regress``: ``scanpy.pp.regress_out`` of the 10 continuous covariates only;
- ``regress_bbknn``: that, ``scanpy.pp.pca`` (50 PCs, scanpy's defaults) and
  ``bbknn.bbknn`` (its defaults) on the batch ``cell_source × donor``;
- ``regress_harmony``: that, PCA and Harmony on ``cell_source`` and ``donor`` together.

Why these inputs: regress_out accepts several *numerical* keys, or one categorical key
alone, so the paper's "correcting continuous covariates with regress_out" regresses the 10
continuous covariates and leaves the two categorical ones to bbknn/Harmony. Harmony takes
several categorical keys at once; bbknn takes one, so it gets their combination (one batch
per observed cell source and donor pair, 28 in the atlas), which corrects both. Harmony
runs through ``harmonypy`` (what ``scanpy.external.pp.harmony_integrate`` calls; scanpy's
wrapper misreads harmonypy 2.x's output orientation). A warm-up run of the same steps on a
few hundred cells, untimed, pays the libraries' first-call costs (numba compilation of
bbknn's graph code) before the timed run.
"""

import os

# Threads that wait for each other sleep instead of spinning. With spinning (OpenMP's
# default) a 2-thread torch fit on a 2-core machine slowed down 100-fold whenever any other
# process took a core (measured: 2 epochs of 5,000 cells, 201 s instead of 2.5 s), so the
# timings would measure the machine's other load, not the method. OpenMP reads this
# once, when torch or numba load it: hence before every import.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import logging
from collections.abc import Callable

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
from scaling_timing import combined_labels, measure, warmup_indices, write_record
from workflow_helpers import limit_threads, logged_to

from scprob.bench.baselines import bbknn_graph, harmony_correct, regress_out_continuous
from scprob.data.preprocess import log_normalize

log = logging.getLogger(snakemake.rule)


def pipeline(method: str, n_pcs: int, seed: int) -> Callable[..., object]:
    """The timed steps of ``method`` as one function of (log-normalised CSR, continuous
    covariates, categorical covariates, combined batch labels)."""
    import scanpy as sc

    def run(log_normalized: sp.csr_matrix, continuous: pd.DataFrame,
            categorical: pd.DataFrame, labels: np.ndarray) -> object:
        residuals = regress_out_continuous(log_normalized, continuous)
        if method == "regress":
            return residuals.shape
        pcs = sc.pp.pca(residuals, n_comps=n_pcs, random_state=seed)
        del residuals
        if method == "regress_bbknn":
            return bbknn_graph(pcs, labels).connectivities.nnz
        return harmony_correct(pcs, categorical, seed=seed).shape

    return run


def main(
    data_path: str,
    method: str,
    n_cells: int,
    categorical_keys: list[str],
    continuous_keys: list[str],
    n_pcs: int,
    warmup_cells: int,
    seed: int,
    threads: int,
    timing_path: str,
) -> None:
    adata = ad.read_h5ad(data_path)
    if adata.n_obs != n_cells:
        raise ValueError(f"{data_path} holds {adata.n_obs} cells, expected {n_cells}; "
                         "rerun rule subsample_heart.")
    log_normalized = log_normalize(adata.X)
    continuous = adata.obs[continuous_keys]
    categorical = adata.obs[categorical_keys]
    labels = combined_labels(adata.obs, categorical_keys)
    run = pipeline(method, n_pcs, seed)

    if warmup_cells:
        rows = warmup_indices(adata.obs, categorical_keys, warmup_cells)
        _, warmup = measure(lambda: run(log_normalized[rows], continuous.iloc[rows],
                                        categorical.iloc[rows], labels[rows]))
        log.info("warm-up on %d cells: %.1f s", rows.size, warmup.seconds)

    log.info("%s on %d cells x %d genes: %d continuous covariates, %d batches "
             "(%s), %d threads", method, adata.n_obs, adata.n_vars, len(continuous_keys),
             len(set(labels)), " x ".join(categorical_keys), threads)
    output, measurement = measure(lambda: run(log_normalized, continuous, categorical, labels))
    log.info("%s: %.1f s (%.1f CPU s), peak RSS %.2f GiB; output %s", method,
             measurement.seconds, measurement.cpu_seconds, measurement.peak_rss_gib, output)

    record = {
        "method": method,
        "n_cells": adata.n_obs,
        "n_genes": adata.n_vars,
        "threads": threads,
        "device": "cpu",
        "n_pcs": None if method == "regress" else n_pcs,
        "n_continuous_covariates": len(continuous_keys),
        "categorical_covariates": categorical_keys,
        "n_batches": len(set(labels)),
        "warmup_cells": warmup_cells,
    }
    write_record(record, measurement, timing_path)


with logged_to(snakemake.log[0]):
    limit_threads(snakemake.threads)
    main(
        data_path=snakemake.input.data,
        method=snakemake.wildcards.method,
        n_cells=int(snakemake.wildcards.n_cells),
        categorical_keys=list(snakemake.params.categorical_keys),
        continuous_keys=list(snakemake.params.continuous_keys),
        n_pcs=snakemake.params.n_pcs,
        warmup_cells=snakemake.params.warmup_cells,
        seed=snakemake.params.seed,
        threads=snakemake.threads,
        timing_path=snakemake.output.timing,
    )
