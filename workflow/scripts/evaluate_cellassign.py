"""Rule evaluate_cellassign: every method's annotation of every data set against its truth
(paper Supp. Fig. 6): accuracy and macro-F1, the row-normalised confusion matrices
(Supp. Fig. 6c, f), the runtime panel's table (Supp. Fig. 6g), each method's agreement with
ours, and the claim check (``scprob.bench.cellassign``)."""

import logging
from pathlib import Path

import pandas as pd
from workflow_helpers import logged_to, read_h5ad_input, read_json, write_csv

from scprob.bench.cellassign import (
    OURS,
    TRUTH_KEY,
    agreement,
    claim_check,
    confusion,
    predicted_labels,
    runtime_table,
    scores,
)

log = logging.getLogger(snakemake.rule)
UNSCORED = {"accuracy": float("nan"), "macro_f1": float("nan")}


def main(runs: list[list[str]], datasets: list[str], data_paths: list[str],
         probability_paths: list[str], timing_paths: list[str], marker_paths: list[str],
         runtime_datasets: dict[str, int], accuracy_datasets: list[str], min_accuracy: float,
         outputs: dict[str, str]) -> None:
    # A data set without labels (the paper's 68k PBMCs) is timed and compared across
    # methods, not scored.
    observations = {d: read_h5ad_input(p, backed=True).obs
                    for d, p in zip(datasets, data_paths, strict=True)}
    truths = {d: obs[TRUTH_KEY].astype(str) if TRUTH_KEY in obs else None
              for d, obs in observations.items()}
    markers = {Path(p).stem: pd.read_csv(p, index_col="gene") for p in marker_paths}
    labels: dict[tuple[str, str], pd.Series] = {}
    score_rows, confusion_rows = [], []
    for (dataset, method), probabilities_path, timing_path in zip(
            runs, probability_paths, timing_paths, strict=True):
        probabilities = pd.read_csv(probabilities_path, index_col="cell")
        probabilities.index = probabilities.index.astype(str)
        predicted = labels[dataset, method] = predicted_labels(probabilities)
        timing = read_json(timing_path)
        truth = truths[dataset]
        score_rows.append({"dataset": dataset, "method": method,
                           "n_cells": len(observations[dataset]),
                           **(UNSCORED if truth is None else scores(truth, predicted)),
                           "seconds": timing["seconds"], "epochs": timing.get("epochs")})
        if truth is None:
            continue
        types = markers["pbmc" if dataset.startswith("pbmc_") else dataset].columns
        matrix = confusion(truth, predicted, list(types))
        long = matrix.rename_axis(index="true_type", columns="predicted_type")
        for (true_type, predicted_type), fraction in long.stack().items():
            confusion_rows.append({"dataset": dataset, "method": method,
                                   "true_type": true_type, "predicted_type": predicted_type,
                                   "fraction": fraction})
    score_table = pd.DataFrame(score_rows)
    log.info("scores:\n%s", score_table.to_string(index=False))
    agreement_table = pd.DataFrame([
        {"dataset": dataset, "method": method,
         "agreement_with_ours": agreement(labels[dataset, OURS], labels[dataset, method])}
        for dataset, method in runs if method != OURS])
    runtime = runtime_table(score_table, runtime_datasets)
    log.info("runtime:\n%s", runtime.to_string(index=False))
    checks = claim_check(score_table, runtime, accuracy_datasets, min_accuracy)
    log.info("claims:\n%s", checks.to_string(index=False))
    write_csv(score_table, outputs["scores"])
    write_csv(pd.DataFrame(confusion_rows), outputs["confusion"])
    write_csv(runtime, outputs["runtime"])
    write_csv(agreement_table, outputs["agreement"])
    write_csv(checks, outputs["claim_check"])


with logged_to(snakemake.log[0]):
    main(
        runs=[list(run) for run in snakemake.params.runs],
        datasets=list(snakemake.params.datasets),
        data_paths=list(snakemake.input.data),
        probability_paths=list(snakemake.input.probabilities),
        timing_paths=list(snakemake.input.timings),
        marker_paths=list(snakemake.input.markers),
        runtime_datasets=dict(snakemake.params.runtime_datasets),
        accuracy_datasets=list(snakemake.params.accuracy_datasets),
        min_accuracy=snakemake.params.min_accuracy,
        outputs={name: getattr(snakemake.output, name)
                 for name in ("scores", "confusion", "runtime", "agreement", "claim_check")},
    )
