"""The runtime study (paper Supp. Fig. 2) end to end on the tiny test config, and the pieces
it is built from: the paper's training-set rule, the warm-up cells, the peak-memory
measurement, the baseline steps and the figure.

The workflow run gives each timed job one thread (``--set-threads``) so that two run side
by side: the test checks what the jobs write, never how long they took.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from scprob.bench.scaling import log_log_slope, scaling_claims
from tests.conftest import TEST_CONFIG, run_snakemake

pytest.importorskip("snakemake")

SCALING = yaml.safe_load(TEST_CONFIG.read_text())["scaling"]
METHODS = ["scvi", "regress", "regress_bbknn", "regress_harmony"]
DISPLAY_NAMES = ["scVI", "regress", "regress-bbknn", "regress-harmony"]
TARGETS = [
    "results/scaling/tables/runtime.csv",
    "results/scaling/figures/supp_fig2_runtime.png",
    "results/scaling/figures/supp_fig2_runtime.pdf",
    "results/scaling/tables/claim_check.csv",
]
N_CONTINUOUS, N_SOURCE_DONOR_PAIRS = 10, 28


def snakemake(workdir: Path, *args: str, configfile: Path = TEST_CONFIG
              ) -> subprocess.CompletedProcess[str]:
    return run_snakemake(workdir, *TARGETS, "--set-threads", "time_scvi=1", "time_baseline=1",
                         *args, configfiles=[configfile])


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("scaling")
    run = snakemake(directory)
    assert run.returncode == 0, run.stdout[-5000:]
    return directory


@pytest.fixture(scope="module")
def table(workdir: Path) -> pd.DataFrame:
    return pd.read_csv(workdir / "results/scaling/tables/runtime.csv")


def timing(workdir: Path, method: str, n_cells: int) -> dict:
    return json.loads((workdir / f"results/scaling/timings/{method}_{n_cells}.json").read_text())


# The workflow --------------------------------------------------------------------------


@pytest.mark.workflow
def test_outputs_exist_and_figures_are_real_files(workdir: Path) -> None:
    png = (workdir / TARGETS[1]).read_bytes()
    pdf = (workdir / TARGETS[2]).read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    assert pdf.startswith(b"%PDF") and len(pdf) > 5_000
    for method in METHODS:  # one timing job per method, every size in it
        assert (workdir / f"results/scaling/benchmarks/time_{method}.tsv").is_file()
        log = (workdir / f"logs/scaling/time_{method}.log").read_text()
        assert log.count("warm-up on") == 1
        for n_cells in SCALING["n_cells"]:
            assert (workdir / f"results/scaling/timings/{method}_{n_cells}.json").is_file()
    assert not list((workdir / "results").rglob(".*partial*"))


@pytest.mark.workflow
def test_table_has_one_row_per_method_and_size_with_finite_numbers(table: pd.DataFrame) -> None:
    sizes = sorted(SCALING["n_cells"])
    assert len(table) == len(METHODS) * len(sizes)
    assert table["method"].tolist() == [m for m in METHODS for _ in sizes]
    assert table["display_name"].tolist() == [d for d in DISPLAY_NAMES for _ in sizes]
    assert table["n_cells"].tolist() == sizes * len(METHODS)
    assert (table["n_genes"] == SCALING["n_top_genes"]).all()
    measured = table[["seconds", "cpu_seconds", "peak_rss_gib", "job_seconds",
                      "job_max_rss_gib"]].to_numpy(dtype=float)
    assert np.isfinite(measured).all() and (measured[:, [0, 2, 3]] > 0).all()
    # The timed calls happen inside their method's job.
    assert (table.groupby("method")["seconds"].sum() < table.groupby("method")["job_seconds"]
            .first()).all()
    assert (table["peak_rss_scope"] == "timed call").all()  # Linux resets the high-water mark
    assert (table["threads"] == 1).all()


@pytest.mark.workflow
def test_scvi_trains_with_the_paper_protocol_up_to_the_cap(
    workdir: Path, table: pd.DataFrame
) -> None:
    cap = SCALING["scvi"]["max_epochs_cap"]
    scvi = table[table["method"] == "scvi"]
    assert (scvi["epochs"] == cap).all() and (scvi["max_epochs"] == cap).all()
    assert table.loc[table["method"] != "scvi", "epochs"].isna().all()
    for n_cells in SCALING["n_cells"]:
        record = timing(workdir, "scvi", n_cells)
        assert record["train_size"] == 0.9
        assert record["n_train_cells"] + record["n_validation_cells"] == n_cells
        assert record["n_validation_cells"] == pytest.approx(0.1 * n_cells, abs=1)
        n_batches = -(-record["n_train_cells"] // SCALING["scvi"]["batch_size"])
        assert record["batches_per_epoch"] == min(SCALING["scvi"]["limit_train_batches"],
                                                  n_batches)
        assert np.isfinite(record["elbo_validation"])
        history = pd.read_csv(
            workdir / f"results/scaling/timings/scvi_{n_cells}_training_history.csv")
        assert len(history) == record["epochs"]
        assert record["machine"]["omp_wait_policy"] == "PASSIVE"
        # The test config's fits are far too short to compile the likelihood kernel.
        assert record["likelihood_kernel"] == "eager"


@pytest.mark.workflow
def test_claim_check_compares_every_baseline_and_the_plateau(workdir: Path) -> None:
    claims = pd.read_csv(workdir / "results/scaling/tables/claim_check.csv")
    assert len(claims) == len(METHODS) + 1  # 3 baselines, the plateau, the overall row
    for method, row in zip(METHODS[1:], claims.itertuples(), strict=False):
        assert method in row.claim and np.isfinite([row.scvi, row.baseline, row.value]).all()
    assert claims.iloc[-2]["criterion"] == f"scVI slope <= {SCALING['max_plateau_slope']:g}"
    assert claims.iloc[-1]["holds"] == claims.iloc[:-1]["holds"].all()


@pytest.mark.workflow
def test_baselines_use_every_covariate(workdir: Path) -> None:
    for method in METHODS[1:]:
        record = timing(workdir, method, max(SCALING["n_cells"]))
        assert record["n_continuous_covariates"] == N_CONTINUOUS
        assert record["categorical_covariates"] == ["cell_source", "donor"]
        assert record["n_batches"] == N_SOURCE_DONOR_PAIRS
        assert record["n_pcs"] == (None if method == "regress" else SCALING["n_pcs"])


@pytest.mark.workflow
def test_second_run_has_nothing_to_do(workdir: Path) -> None:
    run = snakemake(workdir, "-n")
    assert run.returncode == 0, run.stdout[-3000:]
    assert "Nothing to be done" in run.stdout


@pytest.mark.workflow
def test_inconsistent_scaling_config_stops_the_dry_run(tmp_path: Path) -> None:
    config = yaml.safe_load(TEST_CONFIG.read_text())
    config["scaling"]["n_top_genes"] = config["scaling"]["simulate"]["n_genes"] + 1
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    run = snakemake(tmp_path, "-n", configfile=bad)
    assert run.returncode != 0
    assert "scaling.n_top_genes (401) exceeds scaling.simulate.n_genes (400)" in run.stdout


@pytest.mark.workflow
def test_sizes_that_cannot_check_the_claim_stop_the_dry_run(tmp_path: Path) -> None:
    config = yaml.safe_load(TEST_CONFIG.read_text())
    config["scaling"]["plateau_cells"] = 1000
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    run = snakemake(tmp_path, "-n", configfile=bad)
    assert run.returncode != 0
    assert ("scaling.n_cells ([900, 1200]) needs two sizes of at least scaling.plateau_cells "
            "(1000) for the claim check") in run.stdout


# The pieces ----------------------------------------------------------------------------


def test_paper_train_size_keeps_validation_below_20000_cells() -> None:
    from scprob.bench.measure import paper_train_size

    assert paper_train_size(5_000) == 0.9
    assert paper_train_size(199_999) == 0.9
    for n_cells in (200_000, 320_000, 486_134):
        validation = n_cells * (1 - paper_train_size(n_cells))
        assert validation == pytest.approx(20_000)
    with pytest.raises(ValueError, match="n_cells must be at least 2"):
        paper_train_size(1)


def test_warmup_cells_cover_every_batch() -> None:
    from scprob.bench.baselines import combined_labels
    from scprob.bench.scaling import warmup_indices

    rng = np.random.default_rng(0)
    obs = pd.DataFrame({
        "cell_source": rng.choice(["A", "B", "C"], size=1000, p=[0.8, 0.15, 0.05]),
        "donor": rng.choice(["d1", "d2"], size=1000),
    })
    rows = warmup_indices(obs, ["cell_source", "donor"], 60)
    labels = combined_labels(obs, ["cell_source", "donor"])
    assert set(labels[rows]) == set(labels)  # every pair, however rare
    assert np.all(np.diff(rows) > 0)
    counts = pd.Series(labels[rows]).value_counts()
    assert counts.max() == 10  # ceil(60 / 6 pairs)
    assert np.array_equal(rows, warmup_indices(obs, ["cell_source", "donor"], 60))
    with pytest.raises(ValueError, match="missing: \\['batch'\\]"):
        combined_labels(obs, ["batch"])


def test_measure_reports_the_memory_the_call_allocates() -> None:
    from scprob.bench.measure import measure

    def allocate() -> float:
        block = np.ones(64 * 1024**2 // 8)  # 64 MiB, touched
        return float(block.sum())

    result, measurement = measure(allocate)
    assert result == 64 * 1024**2 // 8
    assert measurement.seconds > 0 and measurement.cpu_seconds >= 0
    # The peak covers the touched 64 MiB block. (How much of it is *new* resident memory
    # depends on what the allocator kept from earlier tests in this process, so only the
    # ordering is asserted for the difference.)
    assert measurement.peak_rss_gib >= 60 / 1024
    if measurement.peak_rss_scope == "timed call":
        assert measurement.peak_rss_gib >= measurement.rss_before_gib


def test_stage_clock_measures_each_section_and_sums_the_named_ones() -> None:
    from scprob.bench.measure import StageClock

    clock = StageClock()
    assert clock.run("build", lambda: sum(range(100_000))) == sum(range(100_000))
    clock.run("train", lambda: np.ones(10**6).sum())
    clock.run("check", lambda: None)
    assert list(clock.sections) == ["build", "train", "check"]
    seconds = {name: m.seconds for name, m in clock.sections.items()}
    assert clock.total(["build", "train"]) == pytest.approx(seconds["build"] + seconds["train"])
    assert clock.total(["check"], "cpu_seconds") == clock.sections["check"].cpu_seconds
    record = clock.as_dict()
    assert record["train"]["seconds"] == seconds["train"] and "peak_rss_gib" in record["train"]


def test_regress_out_removes_the_linear_covariate_signal() -> None:
    from scprob.bench.baselines import regress_out_continuous

    rng = np.random.default_rng(0)
    covariates = pd.DataFrame(rng.normal(size=(300, 3)), columns=["a", "b", "c"])
    covariates["constant"] = 1.0  # skipped: the intercept covers it
    effects = rng.normal(size=(3, 40))
    expression = (covariates[["a", "b", "c"]].to_numpy() @ effects
                  + rng.normal(scale=0.1, size=(300, 40)) + 5.0).astype(np.float32)
    residuals = regress_out_continuous(expression, covariates)
    assert residuals.shape == expression.shape
    centred = residuals - residuals.mean(axis=0)
    projections = covariates[["a", "b", "c"]].to_numpy().T @ centred
    assert np.abs(projections).max() < 1e-2 * np.abs(covariates.to_numpy().T @ expression).max()
    with pytest.raises(ValueError, match="one row per cell"):
        regress_out_continuous(expression, covariates.iloc[:10])


def test_bbknn_and_harmony_steps_check_their_batches() -> None:
    from scprob.bench.baselines import bbknn_graph, harmony_correct

    rng = np.random.default_rng(0)
    pcs = rng.normal(size=(120, 10)).astype(np.float32)
    batches = np.repeat(["x", "y", "z"], [58, 59, 3])
    with pytest.raises(ValueError, match="the smallest batch has 3 cells"):
        bbknn_graph(pcs, batches)
    graph = bbknn_graph(pcs, np.repeat(["x", "y"], 60))
    assert graph.graph_only and graph.connectivities.shape == (120, 120)
    covariates = pd.DataFrame({"source": np.repeat(["s", "t"], 60),
                               "donor": np.tile(["d1", "d2", "d3"], 40)})
    corrected = harmony_correct(pcs, covariates)
    assert corrected.shape == pcs.shape and corrected.dtype == np.float32
    with pytest.raises(ValueError, match="one row per cell"):
        harmony_correct(pcs, covariates.iloc[:5])


def test_runtime_figure_is_written_and_rejects_non_positive_values(tmp_path: Path) -> None:
    from scprob.bench.figures_scaling import plot_runtime_scaling

    table = pd.DataFrame({
        "display_name": ["scVI", "scVI", "regress", "regress"],
        "n_cells": [5000, 10000, 5000, 10000],
        "seconds": [10.0, 15.0, 1.0, 2.0],
        "peak_rss_gib": [1.2, 1.3, 0.8, 1.1],
        "epochs": [2, 2, None, None],
    })
    written = plot_runtime_scaling(table, tmp_path / "supp_fig2")
    assert [p.suffix for p in written] == [".png", ".pdf"]
    assert all(p.stat().st_size > 5_000 for p in written)
    with pytest.raises(ValueError, match="finite and positive"):
        plot_runtime_scaling(table.assign(seconds=0.0), tmp_path / "bad")
    with pytest.raises(ValueError, match="lacks columns \\['peak_rss_gib'\\]"):
        plot_runtime_scaling(table.drop(columns="peak_rss_gib"), tmp_path / "bad")


# The claim -----------------------------------------------------------------------------


def _runtime_table(scvi_per_epoch: list[float], baseline_seconds: list[float],
                   sizes: tuple[int, ...] = (5_000, 25_000, 60_000)) -> pd.DataFrame:
    rows = [{"method": "scvi", "n_cells": n, "seconds": 2 * t, "epochs": 2,
             "seconds_per_epoch": t} for n, t in zip(sizes, scvi_per_epoch, strict=True)]
    rows += [{"method": "regress_bbknn", "n_cells": n, "seconds": t, "epochs": None,
              "seconds_per_epoch": None} for n, t in zip(sizes, baseline_seconds, strict=True)]
    return pd.DataFrame(rows)


def test_scaling_claim_holds_for_a_plateau_and_names_each_baseline() -> None:
    # scVI: 2 s -> 4 s -> 4.4 s per epoch; bbknn: linear in the cells.
    claims = scaling_claims(_runtime_table([2.0, 4.0, 4.4], [5.0, 25.0, 60.0]), 20_000, 0.2)
    assert claims["holds"].tolist() == [True, True, True]
    bbknn = claims.iloc[0]
    assert "regress_bbknn" in bbknn["claim"] and "25,000 → 60,000 cells" in bbknn["quantity"]
    assert bbknn["baseline"] == pytest.approx(1.0)
    assert bbknn["scvi"] == pytest.approx(np.log(1.1) / np.log(2.4))
    assert bbknn["value"] == pytest.approx(bbknn["baseline"] - bbknn["scvi"])
    assert claims.iloc[1]["value"] == pytest.approx(np.log(1.1) / np.log(2.4))


def test_scaling_claim_fails_when_scvi_keeps_growing() -> None:
    # scVI's epoch grows faster than linearly beyond 20,000 cells: not flat, and faster
    # than bbknn's.
    claims = scaling_claims(_runtime_table([1.0, 5.0, 13.0], [5.0, 25.0, 60.0]), 20_000, 0.2)
    assert claims["holds"].tolist() == [False, False, False]
    assert claims.iloc[1]["criterion"] == "scVI slope <= 0.2"


def test_scaling_claim_needs_two_sizes_past_the_plateau() -> None:
    table = _runtime_table([2.0, 4.0], [5.0, 25.0], sizes=(5_000, 25_000))
    with pytest.raises(ValueError, match=r"needs two sizes of at least 20000 cells, got "
                                         r"\[5000, 25000\]: add a larger size"):
        scaling_claims(table, 20_000, 0.2)


def test_log_log_slope_is_the_growth_exponent() -> None:
    n = np.array([1e4, 2e4, 4e4])
    assert log_log_slope(n, 3 * n**1.5) == pytest.approx(1.5)
    assert np.isnan(log_log_slope([1e4, 1e4], [1.0, 2.0]))
