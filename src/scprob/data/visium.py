"""The paper's real Stereoscope data (Fig. 5): a Space Ranger Visium section and its
single-cell reference, in the layout of the spacexr readers (``scprob.data.io``).

Both results hold raw counts as CSR float32 in ``X`` (no ``layers``, as
``read_spacexr_reference`` / ``read_spacexr_spatial``) and each barcode's total over all
its genes in ``obs["nUMI"]``; the spots add ``obsm["spatial"]`` ``(n_spots, 2)`` float64
(x, y) pixels and the reference ``obs["cell_type"]``, so the fitting rules read them like
the spacexr pair.

* ``read_visium(matrix_h5, spatial_tar)``: Space Ranger's ``filtered_feature_bc_matrix.h5``
  and ``spatial.tar.gz``, the in-tissue spots × "Gene Expression" features;
* ``crop_spots(adata, rows, cols)``: the spots strictly inside a window of array rows and
  columns (the paper's hippocampus crop);
* ``prepare_stereoscope_reference(adata, ...)``: the paper's gene selection on the
  reference (min counts, seurat_v3 genes, genes shared with the spots).
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scprob.data.fields import require_obs_column
from scprob.data.hvg import highly_variable_genes_seurat_v3
from scprob.data.io import (
    GENE_EXPRESSION,
    _as_csr_float32,
    _is_junk,
    _read_member,
    _require_file,
    open_tar,
)

# Space Ranger 2 writes tissue_positions.csv with a header; 1.x writes
# tissue_positions_list.csv without one. Either is read; the first found in this order wins.
POSITION_FILES = ("tissue_positions.csv", "tissue_positions_list.csv")
POSITION_COLUMNS = ["barcode", "in_tissue", "array_row", "array_col", "pxl_row_in_fullres",
                    "pxl_col_in_fullres"]
_MATRIX_DATASETS = ("data", "indices", "indptr", "shape", "barcodes")
_FEATURE_DATASETS = ("id", "name", "feature_type")


# ------------------------------------------------------------------ Space Ranger matrix


def _decoded(dataset: h5py.Dataset) -> np.ndarray:
    """An HDF5 string dataset (bytes, as Space Ranger writes them) as a str array."""
    return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in dataset[...]])


def _require_datasets(group: h5py.Group, names: Iterable[str], path: Path) -> None:
    missing = [name for name in names if name not in group]
    if missing:
        raise ValueError(
            f"{str(path)!r} lacks {group.name}/{missing}: pass Space Ranger's "
            "filtered_feature_bc_matrix.h5 (group 'matrix' with data, indices, indptr, "
            "shape, barcodes and 'features' with id, name, feature_type)."
        )


def _read_matrix_h5(path: Path) -> tuple[sp.csr_matrix, pd.DataFrame, np.ndarray]:
    """The counts ``(n_barcodes, n_features)`` CSR, the features table (id, name,
    feature_type) and the barcodes of a Space Ranger feature-barcode matrix."""
    with h5py.File(path, "r") as handle:
        if "matrix" not in handle or "features" not in handle["matrix"]:
            raise ValueError(f"{str(path)!r} has no 'matrix/features' group: pass Space "
                             "Ranger's filtered_feature_bc_matrix.h5 (Space Ranger >= 1.0).")
        group = handle["matrix"]
        _require_datasets(group, _MATRIX_DATASETS, path)
        _require_datasets(group["features"], _FEATURE_DATASETS, path)
        n_features, n_barcodes = (int(n) for n in group["shape"][...])
        # Stored compressed by barcode (indptr over barcodes): CSC features × barcodes,
        # whose transpose is CSR barcodes × features without a copy of the values.
        by_barcode = sp.csc_matrix(
            (group["data"][...], group["indices"][...], group["indptr"][...]),
            shape=(n_features, n_barcodes))
        features = pd.DataFrame({key: _decoded(group["features"][key])
                                 for key in _FEATURE_DATASETS})
        barcodes = _decoded(group["barcodes"])
    return _as_csr_float32(by_barcode.T), features, barcodes


# ------------------------------------------------------------------- spot positions


def _position_member(archive: tarfile.TarFile, path: Path) -> tarfile.TarInfo:
    """The archive's positions table (any folder), Space Ranger 2's name first."""
    found = {PurePosixPath(m.name).name: m for m in archive.getmembers()
             if m.isfile() and not _is_junk(m.name)}
    for name in POSITION_FILES:
        if name in found:
            return found[name]
    raise ValueError(
        f"{str(path)!r} holds neither spatial/{POSITION_FILES[0]} (Space Ranger 2) nor "
        f"spatial/{POSITION_FILES[1]} (1.x): pass the section's spatial.tar.gz as Space "
        "Ranger wrote it."
    )


def _read_positions(spatial_tar: str | Path) -> pd.DataFrame:
    """The positions table indexed by barcode, columns ``POSITION_COLUMNS[1:]``."""
    path = _require_file(spatial_tar)
    with open_tar(path) as archive:
        raw = _read_member(archive, _position_member(archive, path))
    table = pd.read_csv(io.BytesIO(raw), header=None, dtype=str)
    # Space Ranger 2's header names the same six columns; 1.x has none. Detect it by
    # content so that a renamed file is still read right.
    if table.iloc[0, 0] == POSITION_COLUMNS[0]:
        table = table.iloc[1:]
    if table.shape[1] != len(POSITION_COLUMNS):
        raise ValueError(f"the positions table in {str(path)!r} has {table.shape[1]} "
                         f"columns; Space Ranger writes {POSITION_COLUMNS}.")
    table = table.set_axis(POSITION_COLUMNS, axis=1).set_index("barcode")
    return table.astype({"in_tissue": np.int64, "array_row": np.int64,
                         "array_col": np.int64, "pxl_row_in_fullres": np.float64,
                         "pxl_col_in_fullres": np.float64})


def _require_positioned(barcodes: np.ndarray, positions: pd.DataFrame, path: Path) -> None:
    unplaced = pd.Index(barcodes).difference(positions.index)
    if len(unplaced):
        raise ValueError(
            f"{len(unplaced)} of the {len(barcodes)} barcodes of the matrix are not in the "
            f"positions table of {str(path)!r} (e.g. {unplaced[0]!r}): pass the matrix and "
            "spatial.tar.gz of the same section."
        )


def read_visium(matrix_h5: str | Path, spatial_tar: str | Path) -> ad.AnnData:
    """A Visium section from Space Ranger's ``filtered_feature_bc_matrix.h5`` and
    ``spatial.tar.gz``: the in-tissue spots × "Gene Expression" features.

    Returns ``X`` ``(n_spots, n_genes)`` raw counts CSR float32, gene symbols as
    ``var_names`` (made unique) with ``var["gene_ids"]``, barcodes (matrix order) as
    ``obs_names`` with ``obs["array_row"]``, ``obs["array_col"]`` (int64) and
    ``obs["nUMI"]`` (the spot's gene-expression total), and ``obsm["spatial"]``
    ``(n_spots, 2)`` float64 full-resolution pixels as (x, y) = (column, row), as scanpy
    stores them. Other feature types (antibodies, probes) are dropped.
    """
    matrix_path = _require_file(matrix_h5)
    counts, features, barcodes = _read_matrix_h5(matrix_path)
    positions = _read_positions(spatial_tar)
    _require_positioned(barcodes, positions, Path(spatial_tar))
    is_gene = (features["feature_type"] == GENE_EXPRESSION).to_numpy()
    spots = positions.loc[barcodes]
    in_tissue = (spots["in_tissue"] == 1).to_numpy()
    spots = spots[in_tissue]
    genes = features[is_gene]
    x = counts[np.flatnonzero(in_tissue)][:, np.flatnonzero(is_gene)]
    obs = pd.DataFrame({"array_row": spots["array_row"].to_numpy(),
                        "array_col": spots["array_col"].to_numpy(),
                        "nUMI": np.asarray(x.sum(axis=1, dtype=np.float64)).ravel()},
                       index=pd.Index(spots.index.to_numpy(), name="barcode"))
    var = pd.DataFrame({"gene_ids": genes["id"].to_numpy()},
                       index=pd.Index(genes["name"].to_numpy(), name="gene"))
    # Unique before AnnData sees them, which would otherwise warn about repeated symbols.
    var.index = ad.utils.make_index_unique(var.index)
    adata = ad.AnnData(X=x, obs=obs, var=var)
    adata.obsm["spatial"] = spots[["pxl_col_in_fullres", "pxl_row_in_fullres"]].to_numpy(
        dtype=np.float64)
    return adata


def crop_spots(adata: ad.AnnData, rows: tuple[int, int], cols: tuple[int, int]) -> ad.AnnData:
    """The spots strictly inside ``rows[0] < array_row < rows[1]`` and
    ``cols[0] < array_col < cols[1]``, as a copy ``(n_kept, n_genes)``.

    Strict bounds as in the paper's notebook: (15, 32) × (20, 80) keeps the 472
    hippocampus spots of V1_Adult_Mouse_Brain.
    """
    row = require_obs_column(adata, "array_row", "the spot row").to_numpy()
    col = require_obs_column(adata, "array_col", "the spot column").to_numpy()
    inside = (rows[0] < row) & (row < rows[1]) & (cols[0] < col) & (col < cols[1])
    if not inside.any():
        raise ValueError(
            f"no spot lies strictly inside rows {tuple(rows)} and columns {tuple(cols)} "
            f"(array_row spans {row.min()}..{row.max()}, array_col {col.min()}..{col.max()}):"
            " widen the window."
        )
    return adata[inside].copy()


# ------------------------------------------------------------------------ reference


def _in_spots(selected: pd.Index, spatial_genes: Iterable[str] | None) -> np.ndarray:
    """Which of the ``selected`` genes are among ``spatial_genes`` (all when None)."""
    if spatial_genes is None:
        return np.ones(len(selected), dtype=bool)
    shared = selected.isin(pd.Index(list(spatial_genes)))
    if not shared.any():
        raise ValueError(
            f"none of the {len(selected)} selected reference genes is among the spatial "
            "genes: pass the spots' var_names, named like the reference's (gene symbols)."
        )
    return shared


def prepare_stereoscope_reference(
    adata: ad.AnnData,
    labels_key: str = "liger_ident_coarse",
    min_counts: int = 10,
    n_top_genes: int = 2000,
    spatial_genes: Iterable[str] | None = None,
) -> ad.AnnData:
    """The paper's reference preparation for Stereoscope, in the spacexr reference layout.

    Genes with fewer than ``min_counts`` total counts are dropped, ``n_top_genes``
    seurat_v3 genes are chosen on the raw counts, then only those also in
    ``spatial_genes`` (the spots' ``var_names``) are kept: 1,898 genes of the 15,095
    hippocampus cells in the paper. Returns ``X`` ``(n_cells, n_kept)`` raw counts CSR
    float32, ``obs["cell_type"]`` (categorical, from ``obs[labels_key]``) and
    ``obs["nUMI"]`` (each cell's total over all input genes). ``adata`` is not modified.
    """
    labels = require_obs_column(adata, labels_key, "labels_key")
    counts = _as_csr_float32(adata.X)
    totals = np.asarray(counts.sum(axis=0)).ravel()
    expressed = np.flatnonzero(totals >= min_counts)
    if len(expressed) < n_top_genes:
        raise ValueError(
            f"only {len(expressed)} of the {adata.n_vars} genes have at least "
            f"min_counts={min_counts} counts, fewer than n_top_genes={n_top_genes}: "
            "lower min_counts or n_top_genes."
        )
    filtered = ad.AnnData(X=counts[:, expressed],
                          var=pd.DataFrame(index=adata.var_names[expressed]))
    filtered.obs_names = adata.obs_names
    highly_variable = highly_variable_genes_seurat_v3(filtered, n_top_genes)[
        "highly_variable"].to_numpy()
    selected = filtered.var_names[highly_variable]
    keep = np.flatnonzero(highly_variable)[_in_spots(selected, spatial_genes)]
    obs = pd.DataFrame({"cell_type": pd.Categorical(labels.astype(str).to_numpy()),
                        "nUMI": np.asarray(counts.sum(axis=1, dtype=np.float64)).ravel()},
                       index=adata.obs_names.copy())
    return ad.AnnData(X=filtered.X[:, keep], obs=obs,
                      var=pd.DataFrame(index=filtered.var_names[keep]))
