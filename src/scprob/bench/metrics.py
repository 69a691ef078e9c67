"""Scores of a representation: Geary's C (paper Fig. 2e,f) and ground-truth scores.

Everything that can be is computed from a method's neighbour graph (its ``connectivities``,
``(n_cells, n_cells)``), so graph-only methods (bbknn) are scored like embeddings:

- **Geary's C** of a gene on the graph: 0 = the gene is smooth over neighbours (the graph
  keeps its signal), about 1 = unrelated to the graph. Marker genes should score low,
  the nuisance genes a method conditioned on should score high.
- **kNN scores** against simulated truth: a neighbour-weighted vote (labels) or mean
  (continuous values), each cell predicted from its neighbours only. High accuracy for the
  cell state = biology kept; high accuracy / R² for a nuisance covariate = it leaks.
- **batch mixing entropy**: how evenly each cell's neighbours spread over batches.
- **linear probes** (embeddings only): cross-validated ridge / logistic regression from the
  embedding, which sees linear leakage a kNN vote can miss.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from scprob.bench.baselines import Representation


def _neighbor_weights(connectivities: sp.spmatrix, n_cells: int) -> sp.csr_matrix:
    """Non-negative CSR weights with the diagonal removed (a cell never votes for itself)."""
    if connectivities.shape != (n_cells, n_cells):
        raise ValueError(
            f"connectivities must be (n_cells, n_cells) = ({n_cells}, {n_cells}) to match "
            f"the values, got {connectivities.shape}."
        )
    weights = sp.csr_matrix(connectivities, dtype=np.float64, copy=True)
    if weights.nnz and weights.data.min() < 0:
        raise ValueError("connectivities must be non-negative edge weights.")
    weights.setdiag(0)
    weights.eliminate_zeros()
    return weights


def _label_codes(labels: Sequence | np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes ``(n_cells,)`` and sorted categories of a categorical column."""
    series = pd.Series(np.asarray(labels)) if not isinstance(labels, pd.Series) else labels
    if pd.api.types.is_float_dtype(series):
        raise ValueError(
            f"{what} are floating-point numbers, not categories; score a continuous column "
            "with continuous_knn_r2 / linear_probe_r2, or pass it as a categorical."
        )
    codes, uniques = pd.factorize(series.reset_index(drop=True), sort=True)
    if (codes < 0).any():
        raise ValueError(f"{what} hold missing values; drop or fill those cells.")
    return codes, np.asarray(uniques)


def gearys_c(connectivities: sp.spmatrix, values: np.ndarray | sp.spmatrix) -> np.ndarray:
    """Geary's C of each column of ``values`` on the graph (``scanpy.metrics.gearys_c``).

    ``C = (N−1) Σ_ij w_ij (x_i−x_j)² / (2 W Σ_i (x_i−x̄)²)``, ``W = Σ_ij w_ij``.
    ``connectivities``: ``(n_cells, n_cells)`` weights; ``values``: ``(n_cells, n_genes)``
    (e.g. log-normalised expression). Returns ``(n_genes,)``; a gene constant over the
    cells has no autocorrelation to measure (0/0) and gets NaN.
    """
    import scanpy as sc

    dense = values.toarray() if sp.issparse(values) else np.asarray(values)
    dense = dense.astype(np.float64)
    if dense.ndim == 1:
        dense = dense[:, None]
    if dense.ndim != 2:
        raise ValueError(f"values must be (n_cells, n_genes), got shape {dense.shape}.")
    n_cells = dense.shape[0]
    graph = sp.csr_matrix(connectivities, dtype=np.float64)
    if graph.shape != (n_cells, n_cells):
        raise ValueError(
            f"connectivities must be (n_cells, n_cells) = ({n_cells}, {n_cells}) to match "
            f"the values, got {graph.shape}."
        )
    constant = np.ptp(dense, axis=0) == 0
    result = np.full(dense.shape[1], np.nan)
    if (~constant).any():
        # scanpy wants (n_genes, n_cells).
        result[~constant] = sc.metrics.gearys_c(graph, np.ascontiguousarray(dense[:, ~constant].T))
    return result


def label_knn_accuracy(connectivities: sp.spmatrix, labels: Sequence | np.ndarray) -> float:
    """Fraction of cells whose label wins the weighted vote of their neighbours.

    ``labels``: ``(n_cells,)`` categories. Each cell's own weight is excluded; ties go to
    the first category in sorted order; a cell with no neighbours counts as wrong.
    """
    codes, _ = _label_codes(labels, "labels")
    weights = _neighbor_weights(connectivities, codes.size)
    one_hot = sp.csr_matrix(
        (np.ones(codes.size), (np.arange(codes.size), codes)), shape=(codes.size, codes.max() + 1)
    )
    votes = (weights @ one_hot).toarray()
    has_neighbors = votes.sum(axis=1) > 0
    return float(np.mean(has_neighbors & (votes.argmax(axis=1) == codes)))


