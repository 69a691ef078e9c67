"""Rule cellassign_ablation: why the published port collapses types on small data (paper
Supp. Fig. 6g's sizes): its initialisation and its optimisation swapped into ours one at a
time, on PBMC-like data of each configured size and seed
(``scprob.bench.cellassign.ablation``)."""

import logging
from typing import Any

from workflow_helpers import limit_threads, logged_to, write_csv

from scprob.bench.cellassign import ablation

log = logging.getLogger(snakemake.rule)


def main(settings: dict[str, Any], table_path: str) -> None:
    table = ablation(settings["sizes"], settings["seeds"])
    summary = table.groupby(["n_cells", "variant"], sort=False)["accuracy"].agg(["mean", "min"])
    log.info("accuracy by size and variant:\n%s", summary.to_string())
    write_csv(table, table_path)


with logged_to(snakemake.log[0]):
    limit_threads(snakemake.threads)
    main(settings=dict(snakemake.params.settings), table_path=snakemake.output.table)
