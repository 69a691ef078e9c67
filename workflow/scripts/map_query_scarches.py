"""Rule map_query_scarches: scArches surgery of the reference totalVI and query training
(paper Fig. 3a, Methods; ``scprob.bench.scarches.map_query``). Writes the query model, the
refined latents of reference and query cells from it, the history and the stage's timings,
which record how far the reference cells' latents moved (they must not)."""

from typing import Any

from workflow_helpers import (
    limit_threads,
    logged_to,
    read_h5ad_input,
    read_latent,
    write_csv,
    write_json,
    write_latent,
)

from scprob.bench.scarches import map_query, timing_record
from scprob.models import TOTALVI


def main(inputs: Any, training: dict[str, Any], freeze_dropout: bool,
         min_gene_overlap: float, refine_steps: int, seed: int, accelerator: str,
         threads: int, outputs: Any) -> None:
    reference = read_h5ad_input(inputs.reference)
    query = read_h5ad_input(inputs.query)
    _, reference_latent = read_latent(inputs.reference_latent)
    reference_model = TOTALVI.load(inputs.model, adata=reference, accelerator=accelerator)
    result = map_query(reference, query, reference_model, reference_latent, training,
                       freeze_dropout, min_gene_overlap, refine_steps, seed, accelerator)
    result.model.save(outputs.model, overwrite=True)
    write_latent(outputs.latent, result.obs, result.latent, model="scarches")
    write_csv(result.model.history.assign(stage="query"), outputs.history)
    write_json(timing_record("query", result, training, threads), outputs.timing)


with logged_to(snakemake.log[0]):
    limit_threads(snakemake.threads)
    main(
        inputs=snakemake.input,
        training=dict(snakemake.params.training),
        freeze_dropout=snakemake.params.freeze_dropout,
        min_gene_overlap=snakemake.params.min_gene_overlap,
        refine_steps=snakemake.params.refine_steps,
        seed=snakemake.params.seed,
        accelerator=snakemake.params.accelerator,
        threads=snakemake.threads,
        outputs=snakemake.output,
    )
