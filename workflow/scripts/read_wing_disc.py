"""Rule read_wing_disc: the paper's real wing-disc data (Fig. 2): the processed matrix of
the AMP cells with its 55 nuisance genes, joined to the authors' per-cell metadata (their
AMP call, clusters and sex call: the truth of the ground-truth scores), with the marker
genes of Fig. 2e, in the simulation's layout (``scprob.data.paper_data``)."""

import logging

from workflow_helpers import atomic_output, logged_to, read_h5ad_input

from scprob.data.paper_data import prepare_wing_disc, select_amp_cells

log = logging.getLogger(snakemake.rule)


def main(counts_path: str, metadata_path: str, marker_genes: list[str], out: str) -> None:
    amp = select_amp_cells(metadata_path)
    adata = prepare_wing_disc(read_h5ad_input(counts_path), marker_genes=marker_genes,
                              metadata=amp)
    log.info("%d cells x %d genes; batches %s; %d marker and %d nuisance genes", adata.n_obs,
             adata.n_vars, adata.obs["batch"].value_counts().to_dict(),
             len(adata.uns["marker_genes"]), len(adata.uns["nuisance_genes"]))
    with atomic_output(out) as partial:
        adata.write_h5ad(partial)


with logged_to(snakemake.log[0]):
    main(
        counts_path=snakemake.input.counts,
        metadata_path=snakemake.input.metadata,
        marker_genes=list(snakemake.params.marker_genes),
        out=snakemake.output.counts,
    )
