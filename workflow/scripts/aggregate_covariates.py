"""Rule aggregate_covariates: the tables behind paper Fig. 2e,f and the check of its claim
(``scprob.bench.covariates.study_tables``): ``gearys_c.csv`` (one row per method and gene),
``ground_truth.csv`` (one row per method), ``summary.csv`` (median Geary's C per method and
gene set) and ``claim_check.csv`` (scVI-cc against scVI)."""

import logging

import pandas as pd
from workflow_helpers import logged_to, write_csv

from scprob.bench.covariates import study_tables

log = logging.getLogger(snakemake.rule)


def main(gearys_paths: list[str], ground_truth_paths: list[str],
         display_names: dict[str, str], marker_tolerance: float,
         outputs: dict[str, str]) -> None:
    tables = study_tables([pd.read_csv(p) for p in gearys_paths],
                          [pd.read_csv(p) for p in ground_truth_paths],
                          display_names, marker_tolerance)
    for name in ("summary", "claim_check"):
        log.info("%s:\n%s", name, tables[name].to_string(index=False))
    for name, table in tables.items():
        write_csv(table, outputs[name])


with logged_to(snakemake.log[0]):
    main(
        gearys_paths=list(snakemake.input.gearys_c),
        ground_truth_paths=list(snakemake.input.ground_truth),
        display_names=dict(snakemake.params.display_names),
        marker_tolerance=snakemake.params.marker_tolerance,
        outputs=dict(snakemake.output.items()),
    )
