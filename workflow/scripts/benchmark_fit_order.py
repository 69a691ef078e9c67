"""Rule benchmark_fit_order: SCVI's training speed by fit order and input format
(protocol in ``scprob.bench.fit_order``). Writes the JSON document (every fit of every
process), a CSV with one row per timed fit and its spread over the fastest fit of its
format, and the figure as PNG and PDF."""

import logging
from pathlib import Path
from typing import Any

from workflow_helpers import limit_threads, logged_to, write_csv, write_json

from scprob.bench.fit_order import FitSettings, fit_order_table, plot_fit_order, run_benchmark

log = logging.getLogger(snakemake.rule)


def main(settings: dict[str, Any], inputs: Any, outputs: Any, params: Any,
         job_threads: int) -> None:
    tolerance, kernels, repeats = (settings.pop(k) for k in ("tolerance", "kernels",
                                                              "repeats"))
    fit = FitSettings(**{**settings, "threads": settings["threads"] or job_threads,
                         "seed": params.seed})
    document = run_benchmark(inputs.data, params.categorical_keys, params.continuous_keys,
                             kernels, fit, repeats=repeats, log=log.info)
    table = fit_order_table(document)
    table["within_tolerance"] = table["spread"] <= 1.0 + tolerance
    document["tolerance"] = tolerance
    document["all_within_tolerance"] = bool(table["within_tolerance"].all())
    for row in table[~table["within_tolerance"]].itertuples():
        log.warning("fit %d (%s, %s) took %.2f x the fastest fit of its format", row.position,
                    row.order, row.kernel_setting, row.spread)
    write_json(document, outputs.json)
    write_csv(table, outputs.csv)
    plot_fit_order(table, Path(outputs.png).with_suffix(""))


with logged_to(snakemake.log[0]):
    limit_threads(snakemake.threads)
    main(dict(snakemake.params.settings), snakemake.input, snakemake.output,
         snakemake.params, snakemake.threads)
