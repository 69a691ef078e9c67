"""Rule read_visium_pair: the paper's real Stereoscope data (Fig. 5), a Space Ranger Visium
section cropped to the hippocampus and its labelled single-cell reference, prepared as in
the paper's notebook (``scprob.data.visium``), written as the h5ad pair the fitting rules
read."""

import logging
from typing import Any

from scprob.data.visium import crop_spots, prepare_stereoscope_reference, read_visium
from workflow_helpers import atomic_output, logged_to, read_h5ad_input

log = logging.getLogger(snakemake.rule)


def main(inputs: Any, settings: dict[str, Any], outputs: Any) -> None:
    section = read_visium(inputs.matrix, inputs.spatial)
    spots = crop_spots(section, rows=tuple(settings["crop_rows"]),
                       cols=tuple(settings["crop_cols"]))
    log.info("section: %d spots; %d in the crop rows %s, columns %s", section.n_obs,
             spots.n_obs, settings["crop_rows"], settings["crop_cols"])
    reference = prepare_stereoscope_reference(
        read_h5ad_input(inputs.reference), labels_key=settings["labels_key"],
        min_counts=settings["min_counts"], n_top_genes=settings["n_top_genes"],
        spatial_genes=spots.var_names)
    log.info("reference: %d cells x %d genes, %d types", reference.n_obs, reference.n_vars,
             reference.obs["cell_type"].nunique())
    for adata, path in ((reference, outputs.reference), (spots, outputs.spots)):
        with atomic_output(path) as partial:
            adata.write_h5ad(partial)


with logged_to(snakemake.log[0]):
    main(inputs=snakemake.input, settings=dict(snakemake.params.settings),
         outputs=snakemake.output)
