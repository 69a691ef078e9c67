"""Readers of the real 10x PBMC CITE-seq files (skipped when ../shared/data is absent), and
the streamed h5ad writer and row reader."""

from __future__ import annotations

import io
import re
import tarfile
from itertools import pairwise
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from scprob.data.combine import concat_reference_query
from scprob.data.io import (
    HDF5_CHUNK_ELEMENTS,
    atomic_h5ad,
    read_10x_mtx_tar,
    read_csr_rows,
    read_h5ad_cite_seq,
    write_csr_rows,
    write_h5ad_annotations,
)

FOLDER = "pbmc_cite_seq_10x"


def _assert_integer_counts(values: np.ndarray) -> None:
    assert np.all(values >= 0)
    assert np.array_equal(values, np.round(values))


def _check_layout(adata, n_cells: int, n_genes: int, n_proteins: int) -> pd.DataFrame:
    assert adata.shape == (n_cells, n_genes)
    assert sp.isspmatrix_csr(adata.X) and adata.X.dtype == np.float32
    assert (adata.X != adata.layers["counts"]).nnz == 0
    _assert_integer_counts(adata.X.data)
    proteins = adata.obsm["protein_expression"]
    assert isinstance(proteins, pd.DataFrame)
    assert proteins.shape == (n_cells, n_proteins)
    assert proteins.index.equals(adata.obs_names)
    _assert_integer_counts(proteins.to_numpy())
    return proteins


def test_10x_tar_splits_genes_and_antibodies(shared_data: Path) -> None:
    adata = read_10x_mtx_tar(shared_data / FOLDER / "filtered_feature_bc_matrix.tar.gz")
    proteins = _check_layout(adata, 1024, 100, 17)
    assert list(proteins.columns[:3]) == ["CD3_TotalSeqB", "CD4_TotalSeqB", "CD8a_TotalSeqB"]
    assert sum("control" in c for c in proteins.columns) == 3  # the isotype controls
    assert adata.var["gene_ids"].str.startswith("ENSG").all()
    assert adata.obs_names[0] == "GGAGGTACATTAAAGG-1"
    # 23,073 stored entries in matrix.mtx, split between the two modalities.
    assert adata.X.nnz + np.count_nonzero(proteins.to_numpy()) == 23073


def test_h5ad_files_have_the_documented_shapes_and_nested_panels(shared_data: Path) -> None:
    pbmc10k = read_h5ad_cite_seq(shared_data / FOLDER / "pbmc_10k_protein_v3.h5ad")
    pbmc5k = read_h5ad_cite_seq(shared_data / FOLDER / "pbmc_5k_protein_v3.h5ad")
    panel10k = _check_layout(pbmc10k, 200, 16727, 14).columns
    panel5k = _check_layout(pbmc5k, 200, 16581, 29).columns
    assert panel10k[0] == "CD3_TotalSeqB" and panel10k[-1] == "CD127_TotalSeqB"
    assert set(panel10k) <= set(panel5k)
    assert len(pbmc10k.var_names.intersection(pbmc5k.var_names)) == 15792
    assert pbmc10k.X.max() == 3117 and pbmc5k.X.max() == 744


def test_the_two_real_batches_stack_as_reference_and_query(shared_data: Path) -> None:
    # The 5k batch (29 antibodies) as reference, the 10k batch (14) as query: the real
    # stand-in for the paper's panel mismatch.
    reference = read_h5ad_cite_seq(shared_data / FOLDER / "pbmc_5k_protein_v3.h5ad")
    query = read_h5ad_cite_seq(shared_data / FOLDER / "pbmc_10k_protein_v3.h5ad")
    for name, adata in (("pbmc5k", reference), ("pbmc10k", query)):
        adata.obs_names = [f"{name}_{b}" for b in adata.obs_names]
        adata.obs["batch"] = name
    combined = concat_reference_query(reference, query)
    assert combined.shape == (400, 15792)
    assert combined.obsm["protein_expression"].shape == (400, 29)
    assert combined.uns["protein_unobserved"] == {
        "pbmc10k": [p for p in reference.obsm["protein_expression"].columns
                    if p not in set(query.obsm["protein_expression"].columns)]
    }
    shared_gene = combined.var_names[100]
    np.testing.assert_array_equal(
        combined[combined.obs["batch"] == "pbmc10k"][:, shared_gene].X.toarray(),
        query[:, shared_gene].X.toarray(),
    )


def test_macos_junk_is_ignored_and_a_missing_file_is_named(tmp_path: Path) -> None:
    def add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))

    path = tmp_path / "m.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        add(archive, "m/._matrix.mtx", b"\x00\x05junk")
        add(archive, "m/.DS_Store", b"\x00junk")
        add(archive, "m/matrix.mtx",
            b"%%MatrixMarket matrix coordinate integer general\n3 2 3\n1 1 4\n2 2 1\n3 2 7\n")
        add(archive, "m/features.tsv",
            b"E1\tGENE1\tGene Expression\nE2\tGENE2\tGene Expression\n"
            b"CD3\tCD3_Ab\tAntibody Capture\n")
        add(archive, "m/barcodes.tsv", b"AAA-1\nCCC-1\n")
    adata = read_10x_mtx_tar(path)
    np.testing.assert_array_equal(adata.X.toarray(), [[4, 0], [0, 1]])
    assert adata.obsm["protein_expression"]["CD3_Ab"].tolist() == [0.0, 7.0]

    # Cell Ranger v2 layout (genes.tsv) is read too, but an empty member is named.
    broken = tmp_path / "v2.tar.gz"
    with tarfile.open(broken, "w:gz") as archive:
        add(archive, "m/matrix.mtx", b"")
        add(archive, "m/genes.tsv", b"")
        add(archive, "m/barcodes.tsv", b"")
    message = (f"'m/matrix.mtx' in {str(broken)!r} is empty; pack the matrix folder exactly "
               "as Cell Ranger wrote it.")
    with pytest.raises(ValueError, match=re.escape(message)):
        read_10x_mtx_tar(broken)


