"""Rule aggregate_scaling: the table behind paper Supp. Fig. 2, one row per method and
number of cells (``scprob.bench.scaling.runtime_table``), from each size's record (the
timed call) and Snakemake's benchmark of each method's job (every size); and the claim
check of the figure (``scprob.bench.scaling.scaling_claims``)."""

import logging

import pandas as pd
from workflow_helpers import logged_to, read_json, write_csv

from scprob.bench.scaling import runtime_table, scaling_claims

log = logging.getLogger(snakemake.rule)


def main(timing_paths: list[str], benchmark_paths: list[str], display_names: dict[str, str],
         methods: list[str], plateau_cells: int, max_plateau_slope: float, table_path: str,
         claim_check_path: str) -> None:
    records = [read_json(path) for path in timing_paths]
    jobs = {method: pd.read_csv(path, sep="\t").iloc[0].to_dict()
            for method, path in zip(methods, benchmark_paths, strict=True)}
    table = runtime_table(records, jobs, display_names, methods)
    log.info("runtime table:\n%s", table.to_string(index=False))
    claims = scaling_claims(table, plateau_cells, max_plateau_slope)
    log.info("claim check:\n%s", claims.to_string(index=False))
    write_csv(table, table_path)
    write_csv(claims, claim_check_path)


with logged_to(snakemake.log[0]):
    main(
        timing_paths=list(snakemake.input.timings),
        benchmark_paths=list(snakemake.input.benchmarks),
        display_names=dict(snakemake.params.display_names),
        methods=list(snakemake.params.methods),
        plateau_cells=snakemake.params.plateau_cells,
        max_plateau_slope=snakemake.params.max_plateau_slope,
        table_path=snakemake.output.table,
        claim_check_path=snakemake.output.claim_check,
    )
