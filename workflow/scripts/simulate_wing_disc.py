"""Rule simulate_wing_disc: the offline stand-in for the wing-disc atlas of paper Fig. 2.

Writes raw counts ``(n_cells, n_genes)`` (CSR in ``X`` and ``layers["counts"]``) with the
simulated ground truth in ``obs`` and the marker / nuisance gene lists in ``uns``.
"""

import logging

from workflow_helpers import atomic_output, logged_to

from scprob.data.simulate.wing_disc import simulate_wing_disc

log = logging.getLogger(snakemake.rule)


def main(counts_path: str, n_cells: int, n_genes: int, seed: int) -> None:
    adata = simulate_wing_disc(n_cells=n_cells, n_genes=n_genes, seed=seed)
    log.info(
        "simulated %d cells x %d genes; %d marker and %d nuisance genes; batches: %s",
        adata.n_obs, adata.n_vars, len(adata.uns["marker_genes"]),
        len(adata.uns["nuisance_genes"]), dict(adata.obs["batch"].value_counts()),
    )
    with atomic_output(counts_path) as partial:
        adata.write_h5ad(partial)


with logged_to(snakemake.log[0]):
    main(
        counts_path=snakemake.output.counts,
        n_cells=snakemake.params.n_cells,
        n_genes=snakemake.params.n_genes,
        seed=snakemake.params.seed,
    )
