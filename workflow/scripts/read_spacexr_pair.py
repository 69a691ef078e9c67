"""Rule read_spacexr_pair: the real Visium hippocampus spots and their labelled
single-cell reference, in spacexr's CSV layout (``scprob.data.io.read_spacexr_reference``
and ``read_spacexr_spatial``), written as h5ad for the fitting rules."""

import logging

from workflow_helpers import atomic_output, logged_to

from scprob.data.io import read_spacexr_reference, read_spacexr_spatial

log = logging.getLogger(snakemake.rule)


def main(reference_folder: str, spatial_folder: str, reference_path: str,
         spots_path: str) -> None:
    reference = read_spacexr_reference(reference_folder)
    spots = read_spacexr_spatial(spatial_folder)
    shared = reference.var_names.intersection(spots.var_names)
    log.info("reference: %d cells x %d genes, %d types; spots: %d x %d genes; %d genes "
             "shared", reference.n_obs, reference.n_vars,
             reference.obs["cell_type"].nunique(), spots.n_obs, spots.n_vars, len(shared))
    for adata, path in ((reference, reference_path), (spots, spots_path)):
        with atomic_output(path) as partial:
            adata.write_h5ad(partial)


with logged_to(snakemake.log[0]):
    main(
        reference_folder=str(snakemake.params.reference_folder),
        spatial_folder=str(snakemake.params.spatial_folder),
        reference_path=snakemake.output.reference,
        spots_path=snakemake.output.spots,
    )
