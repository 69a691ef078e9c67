"""Rule figures_covariates: paper Fig. 2d–f and Supp. Fig. 1, plus the ground-truth scores.

- Fig. 2d: UMAPs of scVI and scVI-cc coloured by batch and the log-normalised expression
  of a cell-cycle gene (PCNA), a sex gene (lncRNA:roX1) and a spatial marker (vg).
- Supp. Fig. 1: the same for every configured method.
- Fig. 2e,f: box plots of Geary's C of the marker and the nuisance genes per method.
- ground_truth_scores: how much of the simulated truth each graph keeps (our addition).
"""

import logging
from pathlib import Path

import pandas as pd
from workflow_helpers import logged_to, read_h5ad_input

from scprob.bench.covariates import umap_colours
from scprob.bench.figures_covariates import plot_gearys_c, plot_ground_truth, plot_umaps

log = logging.getLogger(snakemake.rule)


def stem(path: str) -> Path:
    """The path without its extension: the figure functions write .png and .pdf."""
    return Path(path).with_suffix("")


def main(
    prepared_path: str,
    integrated_paths: list[str],
    gearys_path: str,
    ground_truth_path: str,
    methods: list[str],
    display_names: dict[str, str],
    umap_genes: list[str],
    batch_key: str,
    outputs: dict[str, str],
) -> None:
    prepared = read_h5ad_input(prepared_path)
    colours = umap_colours(prepared, batch_key, umap_genes)
    umaps = {}
    for method, path in zip(methods, integrated_paths, strict=True):
        integrated = read_h5ad_input(path)
        if not integrated.obs_names.equals(prepared.obs_names):
            raise ValueError(f"{path} and {prepared_path} hold different cells.")
        umaps[display_names[method]] = integrated.obsm["X_umap"]

    plot_umaps(
        {display_names[m]: umaps[display_names[m]] for m in ("scvi", "scvi_cc")},
        colours,
        stem(outputs["fig2d"]),
        title="Fig. 2d — scVI (batch only) vs scVI-cc (batch + 55 nuisance genes)",
    )
    plot_umaps(umaps, colours, stem(outputs["supp_fig1"]),
               title="Supp. Fig. 1 — UMAP of each method's neighbour graph")

    # The figure functions label and colour methods by their display names.
    gearys = pd.read_csv(gearys_path).assign(method=lambda t: t["display_name"])
    plot_gearys_c(gearys, "marker", stem(outputs["fig2e"]))
    plot_gearys_c(gearys, "nuisance", stem(outputs["fig2f"]))
    ground_truth = pd.read_csv(ground_truth_path).assign(method=lambda t: t["display_name"])
    plot_ground_truth(ground_truth, stem(outputs["ground_truth"]))
    log.info("wrote %s", ", ".join(sorted(outputs.values())))


with logged_to(snakemake.log[0]):
    main(
        prepared_path=snakemake.input.prepared,
        integrated_paths=list(snakemake.input.integrated),
        gearys_path=snakemake.input.gearys_c,
        ground_truth_path=snakemake.input.ground_truth,
        methods=list(snakemake.params.methods),
        display_names=dict(snakemake.params.display_names),
        umap_genes=list(snakemake.params.umap_genes),
        batch_key=snakemake.params.batch_key,
        outputs=dict(snakemake.output.items()),
    )
