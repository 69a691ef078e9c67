"""Rule evaluate: score one method's neighbour graph (paper Fig. 2e,f, Methods).

Geary's C of the 31 marker and 55 nuisance genes, on the log-normalised expression of the
full gene set: the nuisance genes are scored even for the methods whose input lacked them,
because the question is whether the graph still follows them. Low C = the graph keeps the
gene's signal (wanted for markers), C near 1 = it ignores the gene (wanted for nuisance).
The ground-truth scores compare the graph with the simulated cell state, cell cycle, sex
and batch.
"""

import logging
from typing import Any

import anndata as ad
import pandas as pd
from workflow_helpers import limit_threads, logged_to, read_representation, write_csv

from scprob.bench.metrics import gearys_c, ground_truth_scores

log = logging.getLogger(snakemake.rule)


def gene_scores(prepared: ad.AnnData, connectivities: Any, method: str) -> pd.DataFrame:
    """One row per marker and nuisance gene: gene, gene_set, gearys_c, method."""
    gene_sets = {
        "marker": [str(g) for g in prepared.uns["marker_genes"]],
        "nuisance": [str(g) for g in prepared.uns["nuisance_genes"]],
    }
    genes = [g for names in gene_sets.values() for g in names]
    expression = prepared[:, genes].layers["log_normalized"]
    return pd.DataFrame(
        {
            "gene": genes,
            "gene_set": [s for s, names in gene_sets.items() for _ in names],
            "gearys_c": gearys_c(connectivities, expression),
            "method": method,
        }
    )


def main(
    prepared_path: str,
    integrated_path: str,
    method: str,
    truth: dict[str, Any],
    batch_key: str,
    probe_folds: int,
    seed: int,
    gearys_c_path: str,
    ground_truth_path: str,
) -> None:
    prepared = ad.read_h5ad(prepared_path)
    rep, integrated = read_representation(integrated_path)
    if not integrated.obs_names.equals(prepared.obs_names):
        raise ValueError(
            f"{integrated_path} and {prepared_path} hold different cells; rerun the "
            "integration (snakemake --forcerun integrate_scvi integrate_baseline)."
        )

    per_gene = gene_scores(prepared, rep.connectivities, method)
    medians = per_gene.groupby("gene_set")["gearys_c"].median()
    log.info("%s median Geary's C: %s", rep.name, medians.round(3).to_dict())
    if per_gene["gearys_c"].isna().any():
        constant = per_gene.loc[per_gene["gearys_c"].isna(), "gene"].tolist()
        log.warning("genes constant over the cells (Geary's C undefined): %s", constant)

    scores = ground_truth_scores(
        rep,
        integrated.obs,
        state_key=truth["state_key"],
        nuisance_continuous_keys=truth["nuisance_continuous_keys"],
        nuisance_categorical_keys=truth["nuisance_categorical_keys"],
        batch_key=batch_key,
        cv=probe_folds,
        seed=seed,
    )
    log.info("%s ground-truth scores: %s", rep.name, {k: round(v, 3) for k, v in scores.items()})
    row = pd.DataFrame([{"method": method, **scores}])

    write_csv(per_gene, gearys_c_path)
    write_csv(row, ground_truth_path)


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
