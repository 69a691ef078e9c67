"""The scArches study (paper Fig. 3, Supp. Fig. 3h): totalVI reference mapping and label
transfer, against de novo totalVI on reference and query together.

Stages, each timed by a :class:`~scprob.bench.measure.StageClock`: the reference totalVI
and de novo totalVI fitted from scratch (:func:`fit_from_scratch`), and the scArches query
step (:func:`map_query`: surgery, query training, refined query latents). A random forest
on each latent space labels the query (:func:`query_predictions`); :func:`study_tables`
turns the predictions and timings into the figures' tables and the claim check.
Predictions are one row per query cell: ``cell``, ``donor``, ``condition``, ``batch``,
``true_label``, ``predicted_label``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anndata as ad
import numpy as np
import pandas as pd

from scprob.bench.claims import Claim, Criterion, claims_table
from scprob.bench.label_transfer import (
    label_matrix,
    subset_frequencies,
    transfer_labels,
    transfer_scores,
)
from scprob.bench.measure import StageClock
from scprob.data.simulate.cite_seq import CELL_TYPES

if TYPE_CHECKING:
    from scprob.models import TOTALVI

log = logging.getLogger(__name__)

# The obs columns a latent file keeps: the truth (held out from every model), the design.
LATENT_OBS_COLUMNS = ("cell_type", "batch", "donor", "condition", "dataset")
DISPLAY = {"scarches": "scArches", "de_novo": "de novo", "truth": "truth"}
STAGES = {"reference": "reference", "query": "query (scArches)", "de_novo": "de novo"}
# The sections of a stage that make its fit time, the paper's runtime: building the model
# (or the surgery), training it and reading its latents.
FIT_SECTIONS = {"reference": ("setup", "train", "refine"), "de_novo": ("setup", "train", "refine"),
                "query": ("surgery", "train", "refine")}
# The paper's notebook (GPU, 152,094 reference and 57,669 query cells), for the summary.
PAPER = {
    "reference_fit_s": 3356.0,
    "query_fit_s": 619.0,
    "de_novo_fit_s": 4604.0,
    "ami_scarches_vs_de_novo": 0.87,
    "n_reference_cells": 152094,
    "n_query_cells": 57669,
    "n_query_proteins": 35,
    "reference_epochs": 250,
    "query_epochs": 150,
}


# Real data -------------------------------------------------------------------------------


def _label_by_adt(adata: ad.AnnData, dataset: str) -> ad.AnnData:
    """``adata`` with the study's obs columns: ADT-gated ``cell_type``, one batch and donor
    named ``dataset`` (which also prefixes the cell names); cells the gates leave
    unassigned are dropped (they have no truth)."""
    from scprob.data.cite_seq import coarse_types_from_adt

    types = coarse_types_from_adt(adata.obsm["protein_expression"])
    keep = (types != "unassigned").to_numpy()
    log.info("%s: %d cells; ADT-gated types %s; %d unassigned cells dropped", dataset,
             adata.n_obs, types[keep].astype(str).value_counts().to_dict(), int((~keep).sum()))
    adata = adata[keep].copy()
    # Barcodes repeat across 10x runs: the data set's name keeps the cells apart.
    adata.obs_names = dataset + "_" + adata.obs_names.astype(str)
    adata.obs["cell_type"] = types[keep].astype(str).to_numpy()
    adata.obs["batch"] = adata.obs["donor"] = dataset
    return adata


def real_cite_seq_pair(reference: ad.AnnData, query: ad.AnnData, n_top_genes: int,
                       names: tuple[str, str] = ("pbmc10k", "pbmc5k"),
                       ) -> tuple[ad.AnnData, ad.AnnData]:
    """The study's inputs from two real CITE-seq data sets (raw counts in ``X``, proteins
    in ``obsm["protein_expression"]``): cell types gated on each one's own ADTs, and
    ``n_top_genes`` seurat_v3 genes chosen on the reference alone (paper Methods), the
    query cut to those of them it measured. The query's donor is healthy."""
    reference = _label_by_adt(reference, names[0])
    query = _label_by_adt(query, names[1])
    reference.obs["dataset"], query.obs["dataset"] = "reference", "query"
    query.obs["condition"] = "healthy"
    return reference_genes(reference, query, n_top_genes)


