"""Figures of the CellAssign study (paper Supp. Fig. 6): confusion matrices of each
method on each data set (6c, f), runtime and accuracy against the number of cells (6g),
and the small-data ablation."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from scprob.bench.cellassign import ABLATION_VARIANTS, BASELINE, OURS
from scprob.bench.plotting import apply_style, draw_share_matrix, method_color, save_figure

DISPLAY_NAMES = {OURS: "scprob", BASELINE: "marker sum", "scvi_tools": "scvi-tools"}


def display_name(method: str) -> str:
    return DISPLAY_NAMES.get(method, method)


def confusion_matrix(confusion: pd.DataFrame, dataset: str, method: str) -> pd.DataFrame:
    """One method's row-normalised matrix on one data set from the long table (columns
    ``dataset``, ``method``, ``true_type``, ``predicted_type``, ``fraction``), in the
    table's order of types."""
    rows = confusion[(confusion["dataset"] == dataset) & (confusion["method"] == method)]
    if rows.empty:
        raise ValueError(f"the confusion table has no rows for {method} on {dataset}.")
    return rows.pivot(index="true_type", columns="predicted_type", values="fraction").reindex(
        index=list(dict.fromkeys(rows["true_type"])),
        columns=list(dict.fromkeys(rows["predicted_type"])))


def plot_confusion_grid(confusion: pd.DataFrame, scores: pd.DataFrame,
                        datasets: Sequence[str], path_stem: str | Path,
                        title: str) -> list[Path]:
    """A row of matrices per data set, one per method (true types × predicted types), each
    titled with its accuracy and macro-F1."""
    methods = list(dict.fromkeys(confusion["method"]))
    apply_style()
    sizes = [confusion_matrix(confusion, d, methods[0]).shape for d in datasets]
    width = max(s[1] for s in sizes)
    fig, axes = plt.subplots(
        len(datasets), len(methods), squeeze=False,
        figsize=(1.2 + (1.1 + 0.3 * width) * len(methods), sum(1.6 + 0.3 * s[0] for s in sizes)),
        gridspec_kw={"height_ratios": [s[0] + 3 for s in sizes]})
    indexed = scores.set_index(["dataset", "method"])
    image = None
    for row, dataset in enumerate(datasets):
        for column, method in enumerate(methods):
            ax = axes[row, column]
            image = draw_share_matrix(ax, confusion_matrix(confusion, dataset, method))
            score = indexed.loc[(dataset, method)]
            ax.set_title(f"{dataset}: {display_name(method)}\naccuracy "
                         f"{score['accuracy']:.3f}, macro-F1 {score['macro_f1']:.3f}",
                         fontsize=8)
            if column > 0:
                ax.set_yticklabels([])
            else:
                ax.set_ylabel("true type")
            ax.set_xlabel("predicted type")
    fig.colorbar(image, ax=axes, shrink=0.5, label="share of the true type's cells")
    fig.suptitle(title)
    return save_figure(fig, path_stem)


def plot_runtime(runtime: pd.DataFrame, path_stem: str | Path, min_accuracy: float
                 ) -> list[Path]:
    """Supp. Fig. 6g: fit time (log-log) and accuracy against the number of cells, one
    line per method."""
    apply_style()
    fig, (time_ax, accuracy_ax) = plt.subplots(1, 2, figsize=(7.5, 3.0))
    for method, rows in runtime.groupby("method", sort=False):
        rows = rows.sort_values("n_cells")
        style = {"color": method_color(display_name(str(method))), "marker": "o",
                 "label": display_name(str(method))}
        if method != BASELINE:  # the baseline's time is a matrix product, not a fit
            time_ax.plot(rows["n_cells"], rows["seconds"], **style)
        accuracy_ax.plot(rows["n_cells"], rows["accuracy"], **style)
    time_ax.set(xscale="log", yscale="log", xlabel="cells", ylabel="fit time (s)",
                title="runtime (setup, fit, prediction)")
    accuracy_ax.axhline(min_accuracy, color="0.5", linestyle="--", linewidth=0.8,
                        label=f"target {min_accuracy:g}")
    accuracy_ax.set(xscale="log", xlabel="cells", ylabel="accuracy",
                    title="accuracy against the truth")
    accuracy_ax.legend(loc="lower right")
    time_ax.legend(loc="upper left")
    fig.suptitle("Supp. Fig. 6g: CellAssign on PBMC-like data, 23 markers × 5 types")
    return save_figure(fig, path_stem)


def plot_ablation(ablation: pd.DataFrame, path_stem: str | Path) -> list[Path]:
    """Accuracy of each ablation variant against the number of cells (mean over seeds,
    each seed a dot), with the marker-sum baseline."""
    apply_style()
    fig, ax = plt.subplots(figsize=(5.2, 3.2))
    variants = [v for v in ABLATION_VARIANTS if v in set(ablation["variant"])]
    offsets = np.linspace(-0.06, 0.06, len(variants) + 1)
    for offset, variant in zip(offsets, variants, strict=False):
        rows = ablation[ablation["variant"] == variant]
        mean = rows.groupby("n_cells")["accuracy"].mean()
        color = method_color(f"ablation {variant}")
        ax.plot(mean.index * 10**offset, mean.to_numpy(), marker="o", color=color,
                label=variant)
        ax.scatter(rows["n_cells"] * 10**offset, rows["accuracy"], s=8, color=color, alpha=0.5)
    baseline = ablation.groupby("n_cells")["marker_sum_accuracy"].mean()
    ax.plot(baseline.index * 10 ** offsets[-1], baseline.to_numpy(), color="0.4",
            linestyle="--", marker="s", label="marker sum")
    ax.set(xscale="log", xlabel="cells", ylabel="accuracy", ylim=(0, 1.02),
           title="Small-data collapse: initialisation vs optimisation")
    ax.legend(loc="lower right", fontsize=7)
    return save_figure(fig, path_stem)
