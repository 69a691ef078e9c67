"""What the training plan and the models ask of a module (the math of a model).

A module is a plain ``nn.Module`` with three methods, each on a minibatch ``batch`` (a dict
of per-cell tensors named after the registered fields: ``"x"`` the counts
``(n, n_genes)``, ``"categorical"`` codes ``(n, n_categorical)``, ``"continuous"``
``(n, n_continuous)``, and whatever else the model registers):

* ``inference(batch)``: the posterior of the latent variables, at least ``"qz_mean"``,
  ``"qz_var"`` and a sample ``"z"``, each ``(n, n_latent)``;
* ``generative(batch, z, sample=False)``: the observation model's parameters given ``z``;
  ``sample`` draws the other latent quantities (totalVI's protein background) instead of
  taking their means;
* ``loss(batch, kl_weight=1.0, kernel=EAGER)``: a :class:`LossOutput`; ``kernel`` is the
  count-likelihood implementation the training plan chose.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor


@dataclass
class LossOutput:
    loss: Tensor  # scalar, minimised
    elbo: Tensor  # (batch_size,) per-cell ELBO, constants included
    reconstruction: Tensor  # (batch_size,) per-cell log-likelihood, constants included
    kl: Tensor  # (batch_size,) per-cell KL divergence
    latent: Tensor | None = None  # (batch_size, n_latent) the sample of z the loss used


class ProbabilisticModule(Protocol):
    def inference(self, batch: dict[str, Tensor]) -> dict[str, Tensor]: ...

    def generative(
        self, batch: dict[str, Tensor], z: Tensor, sample: bool = False
    ) -> dict[str, Tensor]: ...

    def loss(
        self, batch: dict[str, Tensor], kl_weight: float = 1.0, kernel: Any = None
    ) -> LossOutput: ...


def cell_log_factorial(batch: dict[str, Tensor]) -> Tensor:
    """``Σ_g log x_ng!`` per cell ``(n,)``: the constant of every count likelihood, served by
    the loader (computed once from the stored counts) or computed here."""
    constant = batch.get("log_factorial")
    if constant is None:
        constant = torch.lgamma(batch["x"] + 1.0).sum(dim=-1)
    return constant