def reference_genes(reference: ad.AnnData, query: ad.AnnData, n_top_genes: int,
                    batch_key: str | None = None) -> tuple[ad.AnnData, ad.AnnData]:
    """Both data sets cut to ``n_top_genes`` seurat_v3 genes of the reference alone (per
    ``batch_key`` batch, combined by rank, as the paper chose them), the query to those
    of them it measured: the query never shapes the reference model."""
    from scprob.data.hvg import highly_variable_genes_seurat_v3

    ranks = highly_variable_genes_seurat_v3(reference, n_top_genes, batch_key=batch_key)
    genes = reference.var_names[ranks["highly_variable"].to_numpy()]
    shared = genes.intersection(query.var_names, sort=False)
    log.info("%d seurat_v3 genes of the reference; the query measured %d of them",
             len(genes), len(shared))
    return reference[:, genes].copy(), query[:, shared].copy()


# Fitting --------------------------------------------------------------------------------


@dataclass
class StageResult:
    """A fitted stage: its model, the latents ``(n_cells, n_latent)`` of the cells in
    ``obs`` (:data:`LATENT_OBS_COLUMNS`), its clock and facts for its timing record."""

    model: TOTALVI
    obs: pd.DataFrame
    latent: np.ndarray
    clock: StageClock
    facts: dict[str, Any]


def latent_obs(*adatas: ad.AnnData) -> pd.DataFrame:
    """The :data:`LATENT_OBS_COLUMNS` of ``adatas``, stacked; a column a dataset lacks
    (the reference has no ``condition``) is missing there."""
    frames = [a.obs.reindex(columns=list(LATENT_OBS_COLUMNS)).astype(object) for a in adatas]
    obs = pd.concat(frames)
    for column in LATENT_OBS_COLUMNS:
        categories = list(dict.fromkeys(obs[column].dropna().astype(str)))
        obs[column] = pd.Categorical(obs[column].where(obs[column].notna(), None),
                                     categories=categories)
    return obs


def build_totalvi(adata: ad.AnnData, architecture: Mapping[str, Any], batch_key: str,
                  seed: int) -> TOTALVI:
    """A fresh totalVI on the raw counts of ``adata`` with the config's ``totalvi`` block."""
    # Imported here: the label-transfer and UMAP jobs import this module too, and the
    # models (torch, Lightning) would cost each of them seconds.
    from scprob.models import TOTALVI

    TOTALVI.setup_anndata(adata, protein_expression_obsm_key="protein_expression",
                          layer="counts", batch_key=batch_key)
    hyperparameters = {k: architecture[k] for k in TOTALVI.hyperparameter_names()
                       if k in architecture}
    return TOTALVI(adata, seed=seed, **hyperparameters)