def test_unreadable_inputs_raise_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="is not a file; pass the path of the file to read"):
        read_10x_mtx_tar(tmp_path / "absent.tar.gz")
    not_tar = tmp_path / "x.tar.gz"
    not_tar.write_bytes(b"plain text")
    with pytest.raises(ValueError, match="is not a readable tar archive"):
        read_10x_mtx_tar(not_tar)


def test_h5ad_without_named_proteins_is_rejected(tmp_path: Path) -> None:
    adata = ad.AnnData(np.ones((3, 2), dtype=np.float32))
    adata.obsm["protein_expression"] = np.ones((3, 4))
    adata.uns["protein_names"] = np.array(["A", "B", "C"])
    path = tmp_path / "old.h5ad"
    adata.write_h5ad(path)
    with pytest.raises(ValueError, match=re.escape(
            "uns['protein_names'] names 3 proteins but obsm['protein_expression'] has 4 "
            "columns.")):
        read_h5ad_cite_seq(path)
    with pytest.raises(ValueError, match=r"has no obsm\['adt'\] \(obsm keys: "
                                         r"\['protein_expression'\]\); pass protein_key="):
        read_h5ad_cite_seq(path, protein_key="adt")


# ---- streamed h5ad -----------------------------------------------------------------------


def _random_counts(n_rows: int, n_cols: int, seed: int) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    dense = rng.poisson(0.4, (n_rows, n_cols)).astype(np.float32)
    dense[3] = 0.0  # an empty row
    return sp.csr_matrix(dense)


def _frames(n_rows: int, n_cols: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    obs = pd.DataFrame({"group": pd.Categorical(["a", "b", "c"] * (n_rows // 3),
                                                categories=["a", "b", "c", "unused"])},
                       index=[f"cell_{i}" for i in range(n_rows)])
    var = pd.DataFrame({"score": np.arange(n_cols, dtype=np.float64)},
                       index=[f"gene_{j}" for j in range(n_cols)])
    return obs, var


def test_streamed_rows_round_trip_through_anndata(tmp_path: Path) -> None:
    matrix = _random_counts(60, 25, seed=0)
    obs, var = _frames(60, 25)
    # Uneven blocks, flushed every 7 or more rows, the last flush partial.
    edges = [0, 5, 6, 19, 33, 34, 52, 60]
    blocks = (matrix[a:b] for a, b in pairwise(edges))
    path = tmp_path / "out" / "streamed.h5ad"
    with atomic_h5ad(path) as handle:
        write_csr_rows(handle, blocks, n_vars=25, chunk_size=7)
        write_h5ad_annotations(handle, obs=obs, var=var, uns={"note": "kept"})
    assert sorted(p.name for p in path.parent.iterdir()) == ["streamed.h5ad"]

    back = ad.read_h5ad(path)
    assert sp.isspmatrix_csr(back.X) and back.X.dtype == np.float32
    np.testing.assert_array_equal(back.X.toarray(), matrix.toarray())
    pd.testing.assert_frame_equal(back.obs, obs)
    pd.testing.assert_frame_equal(back.var, var)
    assert back.uns["note"] == "kept"
    with h5py.File(path, "r") as handle:
        assert handle["X"]["indptr"].dtype == np.int64
        assert handle["X"]["data"].chunks == (HDF5_CHUNK_ELEMENTS,)


def test_read_csr_rows_picks_rows_across_chunks(tmp_path: Path) -> None:
    matrix = _random_counts(50, 12, seed=1)
    path = tmp_path / "m.h5ad"
    with atomic_h5ad(path) as handle:
        write_csr_rows(handle, [matrix], n_vars=12, chunk_size=50)
        rows = np.array([0, 3, 4, 17, 18, 40, 49])
        picked = read_csr_rows(handle["X"], rows, chunk_rows=8)
        everything = read_csr_rows(handle["X"], np.arange(50), chunk_rows=64)
    assert picked.dtype == np.float32 and picked.shape == (7, 12)
    np.testing.assert_array_equal(picked.toarray(), matrix[rows].toarray())
    np.testing.assert_array_equal(everything.toarray(), matrix.toarray())


def test_a_failed_write_leaves_the_old_file_and_no_partial_one(tmp_path: Path) -> None:
    path = tmp_path / "kept.h5ad"
    path.write_bytes(b"previous content")
    obs, var = _frames(6, 4)
    with pytest.raises(ValueError, match=re.escape("obs/var have 6 × 4 entries but X is 9 × 4")):
        with atomic_h5ad(path) as handle:
            write_csr_rows(handle, [_random_counts(9, 4, seed=2)], n_vars=4, chunk_size=5)
            write_h5ad_annotations(handle, obs=obs, var=var, uns={})
    assert [p.name for p in tmp_path.iterdir()] == ["kept.h5ad"]
    assert path.read_bytes() == b"previous content"
