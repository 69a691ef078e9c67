"""Rule figures_cellassign: paper Supp. Fig. 6c, f (confusion matrices of every method on
the follicular-lymphoma-like and HGSC-like data), 6g (runtime and accuracy against the
number of cells) and the small-data ablation (``scprob.bench.figures_cellassign``)."""

import pandas as pd
from workflow_helpers import logged_to

from scprob.bench.figures_cellassign import plot_ablation, plot_confusion_grid, plot_runtime


def main(inputs: dict[str, str], simulated: list[str], min_accuracy: float,
         outputs: dict[str, str]) -> None:
    tables = {name: pd.read_csv(path) for name, path in inputs.items()}
    plot_confusion_grid(tables["confusion"], tables["scores"], simulated,
                        outputs["confusion_png"].removesuffix(".png"),
                        "Supp. Fig. 6c, f: predicted vs true types")
    plot_runtime(tables["runtime"], outputs["runtime_png"].removesuffix(".png"), min_accuracy)
    plot_ablation(tables["ablation"], outputs["ablation_png"].removesuffix(".png"))


with logged_to(snakemake.log[0]):
    main(
        inputs={name: getattr(snakemake.input, name)
                for name in ("scores", "confusion", "runtime", "ablation")},
        simulated=list(snakemake.params.simulated),
        min_accuracy=snakemake.params.min_accuracy,
        outputs={name: getattr(snakemake.output, name)
                 for name in ("confusion_png", "runtime_png", "ablation_png")},
    )
