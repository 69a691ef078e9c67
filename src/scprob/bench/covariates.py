"""The covariates study (paper Fig. 2, Supp. Fig. 1): removing cell cycle and sex, passed
as continuous covariates, from a wing-disc atlas.

Four methods each give a :class:`~scprob.bench.baselines.Representation` of the cells:
scVI (the batch as its only covariate), scVI-cc (the batch plus the nuisance genes'
log-normalised expression as continuous covariates, those genes removed from its input),
and the scanpy baselines regress-bbknn and regress-harmony. Each graph is scored by
Geary's C of the marker and nuisance genes; the claim of Fig. 2e,f compares the medians
of scVI-cc with scVI's.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scprob.bench.baselines import (
    Representation,
    neighbor_graph,
    regress_bbknn,
    regress_harmony,
    umap_from_graph,
)
from scprob.bench.claims import Claim, Criterion, claims_table
from scprob.bench.metrics import gearys_c
from scprob.data.preprocess import add_nuisance_covariates, log_normalize

if TYPE_CHECKING:
    from scprob.models import SCVI

log = logging.getLogger(__name__)


def nuisance_covariate_keys(prepared: ad.AnnData) -> list[str]:
    """The obs columns holding the nuisance genes' expression (``prepare_covariates``)."""
    return [str(k) for k in prepared.uns["nuisance_covariate_keys"]]


def ground_truth_obs(prepared: ad.AnnData) -> pd.DataFrame:
    """The cells' simulated truth: obs without the nuisance covariate columns."""
    return prepared.obs.drop(columns=nuisance_covariate_keys(prepared))


def prepare(adata: ad.AnnData) -> pd.DataFrame:
    """The paper's preprocessing, in place: ``layers["log_normalized"]`` (counts scaled to
    the median total, then ``log1p``; every gene, for Geary's C) and one continuous
    covariate per nuisance gene (``obs["nuisance_<gene>"]``, the same log-normalised
    value; their keys in ``uns["nuisance_covariate_keys"]``). Returns the Supp. Table 2
    analogue: gene, role, gene_set (marker or nuisance)."""
    marker_genes = [str(g) for g in adata.uns["marker_genes"]]
    nuisance_genes = [str(g) for g in adata.uns["nuisance_genes"]]
    adata.layers["log_normalized"] = log_normalize(adata.layers["counts"])
    covariate_keys = add_nuisance_covariates(adata, nuisance_genes, layer="counts")
    adata.uns["nuisance_covariate_keys"] = covariate_keys
    log.info("%d nuisance covariates added to obs (%s, ...)", len(covariate_keys),
             covariate_keys[0])
    genes = pd.DataFrame({
        "gene": marker_genes + nuisance_genes,
        "gene_set": ["marker"] * len(marker_genes) + ["nuisance"] * len(nuisance_genes),
    })
    genes.insert(1, "role", adata.var.loc[genes["gene"], "gene_role"].astype(str).to_numpy())
    return genes


# The methods --------------------------------------------------------------------------------


def scvi_input(prepared: ad.AnnData, method: str) -> tuple[ad.AnnData, list[str] | None]:
    """The AnnData the model reads and its continuous covariate keys: all genes and none
    for ``scvi``; for ``scvi_cc`` the genes without the nuisance genes, and the nuisance
    genes' expression as covariates, so the model cannot relearn them from the counts."""
    if method == "scvi":
        return prepared, None
    nuisance_genes = [str(g) for g in prepared.uns["nuisance_genes"]]
    kept = prepared[:, ~prepared.var_names.isin(nuisance_genes)].copy()
    return kept, nuisance_covariate_keys(prepared)


