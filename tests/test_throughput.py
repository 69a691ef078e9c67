"""The throughput benchmark writes what it promises (no timing assertions)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import yaml

from scprob.bench.throughput import (
    ThroughputSettings,
    plot_throughput,
    results_table,
    run_benchmark,
    sparse_covariate_counts,
    time_peer,
)
from tests.conftest import TEST_CONFIG, run_snakemake


# the benchmark ----------------------------------------------------------------------------
def test_benchmark_writes_json_csv_and_chart_without_peer(tmp_path) -> None:
    settings = ThroughputSettings(n_cells=240, n_genes=40, epochs=1, batch_sizes=[32, 64],
                                  compile=False, warmup_batches=2, accelerators=["cpu"])
    document = run_benchmark(settings, tmp_path, log=lambda message: None)
    path = tmp_path / "throughput.json"
    path.write_text(json.dumps(document))
    loaded = json.loads(path.read_text())
    assert [c["batch_size"] for c in loaded["comparisons"]] == [32, 64]
    for comparison in loaded["comparisons"]:
        ours = comparison["scprob"]
        assert comparison["scvi_tools"] is None and "throughput_ratio" not in comparison
        assert ours["n_train_cells"] == 216 and ours["n_validation_cells"] == 24
        assert ours["cells_per_s"] == pytest.approx(216 * 1 / ours["wall_s"])
        assert np.isfinite(ours["elbo_validation"]) and ours["elbo_validation"] < 0
        assert ours["likelihood_kernel"] == "eager"
    table = results_table(loaded)
    assert list(table["engine"]) == ["scprob", "scprob"]
    plot_throughput(loaded, [tmp_path / "throughput.png", tmp_path / "throughput.pdf"])
    assert (tmp_path / "throughput.png").stat().st_size > 0
    assert (tmp_path / "throughput.pdf").stat().st_size > 0


def test_benchmark_settings_and_peer_are_checked(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"batch_sizes must be a non-empty list of sizes >= 3"):
        ThroughputSettings(batch_sizes=[])
    with pytest.raises(ValueError, match=r"accelerators must be 'cpu' and/or 'gpu', got \['tpu'\]"):
        ThroughputSettings(accelerators=["cpu", "tpu"])
    # The package names no workflow file: the caller passes the peer script.
    with pytest.raises(ValueError, match="peer=True needs peer_script"):
        ThroughputSettings(peer=True)
    assert ThroughputSettings(peer=True, peer_script="peer.py").peer_script == "peer.py"
    with pytest.raises(ValueError, match=r"the peer interpreter .* does not exist: create the "
                                         r"scvi-tools environment from envs/scvi-tools.lock "
                                         r"\(`make peer-env`"):
        time_peer(tmp_path / "missing" / "python", "peer.py", tmp_path / "c.h5ad",
                  tmp_path / "s.npz", 128, 1)


def test_large_input_stand_in_is_sparse_with_all_covariates() -> None:
    adata = sparse_covariate_counts(500, 300, density=0.05, seed=1)
    assert sp.issparse(adata.X) and adata.X.dtype == np.float32
    assert adata.X.nnz / (500 * 300) == pytest.approx(0.05, rel=0.1)
    assert adata.X.data.min() >= 2 and float(adata.X.data.max()) == int(adata.X.data.max())
    assert adata.obs["cell_source"].nunique() == 4 and adata.obs["donor"].nunique() == 14
    assert {"percent_mito", "percent_ribo", "cont_cov_8"} <= set(adata.obs.columns)


# the rule -----------------------------------------------------------------------------------
THROUGHPUT_TARGETS = [f"results/benchmarks/throughput.{ext}" for ext in ("json", "csv", "png",
                                                                          "pdf")]


@pytest.mark.workflow
def test_throughput_rule_on_the_test_config(tmp_path) -> None:
    pytest.importorskip("snakemake")
    run = run_snakemake(tmp_path, *THROUGHPUT_TARGETS)
    assert run.returncode == 0, run.stdout[-5000:]
    settings = yaml.safe_load(TEST_CONFIG.read_text())
    settings = settings["benchmarks"]["throughput"]
    document = json.loads((tmp_path / THROUGHPUT_TARGETS[0]).read_text())
    assert document["settings"]["n_cells"] == settings["n_cells"]
    assert document["settings"]["threads"] == settings["threads"]
    assert [c["batch_size"] for c in document["comparisons"]] == settings["batch_sizes"]
    assert all(c["scvi_tools"] is None for c in document["comparisons"])
    table = pd.read_csv(tmp_path / THROUGHPUT_TARGETS[1])
    assert list(table["batch_size"]) == settings["batch_sizes"]
    assert (table["cells_per_s"] > 0).all()
    assert (tmp_path / THROUGHPUT_TARGETS[2]).read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / THROUGHPUT_TARGETS[3]).read_bytes().startswith(b"%PDF")
    assert (tmp_path / "logs/benchmarks/benchmark_throughput.log").is_file()
    assert (tmp_path / "results/benchmarks/benchmark_throughput.tsv").is_file()


@pytest.mark.workflow
def test_throughput_rule_with_a_missing_peer_fails_naming_the_fix(tmp_path) -> None:
    pytest.importorskip("snakemake")
    overlay = tmp_path / "peer.yaml"
    overlay.write_text("peer: true\npeer_python:\n  scvi_tools: no-such-env/bin/python\n"
                       "  stereoscope: no-such-env/bin/stereoscope-python\n")
    run = run_snakemake(tmp_path, *THROUGHPUT_TARGETS, configfiles=[TEST_CONFIG, overlay])
    assert run.returncode != 0
    log = (tmp_path / "logs/benchmarks/benchmark_throughput.log").read_text()
    assert "no-such-env/bin/python does not exist" in log and "make peer-env" in log
    assert not (tmp_path / "results/benchmarks/throughput.json").exists()


@pytest.mark.workflow
def test_sparse_memory_rule_records_the_peak_and_the_claim(tmp_path) -> None:
    pytest.importorskip("snakemake")
    target = "results/benchmarks/sparse_training_memory.json"
    run = run_snakemake(tmp_path, target)
    assert run.returncode == 0, run.stdout[-5000:]
    settings = yaml.safe_load(TEST_CONFIG.read_text())
    settings = settings["benchmarks"]["sparse_memory"]
    document = json.loads((tmp_path / target).read_text())
    assert (document["n_cells"], document["n_genes"]) == (settings["n_cells"],
                                                          settings["n_genes"])
    assert document["nonzero_fraction"] == pytest.approx(settings["density"], rel=0.1)
    # The paper's training fraction: 10 % of the cells validate below 200,000 cells.
    assert document["n_validation_cells"] == settings["n_cells"] // 10
    phases = document["peak_rss_bytes"]
    assert set(phases) == {"building_data", "setup_anndata_and_model", "training"}
    assert document["peak_rss_bytes_max"] == max(phases.values()) > document["csr_bytes"]
    assert document["within_limit"] is (document["peak_rss_gib"] <= settings["max_peak_rss_gib"])
    assert (tmp_path / "logs/benchmarks/benchmark_sparse_memory.log").is_file()

