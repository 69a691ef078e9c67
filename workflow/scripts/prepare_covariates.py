"""Rule prepare_covariates: the paper's preprocessing of the wing-disc counts (Methods,
Fig. 2; ``scprob.bench.covariates.prepare``): log-normalised expression and one continuous
covariate per nuisance gene. Writes the prepared h5ad, the Supp. Table 2 analogue (gene,
role, gene set) and the two gene lists, one name a line."""

from workflow_helpers import atomic_output, logged_to, read_h5ad_input, write_csv

from scprob.bench.covariates import prepare


def write_lines(lines: list[str], path: str) -> None:
    with atomic_output(path) as partial:
        partial.write_text("".join(f"{line}\n" for line in lines))


def main(counts_path: str, prepared_path: str, table_path: str, markers_path: str,
         nuisance_path: str) -> None:
    adata = read_h5ad_input(counts_path)
    genes = prepare(adata)
    with atomic_output(prepared_path) as partial:
        adata.write_h5ad(partial)
    write_csv(genes, table_path)
    for gene_set, path in (("marker", markers_path), ("nuisance", nuisance_path)):
        write_lines(genes.loc[genes["gene_set"] == gene_set, "gene"].tolist(), path)


with logged_to(snakemake.log[0]):
    main(
        counts_path=snakemake.input.counts,
        prepared_path=snakemake.output.prepared,
        table_path=snakemake.output.genes_table,
        markers_path=snakemake.output.marker_genes,
        nuisance_path=snakemake.output.nuisance_genes,
    )
