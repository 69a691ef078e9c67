"""The project's one figure style: rcParams, method colours, and atomic saving.

Every study's figure functions call :func:`apply_style` first, colour methods with
:func:`method_color`, and write through :func:`save_figure` (PNG for viewing, PDF for the
paper-style vector figure). Matplotlib runs on the non-interactive Agg backend, so figures
render the same on a headless cluster node as on a laptop.
"""

from __future__ import annotations

import os
import tempfile
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import matplotlib

# Headless rendering; the backend is chosen before pyplot is imported.
matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.image import AxesImage

# Stable colours per method across all figures. Later studies add their methods here.
METHOD_COLORS: dict[str, str] = {
    "scVI": "#4C72B0",
    "scVI-cc": "#C44E52",
    "regress-bbknn": "#55A868",
    "regress-harmony": "#8172B2",
    # Paper Supp. Fig. 2: regress_out alone.
    "regress": "#DA8BC3",
    # Paper Fig. 3: the scArches query mapping and de novo totalVI.
    "scArches": "#DD8452",
    "de novo": "#937860",
    # Implementations of one model side by side (Stereoscope, CellAssign), and CellAssign's
    # baseline: as the deconvolution and CellAssign tables name them.
    "scprob": "#2F4B7C",
    "scvi-tools": "#A05195",
    "scvi_tools": "#A05195",
    "stereoscope": "#8C8C8C",
    "marker sum": "#CCB974",
}
# For methods without an entry: picked by a stable hash of the name, so a method keeps its
# colour between runs and figures.
FALLBACK_COLORS: tuple[str, ...] = (
    "#DD8452", "#937860", "#DA8BC3", "#8C8C8C", "#CCB974", "#64B5CD", "#2F4B7C", "#A05195",
)

STYLE: dict[str, object] = {
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"],
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "figure.titlesize": 11,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.linewidth": 0.8,
    "lines.linewidth": 1.2,
    "figure.dpi": 100,
    "savefig.dpi": 300,
    "savefig.bbox": "tight",
    "figure.constrained_layout.use": True,
    # Text stays text in the PDF (editable, searchable).
    "pdf.fonttype": 42,
}


def apply_style() -> None:
    """Set the project's matplotlib rcParams (idempotent)."""
    plt.rcParams.update(STYLE)


def method_color(method: str) -> str:
    """The colour of ``method``: its :data:`METHOD_COLORS` entry or a stable fallback."""
    if method in METHOD_COLORS:
        return METHOD_COLORS[method]
    return FALLBACK_COLORS[zlib.crc32(method.encode()) % len(FALLBACK_COLORS)]


def method_order(methods: Iterable[str]) -> list[str]:
    """Distinct methods, those in :data:`METHOD_COLORS` first in its order, then the rest
    in order of appearance, so every figure lists methods the same way."""
    seen = list(dict.fromkeys(methods))
    known = [m for m in METHOD_COLORS if m in seen]
    return known + [m for m in seen if m not in METHOD_COLORS]


def draw_share_matrix(ax: Axes, matrix: pd.DataFrame,
                      row_names: Sequence[str] | None = None) -> AxesImage:
    """A row-normalised label matrix (shares in [0, 1]) as a heat map on ``ax``, shares of
    at least 0.1 written in the cells; returns the image (for a colour bar)."""
    values = matrix.to_numpy(dtype=np.float64)
    image = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
    for i, j in zip(*np.nonzero(values >= 0.1), strict=True):
        ax.text(j, i, f"{values[i, j]:.2f}"[1:] if values[i, j] < 1 else "1", ha="center",
                va="center", fontsize=5.5, color="white" if values[i, j] > 0.6 else "black")
    names = [str(r) for r in matrix.index] if row_names is None else list(row_names)
    ax.set_yticks(range(values.shape[0]), names)
    ax.set_xticks(range(values.shape[1]), [str(c) for c in matrix.columns], rotation=90)
    ax.spines[:].set_visible(False)
    return image


def save_figure(fig: Figure, path_stem: str | Path) -> list[Path]:
    """Write ``<path_stem>.png`` and ``<path_stem>.pdf`` atomically, then close ``fig``.

    Each file is rendered to a temporary file in the target folder and moved into place
    with ``os.replace``, so a crashed or parallel run never leaves a half-written figure
    for Snakemake to mistake for output. Parent folders are created. Returns both paths.
    """
    stem = Path(path_stem)
    if stem.suffix.lower() in {".png", ".pdf"}:
        raise ValueError(
            f"path_stem {str(path_stem)!r} has a file extension; pass the path without it "
            "(both .png and .pdf are written)."
        )
    stem.parent.mkdir(parents=True, exist_ok=True)
    written = []
    try:
        for fmt in ("png", "pdf"):
            target = stem.parent / f"{stem.name}.{fmt}"
            fd, tmp_name = tempfile.mkstemp(
                dir=stem.parent, prefix=f".{stem.name}.", suffix=f".{fmt}.tmp"
            )
            try:
                with os.fdopen(fd, "wb") as handle:
                    fig.savefig(handle, format=fmt)
                # mkstemp creates owner-only files; figures are meant to be shared.
                os.chmod(tmp_name, 0o644)
                os.replace(tmp_name, target)
            except BaseException:
                Path(tmp_name).unlink(missing_ok=True)
                raise
            written.append(target)
    finally:
        plt.close(fig)
    return written
