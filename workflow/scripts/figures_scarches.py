"""Rule figures_scarches: the panels of paper Fig. 3b–d, f–h and Supp. Fig. 3h from the
study's tables, each as PNG and PDF."""

import logging
from pathlib import Path
from typing import Any

import pandas as pd
from workflow_helpers import logged_to

from scprob.bench.figures_scarches import (
    plot_label_matrix,
    plot_rare_subsets,
    plot_runtime,
    plot_umap_dataset,
    plot_umap_labels,
)

log = logging.getLogger(snakemake.rule)


def stem(path: str) -> Path:
    return Path(path).with_suffix("")


def read_matrix(path: str) -> pd.DataFrame:
    table = pd.read_csv(path)
    return table.set_index(table.columns[0])


def main(inputs: Any, rare_subsets: list[str], conditions: list[str], outputs: Any) -> None:
    umap = pd.read_csv(inputs.umap)
    predictions = pd.read_csv(inputs.predictions).set_index("cell")["predicted_label"]
    # Reference cells keep their annotation, query cells show the scArches prediction.
    umap["label"] = umap["cell_type"].where(umap["dataset"] == "reference",
                                            umap["cell"].map(predictions))
    confusion = read_matrix(inputs.confusion)
    agreement = read_matrix(inputs.agreement)
    label_order = list(confusion.index)
    predicted_counts = predictions.value_counts().to_dict()

    plot_umap_labels(umap, label_order, stem(outputs.fig3b))
    plot_umap_dataset(umap, stem(outputs.fig3c))
    plot_label_matrix(
        confusion, stem(outputs.fig3d),
        title="Fig. 3d — scArches predicted vs held-out query labels (row-normalised)",
        row_label="scArches predicted label (n cells)", column_label="held-out label",
        counts=predicted_counts,
    )
    plot_rare_subsets(pd.read_csv(inputs.rare_subsets), rare_subsets, conditions,
                      stem(outputs.fig3f_g), labellings=("scArches", "de novo", "truth"))
    plot_label_matrix(
        agreement, stem(outputs.fig3h),
        title="Fig. 3h — scArches vs de novo totalVI predicted labels (row-normalised)",
        row_label="scArches predicted label (n cells)",
        column_label="de novo predicted label", counts=predicted_counts,
    )
    plot_runtime(pd.read_csv(inputs.runtime), stem(outputs.runtime))
    log.info("wrote %d figures", 6)


with logged_to(snakemake.log[0]):
    main(
        inputs=snakemake.input,
        rare_subsets=list(snakemake.params.rare_subsets),
        conditions=list(snakemake.params.conditions),
        outputs=snakemake.output,
    )
