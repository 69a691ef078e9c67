"""The Heart Cell Atlas stand-in: chunked writing, covariates, structure."""

from __future__ import annotations

import os
import re
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.decomposition import PCA
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier

from scprob.data import io
from scprob.data.simulate import heart_atlas
from scprob.data.simulate.heart_atlas import (
    ATLAS_CELL_TYPE_FRACTIONS,
    CELL_SOURCE_FRACTIONS,
    CELL_SOURCES,
    CELL_TYPES,
    CONTINUOUS_COVARIATES,
    DONORS,
    DONORS_OF_SOURCE,
    MIN_GENES,
    RNG_BLOCK_SIZE,
    SOURCE_CELL_TYPE_FRACTIONS,
    simulate_heart_atlas,
    write_heart_atlas,
)

# Small enough to be fast, and spanning three RNG blocks, the last one partial.
N_CELLS, N_GENES, SEED = 2500, 400, 3


@pytest.fixture(scope="module")
def small() -> ad.AnnData:
    return simulate_heart_atlas(N_CELLS, N_GENES, SEED)


@pytest.fixture(scope="module")
def small_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("heart") / "small.h5ad"
    write_heart_atlas(path, N_CELLS, N_GENES, SEED)
    return path


def _assert_same_anndata(left: ad.AnnData, right: ad.AnnData) -> None:
    assert left.shape == right.shape
    assert sp.issparse(right.X) and right.X.format == "csr" and right.X.dtype == np.float32
    assert (left.X != right.X).nnz == 0
    pd.testing.assert_frame_equal(left.obs, right.obs)
    pd.testing.assert_frame_equal(left.var, right.var)


# ---- determinism and the chunked file ----------------------------------------------------


@pytest.mark.parametrize("chunk_size", [700, 5000])
def test_chunked_file_equals_the_in_memory_simulation(
    small: ad.AnnData, tmp_path: Path, chunk_size: int
) -> None:
    path = tmp_path / "atlas.h5ad"
    write_heart_atlas(path, N_CELLS, N_GENES, SEED, chunk_size=chunk_size)
    _assert_same_anndata(small, ad.read_h5ad(path))
    assert os.listdir(tmp_path) == ["atlas.h5ad"]  # no temporary file left behind


def test_the_file_reads_backed_with_a_64_bit_indptr(small_file: Path) -> None:
    backed = ad.read_h5ad(small_file, backed="r")
    assert backed.shape == (N_CELLS, N_GENES)
    assert backed.X.format == "csr"
    assert backed.file["X"]["indptr"].dtype == np.int64
    # Explicit HDF5 chunks: h5py's guess for an empty resizable dataset (1 element for
    # indptr) makes memory and read time grow with the file.
    for name in ("data", "indices", "indptr"):
        assert backed.file["X"][name].chunks == (io.HDF5_CHUNK_ELEMENTS,)
    backed.file.close()


def test_a_smaller_simulation_is_a_prefix_of_a_larger_one(small: ad.AnnData) -> None:
    n_prefix = RNG_BLOCK_SIZE + 100  # ends inside the second block
    prefix = simulate_heart_atlas(n_prefix, N_GENES, SEED)
    _assert_same_anndata(small[:n_prefix], prefix)


def test_the_seed_changes_the_data(small: ad.AnnData) -> None:
    other = simulate_heart_atlas(N_CELLS, N_GENES, SEED + 1)
    assert (other.X != small.X).nnz > 0
    assert not other.obs["cell_type"].equals(small.obs["cell_type"])
    assert list(other.var_names) == list(small.var_names)  # names do not depend on the seed


def test_an_interrupted_write_leaves_no_file(tmp_path: Path, monkeypatch) -> None:
    existing = tmp_path / "kept.h5ad"
    existing.write_bytes(b"previous content")

    def fail(*args, **kwargs):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(heart_atlas, "write_h5ad_annotations", fail)
    with pytest.raises(RuntimeError, match="interrupted"):
        write_heart_atlas(tmp_path / "new.h5ad", 300, N_GENES)
    with pytest.raises(RuntimeError, match="interrupted"):
        write_heart_atlas(existing, 300, N_GENES)
    assert sorted(os.listdir(tmp_path)) == ["kept.h5ad"]
    assert existing.read_bytes() == b"previous content"


# ---- counts and covariates ---------------------------------------------------------------


def test_counts_are_csr_non_negative_integers(small: ad.AnnData) -> None:
    counts = small.X
    assert sp.issparse(counts) and counts.format == "csr" and counts.dtype == np.float32
    assert counts.data.min() >= 0
    np.testing.assert_array_equal(counts.data, np.round(counts.data))
    assert counts.nnz < 0.6 * np.prod(counts.shape)  # sparse, like UMI data
    assert np.asarray(counts.sum(axis=1)).min() > 0


def test_covariates_have_the_paper_types(small: ad.AnnData) -> None:
    obs = small.obs
    for column, levels in (("cell_source", CELL_SOURCES), ("donor", DONORS),
                           ("cell_type", CELL_TYPES)):  # fmt: skip
        assert isinstance(obs[column].dtype, pd.CategoricalDtype)
        assert tuple(obs[column].cat.categories) == levels
    assert len(CONTINUOUS_COVARIATES) == 10
    for column in CONTINUOUS_COVARIATES:
        assert obs[column].dtype == np.float64
        assert not obs[column].isna().any()
    random = obs[[f"cont_cov_{i}" for i in range(1, 9)]].to_numpy()
    np.testing.assert_allclose(random.mean(axis=0), 0.0, atol=0.08)
    np.testing.assert_allclose(random.std(axis=0), 1.0, atol=0.06)
    # Unrelated to each other (the paper drew them independently).
    off_diagonal = np.corrcoef(random.T)[~np.eye(8, dtype=bool)]
    assert np.abs(off_diagonal).max() < 0.08


