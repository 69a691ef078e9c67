"""The CellAssign study (paper Supp. Fig. 6): marker-based annotation judged against the
true labels, beside the marker-sum baseline and scvi-tools' CellAssign, and its runtime as
the number of cells grows.

A method's *predictions* are a cells × types frame of assignment probabilities (the
baseline's are one-hot); its label is the row's argmax. The scores are the accuracy and
the macro-F1 against the truth in ``obs["cell_type"]``; the confusion matrix is row-
normalised (each true type's cells over the predicted types).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import anndata as ad
import pandas as pd
import torch
from sklearn.metrics import f1_score

from scprob.bench.claims import Claim, Criterion, claims_table
from scprob.bench.measure import measure
from scprob.bench.peers import require_interpreter, run_logged
from scprob.data.simulate.pbmc_markers import marker_sum_labels, simulate_pbmc_markers
from scprob.models.cellassign import CellAssign

TRUTH_KEY = "cell_type"
OURS, BASELINE = "scprob", "marker_sum"
# The peers the study can run: scvi-tools' CellAssign through
# workflow/scripts/peer_scvi_tools_cellassign.py, in its own environment.
PEERS = ("scvi_tools",)
# Supp. Fig. 6g's anchor: scvi-tools' CellAssign on 68,579 PBMCs in 114.6 s on a GPU (the
# original, 9,679 s); and how much faster than scvi-tools ours must be at every size.
PAPER_N_CELLS, PAPER_GPU_SECONDS, PAPER_ORIGINAL_SECONDS = 68_579, 114.6, 9_679.0
MIN_SPEEDUP = 3.0
# Two fits at the same optimum still label a few cells of tens of thousands differently,
# either way: "as accurate as the peer" allows that much (0.1 point, 34 cells in 34,289).
ACCURACY_TOLERANCE = 1e-3


# The obs column of published size factors (the paper's follicular and HGSC data).
SIZE_FACTOR_KEY = "size_factor"


def size_factor_key(adata: ad.AnnData) -> str | None:
    """``SIZE_FACTOR_KEY`` where ``adata`` carries published size factors, else None."""
    return SIZE_FACTOR_KEY if SIZE_FACTOR_KEY in adata.obs else None


def annotate(adata: ad.AnnData, markers: pd.DataFrame, settings: Mapping[str, Any],
             seed: int, design_key: str | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Our CellAssign on ``adata`` (its published ``obs["size_factor"]`` where it has one,
    else size factors from the total counts; ``design_key`` as the design's covariate),
    trained with ``settings`` (``CellAssign.train`` keywords): the probabilities and the
    timing of setup, fit and prediction together."""

    def fit() -> tuple[pd.DataFrame, int]:
        CellAssign.setup_anndata(adata, size_factor_key=size_factor_key(adata),
                                 batch_key=design_key)
        model = CellAssign(adata, markers, seed=seed)
        model.train(**settings)
        return model.predict(), len(model.history)

    (probabilities, epochs), timing = measure(fit)
    return probabilities, {"method": OURS, "seconds": timing.seconds,
                           "cpu_seconds": timing.cpu_seconds, "epochs": epochs,
                           "n_cells": adata.n_obs, "n_markers": markers.shape[0]}


