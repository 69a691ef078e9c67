"""Rule evaluate_reference_totalvi: the reference totalVI on its own (paper Fig. 3a's
reference model): k-means clusters of its latent space against the annotated cell types
(ADT-gated on real data), the mean protein foreground probability per type (its protein
background model) and a figure of both (``scprob.bench.scarches.reference_clusters``,
``foreground_by_type``)."""

import logging
from typing import Any

import pandas as pd
from workflow_helpers import limit_threads, logged_to, read_h5ad_input, read_latent, write_csv

from scprob.bench.figures_scarches import plot_reference_totalvi
from scprob.bench.scarches import cosine_umap, foreground_by_type, reference_clusters
from scprob.models import TOTALVI

log = logging.getLogger(snakemake.rule)


def main(inputs: Any, label_key: str, n_neighbors: int, seed: int, accelerator: str,
         outputs: Any) -> None:
    reference = read_h5ad_input(inputs.reference)
    obs, latent = read_latent(inputs.latent)
    labels = obs[label_key]
    clusters, scores = reference_clusters(latent, labels, seed)
    log.info("k-means of the reference latents against %s:\n%s", label_key,
             scores.to_string(index=False))
    model = TOTALVI.load(inputs.model, adata=reference, accelerator=accelerator)
    foreground = foreground_by_type(model, reference, reference.obs[label_key])
    log.info("mean protein foreground probability by type:\n%s", foreground.round(2))
    xy = cosine_umap(latent, n_neighbors=n_neighbors, seed=seed)
    umap = pd.DataFrame({"umap_1": xy[:, 0], "umap_2": xy[:, 1],
                         "label": labels.astype(str).to_numpy(), "cluster": clusters},
                        index=obs.index)
    write_csv(scores, outputs.clusters)
    write_csv(foreground.reset_index(), outputs.foreground)
    plot_reference_totalvi(umap, foreground, scores, outputs.figure.removesuffix(".png"))


with logged_to(snakemake.log[0]):
    limit_threads(snakemake.threads)
    main(
        inputs=snakemake.input,
        label_key=snakemake.params.label_key,
        n_neighbors=snakemake.params.n_neighbors,
        seed=snakemake.params.seed,
        accelerator=snakemake.params.accelerator,
        outputs=snakemake.output,
    )
