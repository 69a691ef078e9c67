"""Count likelihoods: log-densities of the negative binomial family.

All functions take a mean parametrisation, broadcast over their arguments and return
elementwise log-probabilities, shape `(n_cells, n_features)` for count matrices.

* Negative binomial with mean ``mu`` and inverse dispersion ``theta``::

      NB(x | mu, theta) = Γ(x + θ) / (Γ(θ) x!) · (θ / (θ + μ))^θ · (μ / (θ + μ))^x

  so ``Var[x] = μ + μ² / θ``.
* Zero-inflated NB: with probability ``π = sigmoid(zi_logits)`` the count is a structural
  zero, otherwise it is NB::

      log p(0)     = logaddexp(zi_logits, log NB(0)) − softplus(zi_logits)
      log p(x > 0) = log NB(x) − softplus(zi_logits)

* Poisson with rate ``mu``.
* NB mixture (totalVI's protein likelihood): ``π NB(mu_1) + (1 − π) NB(mu_2)`` with
  ``π = sigmoid(mixture_logits)`` the probability of the first component.

``log x!`` does not depend on any parameter. Training drops it (``include_constant=False``:
one ``lgamma`` fewer per matrix entry and step); every reported likelihood or ELBO keeps it,
so numbers are comparable with other implementations.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# Keeps log() finite for means that underflow to zero; small next to any real count rate.
EPS = 1e-8


def log_nb(
    x: Tensor, mu: Tensor, theta: Tensor, *, include_constant: bool = True, eps: float = EPS
) -> Tensor:
    """Negative binomial log-density with mean ``mu`` and inverse dispersion ``theta``."""
    log_theta_mu = torch.log(theta + mu + eps)
    log_p = (
        theta * (torch.log(theta + eps) - log_theta_mu)
        + x * (torch.log(mu + eps) - log_theta_mu)
        + torch.lgamma(x + theta)
        - torch.lgamma(theta)
    )
    if include_constant:
        log_p = log_p - torch.lgamma(x + 1.0)
    return log_p


def log_zinb(
    x: Tensor,
    mu: Tensor,
    theta: Tensor,
    zi_logits: Tensor,
    *,
    include_constant: bool = True,
    eps: float = EPS,
) -> Tensor:
    """Zero-inflated negative binomial log-density; ``zi_logits`` are the logits of a
    structural zero."""
    log_theta_mu = torch.log(theta + mu + eps)
    log_nb_zero = theta * (torch.log(theta + eps) - log_theta_mu)
    log_not_zero_inflated = -F.softplus(zi_logits)
    zero_case = torch.logaddexp(zi_logits, log_nb_zero) + log_not_zero_inflated
    nonzero_case = (
        log_not_zero_inflated
        + log_nb_zero
        + x * (torch.log(mu + eps) - log_theta_mu)
        + torch.lgamma(x + theta)
        - torch.lgamma(theta)
    )
    if include_constant:
        nonzero_case = nonzero_case - torch.lgamma(x + 1.0)
    return torch.where(x < 0.5, zero_case, nonzero_case)


def log_poisson(
    x: Tensor, mu: Tensor, *, include_constant: bool = True, eps: float = EPS
) -> Tensor:
    """Poisson log-density with rate ``mu``."""
    log_p = x * torch.log(mu + eps) - mu
    if include_constant:
        log_p = log_p - torch.lgamma(x + 1.0)
    return log_p


def log_nb_mixture(
    x: Tensor,
    mu_1: Tensor,
    mu_2: Tensor,
    theta: Tensor,
    mixture_logits: Tensor,
    *,
    include_constant: bool = True,
    eps: float = EPS,
) -> Tensor:
    """Two-component NB mixture sharing ``theta``; ``mixture_logits`` are the logits of
    component 1."""
    log_1 = log_nb(x, mu_1, theta, include_constant=include_constant, eps=eps)
    log_2 = log_nb(x, mu_2, theta, include_constant=include_constant, eps=eps)
    return torch.logaddexp(
        log_1 - F.softplus(-mixture_logits), log_2 - F.softplus(mixture_logits)
    )


def log_factorial(x: Tensor) -> Tensor:
    """``log x!``: the parameter-free term of every count likelihood above."""
    return torch.lgamma(x + 1.0)


def gaussian_kl_to_standard_normal(mean: Tensor, var: Tensor) -> Tensor:
    """KL(N(mean, diag(var)) ‖ N(0, I)) summed over the last axis, shape ``(n_cells,)``."""
    return 0.5 * (var + mean.pow(2) - 1.0 - torch.log(var)).sum(dim=-1)
