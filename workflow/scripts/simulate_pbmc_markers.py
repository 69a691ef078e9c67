"""Rule simulate_pbmc_markers: the runtime series of paper Supp. Fig. 6g, PBMC-like cells
of 23 markers x 5 types (``scprob.data.simulate.pbmc_markers``) simulated once at the
largest size and subsampled to each smaller one, as the paper downsampled its 68,579
PBMCs: a smaller data set's cells are a subset of every larger one's."""

import logging

import numpy as np
from workflow_helpers import atomic_output, logged_to, write_csv

from scprob.data.simulate.pbmc_markers import simulate_pbmc_markers

log = logging.getLogger(snakemake.rule)


def main(sizes: list[int], seed: int, data_paths: list[str], markers_path: str) -> None:
    adata, markers = simulate_pbmc_markers(max(sizes), seed=seed)
    order = np.random.default_rng(seed).permutation(adata.n_obs)
    for n_cells, path in zip(sizes, data_paths, strict=True):
        subset = adata[np.sort(order[:n_cells])].copy()
        log.info("%d cells; types: %s", subset.n_obs,
                 dict(subset.obs["cell_type"].value_counts()))
        with atomic_output(path) as partial:
            subset.write_h5ad(partial)
    write_csv(markers.rename_axis("gene").reset_index(), markers_path)


with logged_to(snakemake.log[0]):
    main(
        sizes=list(snakemake.params.sizes),
        seed=snakemake.params.seed,
        data_paths=list(snakemake.output.data),
        markers_path=snakemake.output.markers,
    )
