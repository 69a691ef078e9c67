"""Rule deconvolve_spots: Stereoscope's spatial step (paper Fig. 5), the spots'
proportions on a trained RNA model's signatures after ``spatial_epochs`` epochs
(``scprob.bench.deconvolution.deconvolve``). Writes the proportions (spots × types) and
the fit's timing, the RNA model's included."""

from typing import Any

from workflow_helpers import (
    limit_threads,
    logged_to,
    read_h5ad_input,
    read_json,
    write_csv,
    write_json,
)

from scprob.bench.deconvolution import deconvolve
from scprob.models.stereoscope import RNAStereoscope


def main(spots_path: str, reference_path: str, model_path: str, rna_timing_path: str,
         epochs: int, settings: dict[str, Any], seed: int, proportions_path: str,
         timing_path: str) -> None:
    rna_model = RNAStereoscope.load(model_path, read_h5ad_input(reference_path))
    proportions, timing = deconvolve(read_h5ad_input(spots_path), rna_model, epochs,
                                     settings, seed)
    write_csv(proportions.rename_axis("spot").reset_index(), proportions_path)
    write_json({**read_json(rna_timing_path), **timing}, timing_path)


with logged_to(snakemake.log[0]):
    limit_threads(snakemake.threads)
    main(
        spots_path=snakemake.input.spots,
        reference_path=snakemake.input.reference,
        model_path=snakemake.input.model,
        rna_timing_path=snakemake.input.rna_timing,
        epochs=int(snakemake.wildcards.spatial_epochs),
        settings=dict(snakemake.params.settings),
        seed=snakemake.params.seed,
        proportions_path=snakemake.output.proportions,
        timing_path=snakemake.output.timing,
    )
