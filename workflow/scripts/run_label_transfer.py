"""Rule label_transfer: random-forest label transfer on one model's latent space (paper
Fig. 3, Methods).

The forest (``class_weight="balanced_subsample"``) trains on the reference cells' latents
with the reference's annotations and labels the query cells from theirs; the query's true
cell types are only read to be written next to the predictions, for scoring downstream.
``scarches``: the latents of the scArches query model; ``de_novo``: those of totalVI fitted
on reference and query together.

Writes one row per query cell: ``cell``, ``donor``, ``condition``, ``batch``,
``true_label``, ``predicted_label``.
"""

import logging

import pandas as pd
from scarches_helpers import LATENT_KEY, read_latent
from workflow_helpers import limit_threads, logged_to, write_csv

from scprob.bench.label_transfer import transfer_labels, transfer_scores

log = logging.getLogger(snakemake.rule)


def main(latent_path: str, method: str, label_key: str, n_estimators: int, seed: int,
         threads: int, predictions_path: str) -> None:
    adata = read_latent(latent_path)
    is_reference = (adata.obs["dataset"] == "reference").to_numpy()
    reference, query = adata[is_reference], adata[~is_reference]
    log.info("%s: forest on %d reference cells (%d types), %d query cells", method,
             reference.n_obs, reference.obs[label_key].nunique(), query.n_obs)
    predicted = transfer_labels(
        reference.obsm[LATENT_KEY], reference.obs[label_key].astype(str),
        query.obsm[LATENT_KEY], seed=seed, n_estimators=n_estimators, n_jobs=threads,
    )
    predictions = pd.DataFrame({
        "cell": query.obs_names,
        "donor": query.obs["donor"].astype(str).to_numpy(),
        "condition": query.obs["condition"].astype(str).to_numpy(),
        "batch": query.obs["batch"].astype(str).to_numpy(),
        "true_label": query.obs[label_key].astype(str).to_numpy(),
        "predicted_label": predicted,
    })
    log.info("scores against the held-out labels: %s",
             transfer_scores(predictions["true_label"], predictions["predicted_label"]))
    write_csv(predictions, predictions_path)


with logged_to(snakemake.log[0]):
    limit_threads(snakemake.threads)
    main(
        latent_path=snakemake.input.latent,
        method=snakemake.wildcards.method,
        label_key=snakemake.params.label_key,
        n_estimators=snakemake.params.n_estimators,
        seed=snakemake.params.seed,
        threads=snakemake.threads,
        predictions_path=snakemake.output.predictions,
    )
