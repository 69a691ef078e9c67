"""Rule figures_deconvolution_real: paper Fig. 5g on real Visium spots, the proportions of
a few cell types on the spot layout for ours and each configured peer (no truth here), and
each peer's per-type agreement with ours (paper Supp. Fig. 5)."""

import logging
from pathlib import Path
from typing import Any

import pandas as pd
from workflow_helpers import logged_to, read_h5ad_input, write_csv

from scprob.bench.deconvolution import (
    agreement_table,
    plot_proportion_maps,
    spot_coordinates,
)

log = logging.getLogger(snakemake.rule)


def main(spots_path: str, proportion_paths: list[str], methods: list[str],
         labels: list[str], map_types: list[str], outputs: Any) -> None:
    estimates = {method: pd.read_csv(path, index_col="spot")
                 for method, path in zip(methods, proportion_paths, strict=True)}
    types = list(estimates[methods[0]].columns)
    unknown = sorted(set(map_types) - set(types))
    if unknown:
        raise ValueError(f"deconvolution.real.map_types names types the reference lacks: "
                         f"{unknown}; choose among {types}.")
    written = plot_proportion_maps(
        spot_coordinates(read_h5ad_input(spots_path)),
        dict(zip(labels, estimates.values(), strict=True)), map_types,
        Path(outputs.maps_png).with_suffix(""),
        "Fig. 5g — cell-type proportions on real Visium spots (mouse hippocampus)")
    log.info("wrote %s", ", ".join(map(str, written)))
    # One "run" per method at the configured epochs: the agreement of each peer with ours.
    runs = {(method, 0, 0): frame for method, frame in estimates.items()}
    agreement = agreement_table(runs, methods[0], methods[1:]).drop(
        columns=["rna_epochs", "spatial_epochs"])
    if len(agreement):
        log.info("median per-type Spearman with ours:\n%s",
                 agreement.groupby("method")["spearman"].median().to_string())
    write_csv(agreement, outputs.agreement)


with logged_to(snakemake.log[0]):
    main(
        spots_path=snakemake.input.spots,
        proportion_paths=list(snakemake.input.proportions),
        methods=list(snakemake.params.methods),
        labels=list(snakemake.params.labels),
        map_types=list(snakemake.params.map_types),
        outputs=snakemake.output,
    )
