"""The Visium readers on tiny synthetic Space Ranger files (the real section is not shipped):
layout, coordinates, the hippocampus crop's strict bounds and the reference preparation."""

from __future__ import annotations

import io
import re
import tarfile
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from scprob.data.hvg import highly_variable_genes_seurat_v3
from scprob.data.visium import crop_spots, prepare_stereoscope_reference, read_visium

# Features × barcodes, as Space Ranger stores them. The last feature is an antibody and
# must be dropped; the third gene repeats the first one's symbol.
FEATURES = pd.DataFrame({
    "id": ["ENSMUSG01", "ENSMUSG02", "ENSMUSG03", "CD4"],
    "name": ["Gad1", "Sst", "Gad1", "CD4_TotalSeqB"],
    "feature_type": ["Gene Expression"] * 3 + ["Antibody Capture"],
})
BARCODES = ["AAAC-1", "CCCG-1", "GGGT-1", "TTTA-1"]
COUNTS = np.array([[1, 0, 7, 2],
                   [0, 3, 0, 5],
                   [4, 6, 0, 0],
                   [9, 9, 9, 9]], dtype=np.int32)
# barcode, in_tissue, array_row, array_col, pxl_row_in_fullres, pxl_col_in_fullres.
# GGGT-1 lies outside the tissue; ACGT-1 is in tissue but absent from the matrix.
POSITIONS = [
    ("ACGT-1", 1, 0, 0, 10.0, 20.0),
    ("TTTA-1", 1, 5, 7, 1500.5, 2500.25),
    ("AAAC-1", 1, 1, 3, 100.0, 200.0),
    ("GGGT-1", 0, 2, 4, 300.0, 400.0),
    ("CCCG-1", 1, 3, 5, 500.0, 600.0),
]
HEADER = "barcode,in_tissue,array_row,array_col,pxl_row_in_fullres,pxl_col_in_fullres"


def _strings(values: list[str]) -> np.ndarray:
    return np.array([v.encode() for v in values], dtype="S")


def _write_matrix_h5(path: Path, barcodes: list[str] = BARCODES) -> Path:
    """A Space Ranger ``filtered_feature_bc_matrix.h5`` of ``COUNTS``."""
    by_barcode = sp.csc_matrix(COUNTS)
    with h5py.File(path, "w") as handle:
        matrix = handle.create_group("matrix")
        matrix["data"] = by_barcode.data
        matrix["indices"] = by_barcode.indices.astype(np.int64)
        matrix["indptr"] = by_barcode.indptr.astype(np.int64)
        matrix["shape"] = np.array(COUNTS.shape, dtype=np.int32)
        matrix["barcodes"] = _strings(barcodes)
        features = matrix.create_group("features")
        for key in ("id", "name", "feature_type"):
            features[key] = _strings(list(FEATURES[key]))
        features["genome"] = _strings(["mm10"] * len(FEATURES))
    return path


def _write_spatial_tar(path: Path, name: str = "tissue_positions_list.csv",
                       header: bool = False, rows: list[tuple] = POSITIONS) -> Path:
    """A ``spatial.tar.gz`` holding ``spatial/<name>`` and an image placeholder."""
    lines = [HEADER] if header else []
    lines += [",".join(str(v) for v in row) for row in rows]
    members = {f"spatial/{name}": "\n".join(lines).encode(),
               "spatial/scalefactors_json.json": b"{}"}
    with tarfile.open(path, "w:gz") as archive:
        for member, data in members.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def matrix_h5(tmp_path: Path) -> Path:
    return _write_matrix_h5(tmp_path / "filtered_feature_bc_matrix.h5")


@pytest.mark.parametrize(("name", "header"), [("tissue_positions_list.csv", False),
                                               ("tissue_positions.csv", True)])
def test_read_visium_keeps_in_tissue_gene_expression(
    tmp_path: Path, matrix_h5: Path, name: str, header: bool
) -> None:
    adata = read_visium(matrix_h5, _write_spatial_tar(tmp_path / "spatial.tar.gz", name,
                                                      header))
    assert adata.shape == (3, 3)
    assert list(adata.obs_names) == ["AAAC-1", "CCCG-1", "TTTA-1"]  # matrix order
    assert list(adata.var_names) == ["Gad1", "Sst", "Gad1-1"]
    assert list(adata.var["gene_ids"]) == ["ENSMUSG01", "ENSMUSG02", "ENSMUSG03"]
    assert sp.isspmatrix_csr(adata.X) and adata.X.dtype == np.float32
    # Barcodes as rows, the antibody and GGGT-1 (column 2 of COUNTS) dropped.
    np.testing.assert_array_equal(adata.X.toarray(), COUNTS[:3][:, [0, 1, 3]].T)
    np.testing.assert_array_equal(adata.obs["nUMI"], [5, 9, 7])
    assert not adata.layers  # the spacexr readers' layout: counts in X only


@pytest.mark.parametrize(("name", "header"), [("tissue_positions_list.csv", False),
                                               ("tissue_positions.csv", True)])
def test_read_visium_places_spots_as_scanpy(
    tmp_path: Path, matrix_h5: Path, name: str, header: bool
) -> None:
    adata = read_visium(matrix_h5, _write_spatial_tar(tmp_path / "spatial.tar.gz", name,
                                                      header))
    assert adata.obs["array_row"].dtype == np.int64
    assert list(adata.obs["array_row"]) == [1, 3, 5]
    assert list(adata.obs["array_col"]) == [3, 5, 7]
    # (x, y) = (pixel column, pixel row), as scanpy stores them.
    np.testing.assert_array_equal(adata.obsm["spatial"],
                                  [[200.0, 100.0], [600.0, 500.0], [2500.25, 1500.5]])
    assert adata.obsm["spatial"].dtype == np.float64


