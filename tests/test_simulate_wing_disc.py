"""The wing-disc AMP simulator: shape, determinism, gene lists, real proportions, signal."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.decomposition import PCA
from sklearn.model_selection import KFold, cross_val_score
from sklearn.neighbors import KNeighborsClassifier

from scprob.data.simulate import wing_disc
from scprob.data.simulate.wing_disc import (
    BATCH_FRACTIONS,
    BATCHES,
    CELL_CYCLE_GENES,
    CELL_STATES,
    MALE_FRACTION_BY_BATCH,
    MIN_GENES,
    REAL_AMP_SEX_COUNTS,
    REAL_AMP_STATE_COUNTS,
    STATE_FRACTIONS_BY_TIMEPOINT,
    TIMEPOINT_OF_BATCH,
    simulate_wing_disc,
)

AMP_DATA = Path(__file__).parents[1] / ".." / "shared" / "data" / "drosophila_wing_disc_amp"

# The test configuration of the workflow uses a few hundred cells and genes.
N_CELLS, N_GENES = 500, 400


@pytest.fixture(scope="module")
def small():
    return simulate_wing_disc(n_cells=N_CELLS, n_genes=N_GENES, seed=0)


@pytest.fixture(scope="module")
def amp_metadata() -> pd.DataFrame:
    path = AMP_DATA / "Everetts_Worley_et_al_Metadata.csv"
    if not path.is_file():
        pytest.skip(f"the real metadata {path} is absent")
    metadata = pd.read_csv(path)
    return metadata[metadata["Cell_Type"] == "AMP"]


def _log_normalized(counts: sp.csr_matrix) -> np.ndarray:
    """Library-size normalization to the median total, then log1p: ``(n_cells, n_genes)``."""
    dense = counts.toarray().astype(np.float64)
    totals = dense.sum(axis=1, keepdims=True)
    return np.log1p(dense / totals * np.median(totals))


# ---- structure ---------------------------------------------------------------------------


def test_shape_storage_and_integer_counts(small) -> None:
    assert small.shape == (N_CELLS, N_GENES)
    for matrix in (small.X, small.layers["counts"]):
        assert isinstance(matrix, sp.csr_matrix)
        assert matrix.dtype == np.float32
        assert matrix.data.min() >= 0
        np.testing.assert_array_equal(matrix.data, np.round(matrix.data))
    assert (small.X != small.layers["counts"]).nnz == 0
    assert small.X is not small.layers["counts"]
    assert small.var_names.is_unique and small.obs_names.is_unique


def test_obs_ground_truth_columns(small) -> None:
    obs = small.obs
    assert list(obs["batch"].cat.categories) == ["96H1", "96H2", "120H1", "120H2"]
    assert list(obs["timepoint"].cat.categories) == ["96H", "120H"]
    assert list(obs["cell_state"].cat.categories) == list(CELL_STATES)
    assert list(obs["sex"].cat.categories) == ["FEMALE", "MALE"]
    assert (obs["timepoint"].astype(str) == obs["batch"].astype(str).map(TIMEPOINT_OF_BATCH)).all()
    direct = obs["cell_state"] == "DIR_1"
    assert ((obs["domain"] == "Direct") == direct).all()
    assert obs["cycle_phase"].between(0.0, 2.0 * math.pi).all()
    for score in ("cycle_score", "s_score", "g2m_score"):
        assert obs[score].between(0.0, 1.0).all()
    # The cycle score covers G1 (near 0) to full S or G2/M activity (near 1).
    assert obs["cycle_score"].min() < 0.1 and obs["cycle_score"].max() > 0.9


def test_median_library_size_is_10x_like() -> None:
    adata = simulate_wing_disc(n_cells=400, n_genes=2000, seed=3)
    median_total = float(np.median(np.asarray(adata.X.sum(axis=1)).ravel()))
    assert 3000 <= median_total <= 6000, median_total


# ---- determinism -------------------------------------------------------------------------


def test_same_seed_same_data_other_seed_other_data(small) -> None:
    again = simulate_wing_disc(n_cells=N_CELLS, n_genes=N_GENES, seed=0)
    assert (small.X != again.X).nnz == 0
    pd.testing.assert_frame_equal(small.obs, again.obs)
    pd.testing.assert_frame_equal(small.var, again.var)

    other = simulate_wing_disc(n_cells=N_CELLS, n_genes=N_GENES, seed=1)
    assert (small.X != other.X).nnz > 0.5 * small.X.nnz
    assert not np.allclose(small.obs["cycle_phase"], other.obs["cycle_phase"])
    # Gene names do not depend on the seed, so simulations can be compared gene by gene.
    assert list(small.var_names) == list(other.var_names)


# ---- genes -------------------------------------------------------------------------------


def test_gene_lists_and_roles(small) -> None:
    markers = small.uns["marker_genes"]
    nuisance = small.uns["nuisance_genes"]
    assert len(markers) == len(set(markers)) == 31
    assert len(nuisance) == len(set(nuisance)) == 55
    assert "vg" in markers and "ct" in markers
    assert {"PCNA", "lncRNA:roX1", "lncRNA:roX2"} <= set(nuisance)
    assert set(small.uns["cell_cycle_genes"]) | set(small.uns["sex_genes"]) == set(nuisance)
    assert not set(markers) & set(nuisance)

    role = small.var["gene_role"].astype(str)
    assert set(role.unique()) == {"marker", "cell_cycle", "sex", "background"}
    assert set(role.index[role == "marker"]) == set(markers)
    assert list(role.index[role == "cell_cycle"]) == list(CELL_CYCLE_GENES)
    assert set(role.index[role == "sex"]) == set(small.uns["sex_genes"])
    background = role.index[role == "background"]
    assert len(background) == N_GENES - 31 - 55
    assert all(name.startswith("CG") and name[2:].isdigit() for name in background)


def test_cell_cycle_genes_are_those_of_the_study() -> None:
    path = AMP_DATA / "cell_cycle_genes.csv"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    real = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    assert len(real) == 52
    assert list(CELL_CYCLE_GENES) == real


def test_rox_genes_are_expressed_only_in_males(small) -> None:
    male = (small.obs["sex"] == "MALE").to_numpy()
    for gene in ("lncRNA:roX1", "lncRNA:roX2"):
        counts = small[:, gene].X.toarray().ravel()
        assert np.mean(counts[male] > 0) > 0.9
        assert np.mean(counts[~male] > 0) < 0.1  # ambient-level leftovers at most
        assert counts[~male].mean() < 0.01 * counts[male].mean()


def test_cell_cycle_genes_follow_their_phase(small) -> None:
    log_expression = _log_normalized(small.X)
    names = small.var_names
    is_cycle = (small.var["gene_role"] == "cell_cycle").to_numpy()
    is_g2m = (small.var["cycle_program"] == "G2M").to_numpy()
    # Averaged over its genes, each phase program tracks its true activity closely.
    s_program = log_expression[:, is_cycle & ~is_g2m].mean(axis=1)
    g2m_program = log_expression[:, is_cycle & is_g2m].mean(axis=1)
    assert np.corrcoef(s_program, small.obs["s_score"])[0, 1] > 0.8
    assert np.corrcoef(g2m_program, small.obs["g2m_score"])[0, 1] > 0.8
    # PCNA, the paper's example cycle gene, is an S-phase gene here.
    pcna = log_expression[:, names.get_loc("PCNA")]
    assert small.var.loc["PCNA", "cycle_program"] == "S"
    assert np.corrcoef(pcna, small.obs["s_score"])[0, 1] > 0.3


# ---- real proportions --------------------------------------------------------------------


def test_embedded_constants_match_the_real_metadata(amp_metadata) -> None:
    assert len(amp_metadata) == 19885
    assert set(amp_metadata["Annotated_Clusters"]) == set(CELL_STATES)
    assert set(amp_metadata["Batch_ID"]) == set(BATCHES)
    state_counts = pd.crosstab(amp_metadata["Annotated_Clusters"], amp_metadata["Batch_ID"])
    for state in CELL_STATES:
        for batch in BATCHES:
            assert REAL_AMP_STATE_COUNTS[state][batch] == state_counts.loc[state, batch]
    sex_counts = pd.crosstab(amp_metadata["Batch_ID"], amp_metadata["Cell_Sex"])
    for batch in BATCHES:
        for sex in ("FEMALE", "MALE"):
            assert REAL_AMP_SEX_COUNTS[batch][sex] == sex_counts.loc[batch, sex]
    timepoints = amp_metadata.groupby("Batch_ID")["Timepoint"].unique()
    assert {b: list(tp) for b, tp in timepoints.items()} == {
        b: [tp] for b, tp in TIMEPOINT_OF_BATCH.items()
    }
    domains = amp_metadata.groupby("Annotated_Clusters")["Grouped_Domains"].unique()
    assert {s: list(d) for s, d in domains.items()} == {
        s: [wing_disc.DOMAIN_OF_STATE[s]] for s in CELL_STATES
    }
    # The derived proportions the simulator samples from.
    batch_share = amp_metadata["Batch_ID"].value_counts(normalize=True)
    for batch in BATCHES:
        assert BATCH_FRACTIONS[batch] == pytest.approx(batch_share[batch])
        in_batch = amp_metadata[amp_metadata["Batch_ID"] == batch]
        assert MALE_FRACTION_BY_BATCH[batch] == pytest.approx(
            (in_batch["Cell_Sex"] == "MALE").mean()
        )
    for timepoint, group in amp_metadata.groupby("Timepoint"):
        share = group["Annotated_Clusters"].value_counts(normalize=True)
        for state in CELL_STATES:
            assert STATE_FRACTIONS_BY_TIMEPOINT[timepoint][state] == pytest.approx(share[state])


def test_simulated_proportions_match_the_real_ones_within_sampling_error() -> None:
    n_cells = 6000
    adata = simulate_wing_disc(n_cells=n_cells, n_genes=MIN_GENES, seed=7)
    obs = adata.obs
    # Batch sizes are allocated, not sampled: off by at most one cell.
    batch_counts = obs["batch"].value_counts()
    for batch in BATCHES:
        assert abs(batch_counts[batch] - n_cells * BATCH_FRACTIONS[batch]) < 1.0

    def within_four_standard_errors(observed: float, expected: float, n: int) -> bool:
        return abs(observed - expected) <= 4.0 * math.sqrt(expected * (1 - expected) / n) + 1e-9

    for timepoint, group in obs.groupby("timepoint", observed=True):
        share = group["cell_state"].value_counts(normalize=True)
        for state in CELL_STATES:
            expected = STATE_FRACTIONS_BY_TIMEPOINT[str(timepoint)][state]
            assert within_four_standard_errors(share[state], expected, len(group)), state
    for batch, group in obs.groupby("batch", observed=True):
        male_share = float((group["sex"] == "MALE").mean())
        assert within_four_standard_errors(
            male_share, MALE_FRACTION_BY_BATCH[str(batch)], len(group)
        )
    # Time point shifts state frequencies as in the atlas: IND_3 is twice as common at 96 h.
    by_time = pd.crosstab(obs["cell_state"], obs["timepoint"], normalize="columns")
    assert by_time.loc["IND_3", "96H"] > 1.5 * by_time.loc["IND_3", "120H"]


# ---- signal ------------------------------------------------------------------------------


def test_cycle_structures_pca_while_cell_state_stays_recoverable(small) -> None:
    log_expression = _log_normalized(small.X)
    scaled = (log_expression - log_expression.mean(axis=0)) / (log_expression.std(axis=0) + 1e-8)
    components = PCA(n_components=20, random_state=0).fit_transform(scaled)
    obs = small.obs

    cycle_score = obs["cycle_score"].to_numpy()
    cycle_correlations = [abs(np.corrcoef(components[:, k], cycle_score)[0, 1]) for k in range(10)]
    assert max(cycle_correlations) > 0.5, cycle_correlations

    folds = KFold(n_splits=5, shuffle=True, random_state=0)

    def knn_accuracy(labels: np.ndarray) -> float:
        classifier = KNeighborsClassifier(n_neighbors=15)
        return float(cross_val_score(classifier, components, labels, cv=folds).mean())

    state_accuracy = knn_accuracy(obs["cell_state"].astype(str).to_numpy())
    chance = float(obs["cell_state"].value_counts(normalize=True).max())
    assert state_accuracy > max(0.4, 2.5 * chance), (state_accuracy, chance)
    assert knn_accuracy(obs["domain"].astype(str).to_numpy()) > 0.9
    # Sex is a nuisance the uncorrected space also carries.
    male = (obs["sex"] == "MALE").to_numpy()
    assert knn_accuracy(male) > max(male.mean(), 1 - male.mean()) + 0.1


# ---- bad input ---------------------------------------------------------------------------


def test_too_few_genes_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=rf"n_genes=100 is too small.*n_genes >= {MIN_GENES}"):
        simulate_wing_disc(n_cells=50, n_genes=100)


def test_too_few_cells_and_non_integers_are_clear_errors() -> None:
    with pytest.raises(ValueError, match=r"n_cells=3 is too small: need at least 4 cells"):
        simulate_wing_disc(n_cells=3, n_genes=MIN_GENES)
    with pytest.raises(ValueError, match=r"n_cells must be an integer, got 10.5"):
        simulate_wing_disc(n_cells=10.5, n_genes=MIN_GENES)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"seed must be non-negative, got -1"):
        simulate_wing_disc(n_cells=10, n_genes=MIN_GENES, seed=-1)
