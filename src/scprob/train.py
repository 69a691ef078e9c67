"""The one training plan: stochastic maximisation of the ELBO with Lightning.

A module trained here implements ``loss(batch, kl_weight) -> LossOutput``, where
``LossOutput.loss`` is the scalar to minimise (mean over cells of the negative
reconstruction log-likelihood plus ``kl_weight`` times the KL term) and ``LossOutput.elbo``
the per-cell ELBO ``(batch_size,)`` with every constant included.

KL warm-up: the weight of the KL term grows linearly from ``min_kl_weight`` to
``max_kl_weight`` over ``n_epochs_kl_warmup`` epochs (or ``n_steps_kl_warmup`` steps).
Early in training the encoder can then use the latent freely; later the prior pulls the
posterior in and the latent keeps only what the decoder cannot get from the covariates.
A run that ends during warm-up never reaches that second phase.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any, Protocol

import pandas as pd
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping
from torch import Tensor

from scprob.data.loader import Batch


@dataclass
class LossOutput:
    loss: Tensor  # scalar, minimised
    elbo: Tensor  # (batch_size,) per-cell ELBO, constants included
    reconstruction: Tensor  # (batch_size,) per-cell log-likelihood, constants included
    kl: Tensor  # (batch_size,) per-cell KL divergence


class TrainableModule(Protocol):
    def loss(self, batch: Batch, kl_weight: float) -> LossOutput: ...


PLAN_DEFAULTS: dict[str, Any] = {
    "lr": 1e-3,
    "weight_decay": 1e-6,
    "eps": 0.01,
    "n_epochs_kl_warmup": 400,
    "n_steps_kl_warmup": None,
    "min_kl_weight": 0.0,
    "max_kl_weight": 1.0,
}


class TrainingPlan(pl.LightningModule):
    """ELBO training with KL warm-up and Adam on the trainable parameters only.

    Parameters that do not require gradients (frozen by scArches surgery) are not given to
    the optimizer at all, so neither Adam's moments nor its weight decay touch them.
    """

    def __init__(self, module: torch.nn.Module, **plan_kwargs: Any) -> None:
        super().__init__()
        unknown = sorted(set(plan_kwargs) - set(PLAN_DEFAULTS))
        if unknown:
            raise ValueError(
                f"unknown plan_kwargs {unknown}; accepted: {sorted(PLAN_DEFAULTS)}."
            )
        self.module = module
        self.settings = {**PLAN_DEFAULTS, **plan_kwargs}
        self.history_rows: list[dict[str, float]] = []
        self._sums: dict[str, Tensor] = {}

    # KL warm-up -------------------------------------------------------------------------
    @property
    def kl_weight(self) -> float:
        s = self.settings
        lo, hi = s["min_kl_weight"], s["max_kl_weight"]
        if s["n_steps_kl_warmup"]:
            progress = self.global_step / s["n_steps_kl_warmup"]
        elif s["n_epochs_kl_warmup"]:
            progress = self.current_epoch / s["n_epochs_kl_warmup"]
        else:
            return hi
        return lo + (hi - lo) * min(1.0, progress)

    # accumulation without a host sync per step ------------------------------------------
    def _accumulate(self, prefix: str, out: LossOutput) -> None:
        for name, value in (("elbo", out.elbo), ("reconstruction", out.reconstruction),
                            ("kl", out.kl)):
            key = f"{prefix}_{name}"
            total = value.detach().sum()
            self._sums[key] = self._sums.get(key, 0.0) + total
        n_key = f"{prefix}_n"
        self._sums[n_key] = self._sums.get(n_key, 0) + out.elbo.shape[0]

    def _epoch_means(self, prefix: str) -> dict[str, float]:
        n = self._sums.pop(f"{prefix}_n", 0)
        means = {}
        for name in ("elbo", "reconstruction", "kl"):
            total = self._sums.pop(f"{prefix}_{name}", None)
            if total is not None and n:
                means[f"{name}_{prefix}"] = float(total) / n
        return means

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        out = self.module.loss(batch, kl_weight=self.kl_weight)
        self._accumulate("train", out)
        return out.loss

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._accumulate("validation", self.module.loss(batch, kl_weight=1.0))

    def on_validation_epoch_end(self) -> None:
        means = self._epoch_means("validation")
        self._validation_means = means
        if "elbo_validation" in means:
            self.log("elbo_validation", means["elbo_validation"], prog_bar=True)

    def on_train_epoch_end(self) -> None:
        row: dict[str, float] = {"epoch": float(self.current_epoch),
                                 "kl_weight": self.kl_weight}
        row.update(self._epoch_means("train"))
        row.update(getattr(self, "_validation_means", {}))
        self._validation_means = {}
        self.history_rows.append(row)
        if "elbo_train" in row:
            self.log("elbo_train", row["elbo_train"], prog_bar=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        trainable = [p for p in self.module.parameters() if p.requires_grad]
        return torch.optim.Adam(
            trainable,
            lr=self.settings["lr"],
            eps=self.settings["eps"],
            weight_decay=self.settings["weight_decay"],
        )

    @property
    def history(self) -> pd.DataFrame:
        frame = pd.DataFrame(self.history_rows)
        if not frame.empty:
            frame["epoch"] = frame["epoch"].astype(int)
        return frame


def make_trainer(
    max_epochs: int,
    accelerator: str = "auto",
    devices: int | str = "auto",
    early_stopping: bool = False,
    early_stopping_patience: int = 45,
    early_stopping_monitor: str = "elbo_validation",
    enable_progress_bar: bool = True,
    limit_train_batches: int | float | None = None,
    **trainer_kwargs: Any,
) -> pl.Trainer:
    """A Lightning trainer without loggers, checkpoints or sanity checks: the plan keeps
    its own history and the model saves itself."""
    if max_epochs < 1:
        raise ValueError(f"max_epochs must be at least 1, got {max_epochs}.")
    callbacks = list(trainer_kwargs.pop("callbacks", []))
    if early_stopping:
        callbacks.append(
            EarlyStopping(
                monitor=early_stopping_monitor,
                mode="max",  # the ELBO: higher is better
                patience=early_stopping_patience,
                min_delta=0.0,
                check_on_train_epoch_end=early_stopping_monitor == "elbo_train",
            )
        )
    # Lightning's notices about loggers, worker counts and plain iterables do not apply.
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="pytorch_lightning")
    return pl.Trainer(
        max_epochs=max_epochs,
        accelerator=accelerator,
        devices=devices,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,
        enable_progress_bar=enable_progress_bar,
        limit_train_batches=limit_train_batches,
        callbacks=callbacks,
        **trainer_kwargs,
    )
