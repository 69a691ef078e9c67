"""Metrics on graphs and embeddings where the right answer is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from scprob.bench.baselines import Representation
from scprob.bench.metrics import (
    batch_mixing_entropy,
    continuous_knn_r2,
    describe_score,
    gearys_c,
    ground_truth_scores,
    label_knn_accuracy,
    linear_probe_accuracy,
    linear_probe_r2,
)

N_CELLS = 300


def random_graph(n_cells: int, n_neighbors: int = 10, seed: int = 0) -> sp.csr_matrix:
    """Symmetric graph linking each cell to random others, weights in (0, 1]."""
    rng = np.random.default_rng(seed)
    rows = np.repeat(np.arange(n_cells), n_neighbors)
    cols = rng.integers(0, n_cells, rows.size)
    graph = sp.csr_matrix((rng.uniform(0.1, 1.0, rows.size), (rows, cols)), (n_cells, n_cells))
    graph = graph.maximum(graph.T).tocsr()
    graph.setdiag(0)
    graph.eliminate_zeros()
    return graph


def label_graph(labels: np.ndarray, n_neighbors: int = 10, seed: int = 0) -> sp.csr_matrix:
    """Each cell linked only to random cells of its own label: built from the truth."""
    rng = np.random.default_rng(seed)
    rows, cols = [], []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        for cell in members:
            others = rng.choice(members[members != cell], n_neighbors, replace=False)
            rows += [cell] * n_neighbors
            cols += list(others)
    graph = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), (labels.size, labels.size))
    return graph.maximum(graph.T).tocsr()


def direct_gearys_c(weights: np.ndarray, x: np.ndarray) -> float:
    """C = (N−1) Σ_ij w_ij (x_i−x_j)² / (2 W Σ_i (x_i−x̄)²), written out."""
    n = x.size
    numerator = (n - 1) * np.sum(weights * (x[:, None] - x[None, :]) ** 2)
    return numerator / (2 * weights.sum() * np.sum((x - x.mean()) ** 2))


def test_gearys_c_matches_the_formula_and_marks_constant_genes_nan() -> None:
    rng = np.random.default_rng(1)
    graph = random_graph(60, n_neighbors=5, seed=1)
    values = rng.normal(size=(60, 4))
    values[:, 2] = 3.0  # constant gene
    result = gearys_c(graph, values)
    assert result.shape == (4,)
    for gene in (0, 1, 3):
        assert result[gene] == pytest.approx(direct_gearys_c(graph.toarray(), values[:, gene]))
    assert np.isnan(result[2])
    # Sparse values give the same numbers.
    np.testing.assert_allclose(gearys_c(graph, sp.csr_matrix(values)), result)


def test_gearys_c_is_low_for_a_smooth_gene_and_near_one_for_noise() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, N_CELLS)
    graph = label_graph(labels)
    smooth = labels + 0.1 * rng.normal(size=N_CELLS)
    noise = rng.normal(size=N_CELLS)
    smooth_c, noise_c = gearys_c(graph, np.column_stack([smooth, noise]))
    assert smooth_c < 0.05
    assert noise_c == pytest.approx(1.0, abs=0.15)
    with pytest.raises(ValueError, match=r"connectivities must be \(n_cells, n_cells\)"):
        gearys_c(graph, np.ones((10, 2)))


def test_label_knn_accuracy_truth_graph_vs_random_graph() -> None:
    rng = np.random.default_rng(0)
    labels = rng.choice(["a", "b", "c"], N_CELLS)
    assert label_knn_accuracy(label_graph(labels), labels) == 1.0
    chance = label_knn_accuracy(random_graph(N_CELLS), labels)
    assert 0.2 < chance < 0.5  # three balanced labels: chance is 1/3


def test_label_knn_accuracy_excludes_the_cell_itself_and_isolated_cells() -> None:
    labels = np.array(["a", "a", "b"])
    # Strong self-loops must not vote; cell 2 ("b") only sees "a" cells.
    graph = sp.csr_matrix(np.array([[9.0, 1.0, 0.0], [1.0, 9.0, 0.5], [0.0, 0.5, 9.0]]))
    assert label_knn_accuracy(graph, labels) == pytest.approx(2 / 3)
    isolated = sp.csr_matrix(np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))
    assert label_knn_accuracy(isolated, labels) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="labels are floating-point numbers, not categories"):
        label_knn_accuracy(graph, np.array([0.5, 1.0, 2.0]))


def test_continuous_knn_r2_high_for_leaking_graph_and_near_zero_for_random() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, N_CELLS)
    score = labels + 0.2 * rng.normal(size=N_CELLS)
    assert continuous_knn_r2(label_graph(labels), score) > 0.9
    assert continuous_knn_r2(random_graph(N_CELLS), score) < 0.1
    with pytest.raises(ValueError, match="values are constant"):
        continuous_knn_r2(random_graph(N_CELLS), np.ones(N_CELLS))


def test_batch_mixing_entropy_extremes() -> None:
    batches = np.repeat(["b1", "b2"], N_CELLS // 2)
    assert batch_mixing_entropy(label_graph(batches), batches) == 0.0
    assert batch_mixing_entropy(random_graph(N_CELLS, n_neighbors=30), batches) > 0.9
    # Exactly 1 when every cell's neighbour weight is split evenly between the batches.
    even = sp.csr_matrix(np.array([[0, 1, 1, 0], [1, 0, 0, 1], [1, 0, 0, 1], [0, 1, 1, 0.0]]))
    assert batch_mixing_entropy(even, ["x", "x", "y", "y"]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least 2 batches"):
        batch_mixing_entropy(even, ["x"] * 4)


def test_linear_probes_recover_linear_signal_and_not_noise() -> None:
    rng = np.random.default_rng(0)
    embedding = rng.normal(size=(N_CELLS, 5))
    target = embedding @ np.array([1.0, -2.0, 0.0, 0.5, 0.0]) + 0.1 * rng.normal(size=N_CELLS)
    assert linear_probe_r2(embedding, target) > 0.95
    assert linear_probe_r2(embedding, rng.normal(size=N_CELLS)) < 0.05
    labels = np.where(embedding[:, 0] > 0, "pos", "neg")
    assert linear_probe_accuracy(embedding, labels) > 0.9
    assert linear_probe_accuracy(embedding, rng.choice(["p", "q"], N_CELLS)) < 0.65
    # Seeded folds: same seed, same number.
    assert linear_probe_r2(embedding, target, seed=4) == linear_probe_r2(embedding, target, seed=4)


def test_linear_probe_errors() -> None:
    embedding = np.zeros((20, 2))
    with pytest.raises(ValueError, match="the rarest label has 2 cells, fewer than cv=5"):
        linear_probe_accuracy(embedding, ["a"] * 18 + ["b"] * 2)
    with pytest.raises(ValueError, match="embedding has 20 cells but values 19"):
        linear_probe_r2(embedding, np.arange(19.0))
    with pytest.raises(ValueError, match=r"cv must be in \[2, n_cells=20\]"):
        linear_probe_r2(embedding, np.arange(20.0), cv=1)


def test_ground_truth_scores_row() -> None:
    rng = np.random.default_rng(0)
    state = rng.integers(0, 3, N_CELLS)
    obs = pd.DataFrame({
        "cell_state": pd.Categorical(state),
        "cycle_score": rng.normal(size=N_CELLS),
        "sex": rng.choice(["F", "M"], N_CELLS),
        "batch": rng.choice(["b1", "b2"], N_CELLS),
    })
    # Embedding and graph carry the state only: biology kept, nuisance not leaking.
    embedding = np.eye(3)[state] * 5 + rng.normal(size=(N_CELLS, 3))
    rep = Representation(embedding, label_graph(state), label_graph(state), name="truth")
    scores = ground_truth_scores(rep, obs, "cell_state", ["cycle_score"], ["sex"], "batch")
    assert list(scores) == [
        "bio_knn_accuracy:cell_state", "bio_probe_accuracy:cell_state",
        "leak_knn_r2:cycle_score", "leak_probe_r2:cycle_score",
        "leak_knn_accuracy:sex", "leak_probe_accuracy:sex",
        "mix_entropy:batch",
    ]
    assert scores["bio_knn_accuracy:cell_state"] == 1.0
    assert scores["bio_probe_accuracy:cell_state"] > 0.95
    assert scores["leak_knn_r2:cycle_score"] < 0.1
    assert scores["leak_probe_r2:cycle_score"] < 0.05
    assert scores["leak_knn_accuracy:sex"] < 0.65
    assert scores["mix_entropy:batch"] > 0.85

    graph_only = Representation(embedding, rep.connectivities, rep.distances, "g", True)
    graph_scores = ground_truth_scores(graph_only, obs, "cell_state", ["cycle_score"], ["sex"],
                                       "batch")
    assert np.isnan(graph_scores["bio_probe_accuracy:cell_state"])
    assert graph_scores["bio_knn_accuracy:cell_state"] == 1.0

    with pytest.raises(ValueError, match=r"obs columns \['cycle_score'\] are floating-point"):
        ground_truth_scores(rep, obs, "cell_state", [], ["cycle_score"], "batch")
    with pytest.raises(ValueError, match=r"obs columns \['sex'\] are not numeric"):
        ground_truth_scores(rep, obs, "cell_state", ["sex"], [], "batch")
    with pytest.raises(ValueError, match=r"columns \['phase'\] are not in obs"):
        ground_truth_scores(rep, obs, "cell_state", [], ["phase"], "batch")
    assert describe_score("leak_knn_r2:cycle_score") == ("knn_r2", "cycle_score", False)
    assert describe_score("bio_probe_accuracy:cell_state")[2] is True
    with pytest.raises(ValueError, match="is not a ground_truth_scores key"):
        describe_score("accuracy")
