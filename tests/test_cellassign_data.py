"""The CellAssign study's data: the marker lists (checked against their recorded
checksums), the tumour-like simulators on them, and the real CellBench cell lines
(skipped when ../shared/data is absent)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from scprob.bench.cellassign import annotate, annotate_by_marker_sum, predicted_labels, scores
from scprob.data.io import read_cellbench, read_marker_yaml
from scprob.data.simulate.pbmc_markers import marker_gene_matrix, simulate_pbmc_markers
from scprob.data.simulate.tumour_markers import (
    follicular_marker_matrix,
    simulate_follicular,
    simulate_hgsc,
)

from .conftest import REPO, sha256_file

MARKERS = REPO / "config" / "markers"
CELLBENCH = "cellbench_lung_cell_lines"
TRAIN = {"max_epochs": 400, "batch_size": 1024, "lr": 1e-2}


def test_marker_lists_match_the_checksums_of_their_readme() -> None:
    recorded = dict(re.findall(r"^\| `(\w+\.yaml)` \|.*\| `([0-9a-f]{64})` \|$",
                               (MARKERS / "README.md").read_text(), flags=re.M))
    assert sorted(recorded) == sorted(p.name for p in MARKERS.glob("*.yaml"))
    for name, digest in recorded.items():
        assert sha256_file(MARKERS / name) == digest, name


def test_read_marker_yaml_builds_the_binary_matrix(tmp_path: Path) -> None:
    rho = read_marker_yaml(MARKERS / "hgsc_small.yaml")
    assert rho.shape == (41, 8)
    assert set(np.unique(rho.to_numpy())) == {0, 1}
    assert rho.loc["VIM"].sum() == 7 and rho.loc["EPCAM"].tolist() == [
        t == "Epithelial cells" for t in rho.columns]
    bad = tmp_path / "bad.yaml"
    bad.write_text("B cells: []\n")
    with pytest.raises(ValueError, match="is not a marker list: it must map each cell type "
                                         "to a non-empty list of marker genes"):
        read_marker_yaml(bad)
    with pytest.raises(ValueError, match="is not a file"):
        read_marker_yaml(tmp_path / "absent.yaml")


def test_follicular_panel_merges_the_t_cell_states() -> None:
    rho = follicular_marker_matrix(MARKERS / "follicular_big.yaml")
    assert list(rho.columns) == ["B cells", "Cytotoxic T cells", "Tfh", "Other T cells", "Other"]
    assert rho.loc[["CD8A", "IFNG", "GZMA"], "Cytotoxic T cells"].all()
    assert rho.loc[["SELL", "IL7R", "CD69"], "Other T cells"].all()
    assert rho.loc["CD3D"].tolist() == [0, 1, 1, 1, 0]
    other = rho.loc[rho["Other"] == 1]
    assert len(other) == 3 and not other.drop(columns="Other").to_numpy().any()


def test_pbmc_panel_draws_through_the_shared_generator() -> None:
    adata, rho = simulate_pbmc_markers(500, seed=1)
    assert rho.equals(marker_gene_matrix()) and rho.shape == (23, 5)
    assert adata.shape == (500, 100) and list(adata.var_names[:23]) == list(rho.index)
    assert "patient" not in adata.obs


@pytest.mark.parametrize(("simulate", "markers", "design_key"), [
    (simulate_follicular, "follicular_big.yaml", "patient"),
    (simulate_hgsc, "hgsc_small.yaml", None),
])
def test_cellassign_recovers_the_simulated_types_at_1000_cells(
        simulate, markers: str, design_key: str | None) -> None:
    """Accuracy 0.96–0.99 over seeds 0–1 (both panels); the marker sum 0.75–0.94."""
    torch.set_num_threads(1)
    adata, rho = simulate(MARKERS / markers, n_cells=1000, seed=0)
    if design_key is not None:
        assert sorted(adata.obs[design_key].unique()) == ["patient1", "patient2"]
    probabilities, _ = annotate(adata, rho, TRAIN, seed=0, design_key=design_key)
    ours = scores(adata.obs["cell_type"], predicted_labels(probabilities))
    baseline, _ = annotate_by_marker_sum(adata, rho)
    by_sum = scores(adata.obs["cell_type"], predicted_labels(baseline))
    assert ours["accuracy"] >= 0.93
    assert ours["accuracy"] > by_sum["accuracy"] and ours["macro_f1"] > by_sum["macro_f1"]


def test_simulated_patient_shift_is_the_models_design_term() -> None:
    adata, rho = simulate_follicular(MARKERS / "follicular_big.yaml", n_cells=6000, seed=2)
    x = np.log1p(adata.X[:, len(rho):])  # non-marker genes: no type effect
    patient = adata.obs["patient"].to_numpy()
    shift = x[patient == "patient2"].mean(0) - x[patient == "patient1"].mean(0)
    assert np.abs(shift).max() > 0.3  # a real batch effect, gene by gene


# --------------------------------------------------------------- CellBench (real data)


def _cellbench(folder: Path, technology: str):
    return read_cellbench(folder / f"sc_{technology}.count.csv.gz",
                          folder / f"sc_{technology}.metadata.csv.gz",
                          folder / "GENCODEv44_Gene_id2name.csv")


@pytest.mark.parametrize(("technology", "lines", "n_genes", "missing"), [
    ("celseq2", {"H1975": 103, "HCC827": 70, "H2228": 67}, 27917,
     ["BTBD11", "HIST1H2BH", "TMEM155"]),
    ("dropseq", {"H1975": 79, "HCC827": 66, "H2228": 65}, 15126,
     ["BTBD11", "CT45A2", "HIST1H2BH", "NPTX1", "TMEM155"]),
])
def test_read_cellbench_keeps_the_genotyped_singlets(
        shared_data: Path, technology: str, lines: dict[str, int], n_genes: int,
        missing: list[str]) -> None:
    folder = shared_data / CELLBENCH
    adata = _cellbench(folder, technology)
    assert adata.obs["cell_line"].value_counts().to_dict() == lines
    assert adata.n_vars == n_genes and adata.var_names.is_unique
    assert not adata.var_names.str.startswith("ERCC-").any()
    assert "EPCAM" in adata.var_names and not adata.var_names.str.startswith("ENSG").all()
    metadata = pd.read_csv(folder / f"sc_{technology}.metadata.csv.gz", index_col=0)
    assert (metadata.loc[adata.obs_names, "demuxlet_cls"] == "SNG").all()
    counts = pd.read_csv(folder / f"sc_{technology}.count.csv.gz", index_col=0)
    spikes = counts.index.str.startswith("ERCC-")
    assert np.allclose(np.asarray(adata.X.sum(1)).ravel(),
                       counts.loc[~spikes, adata.obs_names].sum(0).to_numpy())
    markers = read_marker_yaml(folder / "marker_lists" / "tian_73_73_markers.yaml")
    assert list(markers.index.difference(adata.var_names)) == missing


def test_read_cellbench_rejects_mismatched_files(shared_data: Path, tmp_path: Path) -> None:
    folder = shared_data / CELLBENCH
    with pytest.raises(ValueError, match=r"cells of .* have no row in .*: use the count and "
                                         "metadata files of the same technology"):
        read_cellbench(folder / "sc_celseq2.count.csv.gz", folder / "sc_dropseq.metadata.csv.gz",
                       folder / "GENCODEv44_Gene_id2name.csv")
    plain = tmp_path / "metadata.csv"
    plain.write_text("cell,x\nA1,1\n")
    with pytest.raises(ValueError, match="has no column 'cell_line_demuxlet': pass the "
                                         "CellBench metadata file"):
        read_cellbench(folder / "sc_celseq2.count.csv.gz", plain,
                       folder / "GENCODEv44_Gene_id2name.csv")


def test_cellassign_annotates_the_cellbench_lines_by_their_genotype(shared_data: Path) -> None:
    """Accuracy 1.0 on CEL-seq2 (240 singlets, 70 of 73 markers) and Drop-seq (210, 68 of
    73), seeds 0–2; the marker sum is also 1.0 on these well-separated lines."""
    torch.set_num_threads(1)
    folder = shared_data / CELLBENCH
    adata = _cellbench(folder, "celseq2")
    markers = read_marker_yaml(folder / "marker_lists" / "tian_73_73_markers.yaml")
    markers = markers.loc[markers.index.intersection(adata.var_names, sort=False)]
    probabilities, _ = annotate(adata, markers, TRAIN, seed=1)
    assert scores(adata.obs["cell_line"], predicted_labels(probabilities))["accuracy"] >= 0.99
