"""Figures of the covariates study (paper Fig. 2d–f, Supp. Fig. 1), in the project style.

Each function takes tidy pandas data (or arrays keyed by method) and a path stem, and writes
``<stem>.png`` and ``<stem>.pdf`` through :func:`scprob.bench.plotting.save_figure`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from scprob.bench.metrics import describe_score
from scprob.bench.plotting import apply_style, method_color, method_order, save_figure

GEARYS_C_LABEL = "Geary's C (0 = smooth on the graph, 1 = random)"
# Paper panel and reading aid per gene set of the Geary's C table.
GENE_SET_TITLES: dict[str, tuple[str, str]] = {
    "marker": ("Fig. 2e — marker genes", "lower = biological signal kept"),
    "nuisance": ("Fig. 2f — nuisance genes (cell cycle, sex)", "higher = nuisance removed"),
}
SCORE_LABELS: dict[str, str] = {
    "knn_accuracy": "kNN acc.",
    "probe_accuracy": "probe acc.",
    "knn_r2": "kNN R²",
    "probe_r2": "probe R²",
    "entropy": "mixing entropy",
}
_AIM_ORDER = {"bio": 0, "leak": 1, "mix": 2}
# Fixed seed for the jitter and the UMAP drawing order: figures are reproducible.
_PLOT_SEED = 0


def _require_columns(table: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(
            f"{what} table lacks columns {missing} (has {list(table.columns)}); "
            f"it needs {list(columns)}."
        )


def plot_gearys_c(table: pd.DataFrame, gene_set: str, path_stem: str | Path) -> list[Path]:
    """Box plots of Geary's C per method for one gene set (Fig. 2e markers, 2f nuisance).

    ``table``: tidy, one row per (method, gene) with columns ``method``, ``gene_set``,
    ``gene``, ``gearys_c``; rows of other gene sets are ignored, NaN values (constant
    genes) dropped. Boxes show the median, quartiles and whiskers at 1.5×IQR; every gene is
    also drawn as a point.
    """
    _require_columns(table, ["method", "gene_set", "gene", "gearys_c"], "Geary's C")
    rows = table[(table["gene_set"] == gene_set) & table["gearys_c"].notna()]
    if rows.empty:
        raise ValueError(
            f"no finite Geary's C for gene_set {gene_set!r}; "
            f"the table has gene sets {sorted(table['gene_set'].unique())}."
        )
    apply_style()
    methods = method_order(rows["method"])
    values = [rows.loc[rows["method"] == m, "gearys_c"].to_numpy() for m in methods]
    title, reading = GENE_SET_TITLES.get(gene_set, (f"Geary's C — {gene_set} genes", ""))

    fig, ax = plt.subplots(figsize=(1.0 + 1.1 * len(methods), 3.6))
    boxes = ax.boxplot(
        values, whis=1.5, showfliers=False, widths=0.6, patch_artist=True,
        medianprops={"color": "black", "linewidth": 1.5},
    )
    rng = np.random.default_rng(_PLOT_SEED)
    for position, (method, box, genes) in enumerate(
        zip(methods, boxes["boxes"], values, strict=True), start=1
    ):
        box.set_facecolor(method_color(method))
        box.set_alpha(0.45)
        jitter = rng.uniform(-0.15, 0.15, genes.size)
        ax.scatter(position + jitter, genes, s=9, color=method_color(method),
                   edgecolor="black", linewidth=0.3, zorder=3)
    ax.set_xticks(
        range(1, len(methods) + 1),
        [f"{m}\n(n={v.size})" for m, v in zip(methods, values, strict=True)],
    )
    ax.set_xlabel("method")
    ax.set_ylabel(GEARYS_C_LABEL)
    ax.set_title(title + (f"\n({reading})" if reading else ""))
    return save_figure(fig, path_stem)


def _is_categorical(values: np.ndarray | pd.Series) -> bool:
    """Floats are continuous (expression, scores); everything else is a category."""
    return not pd.api.types.is_float_dtype(values)


def _scatter_column(
    fig: Figure, axes: Sequence[Axes], umaps: Sequence[np.ndarray], name: str,
    values: np.ndarray | pd.Series, order: np.ndarray, point_size: float,
) -> None:
    """One colouring (``name``) on every method's UMAP, with a shared legend or colour bar."""
    if _is_categorical(values):
        _scatter_categories(axes, umaps, name, values, order, point_size)
    else:
        _scatter_values(fig, axes, umaps, name, values, order, point_size)


