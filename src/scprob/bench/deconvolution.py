"""The deconvolution study (paper Fig. 5, Supp. Fig. 5): Stereoscope's cell-type
proportions of spatial spots, judged against the simulated truth.

A run is one fit: the RNA model's epochs, the spatial model's epochs and the method that
fitted them. Each run's proportions ``(n_spots, n_types)`` are compared with the truth per
cell type, across spots (Spearman and Pearson), and summarised by the mean over types,
the number the convergence panel plots against the spatial epochs.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy import stats

from scprob.bench.claims import Claim, Criterion, claims_table
from scprob.bench.measure import measure
from scprob.bench.peers import require_interpreter, run_logged
from scprob.bench.plotting import apply_style, method_color, save_figure
from scprob.models.stereoscope import RNAStereoscope, SpatialStereoscope

log = logging.getLogger(__name__)

RUN_KEYS = ["method", "rna_epochs", "spatial_epochs"]
OURS = "scprob"
TRUTH_KEY = "true_proportions"
# The peers the study can run, each in its own environment: scvi-tools' Stereoscope
# through workflow/scripts/peer_scvi_tools_stereoscope.py, and the original's CLI.
PEERS = ("scvi_tools", "stereoscope")


def fit_signatures(reference: ad.AnnData, labels_key: str, epochs: int,
                   settings: Mapping[str, Any], seed: int
                   ) -> tuple[RNAStereoscope, dict[str, Any]]:
    """The RNA model on the reference's counts, ``epochs`` epochs with ``settings``
    (``lr``, ``batch_size``, ``min_cells_per_type``); returns it and its timing."""
    RNAStereoscope.setup_anndata(reference, labels_key=labels_key,
                                 min_cells_per_type=settings["min_cells_per_type"])
    model = RNAStereoscope(reference, seed=seed)
    _, timing = measure(lambda: model.train(
        max_epochs=epochs, lr=settings["lr"], batch_size=settings["batch_size"],
        enable_progress_bar=False))
    log.info("RNA model: %d cells x %d genes, %d types, %d epochs in %.1f s",
             reference.n_obs, reference.n_vars, len(model.cell_types), epochs, timing.seconds)
    return model, {"rna_epochs": epochs, "rna_seconds": timing.seconds,
                   "rna_cpu_seconds": timing.cpu_seconds}


def deconvolve(spots: ad.AnnData, rna_model: RNAStereoscope, epochs: int,
               settings: Mapping[str, Any], seed: int) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The spatial model of ``spots`` on ``rna_model``'s signatures, ``epochs`` epochs
    (``settings``: ``lr``, ``min_gene_overlap``); returns the proportions (spots × types)
    and the fit's timing."""
    spots = spots.copy()
    SpatialStereoscope.setup_anndata(spots)
    model = SpatialStereoscope.from_rna_model(
        spots, rna_model, min_gene_overlap=settings["min_gene_overlap"], seed=seed)
    _, timing = measure(lambda: model.train(max_epochs=epochs, lr=settings["lr"],
                                            enable_progress_bar=False))
    log.info("spatial model: %d spots x %d genes, %d epochs in %.1f s", model.adata.n_obs,
             model.adata.n_vars, epochs, timing.seconds)
    return model.get_proportions(), {"spatial_epochs": epochs,
                                     "spatial_seconds": timing.seconds,
                                     "spatial_cpu_seconds": timing.cpu_seconds,
                                     "n_spots": model.adata.n_obs,
                                     "n_genes": model.adata.n_vars}


# Peers ---------------------------------------------------------------------------------


