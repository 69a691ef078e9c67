"""Rule aggregate_scarches: the tables behind paper Fig. 3d,f–h and Supp. Fig. 3h, the
comparison with the paper's numbers and the check of the study's claims
(``scprob.bench.scarches.study_tables``), from the two labellings of the query, the three
stages' timings, Snakemake's benchmarks of their jobs and the query's protein panel."""

import logging
from typing import Any

import pandas as pd
from workflow_helpers import logged_to, read_h5ad_input, read_json, write_csv

from scprob.bench.scarches import study_tables

log = logging.getLogger(snakemake.rule)
STAGES = ("reference", "query", "de_novo")


def main(inputs: Any, rare_subsets: list[str], accuracy_tolerance: float, min_speedup: float,
         outputs: Any) -> None:
    predictions = {"scarches": pd.read_csv(inputs.scarches),
                   "de_novo": pd.read_csv(inputs.de_novo)}
    timings = {stage: read_json(inputs[f"timing_{stage}"]) for stage in STAGES}
    jobs = {stage: pd.read_csv(inputs[f"benchmark_{stage}"], sep="\t").iloc[0].to_dict()
            for stage in STAGES}
    # Backed: the panel's width is all that is read, not the query's counts.
    query = read_h5ad_input(inputs.query, backed=True)
    n_query_proteins = query.obsm["protein_expression"].shape[1]
    query.file.close()
    tables = study_tables(predictions, timings, jobs, rare_subsets, n_query_proteins,
                          accuracy_tolerance, min_speedup)
    for name in ("scores", "runtime", "summary", "claim_check"):
        log.info("%s:\n%s", name, tables[name].to_string(index=False))
    for name, table in tables.items():
        write_csv(table, outputs[name])


with logged_to(snakemake.log[0]):
    main(
        inputs=snakemake.input,
        rare_subsets=list(snakemake.params.rare_subsets),
        accuracy_tolerance=snakemake.params.accuracy_tolerance,
        min_speedup=snakemake.params.min_speedup,
        outputs=snakemake.output,
    )
