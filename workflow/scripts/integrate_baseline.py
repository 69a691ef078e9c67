"""Rule integrate_baseline: the scanpy workflows of paper Supp. Fig. 1 (Methods, Fig. 2).

Both start from the counts without the nuisance genes, log-normalise, regress the 55
nuisance covariates out linearly (``scanpy.pp.regress_out``), scale and run PCA, then
correct the batch:

- ``regress_bbknn``: batch-balanced neighbours (bbknn); the graph is the method's output.
- ``regress_harmony``: Harmony on the PCs, then the shared kNN graph.
"""

import dataclasses
import logging

import anndata as ad
from workflow_helpers import limit_threads, logged_to, write_representation

from scprob.bench.baselines import regress_bbknn, regress_harmony, umap_from_graph

log = logging.getLogger(snakemake.rule)


def main(
    prepared_path: str,
    method: str,
    display_name: str,
    batch_key: str,
    n_pcs: int,
    n_neighbors: int,
    seed: int,
    integrated_path: str,
) -> None:
    adata = ad.read_h5ad(prepared_path)
    covariate_keys = [str(k) for k in adata.uns["nuisance_covariate_keys"]]
    nuisance_genes = [str(g) for g in adata.uns["nuisance_genes"]]
    log.info(
        "%s: regressing out %d covariates, leaving out %d nuisance genes, %d PCs",
        method, len(covariate_keys), len(nuisance_genes), n_pcs,
    )
    common = {"layer": "counts", "exclude_genes": nuisance_genes}
    if method == "regress_bbknn":
        rep = regress_bbknn(adata, covariate_keys, batch_key, n_pcs, seed, **common)
    else:
        rep = regress_harmony(
            adata, covariate_keys, batch_key, n_pcs, seed, n_neighbors=n_neighbors, **common
        )
    rep = dataclasses.replace(rep, name=display_name)
    umap = umap_from_graph(rep, seed=seed)
    write_representation(
        integrated_path, adata.obs.drop(columns=covariate_keys), rep, umap, method
    )


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
