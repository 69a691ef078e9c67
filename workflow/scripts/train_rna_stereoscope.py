"""Rule train_rna_stereoscope: Stereoscope's single-cell step on the reference (paper
Fig. 5), ``rna_epochs`` epochs (``scprob.bench.deconvolution.fit_signatures``). Writes the
model and its timing."""

from typing import Any

from workflow_helpers import limit_threads, logged_to, read_h5ad_input, write_json

from scprob.bench.deconvolution import fit_signatures


def main(reference_path: str, labels_key: str, epochs: int, settings: dict[str, Any],
         seed: int, model_path: str, timing_path: str) -> None:
    model, timing = fit_signatures(read_h5ad_input(reference_path), labels_key, epochs,
                                   settings, seed)
    model.save(model_path, overwrite=True)
    write_json(timing, timing_path)


with logged_to(snakemake.log[0]):
    limit_threads(snakemake.threads)
    main(
        reference_path=snakemake.input.reference,
        labels_key=snakemake.params.labels_key,
        epochs=int(snakemake.wildcards.rna_epochs),
        settings=dict(snakemake.params.settings),
        seed=snakemake.params.seed,
        model_path=snakemake.output.model,
        timing_path=snakemake.output.timing,
    )
