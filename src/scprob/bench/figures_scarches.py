"""Figures of the scArches label-transfer study (paper Fig. 3b–d, f–h, Supp. Fig. 3h), in
the project style.

Each function takes tidy pandas data and a path stem, and writes ``<stem>.png`` and
``<stem>.pdf`` through :func:`scprob.bench.plotting.save_figure`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from scprob.bench.plotting import apply_style, draw_share_matrix, method_color, save_figure

# Fixed seed for the drawing order of UMAP points and the jitter of strip plots.
_PLOT_SEED = 0
_REFERENCE_COLOR = "#8C8C8C"
_TRUTH_COLOR = "#2F2F2F"
# Proteins the foreground heat map shows at most (a reference panel may hold ~200).
_MAX_HEATMAP_PROTEINS = 30


def _require_columns(table: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(
            f"{what} table lacks columns {missing} (has {list(table.columns)}); "
            f"it needs {list(columns)}."
        )


def label_palette(labels: Sequence[str]) -> dict[str, tuple[float, ...]]:
    """A distinct colour per label, in the given order (tab20, then tab20b)."""
    colours = [*plt.get_cmap("tab20").colors, *plt.get_cmap("tab20b").colors]
    return {label: colours[i % len(colours)] for i, label in enumerate(labels)}


def _umap_axes(ax: Axes) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel("UMAP 1")
    ax.set_ylabel("UMAP 2")


def _point_size(n_cells: int) -> float:
    return float(np.clip(4000.0 / max(n_cells, 1), 0.3, 8.0))


def plot_umap_labels(
    umap: pd.DataFrame,
    label_order: Sequence[str],
    path_stem: str | Path,
    title: str = "Fig. 3b — reference labels and scArches-predicted query labels",
) -> list[Path]:
    """UMAP of reference and query cells coloured by cell type (Fig. 3b).

    ``umap``: one row per cell with ``umap_1``, ``umap_2``, ``dataset`` and ``label`` (the
    reference's annotation for reference cells, the predicted label for query cells).
    Left: all cells; right: the query cells alone over the reference in grey, so the
    predicted labels can be read where they overlap the reference.
    """
    _require_columns(umap, ["umap_1", "umap_2", "dataset", "label"], "UMAP")
    labels = umap["label"].astype(str)
    unknown = sorted(set(labels) - set(label_order))
    order = [*label_order, *unknown]
    palette = label_palette(order)
    apply_style()
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.6))
    draw = np.random.default_rng(_PLOT_SEED).permutation(len(umap))
    xy = umap[["umap_1", "umap_2"]].to_numpy(dtype=np.float64)
    colours = np.array([palette[label] for label in labels])
    size = _point_size(len(umap))
    axes[0].scatter(xy[draw, 0], xy[draw, 1], c=colours[draw], s=size, linewidths=0,
                    rasterized=True)
    axes[0].set_title("reference and query")
    is_query = (umap["dataset"] == "query").to_numpy()
    axes[1].scatter(xy[~is_query, 0], xy[~is_query, 1], c=_REFERENCE_COLOR, s=size,
                    alpha=0.25, linewidths=0, rasterized=True)
    query_draw = draw[is_query[draw]]
    axes[1].scatter(xy[query_draw, 0], xy[query_draw, 1], c=colours[query_draw],
                    s=size * 1.5, linewidths=0, rasterized=True)
    axes[1].set_title("query (predicted labels) over the reference (grey)")
    for ax in axes:
        _umap_axes(ax)
    present = [c for c in order if c in set(labels)]
    handles = [plt.Line2D([], [], marker="o", markersize=5, linestyle="", color=palette[c],
                          label=c) for c in present]
    axes[1].legend(handles=handles, title="cell type", loc="center left",
                   bbox_to_anchor=(1.02, 0.5), ncols=1 if len(present) <= 16 else 2)
    fig.suptitle(title)
    return save_figure(fig, path_stem)


def plot_umap_dataset(
    umap: pd.DataFrame,
    path_stem: str | Path,
    title: str = "Fig. 3c — dataset of origin",
) -> list[Path]:
    """UMAP of reference and query cells coloured by dataset (Fig. 3c): well-mapped query
    cells interleave with the reference instead of forming islands of their own."""
    _require_columns(umap, ["umap_1", "umap_2", "dataset"], "UMAP")
    apply_style()
    fig, ax = plt.subplots(figsize=(5.6, 4.6))
    palette = {"reference": _REFERENCE_COLOR, "query": method_color("scArches")}
    draw = np.random.default_rng(_PLOT_SEED).permutation(len(umap))
    datasets = umap["dataset"].astype(str).to_numpy()
    colours = np.array([palette.get(d, "#000000") for d in datasets])
    xy = umap[["umap_1", "umap_2"]].to_numpy(dtype=np.float64)
    ax.scatter(xy[draw, 0], xy[draw, 1], c=colours[draw], s=_point_size(len(umap)),
               linewidths=0, rasterized=True)
    counts = pd.Series(datasets).value_counts()
    handles = [plt.Line2D([], [], marker="o", markersize=5, linestyle="", color=palette[d],
                          label=f"{d} (n={counts.get(d, 0)})") for d in palette]
    ax.legend(handles=handles, title="dataset", loc="center left", bbox_to_anchor=(1.02, 0.5))
    _umap_axes(ax)
    ax.set_title(title)
    return save_figure(fig, path_stem)


def plot_label_matrix(
    matrix: pd.DataFrame,
    path_stem: str | Path,
    title: str,
    row_label: str,
    column_label: str,
    counts: Mapping[str, int] | None = None,
    drop_empty_rows: bool = True,
) -> list[Path]:
    """Heat map of a row-normalised label matrix (Fig. 3d confusion, Fig. 3h agreement).

    ``matrix``: rows and columns indexed by labels, each row summing to 1 (or 0 for a label
    no cell carries; such rows are left out with ``drop_empty_rows``, as the paper shows
    only predicted labels). Shares of at least 0.1 are written in the cells; ``counts``
    (label → number of cells in the row) is added to the row names.
    """
    sums = matrix.to_numpy(dtype=np.float64).sum(axis=1)
    if not np.all(np.isclose(sums, 1.0) | np.isclose(sums, 0.0)):
        raise ValueError("the label matrix is not row-normalised: each row must sum to 1.")
    if drop_empty_rows:
        matrix = matrix[~np.isclose(sums, 0.0)]
    values = matrix.to_numpy(dtype=np.float64)
    if values.size == 0:
        raise ValueError("the label matrix is empty: no row holds any cell.")
    apply_style()
    n_rows, n_cols = values.shape
    fig, ax = plt.subplots(figsize=(1.8 + 0.32 * n_cols, 1.4 + 0.3 * n_rows))
    row_names = [str(r) if counts is None else f"{r} ({counts.get(str(r), 0)})"
                 for r in matrix.index]
    image = draw_share_matrix(ax, matrix, row_names)
    ax.set_ylabel(row_label)
    ax.set_xlabel(column_label)
    fig.colorbar(image, ax=ax, shrink=0.6, label="share of the row's cells")
    ax.set_title(title)
    return save_figure(fig, path_stem)


def plot_rare_subsets(
    table: pd.DataFrame,
    subsets: Sequence[str],
    conditions: Sequence[str],
    path_stem: str | Path,
    labellings: Sequence[str] = ("scArches", "truth"),
    title: str = "Fig. 3f,g — per-donor frequency of rare subsets in the query",
) -> list[Path]:
    """Per-donor frequency of each subset by condition (Fig. 3f MAIT, 3g CD4 CTL).

    ``table``: one row per (labels, donor, subset) with ``labels`` (e.g. "scArches",
    "truth"), ``donor``, ``condition``, ``subset``, ``frequency``. One panel per subset;
    per condition a box (median line, quartiles) and the donors as points for each of
    ``labellings``, side by side, so predicted and true frequencies can be compared.
    """
    _require_columns(table, ["labels", "donor", "condition", "subset", "frequency"],
                     "rare-subset")
    apply_style()
    fig, axes = plt.subplots(1, len(subsets), figsize=(3.4 * len(subsets), 3.4),
                             squeeze=False)
    rng = np.random.default_rng(_PLOT_SEED)
    width = 0.8 / len(labellings)
    colours = {name: (_TRUTH_COLOR if name == "truth" else method_color(name))
               for name in labellings}
    for ax, subset in zip(axes[0], subsets, strict=True):
        rows = table[table["subset"] == subset]
        for k, name in enumerate(labellings):
            offset = (k - (len(labellings) - 1) / 2) * width
            for position, condition in enumerate(conditions):
                values = rows.loc[(rows["labels"] == name) & (rows["condition"] == condition),
                                  "frequency"].to_numpy(dtype=np.float64)
                if values.size == 0:
                    continue
                centre = position + offset
                box = ax.boxplot([values], positions=[centre], widths=width * 0.8,
                                 showfliers=False, patch_artist=True,
                                 medianprops={"color": "black", "linewidth": 1.5})
                box["boxes"][0].set_facecolor(colours[name])
                box["boxes"][0].set_alpha(0.35)
                jitter = rng.uniform(-width * 0.2, width * 0.2, values.size)
                ax.scatter(centre + jitter, values, s=14, color=colours[name],
                           edgecolor="black", linewidth=0.3, zorder=3)
        ax.set_xticks(range(len(conditions)), list(conditions))
        ax.set_xlim(-0.6, len(conditions) - 0.4)
        # Headroom above the highest donor, whose point would sit on the frame otherwise.
        ax.set_ylim(0.0, 1.1 * max(float(rows["frequency"].max()), 1e-3))
        ax.set_xlabel("condition")
        ax.set_ylabel(f"{subset} frequency among the donor's cells")
        ax.set_title(subset)
    handles = [plt.Line2D([], [], marker="o", linestyle="", markersize=5, color=colours[n],
                          label=f"{n} labels" if n != "truth" else "held-out truth")
               for n in labellings]
    axes[0, -1].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle(title)
    return save_figure(fig, path_stem)


def plot_runtime(
    runtime: pd.DataFrame,
    path_stem: str | Path,
    title: str = "Supp. Fig. 3h — runtime of the reference, the scArches query step and "
                 "de novo totalVI",
) -> list[Path]:
    """Bars of the fit time per stage, this run next to the paper's (Supp. Fig. 3h).

    ``runtime``: one row per stage with ``stage`` (``reference``, ``query``, ``de_novo``),
    ``display_name``, ``fit_s`` (build + train, this run), ``fit_cpu_s`` and
    ``paper_fit_s``. Each panel annotates the bars with seconds and the de novo fit as a
    multiple of the query step.
    """
    _require_columns(runtime, ["stage", "display_name", "fit_s", "fit_cpu_s", "paper_fit_s"],
                     "runtime")
    stages = runtime.set_index("stage")
    missing = sorted({"reference", "query", "de_novo"} - set(stages.index))
    if missing:
        raise ValueError(f"the runtime table lacks the stages {missing}.")
    order = ["reference", "query", "de_novo"]
    colours = [_REFERENCE_COLOR, method_color("scArches"), method_color("de novo")]
    names = [str(stages.loc[s, "display_name"]) for s in order]
    apply_style()
    fig, axes = plt.subplots(1, 2, figsize=(8.0, 3.4))
    panels = [("this run (CPU): wall s, CPU s in brackets", "fit_s"),
              ("paper (GPU)", "paper_fit_s")]
    for ax, (panel, column) in zip(axes, panels, strict=True):
        seconds = stages.loc[order, column].to_numpy(dtype=np.float64)
        bars = ax.bar(range(3), seconds, color=colours, width=0.65)
        labels = [f"{s:,.0f}" if s >= 100 else f"{s:.1f}" for s in seconds]
        if column == "fit_s":
            cpu = stages.loc[order, "fit_cpu_s"].to_numpy(dtype=np.float64)
            labels = [f"{w}\n({c:,.0f})" for w, c in zip(labels, cpu, strict=True)]
        ax.bar_label(bars, labels, padding=2, fontsize=7)
        ax.set_xticks(range(3), names)
        ax.set_ylabel("seconds to build and train")
        ax.set_ylim(0.0, seconds.max() * 1.3)
        ax.set_title(f"{panel}\nde novo / query = {seconds[2] / seconds[1]:.1f}×")
    fig.suptitle(title)
    return save_figure(fig, path_stem)


def plot_reference_totalvi(
    umap: pd.DataFrame,
    foreground: pd.DataFrame,
    scores: pd.DataFrame,
    path_stem: str | Path,
    title: str = "totalVI reference (Fig. 3a) — latent space and protein background",
) -> list[Path]:
    """The reference model on its own: its latent UMAP coloured by annotated cell type and
    by k-means cluster (ARI and NMI in the title), and the mean protein foreground
    probability per type and protein.

    ``umap``: one row per reference cell with ``umap_1``, ``umap_2``, ``label`` and
    ``cluster``; ``foreground``: types × proteins; ``scores``: one row with ``ari``, ``nmi``.
    """
    _require_columns(umap, ["umap_1", "umap_2", "label", "cluster"], "UMAP")
    _require_columns(scores, ["ari", "nmi"], "cluster-score")
    n_panel = foreground.shape[1]
    if n_panel > _MAX_HEATMAP_PROTEINS:
        # The most type-specific proteins: the widest range of mean foreground over types.
        spread = foreground.max() - foreground.min()
        foreground = foreground[spread.sort_values(ascending=False).index[
            :_MAX_HEATMAP_PROTEINS]]
    n_proteins = foreground.shape[1]
    apply_style()
    fig, axes = plt.subplots(1, 3, figsize=(15.0 + 0.12 * max(n_proteins - 14, 0), 4.8),
                             gridspec_kw={"width_ratios": [1.0, 1.0, 1.3]})
    xy = umap[["umap_1", "umap_2"]].to_numpy(dtype=np.float64)
    draw = np.random.default_rng(_PLOT_SEED).permutation(len(umap))
    size = _point_size(len(umap))
    for ax, column, name in ((axes[0], "label", "cell type"), (axes[1], "cluster", "k-means")):
        values = umap[column].astype(str).to_numpy()
        palette = label_palette(sorted(set(values)))
        colours = np.array([palette[v] for v in values])
        ax.scatter(xy[draw, 0], xy[draw, 1], c=colours[draw], s=size, linewidths=0,
                   rasterized=True)
        handles = [plt.Line2D([], [], marker="o", markersize=5, linestyle="", color=c,
                              label=v) for v, c in palette.items()]
        ax.legend(handles=handles, title=name, loc="upper left", fontsize="small",
                  ncols=1 if len(palette) <= 10 else 2)
        _umap_axes(ax)
    axes[0].set_title(f"cell types (n={len(umap)} cells)")
    axes[1].set_title(f"k-means, k = {umap['label'].nunique()}: ARI {scores['ari'].iloc[0]:.2f}, "
                      f"NMI {scores['nmi'].iloc[0]:.2f}")
    image = axes[2].imshow(foreground.to_numpy(dtype=np.float64), vmin=0.0, vmax=1.0,
                           cmap="viridis", aspect="auto")
    axes[2].set_xticks(range(n_proteins), list(foreground.columns), rotation=90,
                       fontsize="small")
    axes[2].set_yticks(range(len(foreground)), list(foreground.index))
    axes[2].set_xlabel("protein")
    axes[2].set_ylabel("cell type")
    shown = "" if n_proteins == n_panel else f", the {n_proteins} of {n_panel} most type-specific"
    axes[2].set_title(f"protein foreground probability (mean per type{shown})")
    fig.colorbar(image, ax=axes[2], label="mean P(foreground)")
    fig.suptitle(title)
    return save_figure(fig, path_stem)
