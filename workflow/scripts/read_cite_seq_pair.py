"""Rule read_cite_seq_pair: the real inputs of the scArches study, a reference in the
totalVI paper's CSV layout and a query h5ad, cell types gated on each one's ADTs and the
reference's seurat_v3 genes (``scprob.bench.scarches.real_cite_seq_pair``). Writes the
two h5ad files the simulation writes otherwise."""

import logging
from typing import Any

from workflow_helpers import atomic_output, logged_to

from scprob.bench.scarches import real_cite_seq_pair
from scprob.data.io import read_cite_seq_csv, read_h5ad_cite_seq

log = logging.getLogger(snakemake.rule)


def main(inputs: Any, n_top_genes: int, outputs: Any) -> None:
    reference = read_cite_seq_csv(inputs.reference_rna, inputs.reference_proteins)
    query = read_h5ad_cite_seq(inputs.query)
    reference, query = real_cite_seq_pair(reference, query, n_top_genes)
    for name, adata in (("reference", reference), ("query", query)):
        log.info("%s: %d cells x %d genes, %d proteins", name, adata.n_obs, adata.n_vars,
                 adata.obsm["protein_expression"].shape[1])
    for adata, path in ((reference, outputs.reference), (query, outputs.query)):
        with atomic_output(path) as partial:
            adata.write_h5ad(partial)


with logged_to(snakemake.log[0]):
    main(inputs=snakemake.input, n_top_genes=snakemake.params.n_top_genes,
         outputs=snakemake.output)
