"""The scanpy baselines on a small simulation with known cell states, batch and cell cycle.

The simulation: 3 cell states drive genes 20–79, a batch shift moves those genes, and a
cell-cycle score drives the 20 "cc_" nuisance genes (strongly) and the other genes (weakly).
The nuisance genes carry no state or batch signal, so regressing them out should remove the
cycle and nothing else, and only bbknn / Harmony should mix the batches.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from scprob.bench.baselines import (
    Representation,
    neighbor_graph,
    regress_bbknn,
    regress_harmony,
    regress_pca,
    umap_from_graph,
)
from scprob.bench.metrics import batch_mixing_entropy, label_knn_accuracy
from scprob.data.preprocess import add_nuisance_covariates

N_NUISANCE = 20
N_PCS = 10
NUISANCE_GENES = [f"cc_{j}" for j in range(N_NUISANCE)]


def make_nuisance_adata(n_cells: int = 400, n_genes: int = 80, seed: int = 0) -> ad.AnnData:
    rng = np.random.default_rng(seed)
    state = rng.integers(0, 3, n_cells)
    batch = rng.integers(0, 2, n_cells)
    cycle = rng.normal(size=n_cells)
    programs = np.zeros((3, n_genes))
    programs[:, N_NUISANCE:] = rng.normal(0.0, 1.2, (3, n_genes - N_NUISANCE))
    batch_shift = rng.normal(0.0, 0.4, (2, n_genes))
    batch_shift[:, :N_NUISANCE] = 0.0
    cycle_loading = np.r_[np.ones(N_NUISANCE), rng.normal(0.0, 0.5, n_genes - N_NUISANCE)]
    log_mean = 1.5 + programs[state] + batch_shift[batch] + np.outer(cycle, cycle_loading)
    counts = rng.poisson(np.exp(log_mean)).astype(np.float32)

    adata = ad.AnnData(sp.csr_matrix(counts))
    adata.obs_names = [f"cell_{i}" for i in range(n_cells)]
    adata.var_names = NUISANCE_GENES + [f"gene_{j}" for j in range(N_NUISANCE, n_genes)]
    adata.obs["state"] = pd.Categorical([f"s{s}" for s in state])
    adata.obs["batch"] = pd.Categorical([f"b{b}" for b in batch])
    adata.obs["cycle_score"] = cycle
    adata.layers["counts"] = adata.X.copy()
    return adata


@pytest.fixture(scope="module")
def adata_and_keys() -> tuple[ad.AnnData, list[str]]:
    adata = make_nuisance_adata()
    keys = add_nuisance_covariates(adata, NUISANCE_GENES)
    return adata, keys


def _max_abs_correlation(embedding: np.ndarray, values: np.ndarray) -> float:
    return max(abs(np.corrcoef(column, values)[0, 1]) for column in embedding.T)


def test_regress_pca_removes_the_covariate_and_keeps_the_states(adata_and_keys) -> None:
    adata, keys = adata_and_keys
    plain = regress_pca(adata, [], n_pcs=N_PCS, exclude_genes=NUISANCE_GENES)
    regressed = regress_pca(adata, keys, n_pcs=N_PCS, exclude_genes=NUISANCE_GENES)
    assert regressed.shape == (adata.n_obs, N_PCS)
    assert regressed.dtype == np.float32
    cycle = adata.obs["cycle_score"].to_numpy()
    # Without regression one PC follows the cycle closely; after it, none does.
    assert _max_abs_correlation(plain, cycle) > 0.6
    assert _max_abs_correlation(regressed, cycle) < 0.3
    graph = neighbor_graph(regressed).connectivities
    assert label_knn_accuracy(graph, adata.obs["state"]) > 0.95


def test_regress_pca_is_deterministic_and_leaves_adata_alone(adata_and_keys) -> None:
    adata, keys = adata_and_keys
    obs_before, counts_before = adata.obs.copy(), adata.layers["counts"].copy()
    first = regress_pca(adata, keys, n_pcs=N_PCS, seed=3)
    second = regress_pca(adata, keys, n_pcs=N_PCS, seed=3)
    np.testing.assert_array_equal(first, second)
    pd.testing.assert_frame_equal(adata.obs, obs_before)
    assert (adata.layers["counts"] != counts_before).nnz == 0
    # Excluding the nuisance genes changes the input, hence the PCA.
    excluded = regress_pca(adata, keys, n_pcs=N_PCS, seed=3, exclude_genes=NUISANCE_GENES)
    assert not np.allclose(np.abs(first), np.abs(excluded))


def test_regress_pca_skips_a_constant_covariate(adata_and_keys) -> None:
    adata, keys = adata_and_keys
    with_constant = adata.copy()
    with_constant.obs["constant"] = 2.0
    np.testing.assert_allclose(
        regress_pca(with_constant, [*keys, "constant"], n_pcs=N_PCS),
        regress_pca(adata, keys, n_pcs=N_PCS),
        rtol=1e-4, atol=1e-4,
    )


def test_regress_pca_errors(adata_and_keys) -> None:
    adata, keys = adata_and_keys
    with pytest.raises(ValueError, match=r"covariates \['absent'\] are not in adata.obs"):
        regress_pca(adata, ["absent"])
    with pytest.raises(ValueError, match=r"covariates \['state'\] are not numeric"):
        regress_pca(adata, ["state"])
    with pytest.raises(ValueError, match=r"layer 'raw' is not in adata\.layers"):
        regress_pca(adata, keys, layer="raw")
    with pytest.raises(ValueError, match=r"n_pcs must be in \[1, min\(n_cells, n_genes\)\)"):
        regress_pca(adata, keys, n_pcs=80)


def _assert_graph(rep: Representation, n_cells: int) -> None:
    for matrix in (rep.connectivities, rep.distances):
        assert sp.isspmatrix_csr(matrix)
        assert matrix.shape == (n_cells, n_cells)
    assert abs(rep.connectivities - rep.connectivities.T).max() < 1e-6
    assert rep.connectivities.diagonal().max() == 0
    assert np.all(np.diff(rep.connectivities.indptr) > 0)  # no isolated cell


def test_batch_correction_mixes_batches_and_keeps_states(adata_and_keys) -> None:
    adata, keys = adata_and_keys
    uncorrected = neighbor_graph(
        regress_pca(adata, keys, n_pcs=N_PCS, exclude_genes=NUISANCE_GENES)
    )
    bbknn_rep = regress_bbknn(adata, keys, "batch", n_pcs=N_PCS, exclude_genes=NUISANCE_GENES)
    harmony_rep = regress_harmony(
        adata, keys, "batch", n_pcs=N_PCS, exclude_genes=NUISANCE_GENES
    )
    assert (bbknn_rep.name, bbknn_rep.graph_only) == ("regress-bbknn", True)
    assert (harmony_rep.name, harmony_rep.graph_only) == ("regress-harmony", False)
    assert harmony_rep.embedding.shape == (adata.n_obs, N_PCS)

    batches, states = adata.obs["batch"], adata.obs["state"]
    assert batch_mixing_entropy(uncorrected.connectivities, batches) < 0.3
    for rep in (bbknn_rep, harmony_rep):
        _assert_graph(rep, adata.n_obs)
        assert batch_mixing_entropy(rep.connectivities, batches) > 0.7
        assert label_knn_accuracy(rep.connectivities, states) > 0.95


def test_batch_correction_is_deterministic(adata_and_keys) -> None:
    adata, keys = adata_and_keys
    for method in (regress_bbknn, regress_harmony):
        first = method(adata, keys, "batch", n_pcs=N_PCS, seed=1)
        second = method(adata, keys, "batch", n_pcs=N_PCS, seed=1)
        np.testing.assert_array_equal(first.embedding, second.embedding)
        assert (first.connectivities != second.connectivities).nnz == 0


def test_batch_correction_errors(adata_and_keys) -> None:
    adata, keys = adata_and_keys
    with pytest.raises(ValueError, match=r"batch_key 'donor' is not a column of adata\.obs"):
        regress_harmony(adata, keys, "donor", n_pcs=N_PCS)
    one_batch = adata.copy()
    one_batch.obs["batch"] = "b0"
    with pytest.raises(ValueError, match="has a single batch"):
        regress_bbknn(one_batch, keys, "batch", n_pcs=N_PCS)
    with pytest.raises(ValueError, match=r"neighbors_within_batch must be in \[1, "):
        regress_bbknn(adata, keys, "batch", n_pcs=N_PCS, neighbors_within_batch=10_000)


def test_neighbor_graph_of_a_latent() -> None:
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 10, (3, 5))
    labels = rng.integers(0, 3, 300)
    latent = centers[labels] + rng.normal(size=(300, 5))
    rep = neighbor_graph(latent, n_neighbors=15, name="scVI")
    _assert_graph(rep, 300)
    assert rep.name == "scVI" and not rep.graph_only
    # 15 neighbours including the cell itself: 14 distances stored per row.
    np.testing.assert_array_equal(np.diff(rep.distances.indptr), 14)
    assert label_knn_accuracy(rep.connectivities, labels) == 1.0
    with pytest.raises(ValueError, match=r"n_neighbors must be in \[2, n_cells\)"):
        neighbor_graph(latent, n_neighbors=300)
    with pytest.raises(ValueError, match="embedding holds NaN"):
        neighbor_graph(np.full((10, 2), np.nan))


def test_umap_from_graph_is_seeded_and_keeps_clusters(adata_and_keys) -> None:
    adata, keys = adata_and_keys
    rep = regress_bbknn(adata, keys, "batch", n_pcs=N_PCS, exclude_genes=NUISANCE_GENES)
    graph_before = rep.connectivities.copy()
    layout = umap_from_graph(rep, seed=0)
    assert (rep.connectivities != graph_before).nnz == 0  # the method's graph is untouched
    assert layout.shape == (adata.n_obs, 2)
    assert np.all(np.isfinite(layout))
    np.testing.assert_array_equal(layout, umap_from_graph(rep, seed=0))
    assert not np.array_equal(layout, umap_from_graph(rep, seed=1))
    # The 2-D layout still separates the cell states.
    layout_graph = neighbor_graph(layout).connectivities
    assert label_knn_accuracy(layout_graph, adata.obs["state"]) > 0.95


def test_both_studies_run_the_same_baseline_steps(adata_and_keys) -> None:
    from scprob.bench.baselines import bbknn_graph, combined_labels, run_baseline
    from scprob.data.preprocess import log_normalize

    adata, keys = adata_and_keys
    log_normalized = log_normalize(adata.layers["counts"])
    continuous, batch = adata.obs[keys], adata.obs[["batch"]]
    # The covariates study's regress-harmony is run_baseline's, scaled, plus the kNN graph.
    corrected = run_baseline("regress_harmony", log_normalized, continuous, batch,
                             n_pcs=N_PCS, seed=1, scale=True)
    expected = neighbor_graph(corrected, seed=1, name="regress-harmony")
    harmony = regress_harmony(adata, keys, "batch", n_pcs=N_PCS, seed=1)
    assert (harmony.connectivities != expected.connectivities).nnz == 0
    # Without scaling (the runtime study's steps) the PCs, and so the result, differ.
    unscaled = run_baseline("regress_harmony", log_normalized, continuous, batch,
                            n_pcs=N_PCS, seed=1)
    assert not np.allclose(unscaled, corrected)
    # bbknn corrects the combination of several categorical covariates.
    donors = np.where(np.arange(adata.n_obs) % 2, "d1", "d2")
    two_keys = adata.obs[["batch"]].assign(donor=donors)
    graph = run_baseline("regress_bbknn", log_normalized, continuous, two_keys, n_pcs=N_PCS)
    pcs = run_baseline("regress_bbknn", log_normalized, continuous, two_keys,
                       n_pcs=N_PCS).embedding
    direct = bbknn_graph(pcs, combined_labels(two_keys, ["batch", "donor"]))
    assert graph.graph_only and (graph.connectivities != direct.connectivities).nnz == 0
    residuals = run_baseline("regress", log_normalized, continuous, batch)
    assert residuals.shape == adata.shape
    with pytest.raises(ValueError, match="method must be one of"):
        run_baseline("regress_scanorama", log_normalized, continuous, batch)
