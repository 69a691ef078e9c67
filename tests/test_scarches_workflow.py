"""The scArches label-transfer study (paper Fig. 3) end to end on the tiny test config
(config/test.yaml), in a temporary working directory: every output exists, the tables hold
finite numbers with the structure the figures and the claim check rely on, the reference
latents do not move when the query is mapped, and a second run has nothing to do."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import run_snakemake

pytest.importorskip("snakemake")

RESULTS = "results/scarches"
TABLES = [
    "label_transfer_scores", "confusion_scarches", "confusion_de_novo", "agreement",
    "rare_subsets", "runtime", "summary", "claim_check", "reference_training_history",
    "query_training_history", "de_novo_training_history", "predictions_scarches",
    "predictions_de_novo",
]
FIGURES = [
    "fig3b_umap_labels", "fig3c_umap_dataset", "fig3d_confusion_scarches",
    "fig3f_g_rare_subsets", "fig3h_agreement", "runtime",
]
TARGETS = [
    *[f"{RESULTS}/tables/{t}.csv" for t in TABLES],
    *[f"{RESULTS}/figures/{f}.{ext}" for f in FIGURES for ext in ("png", "pdf")],
]
# config/test.yaml: query cells and donors, epochs of the reference and the query.
N_QUERY, N_DONORS, N_REFERENCE = 240, 6, 600
REFERENCE_EPOCHS, QUERY_EPOCHS = 5, 3


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_snakemake(workdir, *TARGETS, *args)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("scarches")
    run = snakemake(directory)
    assert run.returncode == 0, run.stdout[-5000:]
    return directory / RESULTS


def table(workdir: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(workdir / "tables" / f"{name}.csv")


@pytest.mark.workflow
def test_every_output_exists(workdir: Path) -> None:
    expected = [
        *[f"tables/{t}.csv" for t in TABLES],
        *[f"figures/{f}.{ext}" for f in FIGURES for ext in ("png", "pdf")],
        "data/reference.h5ad", "data/query.h5ad", "data/reference_latent.h5ad",
        "data/de_novo_latent.h5ad", "data/scarches_latent.h5ad", "data/scarches_umap.csv",
        *[f"models/{m}/model.pt" for m in ("reference", "query", "de_novo")],
        *[f"timings/{s}.json" for s in ("reference", "query", "de_novo")],
        *[f"benchmarks/{b}.tsv" for b in ("train_totalvi_reference", "train_totalvi_de_novo",
                                          "map_query_scarches")],
    ]
    missing = [p for p in expected if not (workdir / p).is_file()]
    assert not missing
    assert not [p for p in expected if (workdir / p).stat().st_size == 0]
    assert not list(workdir.rglob(".*.partial*"))
    for stem in FIGURES:
        assert (workdir / "figures" / f"{stem}.png").read_bytes().startswith(b"\x89PNG")
        assert (workdir / "figures" / f"{stem}.pdf").read_bytes().startswith(b"%PDF")


@pytest.mark.workflow
def test_predictions_cover_every_query_cell(workdir: Path) -> None:
    scarches = table(workdir, "predictions_scarches")
    de_novo = table(workdir, "predictions_de_novo")
    assert len(scarches) == N_QUERY and scarches["cell"].is_unique
    assert scarches["cell"].equals(de_novo["cell"])
    assert scarches["true_label"].equals(de_novo["true_label"])
    assert scarches["donor"].nunique() == N_DONORS
    assert set(scarches["condition"]) == {"healthy", "moderate", "severe"}
    # The forest only knows the reference's annotations.
    reference = pd.read_csv(workdir / "data" / "scarches_umap.csv")
    reference_types = set(reference.loc[reference["dataset"] == "reference", "cell_type"])
    assert set(scarches["predicted_label"]) <= reference_types


@pytest.mark.workflow
def test_scores_are_finite_and_bounded(workdir: Path) -> None:
    scores = table(workdir, "label_transfer_scores")
    assert scores[["method", "compared_with"]].values.tolist() == [
        ["scArches", "truth"], ["de novo", "truth"], ["scArches", "de novo"]]
    values = scores[["accuracy", "macro_f1", "ami"]].to_numpy()
    assert np.isfinite(values).all()
    assert (values[:, :2] >= 0).all() and (values[:, :2] <= 1).all()
    predictions = table(workdir, "predictions_scarches")
    accuracy = (predictions["true_label"] == predictions["predicted_label"]).mean()
    assert scores.loc[0, "accuracy"] == pytest.approx(accuracy)


@pytest.mark.workflow
@pytest.mark.parametrize("name", ["confusion_scarches", "confusion_de_novo", "agreement"])
def test_label_matrices_are_row_normalised_and_aligned(workdir: Path, name: str) -> None:
    matrix = table(workdir, name)
    labels = matrix.iloc[:, 0].tolist()
    assert labels == matrix.columns[1:].tolist()  # same labels, same order, both axes
    shares = matrix.iloc[:, 1:].to_numpy(dtype=float)
    assert np.isfinite(shares).all() and (shares >= 0).all()
    sums = shares.sum(axis=1)
    assert np.all(np.isclose(sums, 1.0) | (sums == 0.0))
    assert np.isclose(sums, 1.0).any()


@pytest.mark.workflow
def test_rare_subset_frequencies_match_the_predictions(workdir: Path) -> None:
    rare = table(workdir, "rare_subsets")
    assert set(rare["labels"]) == {"scArches", "de novo", "truth"}
    assert set(rare["subset"]) == {"MAIT", "CD4 CTL"}
    assert len(rare) == 3 * 2 * N_DONORS
    assert rare["frequency"].between(0.0, 1.0).all()
    predictions = table(workdir, "predictions_scarches")
    donor = predictions["donor"].iloc[0]
    cells = predictions[predictions["donor"] == donor]
    row = rare[(rare["labels"] == "truth") & (rare["subset"] == "MAIT")
               & (rare["donor"] == donor)].iloc[0]
    assert row["n_cells"] == len(cells)
    assert row["frequency"] == pytest.approx((cells["true_label"] == "MAIT").mean())


@pytest.mark.workflow
def test_runtime_summary_and_claims_hold_finite_numbers(workdir: Path) -> None:
    runtime = table(workdir, "runtime").set_index("stage")
    assert runtime.index.tolist() == ["reference", "query", "de_novo"]
    assert runtime.loc[["reference", "query", "de_novo"], "epochs"].tolist() == [
        REFERENCE_EPOCHS, QUERY_EPOCHS, REFERENCE_EPOCHS]
    assert runtime.loc[["reference", "query", "de_novo"], "n_cells"].tolist() == [
        N_REFERENCE, N_QUERY, N_REFERENCE + N_QUERY]
    timed = runtime[["fit_s", "fit_cpu_s", "train_s", "job_s", "paper_fit_s"]].to_numpy()
    assert np.isfinite(timed).all() and (timed > 0).all()
    assert (runtime["fit_s"] <= runtime["job_s"]).all()

    summary = table(workdir, "summary").set_index("quantity")
    assert np.isfinite(summary["ours"].to_numpy()).all()
    assert summary["paper"].drop("de_novo_over_query_fit_cpu").notna().all()
    assert summary.loc["query_fit_s", "paper"] == 619.0
    assert summary.loc["de_novo_over_query_fit", "ours"] == pytest.approx(
        runtime.loc["de_novo", "fit_s"] / runtime.loc["query", "fit_s"])

    claims = table(workdir, "claim_check")
    assert len(claims) == 5 and claims["holds"].dtype == bool
    assert np.isfinite(claims.loc[:2, ["scarches", "de_novo", "value"]].to_numpy()).all()
    assert claims.loc[4, "holds"] == claims.loc[:3, "holds"].all()
    assert claims.loc[0, "value"] == pytest.approx(claims.loc[0, "scarches"]
                                                   - claims.loc[0, "de_novo"])


@pytest.mark.workflow
def test_mapping_the_query_leaves_the_reference_latents_unchanged(workdir: Path) -> None:
    import anndata as ad

    timing = json.loads((workdir / "timings" / "query.json").read_text())
    assert timing["reference_latent_max_abs_change"] == 0.0
    assert 0 < timing["n_trainable_parameters"] < timing["n_parameters"]
    # The latents are refined (config/test.yaml: 2 steps) and the query step's time
    # counts its refinement, as de novo's counts its own.
    for stage in ("query", "de_novo"):
        record = json.loads((workdir / "timings" / f"{stage}.json").read_text())
        assert "refine" in record["fit_sections"] and "refine" in record["sections"]
    reference = ad.read_h5ad(workdir / "data" / "reference_latent.h5ad")
    joint = ad.read_h5ad(workdir / "data" / "scarches_latent.h5ad")
    assert joint.n_obs == N_REFERENCE + N_QUERY
    np.testing.assert_array_equal(joint.obsm["X_latent"][:N_REFERENCE],
                                  reference.obsm["X_latent"])
    assert np.isfinite(joint.obsm["X_latent"]).all()
    claims = table(workdir, "claim_check")
    assert bool(claims.loc[3, "holds"])


@pytest.mark.workflow
def test_second_run_has_nothing_to_do(workdir: Path) -> None:
    run = snakemake(workdir.parents[1], "-n")
    assert run.returncode == 0, run.stdout[-3000:]
    assert "Nothing to be done" in run.stdout
