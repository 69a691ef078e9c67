"""The fast training path equals the reference formulas, and the throughput benchmark
writes what it promises (no timing assertions)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
import yaml
from scipy import special

import scprob.nn.distributions as D
from scprob.bench.throughput import (
    ThroughputSettings,
    plot_throughput,
    results_table,
    run_benchmark,
    sparse_covariate_counts,
    time_peer,
)
from scprob.data.loader import CellData, DeviceCSR, MinibatchLoader
from scprob.models import SCVI
from scprob.train import TrainingPlan
from tests.conftest import TEST_CONFIG, make_counts_adata, run_snakemake


def _inputs(theta_per_cell: bool, dtype: torch.dtype = torch.float64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    n, n_genes = 40, 70
    x = torch.poisson(torch.rand(n, n_genes, generator=g, dtype=dtype) * 4)
    x = x * (torch.rand(n, n_genes, generator=g, dtype=dtype) < 0.6)
    x[0, :4] = torch.tensor([0.0, 1.0, 350.0, 4000.0], dtype=dtype)
    logits = torch.randn(n, n_genes, generator=g, dtype=dtype)
    log_library = torch.log(x.sum(1, keepdim=True) + 1.0)
    theta_shape = (n, n_genes) if theta_per_cell else (n_genes,)
    theta = torch.exp(2.0 * torch.randn(*theta_shape, generator=g, dtype=dtype))
    zi_logits = 3.0 * torch.randn(n, n_genes, generator=g, dtype=dtype)
    return x, logits, log_library, theta, zi_logits


def _reference(x, mu, theta, zi_logits):
    if zi_logits is None:
        return D.log_nb(x, mu, theta, include_constant=False).sum(-1)
    return D.log_zinb(x, mu, theta, zi_logits, include_constant=False).sum(-1)


@pytest.mark.parametrize("zero_inflated", [True, False])
@pytest.mark.parametrize("theta_per_cell", [False, True])
@pytest.mark.parametrize("from_logits", [False, True])
def test_fused_likelihood_and_gradients_equal_the_reference(
    zero_inflated: bool, theta_per_cell: bool, from_logits: bool
) -> None:
    x, logits, log_library, theta, zi_logits = _inputs(theta_per_cell)
    zi_logits = zi_logits if zero_inflated else None
    leaves = [t.requires_grad_() for t in (logits, theta, zi_logits) if t is not None]
    mu = torch.exp(log_library) * torch.softmax(logits, dim=-1)
    weights = torch.linspace(-1.0, 2.0, x.shape[0], dtype=x.dtype)  # any per-cell gradient
    expected = _reference(x, mu, theta, zi_logits)
    expected_grads = torch.autograd.grad((weights * expected).sum(), leaves)
    if from_logits:
        ours = D.summed_count_log_likelihood(x, None, theta, zi_logits, scale_logits=logits,
                                             log_library=log_library)
        grads = torch.autograd.grad((weights * ours).sum(), leaves)
    else:
        mu_leaf = mu.detach().requires_grad_()
        ours = D.summed_count_log_likelihood(x, mu_leaf, theta, zi_logits)
        expected_mu_grad = torch.autograd.grad(
            (weights * _reference(x, mu_leaf, theta, zi_logits)).sum(), mu_leaf)[0]
        grads = torch.autograd.grad((weights * ours).sum(), [mu_leaf, *leaves[1:]])
        expected_grads = (expected_mu_grad, *expected_grads[1:])
    # The Stirling series err by < 3e-7 per entry (their bound), far below float32 rounding.
    torch.testing.assert_close(ours, expected, rtol=1e-9, atol=1e-5)
    for got, want in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6 * want.abs().max().item())
    with torch.no_grad():  # the inference path (no derivatives computed) gives the same
        again = D.summed_count_log_likelihood(x, mu.detach(), theta.detach(),
                                              None if zi_logits is None else zi_logits.detach())
    torch.testing.assert_close(again, expected.detach(), rtol=1e-9, atol=1e-5)


@pytest.mark.parametrize("theta_per_cell", [False, True])
def test_row_blocks_of_the_eager_kernel_change_nothing(theta_per_cell: bool,
                                                       monkeypatch) -> None:
    x, logits, log_library, theta, zi_logits = _inputs(theta_per_cell)
    leaves = [t.requires_grad_() for t in (logits, theta, zi_logits)]

    def evaluate():
        values = D.summed_count_log_likelihood(x, None, theta, zi_logits,
                                               scale_logits=logits, log_library=log_library)
        return values, torch.autograd.grad(values.sum(), leaves)

    whole, whole_grads = evaluate()
    monkeypatch.setattr(D, "_EAGER_BLOCK_ENTRIES", 7 * x.shape[1])  # blocks of 7 rows
    blocked, blocked_grads = evaluate()
    torch.testing.assert_close(blocked, whole, rtol=1e-12, atol=0)
    for got, want in zip(blocked_grads, whole_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_fused_likelihood_in_float32_stays_at_float32_rounding() -> None:
    x, logits, log_library, theta, zi_logits = _inputs(False, torch.float64, seed=3)
    expected = _reference(x, torch.exp(log_library) * torch.softmax(logits, -1), theta,
                          zi_logits)
    ours = D.summed_count_log_likelihood(
        x.float(), None, theta.float(), zi_logits.float(), scale_logits=logits.float(),
        log_library=log_library.float())
    torch.testing.assert_close(ours.double(), expected, rtol=2e-6, atol=1e-3)


def test_stirling_series_match_scipy_over_the_whole_range() -> None:
    z = np.concatenate([np.logspace(-6, 0, 300), np.linspace(1, 20, 500), np.logspace(1, 9, 300)])
    zt = torch.as_tensor(z)
    np.testing.assert_allclose(D.stirling_lgamma(zt).numpy(), special.gammaln(z),
                               rtol=1e-12, atol=4e-7)
    np.testing.assert_allclose(D.stirling_digamma(zt).numpy(), special.digamma(z),
                               rtol=1e-7, atol=2e-7)


def test_fused_likelihood_rejects_mismatched_inputs() -> None:
    x, logits, log_library, theta, _ = _inputs(False)
    with pytest.raises(ValueError, match="pass either mu, or scale_logits together with "
                                         "log_library"):
        D.summed_count_log_likelihood(x, None, theta, scale_logits=logits)
    with pytest.raises(ValueError, match=r"theta must be \(n_genes,\) or \(n_cells, n_genes\)"):
        D.summed_count_log_likelihood(x, x + 1.0, theta[:5])
    with pytest.raises(ValueError, match="log_library must not require a gradient"):
        D.summed_count_log_likelihood(x, None, theta, scale_logits=logits,
                                      log_library=log_library.requires_grad_())


@pytest.fixture
def fresh_kernels():
    """Leave the process's kernel selection as it was found."""
    saved_compiled = list(D._COMPILED)
    D._COMPILED.clear()
    yield
    D.use_compiled_likelihood(False)
    D._COMPILED[:] = saved_compiled