def fit_scvi(prepared: ad.AnnData, method: str, settings: Mapping[str, Any],
             batch_key: str) -> SCVI:
    """scVI or scVI-cc trained on the raw counts (``layers["counts"]``) with the config's
    ``scvi`` block (architecture, training and ``seed``)."""
    from scprob.models import SCVI
    from scprob.train import EpochLog

    adata, continuous_keys = scvi_input(prepared, method)
    log.info("%s: %d cells x %d genes, batch %r, %d continuous covariates", method,
             adata.n_obs, adata.n_vars, batch_key, len(continuous_keys or []))
    seed = settings["seed"]
    SCVI.setup_anndata(adata, layer="counts", batch_key=batch_key,
                       continuous_covariate_keys=continuous_keys)
    architecture = {k: settings[k] for k in SCVI.hyperparameter_names() if k in settings}
    model = SCVI(adata, seed=seed, **architecture)
    model.train(
        max_epochs=settings["max_epochs"],
        batch_size=settings["batch_size"],
        train_size=settings["train_size"],
        early_stopping=settings["early_stopping"],
        early_stopping_patience=settings["early_stopping_patience"],
        plan_kwargs={"lr": settings["lr"], "n_epochs_kl_warmup": settings["n_epochs_kl_warmup"]},
        seed=seed,
        accelerator=settings["accelerator"],
        enable_progress_bar=False,
        callbacks=[EpochLog(log, every=max(1, settings["max_epochs"] // 20))],
    )
    log.info("trained %d epochs; validation ELBO %.2f", len(model.history), model.get_elbo())
    return model


def scvi_representation(model: SCVI, display_name: str, n_neighbors: int,
                        seed: int) -> tuple[Representation, np.ndarray]:
    """The kNN graph of the model's latent means ``(n_cells, n_latent)`` and its UMAP
    ``(n_cells, 2)``: the same graph construction as every other method's."""
    rep = neighbor_graph(model.get_latent_representation(), n_neighbors=n_neighbors,
                         seed=seed, name=display_name)
    return rep, umap_from_graph(rep, seed=seed)


def baseline_representation(
    prepared: ad.AnnData, method: str, display_name: str, batch_key: str, n_pcs: int,
    n_neighbors: int, seed: int,
) -> tuple[Representation, np.ndarray]:
    """regress-bbknn or regress-harmony on the counts without the nuisance genes,
    regressing out the nuisance covariates, and the UMAP ``(n_cells, 2)`` of its graph."""
    covariate_keys = nuisance_covariate_keys(prepared)
    nuisance_genes = [str(g) for g in prepared.uns["nuisance_genes"]]
    log.info("%s: regressing out %d covariates, leaving out %d nuisance genes, %d PCs",
             method, len(covariate_keys), len(nuisance_genes), n_pcs)
    common = {"layer": "counts", "exclude_genes": nuisance_genes}
    if method == "regress_bbknn":
        rep = regress_bbknn(prepared, covariate_keys, batch_key, n_pcs, seed, **common)
    elif method == "regress_harmony":
        rep = regress_harmony(prepared, covariate_keys, batch_key, n_pcs, seed,
                              n_neighbors=n_neighbors, **common)
    else:
        raise ValueError(f"method must be regress_bbknn or regress_harmony, got {method!r}.")
    rep = dataclasses.replace(rep, name=display_name)
    return rep, umap_from_graph(rep, seed=seed)


# Scores and tables --------------------------------------------------------------------------


def gene_scores(prepared: ad.AnnData, connectivities: sp.spmatrix, method: str) -> pd.DataFrame:
    """Geary's C of every marker and nuisance gene on one method's graph, from the
    log-normalised expression of the full gene set: nuisance genes are scored even for
    methods whose input lacked them. One row per gene: gene, gene_set, gearys_c, method."""
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


def with_display_names(table: pd.DataFrame, display_names: Mapping[str, str]) -> pd.DataFrame:
    """``table`` with a ``display_name`` column right after its ``method`` column."""
    named = table.copy()
    named.insert(named.columns.get_loc("method") + 1, "display_name",
                 named["method"].map(display_names))
    return named


def summary_table(gearys: pd.DataFrame, display_names: Mapping[str, str]) -> pd.DataFrame:
    """Per method (in ``display_names``' order): number of scored genes and median
    Geary's C of each gene set, the centre lines of the box plots of Fig. 2e,f."""
    grouped = gearys.groupby(["method", "gene_set"], sort=False)["gearys_c"]
    wide = grouped.agg(["median", "count"]).unstack("gene_set")
    summary = pd.DataFrame(
        {
            "method": wide.index,
            "display_name": [display_names[m] for m in wide.index],
            "n_marker_genes": wide[("count", "marker")].to_numpy(),
            "median_gearys_c_markers": wide[("median", "marker")].to_numpy(),
            "n_nuisance_genes": wide[("count", "nuisance")].to_numpy(),
            "median_gearys_c_nuisance": wide[("median", "nuisance")].to_numpy(),
        }
    )
    return summary.set_index("method").loc[list(display_names)].reset_index()


def claim_check(summary: pd.DataFrame, marker_tolerance: float) -> pd.DataFrame:
    """The claim of Fig. 2e,f, scVI-cc against scVI: conditioning on the nuisance genes
    raises their median Geary's C (the graph stops following cell cycle and sex) while the
    markers' median rises by no more than ``marker_tolerance`` (biology kept)."""
    medians = summary.set_index("method")

    def compared(column: str) -> dict[str, float]:
        return {"scvi": medians.loc["scvi", column], "scvi_cc": medians.loc["scvi_cc", column]}

    nuisance, markers = compared("median_gearys_c_nuisance"), compared("median_gearys_c_markers")
    claims = [
        Claim("scVI-cc removes the nuisance signal", "median_gearys_c_nuisance", nuisance,
              nuisance["scvi_cc"] - nuisance["scvi"], Criterion("difference", ">", 0.0)),
        Claim("scVI-cc keeps the marker signal", "median_gearys_c_markers", markers,
              markers["scvi_cc"] - markers["scvi"],
              Criterion("difference", "<=", marker_tolerance)),
    ]
    return claims_table(claims, "Fig. 2e,f: scVI-cc removes nuisance signal and keeps markers",
                        overall_quantity="both of the above", value_column="difference")


def study_tables(gearys: Sequence[pd.DataFrame], ground_truth: Sequence[pd.DataFrame],
                 display_names: Mapping[str, str], marker_tolerance: float
                 ) -> dict[str, pd.DataFrame]:
    """The study's tables from the per-method scores: ``gearys_c`` (one row per method
    and gene), ``ground_truth`` (one row per method), ``summary`` and ``claim_check``."""
    all_gearys = with_display_names(pd.concat(gearys, ignore_index=True), display_names)
    summary = summary_table(all_gearys, display_names)
    return {
        "gearys_c": all_gearys,
        "ground_truth": with_display_names(pd.concat(ground_truth, ignore_index=True),
                                           display_names),
        "summary": summary,
        "claim_check": claim_check(summary, marker_tolerance),
    }


def umap_colours(prepared: ad.AnnData, batch_key: str,
                 genes: Sequence[str]) -> dict[str, np.ndarray | pd.Series]:
    """What the UMAPs of Fig. 2d are coloured by: the batch, then each gene's
    log-normalised expression ``(n_cells,)``."""
    missing = [g for g in genes if g not in prepared.var_names]
    if missing:
        raise ValueError(
            f"config covariates.umap_genes lists genes the data lack: {missing}; "
            "pick genes from results/covariates/tables/supp_table2_genes.csv."
        )
    expression = prepared[:, list(genes)].layers["log_normalized"]
    expression = expression.toarray() if sp.issparse(expression) else np.asarray(expression)
    colours: dict[str, np.ndarray | pd.Series] = {batch_key: prepared.obs[batch_key]}
    colours.update({g: np.asarray(expression[:, j], dtype=np.float64)
                    for j, g in enumerate(genes)})
    return colours
