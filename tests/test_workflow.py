"""The Snakemake workflow end to end on the tiny test config (config/test.yaml), run in a
temporary working directory with the repository's Snakefile, the way a user runs it from
anywhere: every output of the covariates study exists, holds what it should, and a second
run has nothing to do. Also: `snakemake --lint` is clean, and a script's failed write
leaves no partial file."""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scprob.data.registry import Registry
from tests.conftest import REPO, SNAKEMAKE, run_snakemake

pytest.importorskip("snakemake")

METHODS = ["scvi", "scvi_cc", "regress_bbknn", "regress_harmony"]
DISPLAY_NAMES = ["scVI", "scVI-cc", "regress-bbknn", "regress-harmony"]
N_MARKERS, N_NUISANCE = 31, 55
FIGURES = [
    "fig2d_umap_scvi_vs_scvi_cc",
    "supp_fig1_umap_all_methods",
    "fig2e_gearys_c_markers",
    "fig2f_gearys_c_nuisance",
    "ground_truth_scores",
]
RESULTS = "results/covariates"


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_snakemake(workdir, *args)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("workflow")
    run = snakemake(directory)
    assert run.returncode == 0, run.stdout[-5000:]
    return directory / RESULTS


def expected_outputs() -> list[str]:
    return [
        "data/wing_disc_counts.h5ad",
        "data/wing_disc_prepared.h5ad",
        "data/marker_genes.txt",
        "data/nuisance_genes.txt",
        "tables/supp_table2_genes.csv",
        "tables/gearys_c.csv",
        "tables/ground_truth.csv",
        "tables/summary.csv",
        "tables/claim_check.csv",
        *[f"integrated/{m}.h5ad" for m in METHODS],
        *[f"tables/per_method/{m}_{t}.csv" for m in METHODS for t in ("gearys_c", "ground_truth")],
        *[f"models/{m}/model.pt" for m in ("scvi", "scvi_cc")],
        *[f"tables/{m}_training_history.csv" for m in ("scvi", "scvi_cc")],
        *[f"benchmarks/integrate_{m}.tsv" for m in METHODS],
        *[f"figures/{stem}.{ext}" for stem in FIGURES for ext in ("png", "pdf")],
    ]


@pytest.mark.workflow
def test_every_output_exists_and_is_not_empty(workdir: Path) -> None:
    missing = [p for p in expected_outputs() if not (workdir / p).is_file()]
    assert not missing
    empty = [p for p in expected_outputs() if (workdir / p).stat().st_size == 0]
    assert not empty
    # No temporary file of an atomic write is left behind.
    assert not list(workdir.rglob(".*.partial*"))


@pytest.mark.workflow
def test_every_rule_logged(workdir: Path) -> None:
    logs = workdir.parents[1] / "logs" / "covariates"
    for name in ("simulate_wing_disc", "prepare_covariates", "aggregate_covariates",
                 "figures_covariates", *[f"integrate_{m}" for m in METHODS],
                 *[f"evaluate_{m}" for m in METHODS]):
        assert (logs / f"{name}.log").is_file(), name


@pytest.mark.workflow
@pytest.mark.parametrize("stem", FIGURES)
def test_figures_are_real_png_and_pdf(workdir: Path, stem: str) -> None:
    png = (workdir / "figures" / f"{stem}.png").read_bytes()
    pdf = (workdir / "figures" / f"{stem}.pdf").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    assert pdf.startswith(b"%PDF") and len(pdf) > 5_000


@pytest.mark.workflow
def test_gene_table_is_supp_table_2(workdir: Path) -> None:
    genes = pd.read_csv(workdir / "tables" / "supp_table2_genes.csv")
    assert list(genes.columns) == ["gene", "role", "gene_set"]
    assert genes["gene_set"].value_counts().to_dict() == {"nuisance": N_NUISANCE,
                                                          "marker": N_MARKERS}
    assert set(genes.loc[genes["gene_set"] == "nuisance", "role"]) == {"cell_cycle", "sex"}
    assert {"PCNA", "lncRNA:roX1", "vg"} <= set(genes["gene"])
    markers = (workdir / "data" / "marker_genes.txt").read_text().split()
    assert markers == genes.loc[genes["gene_set"] == "marker", "gene"].tolist()


@pytest.mark.workflow
def test_gearys_c_scores_every_gene_for_every_method(workdir: Path) -> None:
    table = pd.read_csv(workdir / "tables" / "gearys_c.csv")
    assert list(table["method"].unique()) == METHODS
    assert list(table["display_name"].unique()) == DISPLAY_NAMES
    counts = table.groupby(["method", "gene_set"]).size().unstack()
    # The nuisance genes are scored even where the method's input lacked them.
    assert (counts["marker"] == N_MARKERS).all() and (counts["nuisance"] == N_NUISANCE).all()
    assert np.isfinite(table["gearys_c"]).all()
    assert table["gearys_c"].between(0.0, 2.0).all()