def _scatter_categories(
    axes: Sequence[Axes], umaps: Sequence[np.ndarray], name: str,
    values: np.ndarray | pd.Series, order: np.ndarray, point_size: float,
) -> None:
    labels = pd.Series(np.asarray(values).astype(str))
    # A categorical's own order (e.g. time points) where it has one, else sorted.
    declared = getattr(getattr(values, "dtype", None), "categories", None)
    ordered = [str(c) for c in declared] if declared is not None else sorted(labels.unique())
    categories = [c for c in ordered if c in set(labels)]
    cmap = plt.get_cmap("tab10" if len(categories) <= 10 else "tab20")
    palette = {c: cmap(i % cmap.N) for i, c in enumerate(categories)}
    colours = np.array([palette[c] for c in labels])
    for ax, xy in zip(axes, umaps, strict=True):
        ax.scatter(xy[order, 0], xy[order, 1], c=colours[order], s=point_size,
                   linewidths=0, rasterized=True)
    handles = [plt.Line2D([], [], marker="o", markersize=5, linestyle="",
                          color=palette[c], label=c) for c in categories]
    # At most two legend columns, so the legend is no wider than its UMAP column.
    axes[-1].legend(handles=handles, title=name, loc="upper center",
                    bbox_to_anchor=(0.5, -0.2), ncols=min(2, len(categories)),
                    columnspacing=0.8, handletextpad=0.2)


def _scatter_values(
    fig: Figure, axes: Sequence[Axes], umaps: Sequence[np.ndarray], name: str,
    values: np.ndarray | pd.Series, order: np.ndarray, point_size: float,
) -> None:
    numeric = np.asarray(values, dtype=np.float64)
    # Clip the colour range at the 99th percentile so a few extreme cells do not wash out
    # the rest; the same range on every method keeps the rows comparable.
    vmin, vmax = np.nanpercentile(numeric, [0, 99])
    vmax = vmax if vmax > vmin else vmin + 1.0
    for ax, xy in zip(axes, umaps, strict=True):
        points = ax.scatter(xy[order, 0], xy[order, 1], c=numeric[order], s=point_size,
                            cmap="viridis", vmin=vmin, vmax=vmax, linewidths=0,
                            rasterized=True)
    fig.colorbar(points, ax=list(axes), location="bottom", shrink=0.8, label=name,
                 aspect=25)


def _check_umaps(methods: Sequence[str], layouts: Sequence[np.ndarray],
                 colours: Mapping[str, np.ndarray | pd.Series]) -> int:
    """The number of cells every layout ``(n_cells, 2)`` and colouring ``(n_cells,)`` share."""
    if not layouts or not colours:
        raise ValueError("plot_umaps needs at least one UMAP and one colouring.")
    n_cells = layouts[0].shape[0]
    for method, xy in zip(methods, layouts, strict=True):
        if xy.shape != (n_cells, 2):
            raise ValueError(f"UMAP of {method!r} is {xy.shape}; expected ({n_cells}, 2).")
    for name, values in colours.items():
        if len(values) != n_cells:
            raise ValueError(f"colouring {name!r} has {len(values)} values for {n_cells} cells.")
    return n_cells


def plot_umaps(
    umaps: Mapping[str, np.ndarray],
    colours: Mapping[str, np.ndarray | pd.Series],
    path_stem: str | Path,
    title: str = "Fig. 2d / Supp. Fig. 1 — UMAP of each method's neighbour graph",
) -> list[Path]:
    """Grid of UMAPs: one row per method, one column per colouring.

    ``umaps``: method → ``(n_cells, 2)`` layout; ``colours``: name → ``(n_cells,)`` values
    (e.g. ``batch``, ``PCNA``, ``lncRNA:roX1``, ``vg`` expression). Float values are drawn
    on a shared viridis scale, anything else as categories. Cells are drawn in one seeded
    random order, so no batch or category is systematically painted on top.
    """
    methods = method_order(umaps)
    layouts = [np.asarray(umaps[m], dtype=np.float64) for m in methods]
    n_cells = _check_umaps(methods, layouts, colours)

    apply_style()
    n_rows, n_cols = len(methods), len(colours)
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(2.3 * n_cols, 2.3 * n_rows + 0.9), squeeze=False
    )
    order = np.random.default_rng(_PLOT_SEED).permutation(n_cells)
    point_size = float(np.clip(3000.0 / n_cells, 0.3, 8.0))
    for col, (name, values) in enumerate(colours.items()):
        _scatter_column(fig, axes[:, col], layouts, name, values, order, point_size)
        axes[0, col].set_title(name)
    for row, method in enumerate(methods):
        for ax in axes[row]:
            ax.set(xticks=[], yticks=[], xlabel="UMAP 1")
        axes[row, 0].set_ylabel(f"{method}\nUMAP 2", color=method_color(method))
    fig.suptitle(title)
    return save_figure(fig, path_stem)