def _r2(truth: np.ndarray, prediction: np.ndarray) -> float:
    total = np.sum((truth - truth.mean()) ** 2)
    if total == 0:
        raise ValueError("values are constant over the cells; R² is undefined.")
    return float(1.0 - np.sum((truth - prediction) ** 2) / total)


def _continuous(values: Sequence[float] | np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"values must be (n_cells,), got shape {values.shape}.")
    if not np.all(np.isfinite(values)):
        raise ValueError("values hold NaN or infinite entries; drop or fill those cells.")
    return values


def continuous_knn_r2(connectivities: sp.spmatrix, values: Sequence[float] | np.ndarray) -> float:
    """R² of predicting ``values`` ``(n_cells,)`` by the weighted mean over neighbours.

    A cell with no neighbours is predicted by the overall mean. For a nuisance covariate
    (e.g. the cell-cycle score) high R² means the graph still encodes it.
    """
    values = _continuous(values)
    weights = _neighbor_weights(connectivities, values.size)
    weight_sums = np.asarray(weights.sum(axis=1)).ravel()
    prediction = np.full(values.size, values.mean())
    has_neighbors = weight_sums > 0
    prediction[has_neighbors] = (weights @ values)[has_neighbors] / weight_sums[has_neighbors]
    return _r2(values, prediction)


