"""Rule deconvolve_spots_peer: a peer's Stereoscope on the same reference and spots, for
the same RNA + spatial epochs as ours (paper Supp. Fig. 5), in the peer's own environment:
scvi-tools 1.4.2 (``scprob.bench.deconvolution.run_scvi_tools``) or the original
stereoscope 0.3 CLI (``run_original``). Writes the proportions and the run's timing; the
peer's own output goes to the log."""

import tempfile
from pathlib import Path
from typing import Any

from workflow_helpers import logged_to, read_h5ad_input, write_csv, write_json

from scprob.bench.deconvolution import run_original, run_scvi_tools


def main(peer: str, reference_path: str, spots_path: str, rna_epochs: int,
         spatial_epochs: int, settings: dict[str, Any], seed: int, threads: int,
         proportions_path: str, timing_path: str) -> None:
    with tempfile.TemporaryDirectory(prefix=f"deconvolution_{peer}_") as scratch:
        work_dir = Path(scratch)
        if peer == "scvi_tools":
            proportions, timing = run_scvi_tools(
                settings["python"][peer], settings["script"], reference_path, spots_path,
                settings["labels_key"], rna_epochs, spatial_epochs, seed, threads, work_dir,
                settings["timeout_s"])
        else:
            proportions, timing = run_original(
                settings["python"][peer], read_h5ad_input(reference_path),
                read_h5ad_input(spots_path), settings["labels_key"], rna_epochs,
                spatial_epochs, settings["lr"], threads, work_dir, settings["timeout_s"])
    write_csv(proportions.reset_index(), proportions_path)
    write_json(timing, timing_path)


with logged_to(snakemake.log[0]):
    main(
        peer=snakemake.wildcards.peer,
        reference_path=snakemake.input.reference,
        spots_path=snakemake.input.spots,
        rna_epochs=int(snakemake.wildcards.rna_epochs),
        spatial_epochs=int(snakemake.wildcards.spatial_epochs),
        settings=dict(snakemake.params.settings),
        seed=snakemake.params.seed,
        threads=snakemake.threads,
        proportions_path=snakemake.output.proportions,
        timing_path=snakemake.output.timing,
    )