def run_scvi_tools(python: str | os.PathLike[str], script: str | os.PathLike[str],
                   reference_path: str, spots_path: str, labels_key: str, rna_epochs: int,
                   spatial_epochs: int, seed: int, threads: int, work_dir: Path,
                   timeout_s: int) -> tuple[pd.DataFrame, dict[str, Any]]:
    """scvi-tools' Stereoscope on the same files, in its own environment (its defaults:
    lr 0.01, minibatches of 128): the proportions and the fits' timing."""
    python = require_interpreter(python, "scvi-tools", "create it with `make peer-env`",
                                 "deconvolution.peers")
    proportions, timing = work_dir / "proportions.csv", work_dir / "timing.json"
    command = [str(python), str(script), "--reference", reference_path, "--spots", spots_path,
               "--labels-key", labels_key, "--rna-epochs", str(rna_epochs),
               "--spatial-epochs", str(spatial_epochs), "--seed", str(seed),
               "--threads", str(threads), "--proportions", str(proportions),
               "--timing", str(timing)]
    run_logged(command, timeout_s, {"OMP_NUM_THREADS": str(threads)},
                "scvi-tools' Stereoscope")
    record = json.loads(timing.read_text())
    return pd.read_csv(proportions, index_col="spot"), record


def run_original(python: str | os.PathLike[str], reference: ad.AnnData, spots: ad.AnnData,
                 labels_key: str, rna_epochs: int, spatial_epochs: int, lr: float,
                 threads: int, work_dir: Path, timeout_s: int
                 ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The original stereoscope 0.3 CLI (``stereoscope run``) on the same data, written as
    its TSV inputs (cells × genes, spots × genes, labels) over the shared genes, full
    batch and the given learning rate, its noise type dropped as ours is: the proportions
    and the whole command's wall time (both fits, reading and writing included)."""
    python = require_interpreter(python, "stereoscope 0.3",
                                 "create it with `make peer-env` (envs/stereoscope.lock)",
                                 "deconvolution.peers")
    shared = reference.var_names.intersection(spots.var_names)
    counts = spots[:, shared].X
    kept = np.asarray(counts.sum(1)).ravel() > 0
    paths = {name: work_dir / f"{name}.tsv" for name in ("sc_counts", "sc_labels", "st")}
    _dense_frame(reference[:, shared]).to_csv(paths["sc_counts"], sep="\t")
    reference.obs[[labels_key]].astype(str).to_csv(paths["sc_labels"], sep="\t")
    _dense_frame(spots[kept][:, shared]).to_csv(paths["st"], sep="\t")
    out = work_dir / "out"
    command = [str(python.parent / "stereoscope"), "run", "--sc_cnt", str(paths["sc_counts"]),
               "--sc_labels", str(paths["sc_labels"]), "-lcn", labels_key,
               "--st_cnt", str(paths["st"]), "-sce", str(rna_epochs), "-ste",
               str(spatial_epochs), "-lr", str(lr), "-o", str(out)]
    seconds = run_logged(command, timeout_s, {"OMP_NUM_THREADS": str(threads)},
                          "stereoscope 0.3 CLI")
    found = sorted(out.rglob("W.*.tsv"))
    if len(found) != 1:
        raise RuntimeError(f"the stereoscope CLI wrote {len(found)} proportion files "
                           f"(W.*.tsv) under {out}, expected one.")
    proportions = pd.read_csv(found[0], sep="\t", index_col=0)
    proportions = proportions.drop(columns=[c for c in proportions.columns
                                            if c.lower() == "noise"])
    proportions = proportions.div(proportions.sum(axis=1), axis=0)
    proportions.index = proportions.index.astype(str).str.replace(r"^\d+&-", "", regex=True)
    proportions.index.name = "spot"
    return proportions, {"method": "stereoscope 0.3", "rna_epochs": rna_epochs,
                         "spatial_epochs": spatial_epochs, "fit_seconds": seconds,
                         "n_spots": int(kept.sum()), "n_genes": len(shared),
                         "threads": threads}


def fit_seconds(timing: Mapping[str, Any]) -> float:
    """A run's fit time: both fits' (ours, scvi-tools), or the whole command's where only
    that is known (the original's CLI)."""
    if "fit_seconds" in timing:
        return float(timing["fit_seconds"])
    return float(timing["rna_seconds"]) + float(timing["spatial_seconds"])


def _dense_frame(adata: ad.AnnData) -> pd.DataFrame:
    x = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
    return pd.DataFrame(x.astype(np.int64), index=adata.obs_names, columns=adata.var_names)


def true_proportions(spots: ad.AnnData) -> pd.DataFrame:
    """The simulated truth stored with the spots, spots × types."""
    if TRUTH_KEY not in spots.obsm:
        raise ValueError(f"the spots carry no obsm[{TRUTH_KEY!r}]: only simulated spots "
                         "have a truth to compare with.")
    truth = spots.obsm[TRUTH_KEY]
    return truth if isinstance(truth, pd.DataFrame) else pd.DataFrame(truth,
                                                                      index=spots.obs_names)


def per_type_correlations(estimated: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Spearman and Pearson correlation across spots of each type's estimated and true
    proportion: one row per type of ``truth`` (columns ``cell_type``, ``spearman``,
    ``pearson``). Spots and types are matched by name; a type constant in either is NaN."""
    missing_types = sorted(set(truth.columns) - set(estimated.columns))
    if missing_types:
        raise ValueError(f"the estimated proportions lack the types {missing_types}.")
    missing_spots = truth.index.difference(estimated.index)
    if len(missing_spots):
        raise ValueError(f"the estimated proportions lack {len(missing_spots)} spots of the "
                         f"truth, e.g. {list(missing_spots[:3])}.")
    estimated = estimated.loc[truth.index, truth.columns]
    rows = []
    for cell_type in truth.columns:
        x, y = estimated[cell_type].to_numpy(float), truth[cell_type].to_numpy(float)
        constant = np.ptp(x) == 0 or np.ptp(y) == 0
        rows.append({
            "cell_type": cell_type,
            "spearman": np.nan if constant else float(stats.spearmanr(x, y).statistic),
            "pearson": np.nan if constant else float(stats.pearsonr(x, y).statistic),
        })
    return pd.DataFrame(rows)


def accuracy_table(runs: Mapping[tuple[str, int, int], pd.DataFrame],
                   truth: pd.DataFrame) -> pd.DataFrame:
    """Per-type correlations of every run, keyed by ``(method, rna_epochs,
    spatial_epochs)``: one row per run and type, runs in key order."""
    parts = [per_type_correlations(proportions, truth).assign(
        method=method, rna_epochs=rna_epochs, spatial_epochs=spatial_epochs)
        for (method, rna_epochs, spatial_epochs), proportions in sorted(runs.items())]
    table = pd.concat(parts, ignore_index=True)
    return table[[*RUN_KEYS, "cell_type", "spearman", "pearson"]]


def agreement_table(runs: Mapping[tuple[str, int, int], pd.DataFrame], method: str,
                    peers: Sequence[str]) -> pd.DataFrame:
    """Paper Supp. Fig. 5: how closely each peer's proportions follow ``method``'s at the
    same epochs, per type across the spots both kept (Spearman and Pearson); one row per
    peer run and type (no rows without peers)."""
    parts = []
    for (peer, rna, spatial), theirs in sorted(runs.items()):
        if peer not in peers:
            continue
        ours = runs[(method, rna, spatial)]
        spots = ours.index.intersection(theirs.index)
        parts.append(per_type_correlations(theirs.loc[spots], ours.loc[spots]).assign(
            method=peer, rna_epochs=rna, spatial_epochs=spatial, n_spots=len(spots)))
    columns = [*RUN_KEYS, "cell_type", "spearman", "pearson", "n_spots"]
    if not parts:
        return pd.DataFrame(columns=columns)
    return pd.concat(parts, ignore_index=True)[columns]


def convergence_table(accuracy: pd.DataFrame,
                      timings: Mapping[tuple[str, int, int], float] | None = None
                      ) -> pd.DataFrame:
    """Mean (over types) Spearman and Pearson of each run, and its worst type; with
    ``timings``, the run's fit seconds (RNA and spatial model together)."""
    summary = accuracy.groupby(RUN_KEYS, sort=True).agg(
        mean_spearman=("spearman", "mean"), median_spearman=("spearman", "median"),
        min_spearman=("spearman", "min"), mean_pearson=("pearson", "mean")).reset_index()
    if timings is not None:
        summary["fit_seconds"] = [timings.get(tuple(key), np.nan)  # type: ignore[call-overload]
                                  for key in summary[RUN_KEYS].itertuples(index=False)]
    return summary


def _mean_spearman(convergence: pd.DataFrame, method: str, rna_epochs: int,
                   spatial_epochs: int) -> float:
    row = convergence[(convergence["method"] == method)
                      & (convergence["rna_epochs"] == rna_epochs)
                      & (convergence["spatial_epochs"] == spatial_epochs)]
    if len(row) != 1:
        raise ValueError(f"no single run of {method} at {rna_epochs} + {spatial_epochs} "
                         "epochs in the convergence table.")
    return float(row["mean_spearman"].iloc[0])


def deconvolution_claims(convergence: pd.DataFrame, method: str,
                         targets: Sequence[tuple[int, int, float]],
                         peers: Sequence[str] = ()) -> pd.DataFrame:
    """The study's claims: ``method``'s mean Spearman with the truth at least each target
    ``(rna_epochs, spatial_epochs, minimum)``; and, for each peer run in ``convergence``,
    ours at least as accurate at the same epochs. ``compared_with``: the target, or the
    peer's mean Spearman."""
    claims = [
        Claim(claim=f"mean per-type Spearman with the truth at {rna} + {spatial} epochs",
              quantity="mean over cell types of the Spearman correlation across spots",
              compared={"ours": _mean_spearman(convergence, method, rna, spatial),
                        "compared_with": minimum},
              value=_mean_spearman(convergence, method, rna, spatial),
              criterion=Criterion("mean Spearman", ">=", minimum))
        for rna, spatial, minimum in targets
    ]
    for peer in peers:
        runs = convergence[convergence["method"] == peer]
        for rna, spatial in runs[["rna_epochs", "spatial_epochs"]].itertuples(index=False):
            ours = _mean_spearman(convergence, method, rna, spatial)
            theirs = _mean_spearman(convergence, peer, rna, spatial)
            claims.append(Claim(
                claim=f"ours at least as accurate as {peer} at {rna} + {spatial} epochs",
                quantity="mean per-type Spearman, ours − peer",
                compared={"ours": ours, "compared_with": theirs}, value=ours - theirs,
                criterion=Criterion("ours − peer", ">=", 0.0)))
    return claims_table(claims, overall="Stereoscope recovers the simulated proportions")


# Figures -------------------------------------------------------------------------------


def plot_proportion_maps(coordinates: pd.DataFrame, panels: Mapping[str, pd.DataFrame],
                         cell_types: Sequence[str], path_stem: str | Path,
                         title: str) -> list[Path]:
    """Fig. 5g style: one row per cell type, one column per panel (the truth, ours, a
    peer…), spots at ``coordinates`` (spots × ``x``, ``y``) coloured by the type's
    proportion on one 0–max scale per row; a spot a panel lacks is left blank."""
    apply_style()
    fig, axes = plt.subplots(len(cell_types), len(panels), squeeze=False,
                             figsize=(2.3 * len(panels) + 0.6, 2.1 * len(cell_types)))
    for row, cell_type in enumerate(cell_types):
        top = max(float(frame[cell_type].max()) for frame in panels.values()) or 1.0
        for col, (name, frame) in enumerate(panels.items()):
            ax = axes[row, col]
            points = ax.scatter(coordinates["x"], coordinates["y"], s=9, marker="h",
                                c=frame.reindex(coordinates.index)[cell_type].to_numpy(),
                                vmin=0, vmax=top, cmap="viridis", linewidths=0)
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(name)
            if col == 0:
                ax.set_ylabel(cell_type)
        fig.colorbar(points, ax=axes[row, :].tolist(), shrink=0.8, label="proportion")
    fig.suptitle(title)
    return save_figure(fig, path_stem)


def spot_coordinates(spots: ad.AnnData) -> pd.DataFrame:
    """The spots' layout, spots × ``x``, ``y`` (from ``obsm["spatial"]``)."""
    if "spatial" not in spots.obsm:
        raise ValueError("the spots carry no obsm['spatial'] coordinates to map.")
    xy = np.asarray(spots.obsm["spatial"], dtype=float)[:, :2]
    return pd.DataFrame(xy, index=spots.obs_names, columns=["x", "y"])


def plot_convergence(convergence: pd.DataFrame, path_stem: str | Path, title: str,
                     targets: Sequence[tuple[int, int, float]] = ()) -> list[Path]:
    """Mean per-type Spearman against the spatial epochs, one line per method and RNA
    epochs; targets as markers."""
    apply_style()
    fig, ax = plt.subplots(figsize=(5.0, 3.4))
    for (method, rna), runs in convergence.groupby(["method", "rna_epochs"], sort=True):
        runs = runs.sort_values("spatial_epochs")
        ax.plot(runs["spatial_epochs"], runs["mean_spearman"], marker="o",
                color=method_color(str(method)), label=f"{method} (RNA {rna} epochs)")
    for rna, spatial, minimum in targets:
        ax.plot([spatial], [minimum], marker="_", markersize=14, color="black")
        ax.annotate(f"target at {rna} + {spatial}", (spatial, minimum), fontsize=7,
                    textcoords="offset points", xytext=(4, -10))
    ax.set_xscale("log")
    ax.set_xlabel("spatial model epochs (log scale)")
    ax.set_ylabel("mean per-type Spearman with the truth")
    ax.set_ylim(min(0.0, float(convergence["mean_spearman"].min()) - 0.05), 1.0)
    ax.legend(loc="lower right")
    ax.set_title(title)
    return save_figure(fig, path_stem)


def plot_per_type(accuracy: pd.DataFrame, path_stem: str | Path, title: str) -> list[Path]:
    """Spearman of each cell type (rows, sorted by the first method's score) for each
    method's longest run (most RNA, then spatial epochs), one marker per method."""
    apply_style()
    longest = (accuracy.sort_values(["rna_epochs", "spatial_epochs"])
               .groupby("method", sort=False)[["rna_epochs", "spatial_epochs"]].last())
    methods = list(dict.fromkeys(accuracy["method"]))
    first = accuracy[(accuracy["method"] == methods[0])
                     & (accuracy["rna_epochs"] == longest.loc[methods[0], "rna_epochs"])
                     & (accuracy["spatial_epochs"] == longest.loc[methods[0], "spatial_epochs"])]
    types = first.sort_values("spearman")["cell_type"].tolist()
    fig, ax = plt.subplots(figsize=(5.2, 0.26 * len(types) + 1.6))
    for i, method in enumerate(methods):
        rna, spatial = longest.loc[method]
        run = accuracy[(accuracy["method"] == method) & (accuracy["rna_epochs"] == rna)
                       & (accuracy["spatial_epochs"] == spatial)]
        by_type = run.set_index("cell_type").reindex(types)["spearman"]
        offset = 0.25 * (i - (len(methods) - 1) / 2) / max(len(methods) - 1, 1)
        ax.plot(by_type.to_numpy(), np.arange(len(types)) + offset, "o", markersize=4,
                color=method_color(str(method)), label=f"{method}, {rna} + {spatial} epochs")
    ax.set_yticks(np.arange(len(types)), types)
    ax.set_xlabel("Spearman correlation with the true proportion (across spots)")
    ax.set_xlim(min(0.0, float(accuracy["spearman"].min()) - 0.05), 1.0)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12 - 1.0 / len(types)),
              ncols=1)
    ax.set_title(title)
    return save_figure(fig, path_stem)
