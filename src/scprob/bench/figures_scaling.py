"""Figure of the runtime study (paper Supp. Fig. 2), in the project style.

:func:`plot_runtime_scaling` takes the tidy runtime table (one row per method and number of
cells, as ``aggregate_scaling`` writes it) and writes ``<stem>.png`` and ``<stem>.pdf``
through :func:`scprob.bench.plotting.save_figure`: wall time (s) and peak resident memory
(GiB) of each method's timed call against the number of cells, both axes logarithmic, one
line per method.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter

from scprob.bench.plotting import apply_style, method_color, save_figure

REQUIRED_COLUMNS: tuple[str, ...] = ("display_name", "n_cells", "seconds", "peak_rss_gib")
PANELS: tuple[tuple[str, str], ...] = (
    ("seconds", "runtime of the timed call (s)"),
    ("peak_rss_gib", "peak resident memory (GiB)"),
)
TITLE = "Supp. Fig. 2 — runtime and memory vs number of cells (simulated Heart Cell Atlas)"


def _cells_label(n_cells: float, _position: float) -> str:
    """``5k``, ``40k``, ``486k``: tick labels that stay short on a log axis."""
    if n_cells >= 1000:
        return f"{n_cells / 1000:g}k"
    return f"{n_cells:g}"


def _minor_label(value: float, _position: float) -> str:
    """Label the 2s and 5s between powers of ten, so a short log axis still has numbers."""
    leading = value / 10 ** np.floor(np.log10(value))
    return f"{value:g}" if np.isclose(leading, 2) or np.isclose(leading, 5) else ""


def _check_table(table: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(
            f"runtime table lacks columns {missing} (has {list(table.columns)}); "
            f"it needs {list(REQUIRED_COLUMNS)}."
        )
    if table.empty:
        raise ValueError("runtime table is empty; run the timing jobs first.")
    values = table[["n_cells", "seconds", "peak_rss_gib"]].to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ValueError(
            "n_cells, seconds and peak_rss_gib must be finite and positive for a log-log "
            "plot; check the timing JSON files."
        )
    return table


def _draw_panel(ax: Axes, table: pd.DataFrame, column: str, label: str,
                methods: Sequence[str]) -> None:
    for method in methods:
        rows = table[table["display_name"] == method].sort_values("n_cells")
        ax.plot(rows["n_cells"], rows[column], marker="o", markersize=4,
                color=method_color(method), label=method)
    ax.set_xscale("log")
    ax.set_yscale("log")
    sizes = np.sort(table["n_cells"].unique())
    ax.set_xticks(sizes)
    ax.xaxis.set_major_formatter(FuncFormatter(_cells_label))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda *_: ""))
    # Plain numbers on the log axes (0.5, 2, 20), not powers of ten.
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(_minor_label))
    ax.set_xlabel("number of cells")
    ax.set_ylabel(label)
    ax.grid(True, which="major", linewidth=0.4, alpha=0.5)


def plot_runtime_scaling(table: pd.DataFrame, path_stem: str | Path) -> list[Path]:
    """Supp. Fig. 2: runtime (s) and peak memory (GiB) per method against cells, log-log.

    ``table``: one row per (method, number of cells) with columns ``display_name`` (the
    legend entry, which also picks the colour), ``n_cells``, ``seconds`` and
    ``peak_rss_gib``; an optional ``epochs`` column (scVI) is written next to the scVI
    runtime points, since early stopping makes the epoch count vary with the size.
    Returns the PNG and PDF paths.
    """
    table = _check_table(table)
    apply_style()
    methods = list(dict.fromkeys(table["display_name"]))  # the table's (config's) order
    fig, axes = plt.subplots(1, len(PANELS), figsize=(8.0, 3.4))
    for ax, (column, label) in zip(axes, PANELS, strict=True):
        _draw_panel(ax, table, column, label, methods)
    if "epochs" in table.columns:
        trained = table[table["epochs"].notna()]
        for row in trained.itertuples():
            axes[0].annotate(f"{int(row.epochs)} ep.", (row.n_cells, row.seconds),
                             textcoords="offset points", xytext=(3, 4), fontsize=6,
                             color=method_color(row.display_name))
    axes[1].legend(loc="upper left")  # the memory panel has room there
    fig.suptitle(TITLE)
    return save_figure(fig, path_stem)
