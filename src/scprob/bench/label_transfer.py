"""Cell-type label transfer from a reference to a query through a shared latent space.

Paper Fig. 3 and Methods: a random forest (scikit-learn, default parameters except
``class_weight="balanced_subsample"``) is trained on the latent representations of the
reference cells, with the reference's annotations as labels, and labels the query cells
from their latent representations. Under scArches the reference latents do not change when
the query is mapped, so the classifier belongs to the reference model and never sees a
query cell.

This module holds the study's testable logic, free of any workflow:

* :func:`transfer_labels`: fit the forest on the reference, predict the query;
* :func:`label_matrix`: the row-normalised contingency matrix of two labellings, i.e. the
  confusion matrix of Fig. 3d (predicted vs held-out annotations) and the agreement
  matrix of Fig. 3h (scArches vs de novo predictions);
* :func:`transfer_scores`: accuracy, macro-F1 and adjusted mutual information;
* :func:`subset_frequencies`: per-donor frequencies of chosen subsets (Fig. 3f,g).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score, adjusted_mutual_info_score, f1_score


def _as_labels(labels: Sequence[str] | np.ndarray | pd.Series, name: str) -> np.ndarray:
    """``labels`` as a 1-D array of strings; missing labels are refused."""
    values = pd.Series(np.asarray(labels, dtype=object).ravel())
    if values.isna().any():
        raise ValueError(
            f"{name} holds {int(values.isna().sum())} missing labels; drop those cells or "
            "give them a label first."
        )
    return values.astype(str).to_numpy()


def _check_latent(latent: np.ndarray, name: str) -> np.ndarray:
    latent = np.asarray(latent, dtype=np.float64)
    if latent.ndim != 2 or latent.shape[0] == 0 or latent.shape[1] == 0:
        raise ValueError(
            f"{name} must be a non-empty (n_cells, n_latent) matrix, got shape "
            f"{latent.shape}."
        )
    if not np.isfinite(latent).all():
        raise ValueError(
            f"{name} holds NaN or infinite values: the model that produced it diverged; "
            "check its training history."
        )
    return latent


def transfer_labels(
    reference_latent: np.ndarray,
    reference_labels: Sequence[str] | np.ndarray | pd.Series,
    query_latent: np.ndarray,
    seed: int = 0,
    n_estimators: int = 100,
    n_jobs: int = 1,
) -> np.ndarray:
    """Query labels ``(n_query,)`` predicted by a random forest trained on the reference.

    ``reference_latent`` ``(n_reference, n_latent)`` and ``reference_labels``
    ``(n_reference,)`` train ``RandomForestClassifier(class_weight="balanced_subsample",
    random_state=seed)``; ``query_latent`` ``(n_query, n_latent)`` must live in the same
    latent space (same model, same dimensions). ``balanced_subsample`` re-weights each
    tree's bootstrap sample by inverse class frequency, so rare subsets such as MAIT cells
    are not drowned by the abundant types. The result is deterministic for a given seed.
    """
    reference_latent = _check_latent(reference_latent, "reference_latent")
    query_latent = _check_latent(query_latent, "query_latent")
    labels = _as_labels(reference_labels, "reference_labels")
    if labels.shape[0] != reference_latent.shape[0]:
        raise ValueError(
            f"reference_labels has {labels.shape[0]} entries but reference_latent has "
            f"{reference_latent.shape[0]} rows: give one label per reference cell."
        )
    if query_latent.shape[1] != reference_latent.shape[1]:
        raise ValueError(
            f"query_latent has {query_latent.shape[1]} dimensions but reference_latent has "
            f"{reference_latent.shape[1]}: both must come from the same model."
        )
    if len(np.unique(labels)) < 2:
        raise ValueError(
            "reference_labels hold a single cell type: a classifier needs at least two."
        )
    if n_estimators < 1:
        raise ValueError(f"n_estimators must be at least 1, got {n_estimators}.")
    forest = RandomForestClassifier(
        n_estimators=n_estimators,
        class_weight="balanced_subsample",
        random_state=seed,
        n_jobs=n_jobs,
    )
    forest.fit(reference_latent, labels)
    return np.asarray(forest.predict(query_latent), dtype=object).astype(str)


def label_matrix(
    row_labels: Sequence[str] | np.ndarray | pd.Series,
    column_labels: Sequence[str] | np.ndarray | pd.Series,
    row_order: Sequence[str] | None = None,
    column_order: Sequence[str] | None = None,
    normalize: bool = True,
) -> pd.DataFrame:
    """Contingency matrix of two labellings of the same cells, rows normalised to sum to 1.

    Entry ``(r, c)`` is the share of the cells labelled ``r`` by ``row_labels`` that
    ``column_labels`` labels ``c`` (with ``normalize=False``: the number of such cells).
    Paper Fig. 3d puts the scArches predictions in the rows and the held-out annotations
    in the columns; Fig. 3h the scArches predictions against the de novo predictions.

    ``row_order`` / ``column_order`` fix the rows / columns (e.g. every reference cell
    type, so two matrices line up); a label outside the given order is refused, an
    ordered label no cell carries gives a row (or column) of zeros. By default: the labels
    present, sorted. Returns a ``(n_rows, n_columns)`` DataFrame indexed by the labels.
    """
    rows = _as_labels(row_labels, "row_labels")
    columns = _as_labels(column_labels, "column_labels")
    if rows.shape != columns.shape:
        raise ValueError(
            f"row_labels has {rows.shape[0]} entries and column_labels {columns.shape[0]}: "
            "both must label the same cells, in the same order."
        )
    row_order = sorted(set(rows)) if row_order is None else [str(r) for r in row_order]
    column_order = (sorted(set(columns)) if column_order is None
                    else [str(c) for c in column_order])
    for labels, order, name in ((rows, row_order, "row"), (columns, column_order, "column")):
        unknown = sorted(set(labels) - set(order))
        if unknown:
            raise ValueError(
                f"{name}_labels hold {unknown}, which {name}_order lacks; add them to "
                f"{name}_order or leave it None."
            )
    counts = pd.crosstab(pd.Categorical(rows, categories=row_order),
                         pd.Categorical(columns, categories=column_order), dropna=False)
    counts = counts.reindex(index=row_order, columns=column_order, fill_value=0)
    counts.index.name, counts.columns.name = "row", "column"
    if not normalize:
        return counts.astype(np.int64)
    totals = counts.sum(axis=1).to_numpy(dtype=np.float64)[:, None]
    # A label no cell carries keeps a row of zeros instead of 0/0.
    shares = np.divide(counts.to_numpy(dtype=np.float64), totals,
                       out=np.zeros(counts.shape), where=totals > 0)
    return pd.DataFrame(shares, index=counts.index, columns=counts.columns)


def transfer_scores(
    true_labels: Sequence[str] | np.ndarray | pd.Series,
    predicted_labels: Sequence[str] | np.ndarray | pd.Series,
) -> dict[str, float]:
    """Agreement of ``predicted_labels`` with ``true_labels`` (same cells, same order).

    ``accuracy``: share of cells labelled right. ``macro_f1``: F1 averaged over every label
    that occurs in either labelling, each label weighted equally, so rare subsets count as
    much as abundant ones (a label predicted but never true scores 0). ``ami``: adjusted
    mutual information, 1 for identical partitions (whatever the names), about 0 for
    independent ones; it compares partitions, so it also applies to two predictions.
    """
    true = _as_labels(true_labels, "true_labels")
    predicted = _as_labels(predicted_labels, "predicted_labels")
    if true.shape != predicted.shape:
        raise ValueError(
            f"true_labels has {true.shape[0]} entries and predicted_labels "
            f"{predicted.shape[0]}: both must label the same cells, in the same order."
        )
    if true.size == 0:
        raise ValueError("no cells to score: the label arrays are empty.")
    return {
        "accuracy": float(accuracy_score(true, predicted)),
        "macro_f1": float(f1_score(true, predicted, average="macro", zero_division=0.0)),
        "ami": float(adjusted_mutual_info_score(true, predicted)),
    }


def subset_frequencies(
    labels: Sequence[str] | np.ndarray | pd.Series,
    donors: Sequence[str] | np.ndarray | pd.Series,
    conditions: Sequence[str] | np.ndarray | pd.Series,
    subsets: Sequence[str],
) -> pd.DataFrame:
    """Per donor, the frequency of each subset among the donor's cells (Fig. 3f,g).

    Paper Methods: the frequency of a subset "given the total number of observed cells per
    donor", i.e. ``n_subset / n_cells`` over all of the donor's cells, not only its T
    cells. ``labels``, ``donors`` and ``conditions`` are ``(n_cells,)`` and label the same
    cells; each donor must have one condition. Returns one row per (donor, subset) with
    ``donor``, ``condition``, ``subset``, ``n_cells``, ``n_subset``, ``frequency``; a donor
    without cells of a subset gets frequency 0. Donors keep their order of appearance.
    """
    if len({len(labels), len(donors), len(conditions)}) != 1:
        raise ValueError(
            f"labels, donors and conditions have {len(labels)}, {len(donors)} and "
            f"{len(conditions)} entries: give one of each per cell."
        )
    frame = pd.DataFrame({
        "label": _as_labels(labels, "labels"),
        "donor": _as_labels(donors, "donors"),
        "condition": _as_labels(conditions, "conditions"),
    })
    if not subsets:
        raise ValueError("subsets is empty: name at least one label, e.g. ['MAIT'].")
    conditions_per_donor = frame.groupby("donor", sort=False)["condition"].nunique()
    mixed = conditions_per_donor[conditions_per_donor > 1]
    if not mixed.empty:
        raise ValueError(
            f"donors {list(mixed.index)} have cells of several conditions; frequencies "
            "per donor need one condition per donor."
        )
    donors_frame = frame.groupby("donor", sort=False).agg(
        condition=("condition", "first"), n_cells=("label", "size")).reset_index()
    rows = []
    for subset in subsets:
        in_subset = frame["label"].eq(str(subset)).groupby(frame["donor"], sort=False).sum()
        part = donors_frame.assign(
            subset=str(subset),
            n_subset=in_subset.reindex(donors_frame["donor"]).to_numpy(dtype=np.int64),
        )
        rows.append(part)
    table = pd.concat(rows, ignore_index=True)
    table["frequency"] = table["n_subset"] / table["n_cells"]
    return table[["donor", "condition", "subset", "n_cells", "n_subset", "frequency"]]
