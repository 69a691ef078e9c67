"""Label transfer of the scArches study (scprob.bench.label_transfer) on synthetic latents
whose answers are known: separated clusters are labelled perfectly, matrices are row
normalised and line up with a fixed order, scores reach their bounds, and per-donor
frequencies are counted over all of a donor's cells."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scprob.bench.label_transfer import (
    label_matrix,
    subset_frequencies,
    transfer_labels,
    transfer_scores,
)

TYPES = ["B", "Mono", "NK", "T"]


def separated_clusters(
    n_per_type: int, seed: int, spread: float = 0.1
) -> tuple[np.ndarray, np.ndarray]:
    """Latents ``(4 * n_per_type, 5)``: one tight cluster per type, 10 units apart."""
    rng = np.random.default_rng(seed)
    centres = 10.0 * np.eye(len(TYPES), 5)
    labels = np.repeat(TYPES, n_per_type)
    latent = centres[np.repeat(np.arange(len(TYPES)), n_per_type)]
    return latent + rng.normal(0.0, spread, latent.shape), labels


def test_separated_clusters_are_transferred_perfectly() -> None:
    reference, reference_labels = separated_clusters(50, seed=0)
    query, query_labels = separated_clusters(30, seed=1)
    predicted = transfer_labels(reference, reference_labels, query, seed=0, n_estimators=20)
    assert predicted.shape == (120,)
    assert (predicted == query_labels).all()

    scores = transfer_scores(query_labels, predicted)
    assert scores == {"accuracy": 1.0, "macro_f1": 1.0, "ami": 1.0}
    confusion = label_matrix(predicted, query_labels)
    assert confusion.index.tolist() == TYPES and confusion.columns.tolist() == TYPES
    np.testing.assert_array_equal(confusion.to_numpy(), np.eye(len(TYPES)))


def test_a_rare_type_is_still_found_thanks_to_balanced_subsampling() -> None:
    reference, reference_labels = separated_clusters(100, seed=0)
    keep = np.r_[0:300, 300:305]  # only 5 T cells in the reference
    predicted = transfer_labels(reference[keep], reference_labels[keep],
                                separated_clusters(20, seed=2)[0], seed=0, n_estimators=30)
    assert (predicted[60:] == "T").all()


def test_transfer_is_deterministic_under_a_seed() -> None:
    reference, labels = separated_clusters(40, seed=0, spread=6.0)  # overlapping clusters
    query, _ = separated_clusters(40, seed=3, spread=6.0)
    first = transfer_labels(reference, labels, query, seed=7, n_estimators=15)
    assert (first == transfer_labels(reference, labels, query, seed=7, n_estimators=15)).all()
    assert (first != transfer_labels(reference, labels, query, seed=8, n_estimators=15)).any()


def test_transfer_rejects_mismatched_inputs() -> None:
    reference, labels = separated_clusters(5, seed=0)
    with pytest.raises(ValueError, match="reference_labels has 19 entries but reference_latent"
                                         " has 20 rows"):
        transfer_labels(reference, labels[:-1], reference)
    with pytest.raises(ValueError, match="query_latent has 4 dimensions but reference_latent "
                                         "has 5: both must come from the same model"):
        transfer_labels(reference, labels, reference[:, :4])
    with pytest.raises(ValueError, match="holds NaN or infinite values"):
        transfer_labels(reference, labels, np.full((2, 5), np.nan))
    with pytest.raises(ValueError, match="a single cell type"):
        transfer_labels(reference, np.full(20, "T"), reference)
    with pytest.raises(ValueError, match="reference_labels holds 1 missing labels"):
        transfer_labels(reference, np.r_[labels[:-1], [None]], reference)


def test_label_matrix_rows_sum_to_one_and_count_right() -> None:
    rows = ["A", "A", "A", "B", "B", "C"]
    columns = ["A", "A", "B", "B", "C", "C"]
    counts = label_matrix(rows, columns, normalize=False)
    assert counts.loc["A"].tolist() == [2, 1, 0]
    assert counts.loc["B"].tolist() == [0, 1, 1]
    shares = label_matrix(rows, columns)
    np.testing.assert_allclose(shares.sum(axis=1), 1.0)
    np.testing.assert_allclose(shares.loc["A"], [2 / 3, 1 / 3, 0.0])

    rng = np.random.default_rng(0)
    random_rows, random_columns = rng.choice(TYPES, 500), rng.choice(TYPES[:3], 500)
    np.testing.assert_allclose(label_matrix(random_rows, random_columns).sum(axis=1), 1.0)


def test_label_matrix_follows_a_fixed_order_with_zero_rows_for_absent_labels() -> None:
    matrix = label_matrix(["B", "B"], ["B", "T"], row_order=TYPES, column_order=TYPES)
    assert matrix.shape == (4, 4)
    assert matrix.index.tolist() == TYPES and matrix.columns.tolist() == TYPES
    assert matrix.loc["B", "B"] == 0.5 and matrix.loc["B", "T"] == 0.5
    assert (matrix.drop(index="B").to_numpy() == 0.0).all()  # no 0/0 NaN
    with pytest.raises(ValueError, match=r"column_labels hold \['X'\], which column_order "
                                         "lacks"):
        label_matrix(["B"], ["X"], column_order=TYPES)
    with pytest.raises(ValueError, match="row_labels has 2 entries and column_labels 1"):
        label_matrix(["B", "T"], ["B"])


def test_scores_of_identical_and_renamed_partitions() -> None:
    labels = np.repeat(TYPES, [5, 10, 20, 40])
    assert transfer_scores(labels, labels) == {"accuracy": 1.0, "macro_f1": 1.0, "ami": 1.0}
    renamed = pd.Series(labels).map({t: t.lower() for t in TYPES}).to_numpy()
    scores = transfer_scores(labels, renamed)
    # The same partition under other names: AMI 1, but no label is right.
    assert scores["ami"] == pytest.approx(1.0)
    assert scores["accuracy"] == 0.0 and scores["macro_f1"] == 0.0


def test_macro_f1_weights_a_rare_type_like_an_abundant_one() -> None:
    true = np.array(["T"] * 90 + ["MAIT"] * 10)
    everything_t = np.array(["T"] * 100)
    scores = transfer_scores(true, everything_t)
    assert scores["accuracy"] == pytest.approx(0.9)
    # F1(T) = 2·90/(2·90 + 10) ≈ 0.947, F1(MAIT) = 0.
    assert scores["macro_f1"] == pytest.approx((180 / 190 + 0.0) / 2)
    assert scores["ami"] == pytest.approx(0.0)


def test_subset_frequencies_per_donor_over_all_their_cells() -> None:
    labels = ["MAIT", "T", "T", "T",  # HD01: 1 MAIT in 4 cells
              "MAIT", "MAIT", "CD4 CTL", "B", "B", "B",  # PT01: 2/6 MAIT, 1/6 CTL
              "B", "B"]  # PT02: none
    donors = ["HD01"] * 4 + ["PT01"] * 6 + ["PT02"] * 2
    conditions = ["healthy"] * 4 + ["moderate"] * 6 + ["severe"] * 2
    table = subset_frequencies(labels, donors, conditions, ["MAIT", "CD4 CTL"])
    assert table.columns.tolist() == ["donor", "condition", "subset", "n_cells", "n_subset",
                                      "frequency"]
    mait = table[table["subset"] == "MAIT"].set_index("donor")
    assert mait["frequency"].to_dict() == {"HD01": 0.25, "PT01": 2 / 6, "PT02": 0.0}
    assert mait["n_cells"].to_dict() == {"HD01": 4, "PT01": 6, "PT02": 2}
    assert mait["condition"].to_dict() == {"HD01": "healthy", "PT01": "moderate",
                                           "PT02": "severe"}
    ctl = table[table["subset"] == "CD4 CTL"].set_index("donor")["frequency"]
    assert ctl.to_dict() == {"HD01": 0.0, "PT01": 1 / 6, "PT02": 0.0}


def test_subset_frequencies_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="have 2, 1 and 2 entries"):
        subset_frequencies(["T", "T"], ["HD01"], ["healthy"] * 2, ["T"])
    with pytest.raises(ValueError, match=r"donors \['HD01'\] have cells of several conditions"):
        subset_frequencies(["T", "T"], ["HD01"] * 2, ["healthy", "severe"], ["T"])
    with pytest.raises(ValueError, match="subsets is empty"):
        subset_frequencies(["T"], ["HD01"], ["healthy"], [])
