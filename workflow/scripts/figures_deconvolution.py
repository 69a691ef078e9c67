"""Rule figures_deconvolution: paper Fig. 5g-style proportion maps (the truth beside ours,
and beside each configured peer, on the spot layout), the convergence panel (mean per-type
Spearman against the spatial epochs) and each type's Spearman per run
(``scprob.bench.deconvolution``)."""

import logging
from pathlib import Path
from typing import Any

import pandas as pd
from workflow_helpers import logged_to, read_h5ad_input

from scprob.bench.deconvolution import (
    plot_convergence,
    plot_per_type,
    plot_proportion_maps,
    spot_coordinates,
    true_proportions,
)

log = logging.getLogger(snakemake.rule)


def main(spots_path: str, proportion_paths: list[str], accuracy_path: str,
         convergence_path: str, map_types: list[str], map_labels: list[str],
         targets: list[dict[str, Any]], outputs: Any) -> None:
    spots = read_h5ad_input(spots_path)
    truth = true_proportions(spots)
    unknown = sorted(set(map_types) - set(truth.columns))
    if unknown:
        raise ValueError(f"deconvolution.map_types names types the data lack: {unknown}; "
                         f"choose among {list(truth.columns)}.")
    estimates = {label: pd.read_csv(path, index_col="spot")
                 for label, path in zip(map_labels, proportion_paths, strict=True)}
    written = plot_proportion_maps(
        spot_coordinates(spots), {"truth": truth, **estimates}, map_types,
        Path(outputs.maps_png).with_suffix(""),
        "Fig. 5g — cell-type proportions on the spot layout (simulated hippocampus)")
    written += plot_convergence(
        pd.read_csv(convergence_path), Path(outputs.convergence_png).with_suffix(""),
        "Supp. Fig. 5 — convergence: mean per-type Spearman vs epochs",
        [(t["rna_epochs"], t["spatial_epochs"], t["min_mean_spearman"]) for t in targets])
    written += plot_per_type(
        pd.read_csv(accuracy_path), Path(outputs.per_type_png).with_suffix(""),
        "Fig. 5 — Spearman of each cell type's proportion with the truth")
    log.info("wrote %s", ", ".join(map(str, written)))


with logged_to(snakemake.log[0]):
    main(
        spots_path=snakemake.input.spots,
        proportion_paths=list(snakemake.input.proportions),
        accuracy_path=snakemake.input.accuracy,
        convergence_path=snakemake.input.convergence,
        map_types=list(snakemake.params.map_types),
        map_labels=list(snakemake.params.map_labels),
        targets=list(snakemake.params.targets),
        outputs=snakemake.output,
    )
