"""Highly variable genes as in the paper's runtime study: scanpy's ``flavor="seurat_v3"``.

``highly_variable_genes_seurat_v3`` ranks the genes of raw counts ``(n_cells, n_genes)``
(dense or CSR) by their variance after a loess fit of log variance on log mean, the
selection the paper applied to every Heart Cell Atlas subsample (4,000 genes). It needs
scanpy and the loess of scikit-misc, workflow dependencies imported lazily so that the
models do not need them.
"""

from __future__ import annotations

import numbers

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

# The scikit-misc release this project was tested with (wheels for CPython 3.11).
SCIKIT_MISC_PIN = "scikit-misc==0.5.3"


def _require_loess() -> None:
    try:
        import skmisc.loess  # noqa: F401
    except ImportError as err:
        raise ModuleNotFoundError(
            "flavor='seurat_v3' needs the loess of scikit-misc (skmisc.loess), which is not "
            f"installed; install it with `pip install {SCIKIT_MISC_PIN}`."
        ) from err


def check_raw_counts(matrix: np.ndarray | sp.spmatrix, block: int = 1 << 22) -> None:
    """Raise ``ValueError`` unless every stored value is a non-negative integer.

    ``matrix``: dense or sparse ``(n_cells, n_genes)``. Checked ``block`` values at a time,
    so the check costs a few MB whatever the size of the matrix.
    """
    values = matrix.data if sp.issparse(matrix) else np.asarray(matrix).ravel()
    for start in range(0, values.size, block):
        part = values[start : start + block]
        if part.min() < 0:
            raise ValueError("the counts hold negative values; pass raw counts.")
        if not np.array_equal(part, np.floor(part)):
            raise ValueError(
                "the counts hold non-integer values; seurat_v3 needs raw counts, not "
                "normalised or log-transformed data."
            )


def highly_variable_genes_seurat_v3(
    adata: ad.AnnData, n_top_genes: int, batch_key: str | None = None
) -> pd.DataFrame:
    """Rank the genes of raw counts ``adata.X`` ``(n_cells, n_genes)`` with seurat_v3.

    Args:
        adata: raw integer counts in ``X`` (dense or CSR); it is not modified.
        n_top_genes: how many genes to flag, ``1 <= n_top_genes <= n_genes``.
        batch_key: optional categorical ``obs`` column; genes are then ranked per batch
            and combined by median rank, as scanpy does.

    Returns:
        DataFrame indexed by ``var_names`` with scanpy's columns ``highly_variable``
        (bool, exactly ``n_top_genes`` True), ``highly_variable_rank``, ``means``,
        ``variances``, ``variances_norm`` (and ``highly_variable_nbatches`` with a
        ``batch_key``).

    Raises:
        ValueError: if ``n_top_genes`` is out of range, ``batch_key`` is not an ``obs``
            column, or ``X`` is not raw counts (negative or non-integer values).
        ModuleNotFoundError: if scikit-misc is not installed.
    """
    n_genes = adata.n_vars
    if isinstance(n_top_genes, bool) or not isinstance(n_top_genes, numbers.Integral):
        raise ValueError(f"n_top_genes must be an integer, got {n_top_genes!r}.")
    if not 1 <= n_top_genes <= n_genes:
        raise ValueError(
            f"n_top_genes={n_top_genes} is out of range: the data have {n_genes} genes; "
            f"pass 1 <= n_top_genes <= {n_genes}."
        )
    if batch_key is not None and batch_key not in adata.obs:
        raise ValueError(
            f"batch_key {batch_key!r} is not an obs column; choose one of "
            f"{list(adata.obs.columns)} or pass None."
        )
    check_raw_counts(adata.X)
    _require_loess()
    import scanpy as sc

    # A shallow wrapper sharing X (no copy), so the caller's AnnData stays untouched.
    view = ad.AnnData(X=adata.X, obs=adata.obs[[batch_key]] if batch_key else None)
    view.obs_names = adata.obs_names
    view.var_names = adata.var_names
    # check_values=False: the counts were checked above in blocks; scanpy's own check
    # would copy every stored value at once.
    table = sc.pp.highly_variable_genes(
        view,
        flavor="seurat_v3",
        n_top_genes=int(n_top_genes),
        batch_key=batch_key,
        check_values=False,
        inplace=False,
    )
    table.index = adata.var_names
    return table.drop(columns=["gene_name"], errors="ignore")
