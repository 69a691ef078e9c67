"""Rule figure_complexity: paper Fig. 5c's bar chart, SLOC and average cyclomatic
complexity per group (``scprob.bench.figures_complexity.plot_complexity``)."""

import logging
from pathlib import Path

import pandas as pd
from workflow_helpers import logged_to

from scprob.bench.figures_complexity import plot_complexity

log = logging.getLogger(snakemake.rule)


def main(table_path: str, png_path: str) -> None:
    table = pd.read_csv(table_path)
    written = plot_complexity(table, Path(png_path).with_suffix(""))
    log.info("wrote %s", ", ".join(map(str, written)))


with logged_to(snakemake.log[0]):
    main(table_path=snakemake.input.table, png_path=snakemake.output.png)
