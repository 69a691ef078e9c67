"""Rule train_totalvi_scarches: a totalVI fitted from scratch (paper Fig. 3, Methods;
``scprob.bench.scarches.fit_from_scratch``): ``reference``, the reference alone, which
scArches later extends; ``de_novo``, reference and query stacked with the reference's
settings. Writes the model, the refined latents of every cell it was fitted on (with the
cells' truth), the per-epoch history and the stage's timings."""

from typing import Any

from workflow_helpers import (
    limit_threads,
    logged_to,
    read_h5ad_input,
    write_csv,
    write_json,
    write_latent,
)

from scprob.bench.scarches import fit_from_scratch, timing_record


def main(fit: str, inputs: Any, architecture: dict[str, Any], training: dict[str, Any],
         batch_key: str, refine_steps: int, seed: int, accelerator: str, threads: int,
         outputs: Any) -> None:
    reference = read_h5ad_input(inputs.reference)
    query = read_h5ad_input(inputs.query) if fit == "de_novo" else None
    result = fit_from_scratch(reference, query, architecture, training, batch_key,
                              refine_steps, seed, accelerator)
    result.model.save(outputs.model, overwrite=True)
    write_latent(outputs.latent, result.obs, result.latent, model=fit)
    write_csv(result.model.history.assign(stage=fit), outputs.history)
    write_json(timing_record(fit, result, training, threads), outputs.timing)


with logged_to(snakemake.log[0]):
    limit_threads(snakemake.threads)
    main(
        fit=snakemake.wildcards.fit,
        inputs=snakemake.input,
        architecture=dict(snakemake.params.architecture),
        training=dict(snakemake.params.training),
        batch_key=snakemake.params.batch_key,
        refine_steps=snakemake.params.refine_steps,
        seed=snakemake.params.seed,
        accelerator=snakemake.params.accelerator,
        threads=snakemake.threads,
        outputs=snakemake.output,
    )
