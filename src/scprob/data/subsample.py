"""The runtime study's data sets: a random subset of an atlas's cells, then its top genes.

``subsample_and_select_hvg`` reads a large h5ad with a CSR ``X`` ``(n_total, n_genes)`` of
raw counts in chunks, keeps ``n_cells`` random rows, ranks the genes of that subset with
scanpy's seurat_v3 flavour (``scprob.data.hvg``) and writes the subset restricted to the
``n_top_genes`` selected genes, ``(n_cells, n_top_genes)``, without holding the source.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scprob.data.checks import check_integer
from scprob.data.hvg import highly_variable_genes_seurat_v3
from scprob.data.io import (
    READ_CHUNK_ROWS,
    atomic_h5ad,
    read_csr_rows,
    write_csr_rows,
    write_h5ad_annotations,
)


@dataclass
class _Subsample:
    """The chosen cells of a source file: counts ``(n_cells, n_genes)`` CSR float32, their
    ``obs`` rows, the source's ``var`` and ``uns``, and its number of cells."""

    counts: sp.csr_matrix
    obs: pd.DataFrame
    var: pd.DataFrame
    n_source_cells: int
    uns: dict[str, Any] = field(default_factory=dict)


def subsample_and_select_hvg(
    src_h5ad: str | Path,
    out_h5ad: str | Path,
    n_cells: int,
    n_top_genes: int = 4000,
    seed: int = 0,
    batch_key: str | None = None,
    noise_covariates: Sequence[str] = (),
) -> None:
    """Write ``n_cells`` random cells of ``src_h5ad`` restricted to their top seurat_v3 genes.

    The cells are drawn without replacement by ``numpy.random.default_rng(seed)`` and kept
    in file order (all rows when ``n_cells`` is the file's size); the genes are ranked on
    that subset's raw counts with ``highly_variable_genes(flavor="seurat_v3",
    n_top_genes=n_top_genes, batch_key=batch_key)`` and kept in their original order. The
    output ``(n_cells, n_top_genes)`` is written to ``out_h5ad`` atomically: ``X`` CSR
    float32, ``obs`` with every column (and all category levels), ``var`` with scanpy's
    ``highly_variable``, ``means``, ``variances``, ``variances_norm`` and
    ``highly_variable_rank``, and ``uns["subsample"]``, ``uns["hvg"]`` saying what was done.
    Each name of ``noise_covariates`` that the source's ``obs`` lacks becomes a
    standard-normal column (the paper's runtime study gave every method 8 such covariates
    beside the measured ones), drawn from the same seed.
    Memory: the subset's CSR matrix about twice (scanpy copies each batch's rows) plus one
    chunk of ``READ_CHUNK_ROWS`` rows.

    Raises:
        ValueError: if ``src_h5ad`` is not an h5ad with a CSR ``X``, ``n_cells`` exceeds
            its number of cells (or is < 2), ``n_top_genes`` exceeds its number of genes,
            ``batch_key`` is not an ``obs`` column, ``out_h5ad`` is ``src_h5ad``, or the
            counts are not raw (negative or non-integer).
        ModuleNotFoundError: if scanpy's seurat_v3 dependency scikit-misc is missing.
    """
    src, out = Path(src_h5ad), Path(out_h5ad)
    if not src.is_file():
        raise ValueError(f"{str(src)!r} is not a file; pass the path of an h5ad to subsample.")
    if out.resolve() == src.resolve():
        raise ValueError("out_h5ad must differ from src_h5ad; write the subsample elsewhere.")
    check_integer("n_cells", n_cells, 2)
    check_integer("n_top_genes", n_top_genes, 1)
    check_integer("seed", seed, 0)

    chosen = _read_subsample(src, n_cells, n_top_genes, seed, batch_key)
    noise = np.random.default_rng([seed, 1])
    for name in noise_covariates:
        if name not in chosen.obs:
            chosen.obs[name] = noise.normal(size=n_cells)
    subset = ad.AnnData(X=chosen.counts, obs=chosen.obs, var=chosen.var)
    table = highly_variable_genes_seurat_v3(subset, n_top_genes, batch_key=batch_key)
    selected = np.flatnonzero(table["highly_variable"].to_numpy())
    uns = chosen.uns
    uns["hvg"] = {"flavor": "seurat_v3", "n_top_genes": int(n_top_genes),
                  "batch_key": batch_key or ""}  # fmt: skip
    uns["subsample"] = {"source": src.name, "n_cells_source": chosen.n_source_cells,
                        "n_cells": int(n_cells), "seed": int(seed)}  # fmt: skip

    def selected_rows() -> Iterator[sp.csr_matrix]:
        for start in range(0, n_cells, READ_CHUNK_ROWS):
            yield chosen.counts[start : start + READ_CHUNK_ROWS][:, selected]

    with atomic_h5ad(out) as handle:
        write_csr_rows(handle, selected_rows(), selected.size, READ_CHUNK_ROWS)
        write_h5ad_annotations(
            handle, obs=subset.obs, var=_selected_var(chosen.var, table, selected), uns=uns
        )


def _read_subsample(
    src: Path, n_cells: int, n_top_genes: int, seed: int, batch_key: str | None
) -> _Subsample:
    """The ``n_cells`` rows of ``src`` that ``seed`` picks, with the source's annotations."""
    with h5py.File(src, "r") as handle:
        if "X" not in handle or handle["X"].attrs.get("encoding-type") != "csr_matrix":
            raise ValueError(
                f"{str(src)!r} has no CSR X; write the counts as a CSR matrix "
                "(e.g. with write_heart_atlas)."
            )
        total, n_genes = (int(n) for n in handle["X"].attrs["shape"])
        _check_request_fits(src, (total, n_genes), n_cells, n_top_genes)
        obs = ad.io.read_elem(handle["obs"])
        if batch_key is not None and batch_key not in obs:
            raise ValueError(
                f"batch_key {batch_key!r} is not an obs column of {str(src)!r}; choose one "
                f"of {list(obs.columns)} or pass None."
            )
        var = ad.io.read_elem(handle["var"])
        uns = dict(ad.io.read_elem(handle["uns"])) if "uns" in handle else {}
        rows = _chosen_rows(total, n_cells, seed)
        counts = read_csr_rows(handle["X"], rows)
    return _Subsample(counts=counts, obs=obs.iloc[rows].copy(), var=var, n_source_cells=total,
                      uns=uns)


def _check_request_fits(
    src: Path, shape: tuple[int, int], n_cells: int, n_top_genes: int
) -> None:
    total, n_genes = shape
    if n_cells > total:
        raise ValueError(
            f"n_cells={n_cells} exceeds the {total} cells of {str(src)!r}; pass "
            f"n_cells <= {total}."
        )
    if n_top_genes > n_genes:
        raise ValueError(
            f"n_top_genes={n_top_genes} exceeds the {n_genes} genes of {str(src)!r}; "
            f"pass n_top_genes <= {n_genes}."
        )


def _chosen_rows(total: int, n_cells: int, seed: int) -> np.ndarray:
    """``(n_cells,)`` sorted row indices drawn without replacement (all rows if equal)."""
    if n_cells == total:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).choice(total, n_cells, replace=False))


def _selected_var(var: pd.DataFrame, table: pd.DataFrame, selected: np.ndarray) -> pd.DataFrame:
    """``var`` rows of the ``selected`` genes, their scanpy HVG columns replacing old ones."""
    hvg_columns = list(table.columns)
    return pd.concat(
        [var.drop(columns=hvg_columns, errors="ignore").iloc[selected],
         table[hvg_columns].iloc[selected]],
        axis=1,
    )  # fmt: skip
