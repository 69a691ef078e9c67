"""The fused NB/ZINB training kernel equals the reference densities, value and gradient,
and the kernel a fit uses (eager or compiled) is an object, not process state."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy import special

import scprob.nn.count_kernel as K
import scprob.nn.distributions as D


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
        ours = K.summed_count_log_likelihood(x, None, theta, zi_logits, scale_logits=logits,
                                             log_library=log_library)
        grads = torch.autograd.grad((weights * ours).sum(), leaves)
    else:
        mu_leaf = mu.detach().requires_grad_()
        ours = K.summed_count_log_likelihood(x, mu_leaf, theta, zi_logits)
        expected_mu_grad = torch.autograd.grad(
            (weights * _reference(x, mu_leaf, theta, zi_logits)).sum(), mu_leaf)[0]
        grads = torch.autograd.grad((weights * ours).sum(), [mu_leaf, *leaves[1:]])
        expected_grads = (expected_mu_grad, *expected_grads[1:])
    # The Stirling series err by < 3e-7 per entry (their bound), far below float32 rounding.
    torch.testing.assert_close(ours, expected, rtol=1e-9, atol=1e-5)
    for got, want in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6 * want.abs().max().item())
    with torch.no_grad():  # the inference path (no derivatives computed) gives the same
        again = K.summed_count_log_likelihood(x, mu.detach(), theta.detach(),
                                              None if zi_logits is None else zi_logits.detach())
    torch.testing.assert_close(again, expected.detach(), rtol=1e-9, atol=1e-5)


@pytest.mark.parametrize("theta_per_cell", [False, True])
def test_row_blocks_of_the_eager_kernel_change_nothing(theta_per_cell: bool,
                                                       monkeypatch) -> None:
    x, logits, log_library, theta, zi_logits = _inputs(theta_per_cell)
    leaves = [t.requires_grad_() for t in (logits, theta, zi_logits)]

    def evaluate():
        values = K.summed_count_log_likelihood(x, None, theta, zi_logits,
                                               scale_logits=logits, log_library=log_library)
        return values, torch.autograd.grad(values.sum(), leaves)

    whole, whole_grads = evaluate()
    monkeypatch.setattr(K, "_eager_block_entries", lambda: 7 * x.shape[1])  # 7-row blocks
    blocked, blocked_grads = evaluate()
    torch.testing.assert_close(blocked, whole, rtol=1e-12, atol=0)
    for got, want in zip(blocked_grads, whole_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_fused_likelihood_in_float32_stays_at_float32_rounding() -> None:
    x, logits, log_library, theta, zi_logits = _inputs(False, torch.float64, seed=3)
    expected = _reference(x, torch.exp(log_library) * torch.softmax(logits, -1), theta,
                          zi_logits)
    ours = K.summed_count_log_likelihood(
        x.float(), None, theta.float(), zi_logits.float(), scale_logits=logits.float(),
        log_library=log_library.float())
    torch.testing.assert_close(ours.double(), expected, rtol=2e-6, atol=1e-3)


def test_stirling_series_match_scipy_over_the_whole_range() -> None:
    z = np.concatenate([np.logspace(-6, 0, 300), np.linspace(1, 20, 500), np.logspace(1, 9, 300)])
    zt = torch.as_tensor(z)
    np.testing.assert_allclose(K.stirling_lgamma(zt).numpy(), special.gammaln(z),
                               rtol=1e-12, atol=4e-7)
    np.testing.assert_allclose(K.stirling_digamma(zt).numpy(), special.digamma(z),
                               rtol=1e-7, atol=2e-7)


def test_fused_likelihood_rejects_mismatched_inputs() -> None:
    x, logits, log_library, theta, _ = _inputs(False)
    with pytest.raises(ValueError, match="pass either mu, or scale_logits together with "
                                         "log_library"):
        K.summed_count_log_likelihood(x, None, theta, scale_logits=logits)
    with pytest.raises(ValueError, match=r"theta must be \(n_genes,\) or \(n_cells, n_genes\)"):
        K.summed_count_log_likelihood(x, x + 1.0, theta[:5])
    with pytest.raises(ValueError, match="log_library must not require a gradient"):
        K.summed_count_log_likelihood(x, None, theta, scale_logits=logits,
                                      log_library=log_library.requires_grad_())


@pytest.fixture
def fresh_compiler(monkeypatch):
    """A process whose compiled kernels are not made yet and whose compiler never failed."""
    K._compiled_functions.cache_clear()
    monkeypatch.setattr(K.CountKernel, "_compilation_failed", False)
    yield
    K._compiled_functions.cache_clear()


def test_failed_compilation_falls_back_to_eager_with_a_warning(fresh_compiler,
                                                               monkeypatch) -> None:
    def broken_compile(fn, **kwargs):
        def run(*args):
            raise RuntimeError("no C++ compiler found")
        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    x, logits, log_library, theta, zi_logits = _inputs(False)
    assert K.COMPILED.name == "compiled"
    with pytest.warns(RuntimeWarning, match="torch.compile of the count likelihood failed "
                                            r"\(RuntimeError: no C\+\+ compiler found\)"):
        ours = K.summed_count_log_likelihood(x, None, theta, zi_logits, scale_logits=logits,
                                             log_library=log_library, kernel=K.COMPILED)
    assert K.COMPILED.name == "eager (compilation failed)"
    assert K.EAGER.name == "eager"
    expected = K.summed_count_log_likelihood(x, None, theta, zi_logits, scale_logits=logits,
                                             log_library=log_library)
    torch.testing.assert_close(ours, expected)


def test_compiled_kernel_equals_eager(fresh_compiler) -> None:
    x, logits, log_library, theta, zi_logits = (t.float() for t in _inputs(False))
    logits.requires_grad_()
    eager = K.summed_count_log_likelihood(x, None, theta, zi_logits, scale_logits=logits,
                                          log_library=log_library)
    (eager_grad,) = torch.autograd.grad(eager.sum(), logits)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compiled = K.summed_count_log_likelihood(x, None, theta, zi_logits,
                                                 scale_logits=logits, log_library=log_library,
                                                 kernel=K.COMPILED)
    if K.COMPILED.name != "compiled":
        pytest.skip("torch.compile does not work on this machine (the fallback is tested)")
    (compiled_grad,) = torch.autograd.grad(compiled.sum(), logits)
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(compiled_grad, eager_grad, rtol=1e-5, atol=1e-5)
