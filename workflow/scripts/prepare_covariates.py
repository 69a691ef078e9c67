"""Rule prepare_covariates: the paper's preprocessing of the wing-disc counts (Methods, Fig. 2).

Adds ``layers["log_normalized"]`` (counts scaled to the median total, then ``log1p``; every
gene, for Geary's C) and one continuous covariate per nuisance gene
(``obs["nuisance_<gene>"]``, the same log-normalised value; their keys in
``uns["nuisance_covariate_keys"]``). Writes the Supp. Table 2 analogue (gene, role,
gene set) and the two gene lists, one name a line.
"""

import logging

import pandas as pd
from workflow_helpers import atomic_output, logged_to, write_csv

from scprob.data.preprocess import add_nuisance_covariates, log_normalize

log = logging.getLogger(snakemake.rule)


def write_lines(lines: list[str], path: str) -> None:
    with atomic_output(path) as partial:
        partial.write_text("".join(f"{line}\n" for line in lines))


def main(
    counts_path: str, prepared_path: str, table_path: str, markers_path: str, nuisance_path: str
) -> None:
    import anndata as ad

    adata = ad.read_h5ad(counts_path)
    marker_genes = [str(g) for g in adata.uns["marker_genes"]]
    nuisance_genes = [str(g) for g in adata.uns["nuisance_genes"]]

    adata.layers["log_normalized"] = log_normalize(adata.layers["counts"])
    covariate_keys = add_nuisance_covariates(adata, nuisance_genes, layer="counts")
    adata.uns["nuisance_covariate_keys"] = covariate_keys
    log.info(
        "%d nuisance covariates added to obs (%s, ...)", len(covariate_keys), covariate_keys[0]
    )

    genes = pd.DataFrame(
        {
            "gene": marker_genes + nuisance_genes,
            "gene_set": ["marker"] * len(marker_genes) + ["nuisance"] * len(nuisance_genes),
        }
    )
    genes.insert(1, "role", adata.var.loc[genes["gene"], "gene_role"].astype(str).to_numpy())

    with atomic_output(prepared_path) as partial:
        adata.write_h5ad(partial)
    write_csv(genes, table_path)
    write_lines(marker_genes, markers_path)
    write_lines(nuisance_genes, nuisance_path)


with logged_to(snakemake.log[0]):
    main(
        counts_path=snakemake.input.counts,
        prepared_path=snakemake.output.prepared,
        table_path=snakemake.output.genes_table,
        markers_path=snakemake.output.marker_genes,
        nuisance_path=snakemake.output.nuisance_genes,
    )