def test_failed_compilation_falls_back_to_eager_with_a_warning(fresh_kernels, monkeypatch) -> None:
    def broken_compile(fn, **kwargs):
        def run(*args):
            raise RuntimeError("no C++ compiler found")
        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    D.use_compiled_likelihood(True)
    x, logits, log_library, theta, zi_logits = _inputs(False)
    with pytest.warns(RuntimeWarning, match="torch.compile of the count likelihood failed "
                                            r"\(RuntimeError: no C\+\+ compiler found\)"):
        ours = D.summed_count_log_likelihood(x, None, theta, zi_logits, scale_logits=logits,
                                             log_library=log_library)
    assert D.likelihood_kernel() == "eager (compilation failed)"
    D.use_compiled_likelihood(False)
    expected = D.summed_count_log_likelihood(x, None, theta, zi_logits, scale_logits=logits,
                                             log_library=log_library)
    torch.testing.assert_close(ours, expected)


def test_compiled_kernel_equals_eager(fresh_kernels) -> None:
    x, logits, log_library, theta, zi_logits = (t.float() for t in _inputs(False))
    logits.requires_grad_()
    eager = D.summed_count_log_likelihood(x, None, theta, zi_logits, scale_logits=logits,
                                          log_library=log_library)
    (eager_grad,) = torch.autograd.grad(eager.sum(), logits)
    D.use_compiled_likelihood(True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compiled = D.summed_count_log_likelihood(x, None, theta, zi_logits,
                                                 scale_logits=logits, log_library=log_library)
    if D.likelihood_kernel() != "compiled":
        pytest.skip("torch.compile does not work on this machine (the fallback is tested)")
    (compiled_grad,) = torch.autograd.grad(compiled.sum(), logits)
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(compiled_grad, eager_grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n_categories", [3, 100])
def test_covariate_linear_one_hot_and_lookup_paths_equal_the_definition(n_categories: int
                                                                         ) -> None:
    from scprob.nn.layers import ONE_HOT_MAX_CATEGORIES, CovariateLinear

    assert (n_categories <= ONE_HOT_MAX_CATEGORIES) == (n_categories == 3)
    torch.manual_seed(0)
    layer = CovariateLinear(5, 7, n_categories=[n_categories, 2], n_continuous=4).double()
    h, cont = torch.randn(50, 5, dtype=torch.float64), torch.randn(50, 4, dtype=torch.float64)
    cat = torch.stack([torch.randint(0, n_categories, (50,)), torch.randint(0, 2, (50,))], 1)
    expected = (layer.linear(h) + layer.table(0)[cat[:, 0]] + layer.table(1)[cat[:, 1]]
                + cont @ layer.continuous_weight)
    out = layer(h, cat, cont)
    torch.testing.assert_close(out, expected)
    parameters = [p for p in layer.parameters() if p.numel() > 0]  # no query rows yet
    grads = torch.autograd.grad(out.square().sum(), parameters)
    want = torch.autograd.grad(expected.square().sum(), parameters)
    for got, reference in zip(grads, want, strict=True):
        torch.testing.assert_close(got, reference)


# loader -----------------------------------------------------------------------------------
def _counts(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    counts = rng.poisson(1.5, (57, 23)) * (rng.random((57, 23)) < 0.5)
    counts[3] = 0  # an empty row
    counts[4, 2] = 2_000_000  # beyond the lookup table
    return counts.astype(np.float32)


@pytest.mark.parametrize("sparse", [True, False])
def test_loader_serves_each_cells_log_factorial(sparse: bool) -> None:
    counts = _counts()
    matrix = sp.csr_matrix(counts) if sparse else counts
    data = CellData.from_arrays(matrix, np.zeros((57, 1)), np.zeros((57, 0)))
    expected = special.gammaln(counts.astype(np.float64) + 1.0).sum(axis=1)
    np.testing.assert_allclose(data.log_factorial.numpy(), expected, rtol=1e-6)
    batch = next(iter(MinibatchLoader(data, np.arange(57), 16, shuffle=True, seed=2)))
    order = MinibatchLoader(data, np.arange(57), 16, shuffle=True, seed=2).order(0)[:16]
    np.testing.assert_allclose(batch["log_factorial"].numpy(), expected[order], rtol=1e-6)


def test_device_csr_gathers_the_same_rows_as_scipy() -> None:
    counts = _counts(1)
    matrix = sp.csr_matrix(counts)
    gathered = DeviceCSR(matrix, "cpu").rows(torch.tensor([5, 3, 0, 56, 5]))
    np.testing.assert_array_equal(gathered.numpy(), counts[[5, 3, 0, 56, 5]])


def test_loader_over_device_csr_serves_the_same_batches() -> None:
    counts = _counts(2)
    host = CellData.from_arrays(sp.csr_matrix(counts), np.arange(57)[:, None] % 3,
                                np.zeros((57, 0)))
    gathered = CellData(DeviceCSR(host.counts, "cpu"), host.cat, host.cont, {},
                        host.log_factorial)
    for a, b in zip(MinibatchLoader(host, np.arange(57), 10, shuffle=True, seed=4),
                    MinibatchLoader(gathered, np.arange(57), 10, shuffle=True, seed=4),
                    strict=True):
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key])


def test_on_device_is_the_identity_on_the_cpu() -> None:
    data = CellData.from_arrays(sp.csr_matrix(_counts()), np.zeros((57, 1)), np.zeros((57, 0)))
    assert data.on_device("cpu") is data


# training plan ----------------------------------------------------------------------------
def test_compile_setting_is_validated_and_auto_stays_eager_on_small_fits() -> None:
    adata = make_counts_adata()
    SCVI.setup_anndata(adata, batch_key="batch")
    with pytest.raises(ValueError, match=r"plan_kwargs\['compile'\] must be 'auto', True or "
                                         "False, got 'yes'"):
        TrainingPlan(SCVI(adata).module, compile="yes")
    model = SCVI(adata, n_latent=4, n_hidden=16)
    model.train(max_epochs=2, batch_size=64, enable_progress_bar=False)
    assert D.likelihood_kernel() == "eager"  # a 300-cell fit never pays for compilation


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
    overlay.write_text("benchmarks:\n  throughput:\n    peer: true\n"
                       "    peer_python: no-such-env/bin/python\n")
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

