"""Rule evaluate: score one method's neighbour graph (paper Fig. 2e,f, Methods): Geary's C
of the marker and nuisance genes (low = the graph keeps the gene's signal, near 1 = it
ignores the gene), and the ground-truth scores against the simulated cell state, cell
cycle, sex and batch (``scprob.bench.metrics``)."""

import logging
from typing import Any

import pandas as pd
from workflow_helpers import (
    limit_threads,
    logged_to,
    read_h5ad_input,
    read_representation,
    write_csv,
)

from scprob.bench.covariates import gene_scores
from scprob.bench.metrics import ground_truth_scores

log = logging.getLogger(snakemake.rule)


def main(prepared_path: str, integrated_path: str, method: str, truth: dict[str, Any],
         batch_key: str, probe_folds: int, seed: int, gearys_c_path: str,
         ground_truth_path: str) -> None:
    prepared = read_h5ad_input(prepared_path)
    rep, integrated = read_representation(integrated_path)
    if not integrated.obs_names.equals(prepared.obs_names):
        raise ValueError(
            f"{integrated_path} and {prepared_path} hold different cells; rerun the "
            "integration (snakemake --forcerun integrate_scvi integrate_baseline)."
        )
    per_gene = gene_scores(prepared, rep.connectivities, method)
    log.info("%s median Geary's C: %s", rep.name,
             per_gene.groupby("gene_set")["gearys_c"].median().round(3).to_dict())
    constant = per_gene.loc[per_gene["gearys_c"].isna(), "gene"].tolist()
    if constant:
        log.warning("genes constant over the cells (Geary's C undefined): %s", constant)
    scores = ground_truth_scores(
        rep, integrated.obs, state_key=truth["state_key"],
        nuisance_continuous_keys=truth["nuisance_continuous_keys"],
        nuisance_categorical_keys=truth["nuisance_categorical_keys"],
        batch_key=batch_key, cv=probe_folds, seed=seed,
    )
    log.info("%s ground-truth scores: %s", rep.name, {k: round(v, 3) for k, v in scores.items()})
    write_csv(per_gene, gearys_c_path)
    write_csv(pd.DataFrame([{"method": method, **scores}]), ground_truth_path)


with logged_to(snakemake.log[0]):
    limit_threads(snakemake.threads)
    main(
        prepared_path=snakemake.input.prepared,
        integrated_path=snakemake.input.integrated,
        method=snakemake.wildcards.method,
        truth=snakemake.params.truth,
        batch_key=snakemake.params.batch_key,
        probe_folds=snakemake.params.probe_folds,
        seed=snakemake.params.seed,
        gearys_c_path=snakemake.output.gearys_c,
        ground_truth_path=snakemake.output.ground_truth,
    )