def annotate_by_marker_sum(adata: ad.AnnData, markers: pd.DataFrame
                           ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The baseline's one-hot predictions: the type whose markers sum to the most counts."""
    labels, timing = measure(lambda: marker_sum_labels(adata, markers))
    one_hot = pd.DataFrame(
        (labels.to_numpy()[:, None] == markers.columns.to_numpy()[None]).astype(float),
        index=adata.obs_names, columns=markers.columns)
    return one_hot, {"method": BASELINE, "seconds": timing.seconds,
                     "cpu_seconds": timing.cpu_seconds, "n_cells": adata.n_obs,
                     "n_markers": markers.shape[0]}


def run_scvi_tools(python: str | os.PathLike[str], script: str | os.PathLike[str],
                   counts_path: str, markers_path: str, design_key: str | None, seed: int,
                   threads: int, work_dir: Path, timeout_s: int
                   ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """scvi-tools' CellAssign with its defaults on the same files, in its own environment:
    the probabilities and the fit's timing."""
    python = require_interpreter(python, "scvi-tools", "create it with `make peer-env`",
                                 "cellassign.peers")
    probabilities, timing = work_dir / "probabilities.csv", work_dir / "timing.json"
    command = [str(python), str(script), "--counts", counts_path, "--markers", markers_path,
               "--seed", str(seed), "--threads", str(threads),
               "--probabilities", str(probabilities), "--timing", str(timing)]
    if design_key is not None:
        command += ["--covariate", design_key]
    run_logged(command, timeout_s, {"OMP_NUM_THREADS": str(threads)},
               "scvi-tools' CellAssign")
    record = json.loads(timing.read_text())
    return pd.read_csv(probabilities, index_col="cell"), record


# Scores --------------------------------------------------------------------------------


def predicted_labels(probabilities: pd.DataFrame) -> pd.Series:
    """Each cell's most probable type."""
    return probabilities.idxmax(axis=1).astype(str)


def scores(truth: pd.Series, predicted: pd.Series) -> dict[str, float]:
    """Accuracy and macro-F1 (over the true types) of ``predicted`` against ``truth``,
    matched by cell name."""
    predicted = predicted.reindex(truth.index)
    if predicted.isna().any():
        raise ValueError(f"{int(predicted.isna().sum())} cells have no prediction.")
    truth, predicted = truth.astype(str), predicted.astype(str)
    return {"accuracy": float((truth == predicted).mean()),
            "macro_f1": float(f1_score(truth, predicted, labels=sorted(truth.unique()),
                                       average="macro", zero_division=0))}


def confusion(truth: pd.Series, predicted: pd.Series, types: Sequence[str]) -> pd.DataFrame:
    """Row-normalised confusion matrix, true types × ``types`` (predicted): each row is
    the share of that true type's cells given each label; true types in ``types`` order
    first, then any the markers do not name."""
    predicted = predicted.reindex(truth.index).astype(str)
    truth = truth.astype(str)
    rows = [t for t in types if t in set(truth)] + sorted(set(truth) - set(types))
    counts = pd.crosstab(truth, predicted).reindex(index=rows, columns=list(types),
                                                   fill_value=0)
    return counts.div(counts.sum(axis=1).replace(0, 1), axis=0)


def agreement(ours: pd.Series, other: pd.Series) -> float:
    """Share of cells given the same label by two methods."""
    other = other.reindex(ours.index)
    return float((ours.astype(str) == other.astype(str)).mean())


# The small-data ablation ---------------------------------------------------------------

# Each variant changes the initialisation and/or the optimisation of a fit: "published"
# is the published port's (scvi-tools'), "ours" the model's defaults; the others swap one
# of the two into the published fit, to find which one the small-data collapse comes from.
ABLATION_VARIANTS: dict[str, dict[str, Any]] = {
    "published": {"initialisation": "published", "lr": 3e-3, "min_steps_per_epoch": 1,
                  "early_stopping_patience": 15, "early_stopping_min_delta": 0.0},
    "published, our optimisation": {"initialisation": "published"},
    "published, our initialisation": {"initialisation": "ours", "lr": 3e-3,
                                      "min_steps_per_epoch": 1,
                                      "early_stopping_patience": 15,
                                      "early_stopping_min_delta": 0.0},
    "ours": {"initialisation": "ours"},
}


def published_initialisation(model: CellAssign) -> None:
    """The published port's initial values, on our module: ``β0`` the marker genes' mean
    counts standardised across genes (a z-score, not a log mean), ``log δ ~ U(−2, 2)``
    (so most ``δ`` start at the clamp), type logits ``~ N(0, 1)``."""
    data = model.cell_data()
    x = data.counts.toarray() if data.is_sparse else data.counts.numpy()
    means = x.mean(axis=0)
    m = model.module
    with torch.no_grad():
        m.beta0.copy_(torch.as_tensor((means - means.mean()) / means.std()))
        m.log_delta.uniform_(-2.0, 2.0)
        m.type_logits.normal_()


def fit_variant(adata: ad.AnnData, markers: pd.DataFrame, variant: str, seed: int
                ) -> tuple[pd.Series, int]:
    """One ablation fit (``adata`` set up): the labels and the epochs it ran."""
    settings = dict(ABLATION_VARIANTS[variant])
    initialisation = settings.pop("initialisation")
    model = CellAssign(adata, markers, seed=seed)
    if initialisation == "published":
        published_initialisation(model)
    model.train(**settings)
    return predicted_labels(model.predict()), len(model.history)


def ablation(sizes: Sequence[int], seeds: Sequence[int]) -> pd.DataFrame:
    """Every variant on PBMC-like data of each size and seed: accuracy, the baseline's,
    epochs and seconds, one row per fit."""
    rows = []
    for n_cells in sizes:
        for seed in seeds:
            adata, markers = simulate_pbmc_markers(n_cells, seed=seed)
            truth = adata.obs[TRUTH_KEY].astype(str)
            baseline = scores(truth, marker_sum_labels(adata, markers))["accuracy"]
            CellAssign.setup_anndata(adata)
            for variant in ABLATION_VARIANTS:
                (labels, epochs), timing = measure(
                    partial(fit_variant, adata, markers, variant, seed))
                rows.append({"n_cells": n_cells, "seed": seed, "variant": variant,
                             **scores(truth, labels), "marker_sum_accuracy": baseline,
                             "epochs": epochs, "seconds": timing.seconds})
    return pd.DataFrame(rows)


# Tables and claims ---------------------------------------------------------------------


def runtime_table(score_table: pd.DataFrame, runtime_datasets: Mapping[str, int]
                  ) -> pd.DataFrame:
    """The runtime panel's rows of ``score_table`` (data set → its number of cells), one
    per method and size: seconds, accuracy, macro-F1, and each method's ratio of seconds
    to ours."""
    rows = score_table[score_table["dataset"].isin(list(runtime_datasets))].copy()
    rows["n_cells"] = rows["dataset"].map(runtime_datasets)
    ours = rows[rows["method"] == OURS].set_index("n_cells")["seconds"]
    rows["seconds_over_ours"] = rows["seconds"] / rows["n_cells"].map(ours)
    columns = ["n_cells", "method", "seconds", "accuracy", "macro_f1", "seconds_over_ours"]
    return rows[columns].sort_values(["n_cells", "method"]).reset_index(drop=True)


def claim_check(score_table: pd.DataFrame, runtime: pd.DataFrame,
                accuracy_datasets: Sequence[str], min_accuracy: float,
                min_speedup: float = MIN_SPEEDUP,
                accuracy_tolerance: float = ACCURACY_TOLERANCE) -> pd.DataFrame:
    """The study's claims: ours at least ``min_accuracy`` at every runtime size and on
    each of ``accuracy_datasets``, never below the marker-sum baseline; the largest
    runtime size within the paper's GPU time for scvi-tools (Supp. Fig. 6g); and, where
    scvi-tools ran, at least ``min_speedup`` × faster at every size with an accuracy at
    least its own, less ``accuracy_tolerance``. A run without the runtime panel (real data
    alone) has only the accuracy claims."""
    claims = []
    indexed = score_table.set_index(["dataset", "method"])
    for dataset in accuracy_datasets:
        value = float(indexed.loc[(dataset, OURS), "accuracy"])
        claims.append(Claim(f"accurate on {dataset}", "accuracy", {OURS: value}, value,
                            Criterion(f"accuracy ({OURS})", ">=", min_accuracy)))
    for dataset in sorted(set(score_table["dataset"])):
        if (dataset, BASELINE) not in indexed.index:
            continue
        ours, baseline = (float(indexed.loc[(dataset, m), "accuracy"]) for m in (OURS, BASELINE))
        claims.append(Claim(
            f"never below the marker-sum baseline ({dataset})", "accuracy",
            {OURS: ours, BASELINE: baseline}, ours - baseline,
            Criterion(f"{OURS} - {BASELINE}", ">=", 0.0)))
    if not runtime.empty:
        claims = _runtime_claims(runtime, min_accuracy, min_speedup,
                                 accuracy_tolerance) + claims
    return claims_table(claims, "every CellAssign claim holds")


def _runtime_claims(runtime: pd.DataFrame, min_accuracy: float, min_speedup: float,
                    accuracy_tolerance: float) -> list[Claim]:
    """The runtime panel's claims: accuracy at every size, the time of the largest against
    the paper's GPU time, and speed and accuracy against each peer that ran."""
    ours_runtime = runtime[runtime["method"] == OURS].set_index("n_cells")
    # Unlabelled series (the paper's real PBMCs) carry no accuracy to claim.
    labelled = bool(ours_runtime["accuracy"].notna().all())
    claims = [Claim(
        f"accurate at every size of the runtime panel ({ours_runtime.index.min():,} to "
        f"{ours_runtime.index.max():,} cells)", "lowest accuracy",
        {OURS: float(ours_runtime["accuracy"].min())},
        float(ours_runtime["accuracy"].min()),
        Criterion(f"min accuracy ({OURS})", ">=", min_accuracy))] if labelled else []
    largest = int(ours_runtime.index.max())
    seconds = float(ours_runtime.loc[largest, "seconds"])
    claims.append(Claim(
        f"annotates {largest:,} cells within scvi-tools' GPU time of the paper "
        f"({PAPER_GPU_SECONDS:g} s at {PAPER_N_CELLS:,} cells, the original "
        f"{PAPER_ORIGINAL_SECONDS:,.0f} s; ours on CPU)",
        "seconds", {OURS: seconds, "paper scvi-tools GPU": PAPER_GPU_SECONDS},
        seconds, Criterion(f"seconds ({OURS})", "<=", PAPER_GPU_SECONDS)))
    for peer in PEERS:
        peer_runtime = runtime[runtime["method"] == peer].set_index("n_cells")
        if not peer_runtime.empty:
            claims += _peer_claims(peer, peer_runtime, ours_runtime, min_speedup,
                                   accuracy_tolerance)[:2 if labelled else 1]
    return claims


def _peer_claims(peer: str, peer_runtime: pd.DataFrame, ours_runtime: pd.DataFrame,
                 min_speedup: float, accuracy_tolerance: float) -> list[Claim]:
    sizes = peer_runtime.index.intersection(ours_runtime.index)
    speedups = peer_runtime.loc[sizes, "seconds"] / ours_runtime.loc[sizes, "seconds"]
    slowest = int(speedups.idxmin())
    gaps = ours_runtime.loc[sizes, "accuracy"] - peer_runtime.loc[sizes, "accuracy"]
    worst = int(gaps.idxmin())
    return [
        Claim(f"faster than {peer} at every size", f"lowest time ratio (at {slowest:,} cells)",
              {OURS: float(ours_runtime.loc[slowest, "seconds"]),
               peer: float(peer_runtime.loc[slowest, "seconds"])},
              float(speedups.min()), Criterion(f"{peer} / {OURS} seconds", ">=", min_speedup)),
        Claim(f"as accurate as {peer} at every size (to {100 * accuracy_tolerance:g} point)",
              f"accuracy (at {worst:,} cells)",
              {OURS: float(ours_runtime.loc[worst, "accuracy"]),
               peer: float(peer_runtime.loc[worst, "accuracy"])},
              float(gaps.min()), Criterion(f"{OURS} - {peer}", ">=", -accuracy_tolerance)),
    ]

