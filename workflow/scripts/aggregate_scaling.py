"""Rule aggregate_scaling: the table behind paper Supp. Fig. 2, one row per method and
number of cells.

From each job's JSON (the timed call: ``seconds``, ``cpu_seconds``, ``peak_rss_gib``,
``epochs`` for scVI) and Snakemake's benchmark of the same job (the whole job, reading and
warm-up included: ``job_seconds``, ``job_max_rss_gib``).
"""

import json
import logging

import pandas as pd
from workflow_helpers import logged_to, write_csv

log = logging.getLogger(snakemake.rule)

COLUMNS = [
    "method", "display_name", "n_cells", "n_genes", "seconds", "cpu_seconds",
    "peak_rss_gib", "peak_rss_scope", "epochs", "max_epochs", "early_stopped", "threads",
    "device", "job_seconds", "job_max_rss_gib",
]


def job_benchmark(path: str) -> dict[str, float]:
    """Wall seconds and peak resident memory (GiB) of a job, from Snakemake's benchmark."""
    row = pd.read_csv(path, sep="\t").iloc[0]
    return {"job_seconds": float(row["s"]), "job_max_rss_gib": float(row["max_rss"]) / 1024}


def main(timing_paths: list[str], benchmark_paths: list[str], display_names: dict[str, str],
         methods: list[str], table_path: str) -> None:
    rows = []
    for timing_path, benchmark_path in zip(timing_paths, benchmark_paths, strict=True):
        record = json.loads(open(timing_path).read())
        rows.append({**record, "display_name": display_names[record["method"]],
                     **job_benchmark(benchmark_path)})
    table = pd.DataFrame(rows).reindex(columns=COLUMNS)
    table["method"] = pd.Categorical(table["method"], categories=methods, ordered=True)
    table = table.sort_values(["method", "n_cells"]).reset_index(drop=True)
    table["method"] = table["method"].astype(str)
    table["epochs"] = table["epochs"].astype("Int64")
    table["max_epochs"] = table["max_epochs"].astype("Int64")
    log.info("runtime table:\n%s", table.to_string(index=False))
    write_csv(table, table_path)


with logged_to(snakemake.log[0]):
    main(
        timing_paths=list(snakemake.input.timings),
        benchmark_paths=list(snakemake.input.benchmarks),
        display_names=dict(snakemake.params.display_names),
        methods=list(snakemake.params.methods),
        table_path=snakemake.output.table,
    )