def train_totalvi(model: TOTALVI, training: Mapping[str, Any], seed: int,
                  accelerator: str) -> None:
    """Fit ``model`` with one stage's ``training`` block (reference, query or de novo)."""
    from scprob.train import EpochLog

    model.train(
        max_epochs=training["max_epochs"],
        batch_size=training["batch_size"],
        train_size=training["train_size"],
        plan_kwargs={
            "lr": training["lr"],
            "weight_decay": training["weight_decay"],
            "n_epochs_kl_warmup": training["n_epochs_kl_warmup"],
            "adversarial_classifier": training["adversarial_classifier"],
        },
        seed=seed,
        accelerator=accelerator,
        enable_progress_bar=False,
        callbacks=[EpochLog(log, every=max(1, training["max_epochs"] // 10))],
    )
    log.info("trained %d epochs; last train ELBO %.2f", len(model.history),
             float(model.history["elbo_train"].iloc[-1]))


def fit_from_scratch(reference: ad.AnnData, query: ad.AnnData | None,
                     architecture: Mapping[str, Any], training: Mapping[str, Any],
                     batch_key: str, refine_steps: int, seed: int,
                     accelerator: str) -> StageResult:
    """The reference totalVI (``query`` None), or de novo totalVI on reference and query
    stacked with the reference's settings (paper Methods); the latents of every cell it was
    fitted on are refined by ``refine_steps`` of per-cell ELBO ascent."""
    from scprob.data.combine import concat_reference_query

    clock = StageClock()

    def setup() -> tuple[ad.AnnData, TOTALVI]:
        adata = reference if query is None else concat_reference_query(
            reference, query, batch_key=batch_key)
        return adata, build_totalvi(adata, architecture, batch_key, seed)

    adata, model = clock.run("setup", setup)
    log.info("%d cells x %d genes, %d proteins, %d batches", adata.n_obs, adata.n_vars,
             adata.obsm["protein_expression"].shape[1], adata.obs[batch_key].nunique())
    clock.run("train", lambda: train_totalvi(model, training, seed, accelerator))
    latent = clock.run("refine", lambda: model.get_latent_representation(
        refine_steps=refine_steps))
    return StageResult(model, latent_obs(adata), latent, clock, {"n_cells": adata.n_obs})


def map_query(reference: ad.AnnData, query: ad.AnnData, reference_model: TOTALVI,
              reference_latent: np.ndarray, training: Mapping[str, Any],
              freeze_dropout: bool, min_gene_overlap: float, refine_steps: int, seed: int,
              accelerator: str) -> StageResult:
    """scArches: surgery of ``reference_model`` for the query's batches, query training,
    and the refined latents of reference and query cells from the query model.

    The reference weights are frozen, so the reference cells' latents must equal
    ``reference_latent`` ``(n_reference, n_latent)`` (the reference model's); the largest
    change is recorded as ``reference_latent_max_abs_change``.
    """
    from scprob.models import TOTALVI
    from scprob.nn.surgery import n_trainable_parameters

    clock = StageClock()
    model = clock.run("surgery", lambda: TOTALVI.load_query_data(
        query, reference_model, freeze_dropout=freeze_dropout,
        min_gene_overlap=min_gene_overlap))
    n_total = sum(p.numel() for p in model.module.parameters())
    n_trainable = n_trainable_parameters(model.module)
    log.info("query model: %d of %d parameters trainable (%.2f %%), %d new batches",
             n_trainable, n_total, 100.0 * n_trainable / n_total, query.obs["batch"].nunique())
    clock.run("train", lambda: train_totalvi(model, training, seed, accelerator))
    query_latent = clock.run("refine", lambda: model.get_latent_representation(
        refine_steps=refine_steps))
    # For the check below, not part of the query step.
    mapped_reference = clock.run("latent", lambda: model.get_latent_representation(
        adata=reference, refine_steps=refine_steps))
    change = float(np.max(np.abs(mapped_reference - reference_latent)))
    log.info("largest change of a reference latent coordinate after the query: %.3g", change)
    return StageResult(
        model, latent_obs(reference, query),
        np.concatenate([mapped_reference, query_latent]), clock,
        {"n_cells": query.n_obs, "n_parameters": n_total,
         "n_trainable_parameters": n_trainable, "reference_latent_max_abs_change": change},
    )


def timing_record(stage: str, result: StageResult, training: Mapping[str, Any],
                  threads: int) -> dict[str, Any]:
    """The stage's timings: every section, and ``fit_s`` / ``fit_cpu_s``, the sums over
    its :data:`FIT_SECTIONS`, with the training settings and the result's facts."""
    fit_sections = FIT_SECTIONS[stage]
    return {
        "stage": stage,
        "fit_sections": list(fit_sections),
        "fit_s": result.clock.total(fit_sections),
        "fit_cpu_s": result.clock.total(fit_sections, "cpu_seconds"),
        "sections": result.clock.as_dict(),
        "n_cells": result.facts["n_cells"],
        "max_epochs": training["max_epochs"],
        "epochs_run": len(result.model.history),
        "batch_size": training["batch_size"],
        "threads": threads,
        **{k: v for k, v in result.facts.items() if k != "n_cells"},
    }


# Label transfer and the UMAP ---------------------------------------------------------


def query_predictions(obs: pd.DataFrame, latent: np.ndarray, label_key: str, seed: int,
                      n_estimators: int, n_jobs: int = 1) -> pd.DataFrame:
    """Random-forest labels of the query cells (``obs["dataset"] != "reference"``) from a
    forest trained on the reference cells' latents ``(n_reference, n_latent)`` and
    annotations; the query's true labels are only copied beside the predictions."""
    is_reference = (obs["dataset"] == "reference").to_numpy()
    query = obs[~is_reference]
    log.info("forest on %d reference cells (%d types), %d query cells", int(is_reference.sum()),
             obs.loc[is_reference, label_key].nunique(), len(query))
    predicted = transfer_labels(latent[is_reference], obs.loc[is_reference, label_key].astype(str),
                                latent[~is_reference], seed=seed, n_estimators=n_estimators,
                                n_jobs=n_jobs)
    predictions = pd.DataFrame({
        "cell": query.index,
        "donor": query["donor"].astype(str).to_numpy(),
        "condition": query["condition"].astype(str).to_numpy(),
        "batch": query["batch"].astype(str).to_numpy(),
        "true_label": query[label_key].astype(str).to_numpy(),
        "predicted_label": predicted,
    })
    log.info("scores against the held-out labels: %s",
             transfer_scores(predictions["true_label"], predictions["predicted_label"]))
    return predictions


def cosine_umap(latent: np.ndarray, n_neighbors: int, seed: int) -> np.ndarray:
    """The UMAP ``(n_cells, 2)`` of the cosine kNN graph of ``latent`` (paper Fig. 3b,c).

    The latents are scaled to unit length: the Euclidean distance of unit vectors,
    ``sqrt(2 (1 − cos))``, ranks neighbours exactly as the cosine distance does, so the
    project's Euclidean graph gives the cosine graph.
    """
    from scprob.bench.baselines import neighbor_graph, umap_from_graph

    latent = np.asarray(latent, dtype=np.float64)
    norms = np.linalg.norm(latent, axis=1, keepdims=True)
    unit = latent / np.maximum(norms, np.finfo(np.float64).tiny)
    graph = neighbor_graph(unit, n_neighbors=n_neighbors, seed=seed, name="scArches")
    return umap_from_graph(graph, seed=seed)


# The reference model on its own ----------------------------------------------------------


def reference_clusters(latent: np.ndarray, labels: pd.Series, seed: int
                       ) -> tuple[np.ndarray, pd.DataFrame]:
    """k-means clusters ``(n_cells,)`` of the reference latents ``(n_cells, n_latent)`` with
    k = the number of labels, and their agreement with the labels (ARI, NMI): how far the
    latent space alone recovers the annotated types. k-means needs no graph library and,
    with k fixed by the labels, leaves no resolution to tune towards the answer."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    labels = labels.astype(str).to_numpy()
    n_types = len(np.unique(labels))
    clusters = KMeans(n_clusters=n_types, n_init=10, random_state=seed).fit_predict(
        np.asarray(latent, dtype=np.float64))
    scores = pd.DataFrame([{
        "n_cells": len(labels),
        "n_types": n_types,
        "ari": adjusted_rand_score(labels, clusters),
        "nmi": normalized_mutual_info_score(labels, clusters),
    }])
    return clusters, scores


def foreground_by_type(model: TOTALVI, adata: ad.AnnData, labels: pd.Series) -> pd.DataFrame:
    """Mean probability that a protein's counts are foreground, not background, per cell
    type (rows) and protein (columns): totalVI's protein background model read by cell
    type. A marker should be foreground in its own type and background elsewhere."""
    probability = model.get_protein_foreground_probability(adata)
    probability.index = adata.obs_names
    return probability.groupby(labels.astype(str).to_numpy()).mean().rename_axis("cell_type")


# The study's tables --------------------------------------------------------------------


def scores_table(predictions: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Accuracy, macro-F1 and AMI of each method against the truth, then of scArches
    against de novo."""
    rows = []
    for method, frame in predictions.items():
        rows.append({"method": DISPLAY[method], "compared_with": "truth",
                     "n_cells": len(frame),
                     **transfer_scores(frame["true_label"], frame["predicted_label"])})
    rows.append({"method": DISPLAY["scarches"], "compared_with": DISPLAY["de_novo"],
                 "n_cells": len(predictions["scarches"]),
                 **transfer_scores(predictions["de_novo"]["predicted_label"],
                                   predictions["scarches"]["predicted_label"])})
    return pd.DataFrame(rows)


def label_order(predictions: Mapping[str, pd.DataFrame]) -> list[str]:
    """Every label any labelling uses, in the simulator's order (myeloid, T, NK, B, other
    cells: related types side by side), unknown labels last; shared by all matrices so that
    they line up."""
    present: set[str] = set()
    for frame in predictions.values():
        present |= set(frame["predicted_label"]) | set(frame["true_label"])
    return [t for t in CELL_TYPES if t in present] + sorted(present - set(CELL_TYPES))


def label_matrix_table(rows: pd.Series, columns: pd.Series, order: Sequence[str],
                       row_name: str) -> pd.DataFrame:
    """The row-normalised :func:`label_matrix` as a table whose first column, ``row_name``,
    names the row labels."""
    matrix = label_matrix(rows, columns, row_order=order, column_order=order)
    return matrix.rename_axis(index=row_name, columns=None).reset_index()


def rare_subset_table(predictions: Mapping[str, pd.DataFrame],
                      subsets: Sequence[str]) -> pd.DataFrame:
    """Per labelling (scArches, de novo, truth), donor and subset: the subset's frequency
    among the donor's query cells (Fig. 3f,g)."""
    truth = predictions["scarches"]
    labellings = {"scarches": truth["predicted_label"],
                  "de_novo": predictions["de_novo"]["predicted_label"],
                  "truth": truth["true_label"]}
    parts = [subset_frequencies(labels, truth["donor"], truth["condition"], list(subsets))
             .assign(labels=DISPLAY[name]) for name, labels in labellings.items()]
    table = pd.concat(parts, ignore_index=True)
    return table[["labels", *[c for c in table.columns if c != "labels"]]]


def runtime_table(timings: Mapping[str, Mapping[str, Any]],
                  jobs: Mapping[str, Mapping[str, float]]) -> pd.DataFrame:
    """Per stage (Supp. Fig. 3h): the timed fit, its CPU time, the training alone, and the
    whole job's wall and CPU seconds (``jobs``: Snakemake's benchmark ``s`` and
    ``cpu_time`` of each stage's job), beside the paper's fit time."""
    rows = []
    for stage, timing in timings.items():
        rows.append({
            "stage": stage,
            "display_name": STAGES[stage],
            "n_cells": timing["n_cells"],
            "epochs": timing["epochs_run"],
            "threads": timing["threads"],
            "fit_s": timing["fit_s"],
            "fit_cpu_s": timing["fit_cpu_s"],
            "train_s": timing["sections"]["train"]["seconds"],
            "job_s": float(jobs[stage]["s"]),
            "job_cpu_s": float(jobs[stage]["cpu_time"]),
            "paper_fit_s": PAPER[f"{stage}_fit_s"],
        })
    return pd.DataFrame(rows)


def summary_table(scores: pd.DataFrame, runtime: pd.DataFrame,
                  timings: Mapping[str, Mapping[str, Any]],
                  n_query_proteins: int) -> pd.DataFrame:
    """Our numbers next to the paper's: fit times, agreement, sizes, epochs and the
    de novo / query speed-up."""
    fit = runtime.set_index("stage")["fit_s"]
    agreement = scores[scores["compared_with"] == DISPLAY["de_novo"]].iloc[0]
    ours = {
        "reference_fit_s": fit["reference"],
        "query_fit_s": fit["query"],
        "de_novo_fit_s": fit["de_novo"],
        "ami_scarches_vs_de_novo": agreement["ami"],
        "n_reference_cells": timings["reference"]["n_cells"],
        "n_query_cells": timings["query"]["n_cells"],
        "n_query_proteins": n_query_proteins,
        "reference_epochs": timings["reference"]["epochs_run"],
        "query_epochs": timings["query"]["epochs_run"],
    }
    rows = [{"quantity": k, "ours": float(v), "paper": float(PAPER[k])} for k, v in ours.items()]
    rows.append({"quantity": "de_novo_over_query_fit", "ours": fit["de_novo"] / fit["query"],
                 "paper": PAPER["de_novo_fit_s"] / PAPER["query_fit_s"]})
    cpu = runtime.set_index("stage")["fit_cpu_s"]
    rows.append({"quantity": "de_novo_over_query_fit_cpu", "ours": cpu["de_novo"] / cpu["query"],
                 "paper": np.nan})
    return pd.DataFrame(rows)


def claim_check(scores: pd.DataFrame, runtime: pd.DataFrame, reference_change: float,
                accuracy_tolerance: float, min_speedup: float) -> pd.DataFrame:
    """The claims of Fig. 3: scArches labels the query about as accurately as de novo
    (within ``accuracy_tolerance``), its query step is at least ``min_speedup`` times
    faster than the de novo fit, in wall seconds and in CPU seconds (which do not depend
    on what else the machine runs meanwhile), and mapping the query left the reference
    latents unchanged."""
    accuracy = scores[scores["compared_with"] == "truth"].set_index("method")["accuracy"]
    by_stage = runtime.set_index("stage")
    fit, fit_cpu = by_stage["fit_s"], by_stage["fit_cpu_s"]
    accuracies = {"scarches": accuracy[DISPLAY["scarches"]],
                  "de_novo": accuracy[DISPLAY["de_novo"]]}
    speedup = Criterion("de_novo / scarches", ">=", min_speedup)
    claims = [
        Claim("scArches labels the query about as accurately as de novo totalVI",
              "query accuracy against the held-out labels", accuracies,
              accuracies["scarches"] - accuracies["de_novo"],
              Criterion("scarches - de_novo", ">=", -accuracy_tolerance)),
        Claim(f"the scArches query step is at least {min_speedup:g}x faster than de novo",
              "fit seconds (build + train the model, read its latents)",
              {"scarches": fit["query"], "de_novo": fit["de_novo"]},
              fit["de_novo"] / fit["query"], speedup),
        Claim(f"the scArches query step needs at least {min_speedup:g}x less CPU time",
              "fit CPU seconds (build + train the model, read its latents)",
              {"scarches": fit_cpu["query"], "de_novo": fit_cpu["de_novo"]},
              fit_cpu["de_novo"] / fit_cpu["query"], speedup),
        Claim("mapping the query leaves the reference latents unchanged",
              "largest change of a reference latent coordinate",
              {"scarches": reference_change, "de_novo": np.nan}, reference_change,
              Criterion("value", "==", 0.0)),
    ]
    return claims_table(claims, "Fig. 3: scArches maps the query fast and transfers labels "
                                "as well")


def study_tables(predictions: Mapping[str, pd.DataFrame],
                 timings: Mapping[str, Mapping[str, Any]],
                 jobs: Mapping[str, Mapping[str, float]], rare_subsets: Sequence[str],
                 n_query_proteins: int, accuracy_tolerance: float,
                 min_speedup: float) -> dict[str, pd.DataFrame]:
    """Every table of the study, by output name: ``scores``, ``confusion_scarches``,
    ``confusion_de_novo`` (predicted × held-out labels, Fig. 3d), ``agreement`` (scArches
    × de novo labels, Fig. 3h), ``rare_subsets``, ``runtime``, ``summary`` and
    ``claim_check``. ``predictions``: ``scarches`` and ``de_novo``, the same query cells;
    ``timings`` and ``jobs``: ``reference``, ``query`` and ``de_novo``."""
    if not predictions["scarches"]["cell"].equals(predictions["de_novo"]["cell"]):
        raise ValueError("the scArches and de novo predictions list different query cells.")
    scores = scores_table(predictions)
    order = label_order(predictions)
    runtime = runtime_table(timings, jobs)
    tables = {"scores": scores}
    for method in ("scarches", "de_novo"):
        tables[f"confusion_{method}"] = label_matrix_table(
            predictions[method]["predicted_label"], predictions[method]["true_label"], order,
            "predicted_label")
    tables["agreement"] = label_matrix_table(
        predictions["scarches"]["predicted_label"], predictions["de_novo"]["predicted_label"],
        order, "scarches_label")
    tables["rare_subsets"] = rare_subset_table(predictions, rare_subsets)
    tables["runtime"] = runtime
    tables["summary"] = summary_table(scores, runtime, timings, n_query_proteins)
    tables["claim_check"] = claim_check(
        scores, runtime, timings["query"]["reference_latent_max_abs_change"],
        accuracy_tolerance, min_speedup)
    return tables
