"""Count likelihoods against scipy's reference densities."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import special, stats

from scprob.nn.distributions import (
    gaussian_kl_to_standard_normal,
    log_nb,
    log_nb_mixture,
    log_poisson,
    log_zinb,
)

X = np.array([0, 1, 2, 5, 17, 120, 3000], dtype=np.float64)
MU = np.array([0.01, 0.5, 3.0, 4.0, 20.0, 100.0, 2500.0])
THETA = np.array([0.05, 1.0, 10.0, 2.5, 0.7, 50.0, 1e4])


def t(a: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(a, dtype=torch.float64)


def scipy_nb(x: np.ndarray, mu: np.ndarray, theta: np.ndarray) -> np.ndarray:
    return stats.nbinom.logpmf(x, theta, theta / (theta + mu))


def test_nb_matches_scipy() -> None:
    ours = log_nb(t(X), t(MU), t(THETA), eps=0.0).numpy()
    np.testing.assert_allclose(ours, scipy_nb(X, MU, THETA), rtol=1e-8, atol=1e-8)


def test_nb_without_constant_differs_by_log_factorial() -> None:
    full = log_nb(t(X), t(MU), t(THETA))
    partial = log_nb(t(X), t(MU), t(THETA), include_constant=False)
    np.testing.assert_allclose((partial - full).numpy(), special.gammaln(X + 1), rtol=1e-8)


@pytest.mark.parametrize("logit", [-6.0, -1.0, 0.0, 2.0, 8.0])
def test_zinb_matches_mixture_of_point_mass_and_nb(logit: float) -> None:
    pi = 1.0 / (1.0 + np.exp(-logit))
    expected = np.log((X == 0) * pi + (1 - pi) * np.exp(scipy_nb(X, MU, THETA)))
    ours = log_zinb(t(X), t(MU), t(THETA), t(np.full_like(X, logit)), eps=0.0).numpy()
    np.testing.assert_allclose(ours, expected, rtol=1e-7, atol=1e-7)


def test_zinb_is_stable_for_extreme_logits() -> None:
    ours = log_zinb(t(X), t(MU), t(THETA), t(np.full_like(X, 60.0)))
    assert torch.isfinite(ours[0]) and ours[0] > -1e-6  # a sure zero has probability 1
    ours = log_zinb(t(X), t(MU), t(THETA), t(np.full_like(X, -60.0)))
    np.testing.assert_allclose(ours.numpy(), scipy_nb(X, MU, THETA), rtol=1e-6, atol=1e-6)


def test_poisson_matches_scipy() -> None:
    ours = log_poisson(t(X), t(MU), eps=0.0).numpy()
    np.testing.assert_allclose(ours, stats.poisson.logpmf(X, MU), rtol=1e-8, atol=1e-8)


def test_nb_mixture_matches_weighted_sum() -> None:
    mu2 = MU * 7.0
    logits = np.linspace(-3, 3, len(X))
    w = 1.0 / (1.0 + np.exp(-logits))
    nb_1, nb_2 = np.exp(scipy_nb(X, MU, THETA)), np.exp(scipy_nb(X, mu2, THETA))
    expected = np.log(w * nb_1 + (1 - w) * nb_2)
    ours = log_nb_mixture(t(X), t(MU), t(mu2), t(THETA), t(logits), eps=0.0).numpy()
    np.testing.assert_allclose(ours, expected, rtol=1e-7, atol=1e-7)


def test_gradients_are_finite_at_zero_counts() -> None:
    mu = t(np.array([1e-12, 1.0, 10.0])).requires_grad_()
    theta = t(np.array([1e-3, 1.0, 1e5])).requires_grad_()
    logits = t(np.array([-20.0, 0.0, 20.0])).requires_grad_()
    log_zinb(t(np.zeros(3)), mu, theta, logits).sum().backward()
    for p in (mu, theta, logits):
        assert torch.isfinite(p.grad).all()


def test_gaussian_kl_matches_closed_form() -> None:
    mean = t(np.array([[0.0, 1.0], [2.0, -1.0]]))
    var = t(np.array([[1.0, 0.5], [2.0, 0.1]]))
    expected = [
        sum(np.log(1 / np.sqrt(v)) + (v + m**2) / 2 - 0.5 for m, v in zip(mr, vr, strict=True))
        for mr, vr in zip(mean.numpy(), var.numpy(), strict=True)
    ]
    np.testing.assert_allclose(gaussian_kl_to_standard_normal(mean, var).numpy(), expected)
