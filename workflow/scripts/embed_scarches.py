"""Rule embed_scarches: the 2-D UMAP of the scArches latent space, reference and query
cells together, from the cosine neighbour graph the paper uses (Fig. 3b,c;
``scprob.bench.scarches.cosine_umap``). Writes ``cell``, ``dataset``, ``cell_type`` (the
truth, also of the query), ``umap_1``, ``umap_2`` per cell."""

import logging

import pandas as pd
from workflow_helpers import limit_threads, logged_to, read_latent, write_csv

from scprob.bench.scarches import cosine_umap

log = logging.getLogger(snakemake.rule)


def main(latent_path: str, n_neighbors: int, seed: int, umap_path: str) -> None:
    obs, latent = read_latent(latent_path)
    umap = cosine_umap(latent, n_neighbors, seed)
    log.info("UMAP of %d cells from a %d-neighbour cosine graph", len(obs), n_neighbors)
    write_csv(pd.DataFrame({"cell": obs.index,
                            "dataset": obs["dataset"].astype(str).to_numpy(),
                            "cell_type": obs["cell_type"].astype(str).to_numpy(),
                            "umap_1": umap[:, 0], "umap_2": umap[:, 1]}), umap_path)


with logged_to(snakemake.log[0]):
    limit_threads(snakemake.threads)
    main(
        latent_path=snakemake.input.latent,
        n_neighbors=snakemake.params.n_neighbors,
        seed=snakemake.params.seed,
        umap_path=snakemake.output.umap,
    )
