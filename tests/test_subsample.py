"""Subsampling cells and selecting seurat_v3 genes (the runtime study's data sets)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from scprob.data import hvg
from scprob.data.io import atomic_h5ad, write_csr_rows, write_h5ad_annotations
from scprob.data.simulate.heart_atlas import write_heart_atlas
from scprob.data.subsample import subsample_and_select_hvg

N_CELLS, N_GENES = 600, 200
# Overdispersed genes among Poisson ones: the only genes whose variance exceeds the
# mean-variance trend, so seurat_v3 must rank exactly these first.
PLANTED = (10, 50, 90, 130, 170)


def _planted_adata() -> ad.AnnData:
    rng = np.random.default_rng(0)
    means = np.exp(rng.uniform(np.log(0.2), np.log(20.0), N_GENES))
    counts = rng.poisson(means, (N_CELLS, N_GENES)).astype(np.float32)
    theta = 0.05
    for j in PLANTED:
        counts[:, j] = rng.negative_binomial(theta, theta / (theta + means[j]), N_CELLS)
    obs = pd.DataFrame(
        {"batch": pd.Categorical(np.where(np.arange(N_CELLS) % 3 == 0, "b1", "b2"),
                                 categories=["b1", "b2", "b3"])},
        index=pd.Index([f"cell_{i:04d}" for i in range(N_CELLS)], name="cell"),
    )
    var = pd.DataFrame(index=pd.Index([f"gene_{j:03d}" for j in range(N_GENES)], name="gene"))
    return ad.AnnData(X=sp.csr_matrix(counts), obs=obs, var=var)


@pytest.fixture(scope="module")
def planted() -> ad.AnnData:
    return _planted_adata()


@pytest.fixture(scope="module")
def planted_file(planted: ad.AnnData, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("subsample") / "planted.h5ad"
    blocks = (planted.X[start : start + 128] for start in range(0, N_CELLS, 128))
    with atomic_h5ad(path) as handle:
        write_csr_rows(handle, blocks, N_GENES, chunk_size=250)
        write_h5ad_annotations(handle, obs=planted.obs, var=planted.var, uns={"origin": "t"})
    return path


def test_the_planted_genes_are_selected_for_the_drawn_cells(
    planted: ad.AnnData, planted_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "sub.h5ad"
    subsample_and_select_hvg(planted_file, out, 400, n_top_genes=len(PLANTED), seed=2)
    sub = ad.read_h5ad(out)

    rows = np.sort(np.random.default_rng(2).choice(N_CELLS, 400, replace=False))
    assert list(sub.obs_names) == list(planted.obs_names[rows])
    assert list(sub.var_names) == [planted.var_names[j] for j in PLANTED]
    assert sp.isspmatrix_csr(sub.X) and sub.X.dtype == np.float32
    np.testing.assert_array_equal(sub.X.toarray(), planted.X[rows][:, list(PLANTED)].toarray())
    assert sub.var["highly_variable"].all()
    assert sorted(sub.var["highly_variable_rank"]) == list(range(len(PLANTED)))
    assert list(sub.obs["batch"].cat.categories) == ["b1", "b2", "b3"]  # unused level kept
    assert sub.uns["origin"] == "t"
    assert sub.uns["subsample"] == {"source": "planted.h5ad", "n_cells_source": N_CELLS,
                                    "n_cells": 400, "seed": 2}
    assert sub.uns["hvg"] == {"flavor": "seurat_v3", "n_top_genes": 5, "batch_key": ""}


def test_all_cells_with_a_batch_key_keep_every_cell(
    planted: ad.AnnData, planted_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "all.h5ad"
    subsample_and_select_hvg(planted_file, out, N_CELLS, n_top_genes=len(PLANTED),
                             batch_key="batch")
    sub = ad.read_h5ad(out)
    assert list(sub.obs_names) == list(planted.obs_names)
    assert list(sub.var_names) == [planted.var_names[j] for j in PLANTED]
    assert (sub.var["highly_variable_nbatches"] == 2).all()


def test_subsample_is_seeded_and_sorted(planted_file: Path, tmp_path: Path) -> None:
    def cells(seed: int, name: str) -> list[str]:
        subsample_and_select_hvg(planted_file, tmp_path / name, 300, n_top_genes=20, seed=seed)
        return list(ad.read_h5ad(tmp_path / name).obs_names)

    first, again, other = cells(0, "a.h5ad"), cells(0, "b.h5ad"), cells(1, "c.h5ad")
    assert first == again and first != other
    assert first == sorted(first) and len(set(first)) == 300


def test_missing_noise_covariates_are_added_seeded_and_present_ones_kept(
        planted: ad.AnnData, planted_file: Path, tmp_path: Path) -> None:
    """A real atlas has its measured covariates but not the paper's 8 noise columns: those
    are drawn (standard normal, seeded); a column the file has is never overwritten."""
    names = ["batch", "cont_cov_1", "cont_cov_2"]

    def obs(seed: int, name: str) -> pd.DataFrame:
        subsample_and_select_hvg(planted_file, tmp_path / name, 300, n_top_genes=20,
                                 seed=seed, noise_covariates=names)
        return ad.read_h5ad(tmp_path / name).obs

    first, again, other = obs(0, "a.h5ad"), obs(0, "b.h5ad"), obs(1, "c.h5ad")
    assert first["batch"].equals(planted.obs.loc[first.index, "batch"])
    noise = first[["cont_cov_1", "cont_cov_2"]].to_numpy()
    assert noise.dtype == np.float64 and noise.shape == (300, 2)
    assert abs(noise.mean()) < 0.15 and 0.85 < noise.std() < 1.15
    assert np.corrcoef(noise.T)[0, 1] < 0.2  # independent columns
    assert np.array_equal(noise, again[["cont_cov_1", "cont_cov_2"]].to_numpy())
    assert not np.array_equal(noise[:10], other[["cont_cov_1", "cont_cov_2"]].to_numpy()[:10])


def test_subsample_rejects_bad_requests(
    planted: ad.AnnData, planted_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.h5ad"
    with pytest.raises(ValueError, match=f"n_cells={N_CELLS + 1} exceeds the {N_CELLS} cells"):
        subsample_and_select_hvg(planted_file, out, N_CELLS + 1)
    with pytest.raises(ValueError, match=f"n_top_genes=4000 exceeds the {N_GENES} genes"):
        subsample_and_select_hvg(planted_file, out, 100)
    with pytest.raises(ValueError, match="batch_key 'donor' is not an obs column"):
        subsample_and_select_hvg(planted_file, out, 100, n_top_genes=50, batch_key="donor")
    with pytest.raises(ValueError, match="out_h5ad must differ from src_h5ad"):
        subsample_and_select_hvg(planted_file, planted_file, 100, n_top_genes=50)
    with pytest.raises(ValueError, match="n_cells must be >= 2, got 1"):
        subsample_and_select_hvg(planted_file, out, 1, n_top_genes=50)
    dense = tmp_path / "dense.h5ad"
    ad.AnnData(planted.X.toarray(), obs=planted.obs, var=planted.var).write_h5ad(dense)
    with pytest.raises(ValueError, match="has no CSR X"):
        subsample_and_select_hvg(dense, out, 100, n_top_genes=50)
    assert not out.exists()


def test_hvg_selects_exactly_4000_of_6000_atlas_genes_as_scanpy_does(tmp_path: Path) -> None:
    """The paper's setting: 4,000 of the simulated atlas's 6,000 genes."""
    import scanpy as sc

    atlas = tmp_path / "genes6000.h5ad"
    write_heart_atlas(atlas, 3000, seed=0)
    out = tmp_path / "sub.h5ad"
    subsample_and_select_hvg(atlas, out, n_cells=2000, n_top_genes=4000)
    sub = ad.read_h5ad(out)
    assert sub.shape == (2000, 4000)
    assert sub.var["highly_variable"].all()

    full = ad.read_h5ad(atlas)
    assert list(sub.var_names) == [g for g in full.var_names if g in set(sub.var_names)]
    expected = full[sub.obs_names].copy()
    sc.pp.highly_variable_genes(expected, flavor="seurat_v3", n_top_genes=4000)
    assert set(expected.var_names[expected.var["highly_variable"]]) == set(sub.var_names)
    assert (full[sub.obs_names, sub.var_names].X != sub.X).nnz == 0
    pd.testing.assert_frame_equal(sub.obs, full.obs.loc[sub.obs_names])


def test_hvg_refuses_normalized_data(planted: ad.AnnData) -> None:
    normalized = planted.copy()
    normalized.X = normalized.X * 0.5
    with pytest.raises(ValueError, match="non-integer values; seurat_v3 needs raw counts"):
        hvg.highly_variable_genes_seurat_v3(normalized, n_top_genes=50)
    with pytest.raises(ValueError, match=f"n_top_genes=0 is out of range.*{N_GENES} genes"):
        hvg.highly_variable_genes_seurat_v3(planted, n_top_genes=0)


def test_a_missing_loess_names_the_package_to_install(planted: ad.AnnData, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "skmisc.loess", None)  # makes the import fail
    with pytest.raises(ModuleNotFoundError, match=re.escape(hvg.SCIKIT_MISC_PIN)):
        hvg.highly_variable_genes_seurat_v3(planted, n_top_genes=50)
