"""Rule aggregate_scarches: the tables behind paper Fig. 3d,f–h and Supp. Fig. 3h, the
comparison with the paper's numbers, and the check of the study's claims.

- ``label_transfer_scores.csv``: accuracy, macro-F1 and AMI of the scArches and the de novo
  labels against the held-out query labels, and of scArches against de novo.
- ``confusion_scarches.csv`` / ``confusion_de_novo.csv`` (Fig. 3d): row-normalised,
  predicted labels in the rows, held-out labels in the columns.
- ``agreement.csv`` (Fig. 3h): scArches labels in the rows, de novo labels in the columns.
- ``rare_subsets.csv`` (Fig. 3f,g): per donor and subset, the frequency among the donor's
  query cells under the scArches labels, the de novo labels and the truth.
- ``runtime.csv`` (Supp. Fig. 3h): per stage, the timed fit (building + training the
  model, reading its latents), its CPU time, and the whole job's wall and CPU time from
  Snakemake's benchmark.
- ``summary.csv``: our numbers next to the paper's.
- ``claim_check.csv``: scArches labels the query about as accurately as de novo (within
  ``accuracy_tolerance``), its query step is at least ``min_speedup`` times faster than
  the de novo fit (in wall seconds, and in CPU seconds, which a loaded machine does not
  distort), and mapping the query left the reference latents unchanged.
"""

import json
import logging
from typing import Any

import numpy as np
import pandas as pd
from workflow_helpers import logged_to, write_csv

from scprob.bench.label_transfer import label_matrix, subset_frequencies, transfer_scores
from scprob.data.simulate.cite_seq import CELL_TYPES

log = logging.getLogger(snakemake.rule)

DISPLAY = {"scarches": "scArches", "de_novo": "de novo", "truth": "truth"}
STAGES = {"reference": "reference", "query": "query (scArches)", "de_novo": "de novo"}
# The paper's notebook (GPU, 152,094 reference and 57,669 query cells), for the summary.
PAPER = {
    "reference_fit_s": 3356.0,
    "query_fit_s": 619.0,
    "de_novo_fit_s": 4604.0,
    "ami_scarches_vs_de_novo": 0.87,
    "n_reference_cells": 152094,
    "n_query_cells": 57669,
    "n_query_proteins": 35,
    "reference_epochs": 250,
    "query_epochs": 150,
}


