"""Figure of the code-complexity study (paper Fig. 5c), in the project style.

:func:`plot_complexity` takes the complexity table (one row per group, as
``measure_complexity`` writes it) and writes ``<stem>.png`` and ``<stem>.pdf`` through
:func:`scprob.bench.plotting.save_figure`: source lines of code per group (left) and the
average cyclomatic complexity of its blocks (right), ours beside the peers, one colour
per source. Rows whose numbers are recorded in the config rather than measured in the run
are hatched and say so on the axis, so an offline figure never passes them off as fresh.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.container import BarContainer
from matplotlib.patches import Patch

from scprob.bench.complexity import RECORDED, TABLE_COLUMNS
from scprob.bench.plotting import apply_style, method_color, save_figure

PANELS: tuple[tuple[str, str, str], ...] = (
    ("sloc", "source lines of code (lines, radon SLOC)", "{:,.0f}"),
    ("average_cc", "average cyclomatic complexity\n(decision paths per block)", "{:.2f}"),
)
# Sources are not methods of METHOD_COLORS and their fallback colours collide, so the
# study picks three of the palette: ours, the reimplementation, the original.
SOURCE_COLORS: dict[str, str] = {"ours": "#4C72B0", "scvi-tools": "#55A868",
                                 "stereoscope": "#8C8C8C"}
TITLE = "Fig. 5c — code size and complexity: our models, scvi-tools and the original"


def source_color(source: str) -> str:
    """The colour of a source (``scvi-tools 1.4.2`` by its package name)."""
    return SOURCE_COLORS.get(source.split(" ")[0], method_color(source))


def _label(row: pd.Series) -> str:
    """The tick label of a group: its name, its source, and "recorded" where so."""
    label = f"{row['group']}\n{row['source']}"
    return label + "\n(recorded)" if row["how"] == RECORDED else label


def _annotate_bars(ax: Axes, bars: BarContainer, values: np.ndarray, fmt: str) -> None:
    """Each finite value above its bar."""
    for bar, value in zip(bars, values, strict=True):
        if np.isfinite(value):
            ax.annotate(fmt.format(value), (bar.get_x() + bar.get_width() / 2,
                                            bar.get_height()),
                        ha="center", va="bottom", fontsize=7,
                        xytext=(0, 2), textcoords="offset points")


def _check_table(table: pd.DataFrame) -> None:
    missing = [c for c in TABLE_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"complexity table lacks columns {missing}; it needs "
                         f"{TABLE_COLUMNS}.")
    if table.empty:
        raise ValueError("complexity table is empty; measure some groups first.")


def _legend_handles(table: pd.DataFrame) -> list[Patch]:
    """One patch per source, and the hatch of recorded numbers where there are some."""
    handles = [Patch(color=source_color(s), label=s) for s in dict.fromkeys(table["source"])]
    if (table["how"] == RECORDED).any():
        handles.append(Patch(facecolor="white", edgecolor="0.3", hatch="//",
                             label="recorded in the config"))
    return handles


def plot_complexity(table: pd.DataFrame, path_stem: str | Path) -> list[Path]:
    """Bar chart of SLOC and average CC per group; returns the PNG and PDF paths."""
    _check_table(table)
    apply_style()
    fig, axes = plt.subplots(1, 2, figsize=(max(7.0, 1.5 * len(table)), 3.8))
    positions = np.arange(len(table))
    colors = [source_color(source) for source in table["source"]]
    hatches = ["//" if how == RECORDED else "" for how in table["how"]]
    for ax, (column, ylabel, fmt) in zip(axes, PANELS, strict=True):
        values = table[column].to_numpy(dtype=float)
        bars = ax.bar(positions, np.nan_to_num(values), color=colors, hatch=hatches,
                      edgecolor="white", linewidth=0.5)
        _annotate_bars(ax, bars, values, fmt)
        ax.set_xticks(positions, [_label(row) for _, row in table.iterrows()],
                      rotation=45, ha="right", rotation_mode="anchor")
        ax.set_ylabel(ylabel)
        ax.margins(y=0.12)
    handles = _legend_handles(table)
    # Below the panels: above the bars it would hide the tallest ones.
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles))
    fig.suptitle(TITLE)
    return save_figure(fig, path_stem)
