"""Count preprocessing shared by the models' covariates and the scanpy baselines.

``log_normalize`` is the paper's normalisation for the covariates study (Methods, Fig. 2):
each cell's counts are divided by its total, scaled to the median total count of the cells
(before normalisation), then ``log1p``. ``add_nuisance_covariates`` turns nuisance genes
(cell-cycle and sex genes) into continuous per-cell covariates this way, for scVI-cc and
for ``scanpy.pp.regress_out`` alike, so both workflows condition on the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from anndata import AnnData
from pandas import Index

# How many missing gene names an error message lists before "...".
_N_NAMES_SHOWN = 5


def log_normalize(
    counts: np.ndarray | sp.spmatrix, target_sum: float | None = None
) -> np.ndarray | sp.csr_matrix:
    """``log1p(counts / total * target_sum)`` per cell.

    ``counts``: ``(n_cells, n_genes)`` non-negative, dense or sparse (a sparse input gives a
    float CSR matrix with the same sparsity pattern). ``target_sum``: the total every cell
    is scaled to; ``None`` (default) uses the median total count of the cells. Cells with
    no counts stay all zero. Returns ``(n_cells, n_genes)`` float64 (float32 inputs stay
    float32).
    """
    _check_counts(counts, target_sum)
    totals = np.asarray(counts.sum(axis=1), dtype=np.float64).ravel()
    if target_sum is None:
        target_sum = _median_total(totals)
    # Empty cells get scale 0, so they stay zero instead of dividing by zero.
    scale = np.divide(target_sum, totals, out=np.zeros_like(totals), where=totals > 0)

    dtype = np.float32 if counts.dtype == np.float32 else np.float64
    if sp.issparse(counts):
        csr = sp.csr_matrix(counts, dtype=dtype, copy=True)
        # Row i's stored values are csr.data[indptr[i]:indptr[i+1]]: repeat each scale
        # once per stored value of its row.
        csr.data *= np.repeat(scale, np.diff(csr.indptr)).astype(dtype)
        np.log1p(csr.data, out=csr.data)
        return csr
    dense = np.asarray(counts, dtype=dtype)
    return np.log1p(dense * scale[:, None].astype(dtype))


def _check_counts(counts: np.ndarray | sp.spmatrix, target_sum: float | None) -> None:
    if counts.ndim != 2:
        raise ValueError(
            f"counts must be a 2-D (n_cells, n_genes) matrix, got shape {counts.shape}."
        )
    if target_sum is not None and not target_sum > 0:
        raise ValueError(f"target_sum must be positive or None (median), got {target_sum}.")
    stored = counts.data if sp.issparse(counts) else np.asarray(counts)
    if stored.size and stored.min() < 0:
        raise ValueError("counts must be non-negative; pass raw counts, not scaled data.")


def _median_total(totals: np.ndarray) -> float:
    """The median of the cells' totals ``(n_cells,)``; 1 when that is 0 (or no cells),
    since an all-empty median (most cells zero) would scale everything to zero."""
    target_sum = float(np.median(totals)) if totals.size else 1.0
    return 1.0 if target_sum <= 0 else target_sum


def add_nuisance_covariates(
    adata: AnnData,
    genes: Sequence[str],
    layer: str | None = "counts",
    prefix: str = "nuisance_",
) -> list[str]:
    """Store each nuisance gene's log-normalised expression as a continuous covariate.

    Normalisation uses every gene of ``adata`` (the cell totals include all genes), from
    ``adata.layers[layer]`` (``layer=None``: ``adata.X``), with the median total as target.
    Writes ``adata.obs[prefix + gene]`` (float32, ``(n_cells,)``) for each gene and returns
    those obs keys in the order of ``genes``. Gene names are used verbatim in the keys
    (e.g. ``"nuisance_lncRNA:roX1"``).
    """
    genes = list(genes)
    _check_nuisance_genes(genes, adata.var_names)
    if layer is not None and layer not in adata.layers:
        raise ValueError(
            f"layer {layer!r} is not in adata.layers (have {list(adata.layers)}); "
            "pass the layer holding raw counts, or layer=None to use adata.X."
        )
    counts = adata.X if layer is None else adata.layers[layer]
    normalized = log_normalize(counts)
    columns = adata.var_names.get_indexer(genes)
    values = normalized[:, columns]
    values = values.toarray() if sp.issparse(values) else np.asarray(values)

    keys = [prefix + gene for gene in genes]
    for key, column in zip(keys, values.T, strict=True):
        adata.obs[key] = column.astype(np.float32)
    return keys


def _check_nuisance_genes(genes: list[str], var_names: Index) -> None:
    """Non-empty, no name twice, every name a gene of the data."""
    if not genes:
        raise ValueError("genes is empty; pass the nuisance gene names to condition on.")
    if len(set(genes)) != len(genes):
        duplicated = sorted({g for g in genes if genes.count(g) > 1})
        raise ValueError(f"genes lists some names more than once: {duplicated}.")
    missing = [g for g in genes if g not in var_names]
    if missing:
        shown = ", ".join(missing[:_N_NAMES_SHOWN]) + (
            ", ..." if len(missing) > _N_NAMES_SHOWN else ""
        )
        raise ValueError(
            f"{len(missing)} of {len(genes)} nuisance genes are not in adata.var_names "
            f"({shown}). Drop them from the list, or subset the genes only after adding "
            "the covariates."
        )
