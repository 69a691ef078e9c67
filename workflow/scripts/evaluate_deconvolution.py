"""Rule evaluate_deconvolution: every run's proportions against the simulated truth (paper
Fig. 5, Supp. Fig. 5): per-type Spearman and Pearson across spots, each run's mean over
types with its fit time (the convergence table), each peer's agreement with ours at the
same epochs, and the study's claim check (``scprob.bench.deconvolution``)."""

import logging
from typing import Any

import pandas as pd
from workflow_helpers import logged_to, read_h5ad_input, read_json, write_csv

from scprob.bench.deconvolution import (
    accuracy_table,
    agreement_table,
    convergence_table,
    deconvolution_claims,
    fit_seconds,
    true_proportions,
)

log = logging.getLogger(snakemake.rule)


def main(spots_path: str, runs: list[list[Any]], proportion_paths: list[str],
         timing_paths: list[str], method: str, peers: list[str],
         targets: list[dict[str, Any]], outputs: Any) -> None:
    truth = true_proportions(read_h5ad_input(spots_path, backed=True))
    keys = [tuple(run) for run in runs]
    proportions = {key: pd.read_csv(path, index_col="spot")
                   for key, path in zip(keys, proportion_paths, strict=True)}
    timings = {key: fit_seconds(read_json(path))
               for key, path in zip(keys, timing_paths, strict=True)}
    accuracy = accuracy_table(proportions, truth)
    convergence = convergence_table(accuracy, timings)
    log.info("convergence:\n%s", convergence.to_string(index=False))
    agreement = agreement_table(proportions, method, peers)
    if len(agreement):
        log.info("agreement with ours, median per-type Spearman:\n%s", agreement.groupby(
            ["method", "rna_epochs", "spatial_epochs"])["spearman"].median().to_string())
    claims = deconvolution_claims(
        convergence, method,
        [(t["rna_epochs"], t["spatial_epochs"], t["min_mean_spearman"]) for t in targets],
        peers)
    log.info("claim check:\n%s", claims.to_string(index=False))
    write_csv(accuracy, outputs.accuracy)
    write_csv(convergence, outputs.convergence)
    write_csv(agreement, outputs.agreement)
    write_csv(claims, outputs.claim_check)


with logged_to(snakemake.log[0]):
    main(
        spots_path=snakemake.input.spots,
        runs=list(snakemake.params.runs),
        proportion_paths=list(snakemake.input.proportions),
        timing_paths=list(snakemake.input.timings),
        method=snakemake.params.method,
        peers=list(snakemake.params.peers),
        targets=list(snakemake.params.targets),
        outputs=snakemake.output,
    )
