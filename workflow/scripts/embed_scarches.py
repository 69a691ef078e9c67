"""Rule embed_scarches: the 2-D UMAP of the scArches latent space, reference and query
cells together (paper Fig. 3b,c).

The paper builds the neighbour graph with the cosine metric. The latents are scaled to
unit length first: the Euclidean distance of unit vectors, ``sqrt(2 (1 − cos))``, ranks
neighbours exactly as the cosine distance does, so the project's Euclidean graph
(``scprob.bench.baselines.neighbor_graph``) gives the cosine graph.

Writes ``cell``, ``dataset``, ``cell_type`` (the truth, also of the query), ``umap_1``,
``umap_2`` per cell.
"""

import logging

import numpy as np
import pandas as pd
from scarches_helpers import LATENT_KEY, read_latent
from workflow_helpers import limit_threads, logged_to, write_csv

from scprob.bench.baselines import neighbor_graph, umap_from_graph

log = logging.getLogger(snakemake.rule)


def main(latent_path: str, n_neighbors: int, seed: int, umap_path: str) -> None:
    adata = read_latent(latent_path)
    latent = np.asarray(adata.obsm[LATENT_KEY], dtype=np.float64)
    norms = np.linalg.norm(latent, axis=1, keepdims=True)
    unit = latent / np.maximum(norms, np.finfo(np.float64).tiny)
    graph = neighbor_graph(unit, n_neighbors=n_neighbors, seed=seed, name="scArches")
    umap = umap_from_graph(graph, seed=seed)
    log.info("UMAP of %d cells from a %d-neighbour cosine graph", adata.n_obs, n_neighbors)
    write_csv(pd.DataFrame({"cell": adata.obs_names,
                            "dataset": adata.obs["dataset"].astype(str).to_numpy(),
                            "cell_type": adata.obs["cell_type"].astype(str).to_numpy(),
                            "umap_1": umap[:, 0], "umap_2": umap[:, 1]}), umap_path)


with logged_to(snakemake.log[0]):
    limit_threads(snakemake.threads)
    main(
        latent_path=snakemake.input.latent,
        n_neighbors=snakemake.params.n_neighbors,
        seed=snakemake.params.seed,
        umap_path=snakemake.output.umap,
    )
