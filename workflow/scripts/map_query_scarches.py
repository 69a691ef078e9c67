"""Rule map_query_scarches: scArches surgery of the reference totalVI and query training
(paper Fig. 3a, Methods).

``TOTALVI.load_query_data`` aligns the query to the reference's genes and protein panel
(the reference proteins the query did not stain are masked for its batches), appends one
trainable row per query batch to every covariate table and freezes every reference weight
(and, with ``freeze_dropout``, drops dropout). The query model then trains on the query
alone (paper: 150 epochs, weight decay 0). The latents of reference *and* query cells are
read from the query model; since the reference weights are frozen, the reference cells'
latents must equal the reference model's, which this rule measures.

Writes the query model, the latents of all cells (refined as the reference's were), the
history and the stage's timings: the surgery (alignment, growing the tables, the new
batches' background prior), the query training and reading the query's latents.
"""

import logging
from typing import Any

import anndata as ad
import numpy as np
from scarches_helpers import (
    StageClock,
    latent_obs,
    read_latent,
    train_totalvi,
    write_latent,
    write_timing,
)
from workflow_helpers import limit_threads, logged_to, write_csv

from scprob.models import TOTALVI
from scprob.nn.surgery import n_trainable_parameters

log = logging.getLogger(snakemake.rule)


def main(input_paths: Any, training: dict[str, Any], freeze_dropout: bool,
         min_gene_overlap: float, refine_steps: int, seed: int, accelerator: str,
         threads: int, outputs: Any) -> None:
    reference = ad.read_h5ad(input_paths.reference)
    query = ad.read_h5ad(input_paths.query)
    reference_model = TOTALVI.load(input_paths.model, adata=reference, accelerator=accelerator)

    clock = StageClock()
    with clock.section("surgery"):
        model = TOTALVI.load_query_data(query, reference_model, freeze_dropout=freeze_dropout,
                                        min_gene_overlap=min_gene_overlap)
    n_total = sum(p.numel() for p in model.module.parameters())
    n_trainable = n_trainable_parameters(model.module)
    log.info("query model: %d of %d parameters trainable (%.2f %%), %d new batches",
             n_trainable, n_total, 100.0 * n_trainable / n_total, query.obs["batch"].nunique())
    with clock.section("train"):
        train_totalvi(model, training, seed, accelerator)
    with clock.section("refine"):
        query_latent = model.get_latent_representation(refine_steps=refine_steps)
    with clock.section("latent"):  # for the check below, not part of the query step
        reference_latent = model.get_latent_representation(adata=reference,
                                                            refine_steps=refine_steps)

    # The reference's representation must not move when a query is mapped (scArches).
    before = read_latent(input_paths.reference_latent).obsm["X_latent"]
    change = float(np.max(np.abs(reference_latent - before)))
    log.info("largest change of a reference latent coordinate after the query: %.3g", change)

    model.save(outputs.model, overwrite=True)
    write_latent(outputs.latent, latent_obs(reference, query),
                 np.concatenate([reference_latent, query_latent]), model="scarches")
    write_csv(model.history.assign(stage="query"), outputs.history)
    write_timing(outputs.timing, "query", clock, ("surgery", "train", "refine"),
                 n_cells=query.n_obs,
                 max_epochs=training["max_epochs"], epochs_run=len(model.history),
                 batch_size=training["batch_size"], threads=threads,
                 n_parameters=n_total, n_trainable_parameters=n_trainable,
                 reference_latent_max_abs_change=change)


with logged_to(snakemake.log[0]):
    limit_threads(snakemake.threads)
    main(
        input_paths=snakemake.input,
        training=dict(snakemake.params.training),
        freeze_dropout=snakemake.params.freeze_dropout,
        min_gene_overlap=snakemake.params.min_gene_overlap,
        refine_steps=snakemake.params.refine_steps,
        seed=snakemake.params.seed,
        accelerator=snakemake.params.accelerator,
        threads=snakemake.threads,
        outputs=snakemake.output,
    )
