"""Rule train_totalvi_scarches: a totalVI fitted from scratch (paper Fig. 3, Methods).

- ``reference``: the reference alone, the model scArches later extends (paper: 250
  epochs, two hidden layers, layer norm instead of batch norm).
- ``de_novo``: "default totalVI", one fit on the reference and the query stacked, with the
  reference's settings; its reference cells' latents train the de novo label transfer.

Writes the model, the latent means ``(n_cells, n_latent)`` of every cell it was fitted on
(refined by ``refine_steps`` of per-cell ELBO ascent; with the cells' truth in obs), the
per-epoch history and the stage's timings: building the model (data stacking,
registration, background prior), training it and reading the latents.
"""

import logging
from typing import Any

import anndata as ad
from scarches_helpers import (
    StageClock,
    build_totalvi,
    latent_obs,
    train_totalvi,
    write_latent,
    write_timing,
)
from workflow_helpers import limit_threads, logged_to, write_csv

from scprob.data.combine import concat_reference_query

log = logging.getLogger(snakemake.rule)


def main(fit: str, input_paths: Any, architecture: dict[str, Any],
         training: dict[str, Any], batch_key: str, refine_steps: int, seed: int,
         accelerator: str, threads: int, outputs: Any) -> None:
    reference = ad.read_h5ad(input_paths.reference)
    query = ad.read_h5ad(input_paths.query) if fit == "de_novo" else None

    clock = StageClock()
    with clock.section("setup"):
        adata = reference if query is None else concat_reference_query(
            reference, query, batch_key=batch_key)
        model = build_totalvi(adata, architecture, batch_key, seed)
    log.info("%s: %d cells x %d genes, %d proteins, %d batches", fit, adata.n_obs,
             adata.n_vars, adata.obsm["protein_expression"].shape[1],
             adata.obs[batch_key].nunique())
    with clock.section("train"):
        train_totalvi(model, training, seed, accelerator)
    with clock.section("refine"):
        latent = model.get_latent_representation(refine_steps=refine_steps)

    model.save(outputs.model, overwrite=True)
    write_latent(outputs.latent, latent_obs(adata), latent, model=fit)
    write_csv(model.history.assign(stage=fit), outputs.history)
    write_timing(outputs.timing, fit, clock, ("setup", "train", "refine"), n_cells=adata.n_obs,
                 max_epochs=training["max_epochs"], epochs_run=len(model.history),
                 batch_size=training["batch_size"], threads=threads)


with logged_to(snakemake.log[0]):
    limit_threads(snakemake.threads)
    main(
        fit=snakemake.wildcards.fit,
        input_paths=snakemake.input,
        architecture=dict(snakemake.params.architecture),
        training=dict(snakemake.params.training),
        batch_key=snakemake.params.batch_key,
        refine_steps=snakemake.params.refine_steps,
        seed=snakemake.params.seed,
        accelerator=snakemake.params.accelerator,
        threads=snakemake.threads,
        outputs=snakemake.output,
    )
