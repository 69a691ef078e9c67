"""Rule simulate_heart_atlas: the offline stand-in for the Heart Cell Atlas of the runtime
study (paper Supp. Fig. 2), simulated once at the largest configured size and written in
chunks as a sparse h5ad (``scprob.data.simulate.heart_atlas``: 2 categorical and 10
continuous covariates, raw counts, CSR float32). Every subsample is drawn from this file.
"""

import logging

from workflow_helpers import logged_to

from scprob.data.simulate.heart_atlas import write_heart_atlas

log = logging.getLogger(snakemake.rule)


def main(atlas_path: str, n_cells: int, n_genes: int, seed: int, chunk_size: int) -> None:
    log.info("simulating %d cells x %d genes (seed %d), %d cells a chunk",
             n_cells, n_genes, seed, chunk_size)
    # write_heart_atlas writes under a temporary name and renames at the end.
    write_heart_atlas(atlas_path, n_cells, n_genes=n_genes, seed=seed, chunk_size=chunk_size)
    log.info("wrote %s", atlas_path)


with logged_to(snakemake.log[0]):
    main(
        atlas_path=snakemake.output.atlas,
        n_cells=snakemake.params.n_cells,
        n_genes=snakemake.params.n_genes,
        seed=snakemake.params.seed,
        chunk_size=snakemake.params.chunk_size,
    )