@pytest.mark.workflow
def test_summary_and_claim_check_hold_finite_numbers(workdir: Path) -> None:
    summary = pd.read_csv(workdir / "tables" / "summary.csv")
    assert summary["method"].tolist() == METHODS
    medians = summary[["median_gearys_c_markers", "median_gearys_c_nuisance"]].to_numpy()
    assert np.isfinite(medians).all()

    gearys = pd.read_csv(workdir / "tables" / "gearys_c.csv")
    scvi = gearys[(gearys["method"] == "scvi") & (gearys["gene_set"] == "nuisance")]
    assert summary.loc[0, "median_gearys_c_nuisance"] == pytest.approx(scvi["gearys_c"].median())

    claim = pd.read_csv(workdir / "tables" / "claim_check.csv")
    assert len(claim) == 3 and claim["holds"].dtype == bool
    checks = claim.iloc[:2]
    assert np.isfinite(checks[["scvi", "scvi_cc", "difference"]].to_numpy()).all()
    assert np.allclose(checks["difference"], checks["scvi_cc"] - checks["scvi"])
    assert claim.loc[2, "holds"] == checks["holds"].all()


@pytest.mark.workflow
def test_ground_truth_scores_are_finite_except_probes_of_graph_only_methods(
    workdir: Path,
) -> None:
    table = pd.read_csv(workdir / "tables" / "ground_truth.csv").set_index("method")
    assert table.index.tolist() == METHODS
    scores = table.drop(columns="display_name")
    probes = [c for c in scores.columns if "probe" in c]
    assert probes and scores.loc["regress_bbknn", probes].isna().all()
    assert np.isfinite(scores.drop(columns=probes).to_numpy()).all()
    assert np.isfinite(scores.drop(index="regress_bbknn").to_numpy()).all()


@pytest.mark.workflow
def test_integrated_files_hold_graph_and_umap(workdir: Path) -> None:
    import anndata as ad

    n_cells = ad.read_h5ad(workdir / "data" / "wing_disc_prepared.h5ad", backed="r").n_obs
    for method in METHODS:
        adata = ad.read_h5ad(workdir / "integrated" / f"{method}.h5ad")
        assert adata.n_obs == n_cells
        assert adata.obsm["X_umap"].shape == (n_cells, 2)
        assert adata.obsp["connectivities"].shape == (n_cells, n_cells)
        assert {"batch", "cell_state", "sex", "cycle_score"} <= set(adata.obs.columns)
        assert adata.uns["graph_only"] == (method == "regress_bbknn")


@pytest.mark.workflow
def test_scvi_cc_conditions_on_nuisance_genes_removed_from_its_input(workdir: Path) -> None:
    nuisance = set((workdir / "data" / "nuisance_genes.txt").read_text().split())
    scvi, scvi_cc = (
        Registry.from_dict(json.loads((workdir / "models" / m / "model.json").read_text())
                           ["registry"]) for m in ("scvi", "scvi_cc"))
    assert nuisance <= set(scvi.gene_names) and not scvi.continuous_covariate_keys
    assert not nuisance & set(scvi_cc.gene_names)
    assert len(scvi_cc.gene_names) == len(scvi.gene_names) - N_NUISANCE
    assert sorted(scvi_cc.continuous_covariate_keys) == sorted(
        f"nuisance_{g}" for g in nuisance
    )
    history = pd.read_csv(workdir / "tables" / "scvi_cc_training_history.csv")
    assert len(history) == 3  # max_epochs of config/test.yaml
    assert np.isfinite(history[["elbo_train", "elbo_validation"]].to_numpy()).all()


@pytest.mark.workflow
def test_second_run_has_nothing_to_do(workdir: Path) -> None:
    run = snakemake(workdir.parents[1], "-n")
    assert run.returncode == 0, run.stdout[-3000:]
    assert "Nothing to be done" in run.stdout


