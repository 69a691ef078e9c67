"""Rule read_cite_seq_pair: the real inputs of the scArches study (scarches.real), written
as the two h5ad files the simulation writes otherwise. Format ``totalvi_csv``: a reference
in the totalVI paper's CSV layout and a query h5ad, cell types gated on each one's ADTs
(``scprob.bench.scarches.real_cite_seq_pair``). Format ``seurat_v4``: the paper's Hao et
al. reference and Su et al. COVID-19 query, filtered, clone-summed and masked as in the
paper (``scprob.data.cite_seq``), 4,000 seurat_v3 genes chosen on the reference per batch."""

import logging
from typing import Any

import anndata as ad
from workflow_helpers import atomic_output, logged_to, read_h5ad_input

from scprob.bench.scarches import real_cite_seq_pair, reference_genes
from scprob.data.cite_seq import prepare_covid_query, prepare_hao_reference
from scprob.data.io import read_cite_seq_csv, read_h5ad_cite_seq

log = logging.getLogger(snakemake.rule)


def read_pair(inputs: Any, real: dict[str, Any], seed: int) -> tuple[ad.AnnData, ad.AnnData]:
    if real["format"] == "totalvi_csv":
        reference = read_cite_seq_csv(inputs.reference_rna, inputs.reference_proteins)
        return real_cite_seq_pair(reference, read_h5ad_cite_seq(inputs.query),
                                  real["n_top_genes"])
    reference = prepare_hao_reference(read_h5ad_input(inputs.reference_h5ad),
                                      n_masked_batches=real["n_masked_batches"], seed=seed)
    query = prepare_covid_query(read_h5ad_input(inputs.query), seed=seed)
    return reference_genes(reference, query, real["n_top_genes"], batch_key="batch")


def main(inputs: Any, real: dict[str, Any], seed: int, outputs: Any) -> None:
    reference, query = read_pair(inputs, real, seed)
    for name, adata in (("reference", reference), ("query", query)):
        log.info("%s: %d cells x %d genes, %d proteins", name, adata.n_obs, adata.n_vars,
                 adata.obsm["protein_expression"].shape[1])
    for adata, path in ((reference, outputs.reference), (query, outputs.query)):
        with atomic_output(path) as partial:
            adata.write_h5ad(partial)


with logged_to(snakemake.log[0]):
    main(inputs=snakemake.input, real=dict(snakemake.params.real), seed=snakemake.params.seed,
         outputs=snakemake.output)
