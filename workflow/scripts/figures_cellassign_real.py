"""Rule figures_cellassign_real: the real panel of the CellAssign study, confusion
matrices of every method on the CellBench lung cell lines of each technology against the
genotype truth (``scprob.bench.figures_cellassign``)."""

import pandas as pd
from workflow_helpers import logged_to

from scprob.bench.figures_cellassign import plot_confusion_grid


def main(confusion_path: str, scores_path: str, datasets: list[str], png_path: str) -> None:
    plot_confusion_grid(pd.read_csv(confusion_path), pd.read_csv(scores_path), datasets,
                        png_path.removesuffix(".png"),
                        "CellBench lung cell lines: predicted vs genotype")


with logged_to(snakemake.log[0]):
    main(
        confusion_path=snakemake.input.confusion,
        scores_path=snakemake.input.scores,
        datasets=list(snakemake.params.datasets),
        png_path=snakemake.output.png,
    )