def test_read_visium_names_a_missing_positions_table(tmp_path: Path, matrix_h5: Path) -> None:
    tar = _write_spatial_tar(tmp_path / "spatial.tar.gz", name="positions.txt")
    message = (f"{str(tar)!r} holds neither spatial/tissue_positions.csv (Space Ranger 2) "
               "nor spatial/tissue_positions_list.csv (1.x): pass the section's "
               "spatial.tar.gz as Space Ranger wrote it.")
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        read_visium(matrix_h5, tar)


def test_read_visium_names_barcodes_without_a_position(tmp_path: Path,
                                                       matrix_h5: Path) -> None:
    tar = _write_spatial_tar(tmp_path / "spatial.tar.gz",
                             rows=[r for r in POSITIONS if r[0] not in ("CCCG-1", "TTTA-1")])
    message = (f"2 of the 4 barcodes of the matrix are not in the positions table of "
               f"{str(tar)!r} (e.g. 'CCCG-1'): pass the matrix and spatial.tar.gz of the "
               "same section.")
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        read_visium(matrix_h5, tar)


def test_read_visium_rejects_a_file_without_the_matrix_group(tmp_path: Path) -> None:
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as handle:
        handle["X"] = np.zeros(3)
    tar = _write_spatial_tar(tmp_path / "spatial.tar.gz")
    with pytest.raises(ValueError, match="has no 'matrix/features' group"):
        read_visium(path, tar)


def _grid() -> ad.AnnData:
    """One spot per (array_row, array_col) in {15, 16, 31, 32} × {20, 21, 79, 80}."""
    rows, cols = np.meshgrid([15, 16, 31, 32], [20, 21, 79, 80], indexing="ij")
    obs = pd.DataFrame({"array_row": rows.ravel(), "array_col": cols.ravel()},
                       index=[f"s{i}" for i in range(rows.size)])
    return ad.AnnData(X=sp.csr_matrix(np.ones((rows.size, 2), dtype=np.float32)), obs=obs)


def test_crop_spots_excludes_the_bounds() -> None:
    cropped = crop_spots(_grid(), rows=(15, 32), cols=(20, 80))
    assert sorted(zip(cropped.obs["array_row"], cropped.obs["array_col"], strict=True)) == [
        (16, 21), (16, 79), (31, 21), (31, 79)]
    assert cropped.shape == (4, 2)


def test_crop_spots_names_an_empty_window() -> None:
    message = ("no spot lies strictly inside rows (15, 16) and columns (20, 80) (array_row "
               "spans 15..32, array_col 20..80): widen the window.")
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        crop_spots(_grid(), rows=(15, 16), cols=(20, 80))


def _reference(n_cells: int = 200, n_genes: int = 60, seed: int = 0) -> ad.AnnData:
    """NB counts whose first two genes total exactly 9 and 10 (either side of
    ``min_counts=10``), with labels in ``liger_ident_coarse``."""
    rng = np.random.default_rng(seed)
    means = rng.gamma(0.8, 3.0, size=(4, n_genes))
    types = rng.integers(0, 4, size=n_cells)
    counts = rng.negative_binomial(2, 2 / (2 + means[types])).astype(np.float32)
    counts[:, :2] = 0
    counts[:9, 0] = 1
    counts[:10, 1] = 1
    obs = pd.DataFrame({"liger_ident_coarse": np.array(["CA1", "CA3", "Denate", "Astro"])[types]},
                       index=[f"c{i}" for i in range(n_cells)])
    return ad.AnnData(X=counts, obs=obs, var=pd.DataFrame(index=[f"g{j}" for j in range(n_genes)]))


def test_prepare_reference_selects_expressed_variable_shared_genes() -> None:
    reference = _reference()
    all_genes = prepare_stereoscope_reference(reference, n_top_genes=20)
    assert all_genes.n_vars == 20 and all_genes.n_obs == 200
    # The seurat_v3 genes of the counts left after dropping g0 (9 counts) only.
    expressed = reference[:, 1:]
    chosen = highly_variable_genes_seurat_v3(expressed, 20)["highly_variable"]
    assert list(all_genes.var_names) == list(expressed.var_names[chosen.to_numpy()])

    spatial = [*all_genes.var_names[::2], "g0", "not_in_reference"]
    shared = prepare_stereoscope_reference(reference, n_top_genes=20, spatial_genes=spatial)
    assert list(shared.var_names) == list(all_genes.var_names[::2])
    assert sp.isspmatrix_csr(shared.X) and shared.X.dtype == np.float32
    np.testing.assert_array_equal(shared.X.toarray(),
                                  reference[:, shared.var_names].X)
    assert list(shared.obs["cell_type"]) == list(reference.obs["liger_ident_coarse"])
    np.testing.assert_array_equal(shared.obs["nUMI"], reference.X.sum(axis=1))
    assert not shared.layers
    assert "highly_variable" not in reference.var  # the input is left untouched


def test_prepare_reference_keeps_a_gene_at_min_counts() -> None:
    reference = _reference()
    kept = prepare_stereoscope_reference(reference, n_top_genes=59)
    assert "g1" in kept.var_names and "g0" not in kept.var_names


def test_prepare_reference_errors() -> None:
    reference = _reference()
    with pytest.raises(ValueError, match="labels_key 'cell_type' is not a column"):
        prepare_stereoscope_reference(reference, labels_key="cell_type")
    message = ("only 59 of the 60 genes have at least min_counts=10 counts, fewer than "
               "n_top_genes=2000: lower min_counts or n_top_genes.")
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        prepare_stereoscope_reference(reference)
    with pytest.raises(ValueError, match="none of the 20 selected reference genes"):
        prepare_stereoscope_reference(reference, n_top_genes=20, spatial_genes=["x"])
