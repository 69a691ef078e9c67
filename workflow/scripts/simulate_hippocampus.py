"""Rule simulate_hippocampus: the offline stand-in for paper Fig. 5's data, a
hippocampus-like single-cell reference and spots built from other cells of the same world
(``scprob.data.simulate.hippocampus``), the spots carrying their true proportions."""

import logging
from typing import Any

from workflow_helpers import atomic_output, logged_to

from scprob.data.simulate.hippocampus import simulate_hippocampus

log = logging.getLogger(snakemake.rule)


def main(settings: dict[str, Any], seed: int, reference_path: str, spots_path: str) -> None:
    settings = {**settings, "cells_per_spot": tuple(settings["cells_per_spot"])}
    reference, spots = simulate_hippocampus(seed=seed, **settings)
    log.info("reference: %d cells x %d genes; types: %s", reference.n_obs, reference.n_vars,
             dict(reference.obs["cell_type"].value_counts()))
    log.info("spots: %d x %d genes, %d-%d cells each", spots.n_obs, spots.n_vars,
             spots.obs["n_cells"].min(), spots.obs["n_cells"].max())
    for adata, path in ((reference, reference_path), (spots, spots_path)):
        with atomic_output(path) as partial:
            adata.write_h5ad(partial)


with logged_to(snakemake.log[0]):
    main(
        settings=dict(snakemake.params.settings),
        seed=snakemake.params.seed,
        reference_path=snakemake.output.reference,
        spots_path=snakemake.output.spots,
    )
