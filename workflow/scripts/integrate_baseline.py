"""Rule integrate_baseline: the scanpy workflows regress-bbknn and regress-harmony of paper
Supp. Fig. 1 on the counts without the nuisance genes (``scprob.bench.covariates``).
Writes the representation (graph and UMAP, with the cells' truth)."""

from workflow_helpers import limit_threads, logged_to, read_h5ad_input, write_representation

from scprob.bench.covariates import baseline_representation, ground_truth_obs


def main(prepared_path: str, method: str, display_name: str, batch_key: str, n_pcs: int,
         n_neighbors: int, seed: int, integrated_path: str) -> None:
    prepared = read_h5ad_input(prepared_path)
    rep, umap = baseline_representation(prepared, method, display_name, batch_key, n_pcs,
                                        n_neighbors, seed)
    write_representation(integrated_path, ground_truth_obs(prepared), rep, umap, method)


with logged_to(snakemake.log[0]):
    limit_threads(snakemake.threads)
    main(
        prepared_path=snakemake.input.prepared,
        method=snakemake.wildcards.method,
        display_name=snakemake.params.display_name,
        batch_key=snakemake.params.batch_key,
        n_pcs=snakemake.params.n_pcs,
        n_neighbors=snakemake.params.n_neighbors,
        seed=snakemake.params.seed,
        integrated_path=snakemake.output.integrated,
    )