def scores_table(predictions: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Each method against the truth, then scArches against de novo."""
    rows = []
    for method, frame in predictions.items():
        rows.append({"method": DISPLAY[method], "compared_with": "truth",
                     "n_cells": len(frame),
                     **transfer_scores(frame["true_label"], frame["predicted_label"])})
    rows.append({"method": DISPLAY["scarches"], "compared_with": DISPLAY["de_novo"],
                 "n_cells": len(predictions["scarches"]),
                 **transfer_scores(predictions["de_novo"]["predicted_label"],
                                   predictions["scarches"]["predicted_label"])})
    return pd.DataFrame(rows)


def matrix_csv(matrix: pd.DataFrame, row_name: str) -> pd.DataFrame:
    """A label matrix as a table whose first column names the row labels."""
    return matrix.rename_axis(index=row_name, columns=None).reset_index()


def rare_subset_table(predictions: dict[str, pd.DataFrame], subsets: list[str]
                      ) -> pd.DataFrame:
    truth = predictions["scarches"]
    labellings = {"scarches": truth["predicted_label"],
                  "de_novo": predictions["de_novo"]["predicted_label"],
                  "truth": truth["true_label"]}
    parts = [subset_frequencies(labels, truth["donor"], truth["condition"], subsets)
             .assign(labels=DISPLAY[name]) for name, labels in labellings.items()]
    table = pd.concat(parts, ignore_index=True)
    return table[["labels", *[c for c in table.columns if c != "labels"]]]


def runtime_table(timings: dict[str, dict[str, Any]], benchmarks: dict[str, str]
                  ) -> pd.DataFrame:
    rows = []
    for stage, timing in timings.items():
        benchmark = pd.read_csv(benchmarks[stage], sep="\t").iloc[0]
        rows.append({
            "stage": stage,
            "display_name": STAGES[stage],
            "n_cells": timing["n_cells"],
            "epochs": timing["epochs_run"],
            "threads": timing["threads"],
            "fit_s": timing["fit_s"],
            "fit_cpu_s": timing["fit_cpu_s"],
            "train_s": timing["sections"]["train"]["wall_s"],
            "job_s": float(benchmark["s"]),
            "job_cpu_s": float(benchmark["cpu_time"]),
            "paper_fit_s": PAPER[f"{stage}_fit_s"],
        })
    return pd.DataFrame(rows)


def summary_table(scores: pd.DataFrame, runtime: pd.DataFrame,
                  timings: dict[str, dict[str, Any]], n_query_proteins: int) -> pd.DataFrame:
    fit = runtime.set_index("stage")["fit_s"]
    agreement = scores[scores["compared_with"] == DISPLAY["de_novo"]].iloc[0]
    ours = {
        "reference_fit_s": fit["reference"],
        "query_fit_s": fit["query"],
        "de_novo_fit_s": fit["de_novo"],
        "ami_scarches_vs_de_novo": agreement["ami"],
        "n_reference_cells": timings["reference"]["n_cells"],
        "n_query_cells": timings["query"]["n_cells"],
        "n_query_proteins": n_query_proteins,
        "reference_epochs": timings["reference"]["epochs_run"],
        "query_epochs": timings["query"]["epochs_run"],
    }
    rows = [{"quantity": k, "ours": float(v), "paper": float(PAPER[k])} for k, v in ours.items()]
    rows.append({"quantity": "de_novo_over_query_fit", "ours": fit["de_novo"] / fit["query"],
                 "paper": PAPER["de_novo_fit_s"] / PAPER["query_fit_s"]})
    cpu = runtime.set_index("stage")["fit_cpu_s"]
    rows.append({"quantity": "de_novo_over_query_fit_cpu", "ours": cpu["de_novo"] / cpu["query"],
                 "paper": np.nan})
    return pd.DataFrame(rows)


def check_claims(scores: pd.DataFrame, runtime: pd.DataFrame, reference_change: float,
                 accuracy_tolerance: float, min_speedup: float) -> pd.DataFrame:
    """The claims as numbers and booleans; ``value`` is the quantity the criterion reads."""
    truth = scores[scores["compared_with"] == "truth"].set_index("method")
    accuracy = truth["accuracy"]
    difference = accuracy[DISPLAY["scarches"]] - accuracy[DISPLAY["de_novo"]]
    fit = runtime.set_index("stage")["fit_s"]
    speedup = fit["de_novo"] / fit["query"]
    # CPU seconds do not depend on what else the machine runs meanwhile; wall seconds do.
    fit_cpu = runtime.set_index("stage")["fit_cpu_s"]
    cpu_speedup = fit_cpu["de_novo"] / fit_cpu["query"]
    rows = [
        {"claim": "scArches labels the query about as accurately as de novo totalVI",
         "quantity": "query accuracy against the held-out labels",
         "scarches": accuracy[DISPLAY["scarches"]], "de_novo": accuracy[DISPLAY["de_novo"]],
         "value": difference, "criterion": f"scarches - de_novo >= -{accuracy_tolerance}",
         "holds": bool(difference >= -accuracy_tolerance)},
        {"claim": f"the scArches query step is at least {min_speedup:g}x faster than de novo",
         "quantity": "fit seconds (build + train the model, read its latents)",
         "scarches": fit["query"], "de_novo": fit["de_novo"],
         "value": speedup, "criterion": f"de_novo / scarches >= {min_speedup:g}",
         "holds": bool(speedup >= min_speedup)},
        {"claim": f"the scArches query step needs at least {min_speedup:g}x less CPU time",
         "quantity": "fit CPU seconds (build + train the model, read its latents)",
         "scarches": fit_cpu["query"], "de_novo": fit_cpu["de_novo"],
         "value": cpu_speedup, "criterion": f"de_novo / scarches >= {min_speedup:g}",
         "holds": bool(cpu_speedup >= min_speedup)},
        {"claim": "mapping the query leaves the reference latents unchanged",
         "quantity": "largest change of a reference latent coordinate",
         "scarches": reference_change, "de_novo": np.nan,
         "value": reference_change, "criterion": "value == 0",
         "holds": bool(reference_change == 0.0)},
    ]
    checks = pd.DataFrame(rows)
    overall = {"claim": "Fig. 3: scArches maps the query fast and transfers labels as well",
               "quantity": "all of the above", "holds": bool(checks["holds"].all())}
    return pd.concat([checks, pd.DataFrame([overall])], ignore_index=True)


def label_order(predictions: dict[str, pd.DataFrame]) -> list[str]:
    """Every label any labelling uses, in the simulator's order (myeloid, T, NK, B, other
    cells: related types side by side), unknown labels last; shared by all matrices so that
    they line up."""
    present = set()
    for frame in predictions.values():
        present |= set(frame["predicted_label"]) | set(frame["true_label"])
    return [t for t in CELL_TYPES if t in present] + sorted(present - set(CELL_TYPES))


def main(inputs: Any, rare_subsets: list[str], n_query_proteins: int,
         accuracy_tolerance: float, min_speedup: float, outputs: Any) -> None:
    predictions = {"scarches": pd.read_csv(inputs.scarches),
                   "de_novo": pd.read_csv(inputs.de_novo)}
    if not predictions["scarches"]["cell"].equals(predictions["de_novo"]["cell"]):
        raise ValueError("the scArches and de novo predictions list different query cells.")
    timings = {stage: json.loads(open(path).read()) for stage, path in
               (("reference", inputs.timing_reference), ("query", inputs.timing_query),
                ("de_novo", inputs.timing_de_novo))}
    benchmarks = {"reference": inputs.benchmark_reference, "query": inputs.benchmark_query,
                  "de_novo": inputs.benchmark_de_novo}

    scores = scores_table(predictions)
    cell_types = label_order(predictions)
    confusion = {m: label_matrix(p["predicted_label"], p["true_label"], row_order=cell_types,
                                 column_order=cell_types) for m, p in predictions.items()}
    agreement = label_matrix(predictions["scarches"]["predicted_label"],
                             predictions["de_novo"]["predicted_label"],
                             row_order=cell_types, column_order=cell_types)
    rare = rare_subset_table(predictions, rare_subsets)
    runtime = runtime_table(timings, benchmarks)
    summary = summary_table(scores, runtime, timings, n_query_proteins)
    claims = check_claims(scores, runtime, timings["query"]["reference_latent_max_abs_change"],
                          accuracy_tolerance, min_speedup)
    for name, table in (("scores", scores), ("runtime", runtime), ("summary", summary),
                        ("claim check", claims)):
        log.info("%s:\n%s", name, table.to_string(index=False))

    write_csv(scores, outputs.scores)
    write_csv(matrix_csv(confusion["scarches"], "predicted_label"), outputs.confusion_scarches)
    write_csv(matrix_csv(confusion["de_novo"], "predicted_label"), outputs.confusion_de_novo)
    write_csv(matrix_csv(agreement, "scarches_label"), outputs.agreement)
    write_csv(rare, outputs.rare_subsets)
    write_csv(runtime, outputs.runtime)
    write_csv(summary, outputs.summary)
    write_csv(claims, outputs.claim_check)


with logged_to(snakemake.log[0]):
    main(
        inputs=snakemake.input,
        rare_subsets=list(snakemake.params.rare_subsets),
        n_query_proteins=snakemake.params.n_query_proteins,
        accuracy_tolerance=snakemake.params.accuracy_tolerance,
        min_speedup=snakemake.params.min_speedup,
        outputs=snakemake.output,
    )
