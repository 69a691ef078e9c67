"""Rule figures_scaling: paper Supp. Fig. 2, runtime and peak memory of each method against
the number of cells (log-log), from ``tables/runtime.csv``."""

import logging
from pathlib import Path

import pandas as pd
from workflow_helpers import logged_to

from scprob.bench.figures_scaling import plot_runtime_scaling

log = logging.getLogger(snakemake.rule)


def main(table_path: str, png_path: str, pdf_path: str) -> None:
    stem = Path(png_path).with_suffix("")
    if Path(pdf_path).with_suffix("") != stem:
        raise ValueError(f"{png_path} and {pdf_path} must share their stem.")
    # save_figure writes both files atomically.
    written = plot_runtime_scaling(pd.read_csv(table_path), stem)
    log.info("wrote %s", ", ".join(map(str, written)))


with logged_to(snakemake.log[0]):
    main(
        table_path=snakemake.input.table,
        png_path=snakemake.output.png,
        pdf_path=snakemake.output.pdf,
    )