def batch_mixing_entropy(connectivities: sp.spmatrix, batches: Sequence | np.ndarray) -> float:
    """Mean over cells of the entropy of batch among a cell's neighbours, in [0, 1].

    Each cell's neighbour weights per batch are normalised to proportions; the entropy is
    divided by ``log(n_batches)``, so 1 = neighbours spread equally over all batches and
    0 = all neighbours in one batch. With unequal batch sizes, perfect mixing (neighbours
    in the global proportions) scores below 1. Cells with no neighbours are skipped.
    """
    codes, uniques = _label_codes(batches, "batches")
    if uniques.size < 2:
        raise ValueError("batch mixing needs at least 2 batches; got one.")
    weights = _neighbor_weights(connectivities, codes.size)
    one_hot = sp.csr_matrix(
        (np.ones(codes.size), (np.arange(codes.size), codes)), shape=(codes.size, uniques.size)
    )
    per_batch = (weights @ one_hot).toarray()
    totals = per_batch.sum(axis=1)
    per_batch = per_batch[totals > 0] / totals[totals > 0, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(per_batch > 0, per_batch * np.log(per_batch), 0.0)
    return float(np.mean(-terms.sum(axis=1)) / np.log(uniques.size))


def _probe_folds(n_cells: int, cv: int) -> None:
    if not 2 <= cv <= n_cells:
        raise ValueError(f"cv must be in [2, n_cells={n_cells}], got {cv}.")


def linear_probe_r2(
    embedding: np.ndarray, values: Sequence[float] | np.ndarray, cv: int = 5, seed: int = 0
) -> float:
    """Cross-validated R² of a ridge regression (alpha 1, standardised inputs).

    ``embedding``: ``(n_cells, n_dims)``; ``values``: ``(n_cells,)``. R² of the
    out-of-fold predictions over all cells (shuffled ``cv``-fold split, seeded).
    """
    values = _continuous(values)
    embedding = np.asarray(embedding, dtype=np.float64)
    if embedding.shape[0] != values.size:
        raise ValueError(f"embedding has {embedding.shape[0]} cells but values {values.size}.")
    _probe_folds(values.size, cv)
    model = make_pipeline(StandardScaler(), Ridge(alpha=1.0))
    folds = KFold(n_splits=cv, shuffle=True, random_state=seed)
    return _r2(values, cross_val_predict(model, embedding, values, cv=folds))


def linear_probe_accuracy(
    embedding: np.ndarray, labels: Sequence | np.ndarray, cv: int = 5, seed: int = 0
) -> float:
    """Cross-validated accuracy of a logistic regression (standardised inputs, L2, C = 1).

    ``embedding``: ``(n_cells, n_dims)``; ``labels``: ``(n_cells,)``. Accuracy of the
    out-of-fold predictions (stratified, shuffled ``cv``-fold split, seeded); every label
    needs at least ``cv`` cells.
    """
    codes, uniques = _label_codes(labels, "labels")
    embedding = np.asarray(embedding, dtype=np.float64)
    if embedding.shape[0] != codes.size:
        raise ValueError(f"embedding has {embedding.shape[0]} cells but labels {codes.size}.")
    _probe_folds(codes.size, cv)
    if uniques.size < 2:
        raise ValueError("labels hold a single category; accuracy would be trivially 1.")
    smallest = int(np.bincount(codes).min())
    if smallest < cv:
        raise ValueError(
            f"the rarest label has {smallest} cells, fewer than cv={cv} folds; lower cv."
        )
    # newton-cg converges in a few steps where lbfgs crawls on well-separated classes
    # (about 15× faster on 10 cell states, same accuracy).
    model = make_pipeline(
        StandardScaler(), LogisticRegression(solver="newton-cg", max_iter=1000)
    )
    folds = StratifiedKFold(n_splits=cv, shuffle=True, random_state=seed)
    return float(np.mean(cross_val_predict(model, embedding, codes, cv=folds) == codes))


def _check_truth_columns(rep: Representation, obs: pd.DataFrame, state_key: str,
                         continuous_keys: Sequence[str], categorical_keys: Sequence[str],
                         batch_key: str) -> None:
    """The truth columns exist, have the kind they were given as, and cover every cell."""
    needed = [state_key, *continuous_keys, *categorical_keys, batch_key]
    missing = [k for k in needed if k not in obs]
    if missing:
        raise ValueError(f"columns {missing} are not in obs (have {list(obs.columns)}).")
    _check_column_kinds(obs, [state_key, *categorical_keys, batch_key], continuous_keys)
    if len(obs) != rep.n_cells:
        raise ValueError(
            f"obs has {len(obs)} cells but the graph of {rep.name!r} has {rep.n_cells}."
        )


def _check_column_kinds(obs: pd.DataFrame, categorical_keys: Sequence[str],
                        continuous_keys: Sequence[str]) -> None:
    floats = [k for k in categorical_keys if pd.api.types.is_float_dtype(obs[k])]
    if floats:
        raise ValueError(
            f"obs columns {floats} are floating-point but were given as categorical; list "
            "continuous columns in nuisance_continuous_keys."
        )
    not_numeric = [k for k in continuous_keys if not pd.api.types.is_numeric_dtype(obs[k])]
    if not_numeric:
        raise ValueError(
            f"obs columns {not_numeric} are not numeric but were given as continuous; list "
            "categorical columns in nuisance_categorical_keys."
        )


def ground_truth_scores(
    rep: Representation,
    obs: pd.DataFrame,
    state_key: str,
    nuisance_continuous_keys: Sequence[str],
    nuisance_categorical_keys: Sequence[str],
    batch_key: str,
    cv: int = 5,
    seed: int = 0,
) -> dict[str, float]:
    """All ground-truth scores of one method, as one row of the results table.

    Keys are ``"<aim>_<score>:<obs column>"`` where the aim says which way is better:
    ``bio_`` (cell state kept, higher is better), ``leak_`` (nuisance still encoded, lower
    is better), ``mix_`` (batch mixing, higher is better). Probe scores are NaN for
    ``rep.graph_only`` methods: their embedding is not their output.
    """
    _check_truth_columns(rep, obs, state_key, nuisance_continuous_keys,
                         nuisance_categorical_keys, batch_key)
    graph = rep.connectivities
    probe = not rep.graph_only
    scores = {
        f"bio_knn_accuracy:{state_key}": label_knn_accuracy(graph, obs[state_key]),
        f"bio_probe_accuracy:{state_key}": (
            linear_probe_accuracy(rep.embedding, obs[state_key], cv, seed) if probe else np.nan
        ),
    }
    for key in nuisance_continuous_keys:
        scores[f"leak_knn_r2:{key}"] = continuous_knn_r2(graph, obs[key])
        scores[f"leak_probe_r2:{key}"] = (
            linear_probe_r2(rep.embedding, obs[key], cv, seed) if probe else np.nan
        )
    for key in nuisance_categorical_keys:
        scores[f"leak_knn_accuracy:{key}"] = label_knn_accuracy(graph, obs[key])
        scores[f"leak_probe_accuracy:{key}"] = (
            linear_probe_accuracy(rep.embedding, obs[key], cv, seed) if probe else np.nan
        )
    scores[f"mix_entropy:{batch_key}"] = batch_mixing_entropy(graph, obs[batch_key])
    return scores


def describe_score(name: str) -> tuple[str, str, bool]:
    """Split a :func:`ground_truth_scores` key into (score, obs column, higher_is_better)."""
    score, _, column = name.partition(":")
    aim, _, measure = score.partition("_")
    if aim not in {"bio", "leak", "mix"} or not column:
        raise ValueError(
            f"{name!r} is not a ground_truth_scores key ('<bio|leak|mix>_<score>:<column>')."
        )
    return measure, column, aim != "leak"