def _score_columns(table: pd.DataFrame) -> list[str]:
    """The table's score columns, bio, then leak, then mix (stable within an aim)."""
    _require_columns(table, ["method"], "ground-truth")
    scores = [c for c in table.columns if c.split("_", 1)[0] in _AIM_ORDER and ":" in c]
    if not scores:
        raise ValueError(
            "the ground-truth table has no score columns ('bio_…:col', 'leak_…:col', "
            "'mix_…:col'); write it from scprob.bench.metrics.ground_truth_scores."
        )
    if table["method"].duplicated().any():
        duplicated = sorted(table.loc[table["method"].duplicated(), "method"].unique())
        raise ValueError(f"the ground-truth table has several rows for methods {duplicated}.")
    return sorted(scores, key=lambda c: _AIM_ORDER[c.split("_", 1)[0]])


def _shade_leakage(ax: Axes, scores: Sequence[str]) -> None:
    """A grey background behind the leakage scores, where lower is better."""
    leak = [j for j, c in enumerate(scores) if c.startswith("leak_")]
    if leak:
        ax.axvspan(min(leak) - 0.5, max(leak) + 0.5, color="0.92", zorder=0)
        ax.text((min(leak) + max(leak)) / 2, 1.04, "nuisance leakage (lower is better)",
                ha="center", va="bottom", fontsize=8)


def _score_label(column: str) -> str:
    """A tick label: the obs column above the score and its arrow (↓: lower is better)."""
    measure, obs_column, higher_is_better = describe_score(column)
    arrow = "↑" if higher_is_better else "↓"
    return f"{obs_column}\n{SCORE_LABELS.get(measure, measure)} {arrow}"


def plot_ground_truth(
    table: pd.DataFrame,
    path_stem: str | Path,
    title: str = "Fig. 2 (simulation) — ground-truth scores per method",
) -> list[Path]:
    """Grouped bars of the ground-truth scores, one bar per method in each score group.

    ``table``: one row per method, a ``method`` column and the columns written by
    :func:`scprob.bench.metrics.ground_truth_scores` (``bio_…``, ``leak_…``, ``mix_…``;
    other columns are ignored). NaN scores (probes of graph-only methods) are marked
    "n/a". The nuisance-leakage scores, where lower is better, sit on a grey background.
    """
    scores = _score_columns(table)
    methods = method_order(table["method"])
    by_method = table.set_index("method")

    apply_style()
    fig, ax = plt.subplots(figsize=(max(6.0, 1.0 * len(scores) + 2.0), 4.2))
    width = 0.8 / len(methods)
    positions = np.arange(len(scores), dtype=np.float64)
    for i, method in enumerate(methods):
        heights = by_method.loc[method, scores].to_numpy(dtype=np.float64)
        x = positions - 0.4 + width * (i + 0.5)
        ax.bar(x, np.nan_to_num(heights), width=width, color=method_color(method),
               label=method, edgecolor="black", linewidth=0.3)
        for xi in x[np.isnan(heights)]:
            ax.text(xi, 0.01, "n/a", rotation=90, ha="center", va="bottom", fontsize=6)

    _shade_leakage(ax, scores)
    ax.set_xticks(positions, [_score_label(column) for column in scores])
    ax.axhline(0.0, color="black", linewidth=0.8)
    values = by_method.loc[methods, scores].to_numpy(dtype=np.float64)
    ax.set_ylim(min(0.0, np.nanmin(values) - 0.05) if np.isfinite(values).any() else 0.0, 1.12)
    ax.set_xlim(-0.6, len(scores) - 0.4)
    ax.set_xlabel(
        "obs column and score (↑ higher is better, ↓ lower is better)\n"
        "kNN: vote or mean over graph neighbours; probe: cross-validated linear model "
        "on the embedding"
    )
    ax.set_ylabel("score (accuracy, R² or normalised entropy)")
    ax.legend(title="method", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(title)
    return save_figure(fig, path_stem)
