"""The CellAssign study (paper Supp. Fig. 6): its scores, confusion matrices and claims,
the peer's wiring through a stand-in environment, and the study end to end on the test
config."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from scprob.bench.cellassign import (
    BASELINE,
    OURS,
    claim_check,
    confusion,
    run_scvi_tools,
    runtime_table,
    scores,
)
from tests.conftest import TEST_CONFIG, run_snakemake

SETTINGS = yaml.safe_load(TEST_CONFIG.read_text())["cellassign"]
CELLS = [f"c{i}" for i in range(8)]
TRUTH = pd.Series(["A", "A", "A", "A", "B", "B", "C", "C"], index=CELLS)


# Scores and claims ---------------------------------------------------------------------


def test_scores_match_cells_by_name_and_macro_f1_weighs_types_equally() -> None:
    predicted = pd.Series(["A", "A", "A", "A", "B", "B", "B", "B"], index=CELLS)
    result = scores(TRUTH, predicted.iloc[::-1])
    assert result["accuracy"] == pytest.approx(6 / 8)
    # F1: A 1, B 2/3 (precision 1/2, recall 1), C 0 (never predicted).
    assert result["macro_f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    with pytest.raises(ValueError, match="2 cells have no prediction"):
        scores(TRUTH, predicted.iloc[:6])


def test_confusion_rows_are_shares_of_each_true_type_over_the_marker_types() -> None:
    predicted = pd.Series(["A", "B", "A", "A", "B", "B", "A", "B"], index=CELLS)
    matrix = confusion(TRUTH, predicted, ["B", "A", "D"])
    assert list(matrix.index) == ["B", "A", "C"]  # the markers' order, then the rest
    assert list(matrix.columns) == ["B", "A", "D"]
    assert matrix.loc["A"].tolist() == [0.25, 0.75, 0.0]
    assert matrix.loc["C"].tolist() == [0.5, 0.5, 0.0]
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0)


def _score_table(ours_accuracy: float, peer_seconds: float | None,
                 peer_accuracy: float = 0.7) -> pd.DataFrame:
    rows = []
    for dataset, n_cells in (("pbmc_100", 100), ("pbmc_200", 200), ("follicular", 300)):
        rows.append({"dataset": dataset, "method": OURS, "n_cells": n_cells,
                     "accuracy": ours_accuracy, "macro_f1": 0.9, "seconds": 2.0})
        rows.append({"dataset": dataset, "method": BASELINE, "n_cells": n_cells,
                     "accuracy": 0.9, "macro_f1": 0.8, "seconds": 0.01})
        if peer_seconds is not None:
            rows.append({"dataset": dataset, "method": "scvi_tools", "n_cells": n_cells,
                         "accuracy": peer_accuracy, "macro_f1": 0.5,
                         "seconds": peer_seconds})
    return pd.DataFrame(rows)


def test_claims_read_every_size_the_baseline_and_the_peer() -> None:
    sizes = {"pbmc_100": 100, "pbmc_200": 200}
    table = _score_table(0.97, peer_seconds=10.0)
    runtime = runtime_table(table, sizes)
    assert runtime.loc[runtime["method"] == "scvi_tools", "seconds_over_ours"].tolist() == [
        5.0, 5.0]
    checks = claim_check(table, runtime, ["follicular"], min_accuracy=0.95)
    assert checks["holds"].all()
    assert len(checks) == 1 + 1 + 3 + 1 + 2 + 1  # sizes, simulation, baselines, time, peer
    slow = claim_check(_score_table(0.97, peer_seconds=5.0),
                       runtime_table(_score_table(0.97, peer_seconds=5.0), sizes),
                       ["follicular"], min_accuracy=0.95)
    failed = slow.loc[~slow["holds"], "claim"].tolist()
    assert failed == ["faster than scvi_tools at every size", "every CellAssign claim holds"]
    for peer_accuracy, holds in ((0.9705, True), (0.972, False)):  # tolerance 0.001
        tied = _score_table(0.97, peer_seconds=10.0, peer_accuracy=peer_accuracy)
        checks = claim_check(tied, runtime_table(tied, sizes), ["follicular"],
                             min_accuracy=0.95)
        row = checks[checks["claim"] == "as accurate as scvi_tools at every size (to 0.1 point)"]
        assert row["holds"].item() is holds
    weak = _score_table(0.85, peer_seconds=None)
    checks = claim_check(weak, runtime_table(weak, sizes), ["follicular"], min_accuracy=0.95)
    assert checks.loc[checks["quantity"] == "lowest accuracy", "holds"].item() is False
    assert not checks.loc[checks["claim"].str.startswith("never below"), "holds"].any()


# The peer, through a stand-in of its environment --------------------------------------

PEER_STAND_IN = '''
import json
import sys

import anndata as ad
import pandas as pd

args = dict(zip(sys.argv[1::2], sys.argv[2::2], strict=True))
adata = ad.read_h5ad(args["--counts"])
markers = pd.read_csv(args["--markers"], index_col=0)
frame = pd.DataFrame(1.0 / markers.shape[1], index=adata.obs_names, columns=markers.columns)
frame.index.name = "cell"
frame.to_csv(args["--probabilities"])
json.dump({"method": "scvi-tools", "seconds": 1.5, "covariate": args.get("--covariate")},
          open(args["--timing"], "w"))
print("stand-in ran")
'''


def test_the_peer_runs_its_script_in_its_environment_and_returns_its_outputs(
        tmp_path: Path) -> None:
    import anndata as ad

    program = tmp_path / "peer.py"
    program.write_text(PEER_STAND_IN)
    python = tmp_path / "python"
    python.write_text(f"#!/bin/sh\nexec {sys.executable} \"$@\"\n")
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    adata = ad.AnnData(np.ones((3, 2), dtype=np.float32))
    adata.obs_names, adata.var_names = ["x", "y", "z"], ["g1", "g2"]
    adata.write_h5ad(tmp_path / "cells.h5ad")
    pd.DataFrame({"T1": [1, 0], "T2": [0, 1]}, index=["g1", "g2"]).to_csv(
        tmp_path / "markers.csv")
    probabilities, timing = run_scvi_tools(
        python, program, str(tmp_path / "cells.h5ad"), str(tmp_path / "markers.csv"),
        "patient", seed=0, threads=1, work_dir=tmp_path, timeout_s=60)
    assert probabilities.shape == (3, 2)
    assert list(probabilities.index) == ["x", "y", "z"]
    assert timing == {"method": "scvi-tools", "seconds": 1.5, "covariate": "patient"}
    with pytest.raises(FileNotFoundError, match=r"leave scvi-tools out of cellassign\.peers"):
        run_scvi_tools(tmp_path / "absent" / "python", program, "a", "b", None, 0, 1,
                       tmp_path, 60)


# The workflow ---------------------------------------------------------------------------

TARGETS = [
    "results/cellassign/tables/scores.csv",
    "results/cellassign/tables/claim_check.csv",
    "results/cellassign/tables/runtime.csv",
    "results/cellassign/tables/ablation.csv",
    "results/cellassign/figures/supp_fig6cf_confusion.png",
    "results/cellassign/figures/supp_fig6g_runtime.pdf",
    "results/cellassign/figures/small_data_ablation.png",
]


@pytest.mark.workflow
def test_study_runs_on_the_test_config_and_recovers_the_truth(tmp_path: Path) -> None:
    run = run_snakemake(tmp_path, *TARGETS)
    assert run.returncode == 0, run.stdout[-5000:]
    for target in TARGETS:
        assert (tmp_path / target).stat().st_size > 100
    assert (tmp_path / TARGETS[4]).read_bytes().startswith(b"\x89PNG")
    score_table = pd.read_csv(tmp_path / TARGETS[0])
    datasets = ["follicular", "hgsc", *(f"pbmc_{n}" for n in SETTINGS["runtime_sizes"])]
    assert sorted(set(score_table["dataset"])) == sorted(datasets)
    ours = score_table[score_table["method"] == OURS].set_index("dataset")
    assert (ours["accuracy"] >= SETTINGS["min_accuracy"]).all()
    claims = pd.read_csv(tmp_path / TARGETS[1])
    assert claims["holds"].all(), claims.to_string()
    runtime = pd.read_csv(tmp_path / TARGETS[2])
    assert sorted(runtime["n_cells"].unique()) == sorted(SETTINGS["runtime_sizes"])
    probabilities = pd.read_csv(tmp_path / "results/cellassign/predictions/follicular/scprob.csv",
                                index_col="cell")
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    timing = json.loads((tmp_path / "results/cellassign/timings/pbmc_300/scprob.json")
                        .read_text())
    assert timing["n_cells"] == 300 and timing["seconds"] > 0
    # Each size of the runtime series is a subsample of the larger one.
    import anndata as ad

    small, large = (ad.read_h5ad(tmp_path / f"results/cellassign/data/pbmc_{n}.h5ad",
                                 backed="r") for n in sorted(SETTINGS["runtime_sizes"]))
    assert set(small.obs_names) <= set(large.obs_names)
    assert not (tmp_path / "results/cellassign/data/cellbench_celseq2.h5ad").exists()