def test_percent_mito_and_ribo_are_computed_from_the_counts(small: ad.AnnData) -> None:
    names = small.var_names
    np.testing.assert_array_equal(small.var["mt"], names.str.startswith("MT-"))
    np.testing.assert_array_equal(small.var["ribo"], names.str.startswith(("RPS", "RPL")))
    assert small.var["mt"].sum() == 13 and small.var["ribo"].sum() == 80
    assert names.is_unique
    counts = small.X.astype(np.float64)  # float32 sums would round
    total = np.asarray(counts.sum(axis=1)).ravel()
    for column, mask in (("percent_mito", "mt"), ("percent_ribo", "ribo")):
        part = np.asarray(counts[:, small.var[mask].to_numpy()].sum(axis=1)).ravel()
        np.testing.assert_allclose(small.obs[column], 100.0 * part / total, rtol=1e-12)
        assert small.obs[column].between(0.0, 100.0).all()


def test_gene_names_are_deterministic_and_fixed_by_n_genes() -> None:
    first = simulate_heart_atlas(10, MIN_GENES, seed=0).var_names
    again = simulate_heart_atlas(10, MIN_GENES, seed=9).var_names
    assert list(first) == list(again)
    assert first[-1] == "SIMGENE00100"


# ---- atlas-like structure ----------------------------------------------------------------


def test_source_compositions_pool_to_the_atlas_composition() -> None:
    source_weights = np.array([CELL_SOURCE_FRACTIONS[s] for s in CELL_SOURCES])
    target = np.array([ATLAS_CELL_TYPE_FRACTIONS[t] for t in CELL_TYPES])
    np.testing.assert_allclose(SOURCE_CELL_TYPE_FRACTIONS.sum(axis=1), 1.0)
    np.testing.assert_allclose(source_weights @ SOURCE_CELL_TYPE_FRACTIONS,
                               target / target.sum(), atol=1e-9)  # fmt: skip


def test_sources_donors_and_depths_look_like_the_atlas(small: ad.AnnData) -> None:
    obs = small.obs.assign(total=np.asarray(small.X.sum(axis=1)).ravel())
    for source in CELL_SOURCES:
        donors = set(obs.loc[obs["cell_source"] == source, "donor"])
        assert donors <= set(DONORS_OF_SOURCE[source])
    by_source = obs.groupby("cell_source", observed=True)
    median = by_source[["total", "percent_mito", "percent_ribo"]].median()
    nuclei, cells = ["Harvard-Nuclei", "Sanger-Nuclei"], ["Sanger-Cells", "Sanger-CD45"]
    # Dissociated cells: more UMIs, more mitochondrial and ribosomal RNA than nuclei.
    for column in ("total", "percent_mito", "percent_ribo"):
        assert median.loc[cells, column].min() > median.loc[nuclei, column].max()
    immune = obs["cell_type"].isin(["Myeloid", "Lymphoid"])
    assert immune[obs["cell_source"] == "Sanger-CD45"].mean() > 0.8
    cardiomyocyte = obs["cell_type"].str.endswith("Cardiomyocyte")
    assert cardiomyocyte[obs["cell_source"] == "Sanger-Cells"].mean() < 0.05
    assert cardiomyocyte[obs["cell_source"].isin(nuclei)].mean() > 0.3


def test_cell_types_are_recoverable_from_the_counts() -> None:
    """Ground truth recovered: cell types separate in log-normalized PCA space."""
    adata = simulate_heart_atlas(2000, 1000, seed=5)
    counts = adata.X.toarray().astype(np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    log_normalized = np.log1p(counts / totals * np.median(totals))
    latent = PCA(n_components=20, random_state=0).fit_transform(log_normalized)
    labels = adata.obs["cell_type"].astype(str).to_numpy()
    common = pd.Series(labels).map(pd.Series(labels).value_counts()).to_numpy() >= 10
    accuracy = cross_val_score(
        KNeighborsClassifier(n_neighbors=15), latent[common], labels[common], cv=3
    ).mean()
    assert accuracy > 0.9


# ---- argument checks -----------------------------------------------------------------------


def test_bad_arguments_raise_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=f"n_genes=100 is too small.*n_genes >= {MIN_GENES}"):
        simulate_heart_atlas(10, 100)
    with pytest.raises(ValueError, match=re.escape("n_cells must be an integer, got 10.5")):
        simulate_heart_atlas(10.5)
    with pytest.raises(ValueError, match="seed must be >= 0, got -1"):
        simulate_heart_atlas(10, MIN_GENES, seed=-1)
    with pytest.raises(ValueError, match="chunk_size must be >= 1, got 0"):
        write_heart_atlas(tmp_path / "x.h5ad", 10, MIN_GENES, chunk_size=0)
    with pytest.raises(ValueError, match="is a folder; pass the path of the h5ad file"):
        write_heart_atlas(tmp_path, 10, MIN_GENES)
    assert not list(tmp_path.iterdir())
