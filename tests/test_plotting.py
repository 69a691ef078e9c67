"""The shared figure style and the Fig. 2 figure functions: files are written, atomically."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from scprob.bench import plotting
from scprob.bench.figures_covariates import plot_gearys_c, plot_ground_truth, plot_umaps
from scprob.bench.plotting import (
    METHOD_COLORS,
    apply_style,
    method_color,
    method_order,
    save_figure,
)

METHODS = ["scVI", "scVI-cc", "regress-bbknn", "regress-harmony"]


def _assert_written(paths: list[Path], stem: Path) -> None:
    assert paths == [stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".pdf")]
    png, pdf = paths
    assert png.read_bytes().startswith(b"\x89PNG")
    assert pdf.read_bytes().startswith(b"%PDF")
    assert png.stat().st_size > 1000 and pdf.stat().st_size > 1000
    # No temporary files left behind.
    assert sorted(p.name for p in stem.parent.iterdir() if p.name.startswith(".")) == []


def test_style_backend_and_colours() -> None:
    assert matplotlib.get_backend().lower() == "agg"
    apply_style()
    assert plt.rcParams["axes.spines.top"] is False
    assert plt.rcParams["axes.spines.right"] is False
    assert plt.rcParams["savefig.dpi"] == 300
    assert set(METHODS) <= set(METHOD_COLORS)
    assert len({METHOD_COLORS[m] for m in METHODS}) == len(METHODS)
    assert method_color("scVI-cc") == METHOD_COLORS["scVI-cc"]
    # Implementations drawn side by side never share a colour (a hash could make them).
    implementations = ["scprob", "scvi-tools", "stereoscope", "marker sum"]
    assert len({method_color(m) for m in implementations}) == len(implementations)
    # An unknown method gets a colour from the fallback list, the same every time.
    assert method_color("totalVI") in plotting.FALLBACK_COLORS
    assert method_color("totalVI") == method_color("totalVI")
    assert method_order(["new", "regress-bbknn", "scVI", "new"]) == [
        "scVI", "regress-bbknn", "new"
    ]


def test_save_figure_writes_png_and_pdf_and_closes(tmp_path: Path) -> None:
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    stem = tmp_path / "nested" / "line"
    _assert_written(save_figure(fig, stem), stem)
    assert not plt.fignum_exists(fig.number)
    with pytest.raises(ValueError, match="has a file extension; pass the path without it"):
        save_figure(plt.figure(), tmp_path / "x.png")


def test_save_figure_replaces_and_cleans_up_on_failure(tmp_path: Path, monkeypatch) -> None:
    stem = tmp_path / "fig"
    fig, _ = plt.subplots()
    save_figure(fig, stem)
    old_png = (tmp_path / "fig.png").read_bytes()

    fig, _ = plt.subplots()

    def broken_savefig(*args, **kwargs) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(fig, "savefig", broken_savefig)
    with pytest.raises(RuntimeError, match="disk full"):
        save_figure(fig, stem)
    # The previous figure is intact and no temporary file is left.
    assert (tmp_path / "fig.png").read_bytes() == old_png
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.pdf", "fig.png"]
    assert not plt.fignum_exists(fig.number)


def _gearys_table() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for shift, method in enumerate(METHODS):
        for gene_set, n_genes in (("marker", 31), ("nuisance", 55)):
            for g in range(n_genes):
                rows.append({"method": method, "gene_set": gene_set, "gene": f"{gene_set}{g}",
                             "gearys_c": rng.uniform(0.1, 0.5) + 0.1 * shift})
    table = pd.DataFrame(rows)
    table.loc[0, "gearys_c"] = np.nan  # a constant gene
    return table


def test_plot_gearys_c(tmp_path: Path) -> None:
    table = _gearys_table()
    for gene_set, name in (("marker", "fig2e"), ("nuisance", "fig2f")):
        stem = tmp_path / name
        _assert_written(plot_gearys_c(table, gene_set, stem), stem)
    with pytest.raises(ValueError, match="no finite Geary's C for gene_set 'hox'"):
        plot_gearys_c(table, "hox", tmp_path / "none")
    with pytest.raises(ValueError, match=r"lacks columns \['gearys_c'\]"):
        plot_gearys_c(table.drop(columns="gearys_c"), "marker", tmp_path / "none")


def test_plot_umaps(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n_cells = 500
    umaps = {m: rng.normal(size=(n_cells, 2)) for m in METHODS}
    colours = {
        "batch": pd.Categorical(rng.choice(["t1-r1", "t1-r2", "t2-r1"], n_cells)),
        "PCNA": rng.gamma(1.0, 1.0, n_cells),
        "lncRNA:roX1": rng.gamma(1.0, 1.0, n_cells),
        "vg": rng.gamma(1.0, 1.0, n_cells),
    }
    stem = tmp_path / "fig2d"
    _assert_written(plot_umaps(umaps, colours, stem), stem)
    # Rows follow METHOD_COLORS' order, so scVI (500 cells) sets the expected shape.
    with pytest.raises(ValueError, match=r"UMAP of 'scVI-cc' is \(10, 2\); expected \(500, 2\)"):
        plot_umaps({"scVI-cc": umaps["scVI-cc"][:10], "scVI": umaps["scVI"]}, colours, stem)
    with pytest.raises(ValueError, match="colouring 'vg' has 3 values for 500 cells"):
        plot_umaps(umaps, {"vg": np.ones(3)}, stem)


def test_plot_ground_truth(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    columns = ["bio_knn_accuracy:cell_state", "bio_probe_accuracy:cell_state",
               "leak_knn_r2:cycle_score", "leak_probe_r2:cycle_score",
               "leak_knn_accuracy:sex", "mix_entropy:batch"]
    table = pd.DataFrame(rng.uniform(-0.1, 1.0, (4, len(columns))), columns=columns)
    table.insert(0, "method", METHODS)
    table.loc[2, "bio_probe_accuracy:cell_state"] = np.nan  # graph-only method
    stem = tmp_path / "ground_truth"
    _assert_written(plot_ground_truth(table, stem), stem)
    with pytest.raises(ValueError, match="has no score columns"):
        plot_ground_truth(table[["method"]], stem)
    with pytest.raises(ValueError, match=r"several rows for methods \['scVI'\]"):
        plot_ground_truth(pd.concat([table, table.iloc[[0]]]), stem)