@pytest.mark.workflow
def test_a_truncated_intermediate_fails_its_consumer_naming_the_file(
    workdir: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "run"
    shutil.copytree(workdir.parents[1], copy, symlinks=True)
    integrated = Path(RESULTS) / "integrated" / "scvi.h5ad"
    data = (copy / integrated).read_bytes()
    (copy / integrated).write_bytes(data[: len(data) // 3])
    target = Path(RESULTS) / "tables" / "per_method" / "scvi_gearys_c.csv"
    run = snakemake(copy, str(target))
    assert run.returncode != 0
    log = (copy / "logs" / "covariates" / "evaluate_scvi.log").read_text()
    assert f"input {integrated} cannot be read" in log
    assert f"--forcerun {integrated}" in log
    assert log.count('  File "') <= 6  # the script's frames, not the reader's 20
    assert not (copy / target).exists()
    assert not list((copy / RESULTS).rglob(".*.partial*"))


@pytest.mark.workflow
def test_config_overrides_apply_on_top_of_a_full_configfile(workdir: Path) -> None:
    run = snakemake(workdir.parents[1], "-n", "--config", "seed=3")
    assert run.returncode == 0, run.stdout[-3000:]
    # Every seeded job reruns: the override reached the rules' params.
    assert "Nothing to be done" not in run.stdout
    assert "simulate_wing_disc" in run.stdout and "params" in run.stdout.lower()


@pytest.mark.workflow
def test_report_needs_no_cores(workdir: Path) -> None:
    # The Snakefile's documented `snakemake --report report.html`, without --cores
    # (the timed rules' threads are every core of the run, which a report run lacks);
    # the targets keep it to the covariates study, the one this module ran.
    directory = workdir.parents[1]
    run = subprocess.run(
        [str(SNAKEMAKE), "--report", "report.html", f"{RESULTS}/tables/summary.csv",
         f"{RESULTS}/figures/fig2d_umap_scvi_vs_scvi_cc.png",
         "--snakefile", str(REPO / "Snakefile"), "--directory", str(directory),
         "--configfile", str(REPO / "config" / "test.yaml")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:]
    report = (directory / "report.html").read_text()
    assert "Geary" in report and len(report) > 100_000


@pytest.mark.workflow
def test_report_holds_every_figure_and_claim_of_every_study(workdir: Path) -> None:
    """`make report`'s command on the whole test run: every figure of every study and
    every claim table is in the one report, each with its caption."""
    directory = workdir.parents[1]
    run = subprocess.run(
        [str(SNAKEMAKE), "--report", "results/report.html", "--snakefile",
         str(REPO / "Snakefile"), "--directory", str(directory),
         "--configfile", str(REPO / "config" / "test.yaml")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:]
    report = (directory / "results" / "report.html").read_text()
    figures = sorted([*(directory / "results").glob("*/figures/*.png"),
                      *(directory / "results" / "benchmarks").glob("*.png")])
    claims = sorted((directory / "results").glob("*/tables/claim_check.csv"))
    studies = {path.relative_to(directory).parts[1] for path in figures}
    assert studies == {"covariates", "scaling", "scarches", "benchmarks", "complexity",
                       "deconvolution", "cellassign"}
    assert len(claims) >= 6
    # The report names each file by its path below the working directory.
    missing = [str(p.relative_to(directory)) for p in [*figures, *claims]
               if str(p.relative_to(directory)) not in report]
    assert missing == []
    assert "Paper Fig. 2" in report and "Paper Supp. Fig. 6" in report
    # Every caption and the start page render: docutils marks a malformed one in the page.
    assert "System Message" not in report


@pytest.mark.workflow
def test_lint_is_clean() -> None:
    run = subprocess.run([str(SNAKEMAKE), "--lint"], cwd=REPO, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, timeout=120)
    assert run.returncode == 0, run.stdout
    assert "Congratulations" in run.stdout


def test_atomic_output_leaves_no_file_when_the_write_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(REPO / "workflow" / "scripts"))
    helpers = importlib.import_module("workflow_helpers")
    target = tmp_path / "out" / "table.csv"

    with pytest.raises(RuntimeError, match="disk full"), helpers.atomic_output(target) as part:
        part.write_text("half a tab")
        raise RuntimeError("disk full")
    assert not target.exists() and not list(target.parent.iterdir())

    with helpers.atomic_output(target) as part:
        assert part.parent == target.parent and part.suffix == ".csv"
        part.write_text("a,b\n1,2\n")
    assert target.read_text() == "a,b\n1,2\n" and list(target.parent.iterdir()) == [target]


def test_an_unreadable_h5ad_input_is_named_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import anndata as ad

    monkeypatch.syspath_prepend(str(REPO / "workflow" / "scripts"))
    helpers = importlib.import_module("workflow_helpers")
    path = tmp_path / "results" / "prepared.h5ad"
    path.parent.mkdir()
    ad.AnnData(np.ones((50, 20), dtype=np.float32)).write_h5ad(path)
    assert helpers.read_h5ad_input(path).shape == (50, 20)

    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # a job killed while writing it
    for backed in (False, True):
        with pytest.raises(helpers.UnreadableInputError) as error:
            helpers.read_h5ad_input(path, backed=backed)
        message = str(error.value)
        assert str(path) in message and "must be rebuilt" in message
        assert f"--forcerun {path}" in message
    with pytest.raises(FileNotFoundError):  # a missing file is not reported as corrupt
        helpers.read_h5ad_input(tmp_path / "absent.h5ad")
