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

A step is one forward pass, one backward pass and one fused Adam update under manual
optimisation; epoch totals are summed on the device and read once per epoch. The plan
chooses the count-likelihood kernel for the whole fit (``plan_kwargs["compile"]``: True,
False, or ``"auto"``, see :func:`should_compile`) and hands it to every ``module.loss``
call. On an accelerator the loaders' data move to the device once, at the start of fitting.
Design notes and measurements: ``docs/likelihood-kernel.md``.

Batch adversary (``adversarial_classifier=True``; the totalVI paper's training when some
batches lack proteins). A small classifier ``BatchAdversary`` learns to predict each cell's
batch from its latent sample ``z``; the module is trained, besides the ELBO, to make that
prediction wrong: its loss gains ``κ`` times the cross-entropy of the classifier's output
against a target spread evenly over the *other* batches. The two are updated in turn,
each step (the module first, then the classifier on ``z`` detached). A latent space from
which the batch cannot be read is one where an encoder has not kept donor- or
panel-specific signal, which is what lets a frozen encoder read new donors (scArches).
``scale_adversarial_loss``: ``κ``, a number, or ``"auto"`` for ``1 − kl_weight``, strong
while the KL term warms up and fading with it.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any

import pandas as pd
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.callbacks import EarlyStopping
from torch import Tensor, nn

from scprob.data.loader import Batch, CellData, MinibatchLoader
from scprob.nn.count_kernel import COMPILED, EAGER, CountKernel
from scprob.nn.module import LossOutput

PLAN_DEFAULTS: dict[str, Any] = {
    "lr": 1e-3,
    "weight_decay": 1e-6,
    "eps": 0.01,
    "n_epochs_kl_warmup": 400,
    "n_steps_kl_warmup": None,
    "min_kl_weight": 0.0,
    "max_kl_weight": 1.0,
    "compile": "auto",
    "adversarial_classifier": False,
    "scale_adversarial_loss": "auto",
}

# "auto" compiles the likelihood kernel when the fit's expected saving repays a compilation
# in a fresh process. Measured on a 2-core CPU (docs/likelihood-kernel.md): compiling the
# training and validation graphs cold took 26 s (8 s with torch's on-disk cache warm), and
# the fused kernel saved 3–6e-8 s per matrix entry. The lower saving and a cold compiler
# make a fit compile only where it surely pays: about 1e9 entries.
COMPILE_SECONDS = 30.0
SECONDS_SAVED_PER_ENTRY = 3e-8
AUTO_COMPILE_ENTRIES = COMPILE_SECONDS / SECONDS_SAVED_PER_ENTRY


def fit_entries(n_genes: int, train_cells_per_epoch: int, validation_cells_per_epoch: float,
                max_epochs: int) -> float:
    """Matrix entries the likelihood evaluates in a whole fit: the cells it trains on and
    validates in each epoch (after ``limit_train_batches``) × genes × epochs."""
    return float(n_genes) * (train_cells_per_epoch + validation_cells_per_epoch) * max_epochs


def should_compile(setting: bool | str, entries: float) -> bool:
    """Whether a fit compiles the likelihood kernel: ``setting`` True or False, or
    ``"auto"``: when the fit evaluates at least ``AUTO_COMPILE_ENTRIES`` matrix entries
    (:func:`fit_entries`). The choice depends on the fit alone, never on what ran before in
    the process, so a seed gives the same model in a fresh process and after other fits."""
    if setting != "auto":
        return bool(setting)
    return entries >= AUTO_COMPILE_ENTRIES


class BatchAdversary(nn.Module):
    """``p(batch | z)``: logits ``(n, n_batch)`` from latent samples ``(n, n_latent)``, two
    hidden layers of 32 units."""

    def __init__(self, n_latent: int, n_batch: int, n_hidden: int = 32) -> None:
        super().__init__()
        self.network = nn.Sequential(
            nn.Linear(n_latent, n_hidden), nn.ReLU(),
            nn.Linear(n_hidden, n_hidden), nn.ReLU(),
            nn.Linear(n_hidden, n_batch),
        )
        self.n_batch = n_batch

    def forward(self, z: Tensor) -> Tensor:
        return self.network(z)

    def classification_loss(self, z: Tensor, batch: Tensor) -> Tensor:
        """Mean cross-entropy of the true batches ``(n,)``: what the classifier minimises."""
        return F.cross_entropy(self(z), batch)

    def fooling_loss(self, z: Tensor, batch: Tensor) -> Tensor:
        """Mean cross-entropy against a target uniform over each cell's *other* batches:
        what the encoder minimises to hide the batch."""
        log_p = F.log_softmax(self(z), dim=-1)
        others = 1.0 - F.one_hot(batch, self.n_batch).to(log_p.dtype)
        return -(log_p * others).sum(-1).mean() / (self.n_batch - 1)


class TrainingPlan(pl.LightningModule):
    """ELBO training with KL warm-up and Adam on the trainable parameters only.

    Parameters that do not require gradients (frozen by scArches surgery) are not given to
    the optimizer at all, so neither Adam's moments nor its weight decay touch them.
    """

    def __init__(
        self,
        module: torch.nn.Module,
        n_batch: int = 1,
        n_latent: int | None = None,
        **plan_kwargs: Any,
    ) -> None:
        """``n_batch`` and ``n_latent`` size the batch adversary, if one is asked for."""
        super().__init__()
        unknown = sorted(set(plan_kwargs) - set(PLAN_DEFAULTS))
        if unknown:
            raise ValueError(
                f"unknown plan_kwargs {unknown}; accepted: {sorted(PLAN_DEFAULTS)}."
            )
        if plan_kwargs.get("compile", "auto") not in ("auto", True, False):
            raise ValueError(
                f"plan_kwargs['compile'] must be 'auto', True or False, got "
                f"{plan_kwargs['compile']!r}."
            )
        self.module = module
        self.settings = {**PLAN_DEFAULTS, **plan_kwargs}
        scale = self.settings["scale_adversarial_loss"]
        if scale != "auto" and (isinstance(scale, bool) or not isinstance(scale, int | float)
                                or scale < 0):
            raise ValueError("plan_kwargs['scale_adversarial_loss'] must be 'auto' or a "
                             f"number ≥ 0, got {scale!r}.")
        # One batch leaves nothing to hide.
        self.adversary: BatchAdversary | None = None
        if self.settings["adversarial_classifier"] and n_batch > 1:
            if n_latent is None:
                raise ValueError("the batch adversary needs n_latent.")
            self.adversary = BatchAdversary(n_latent, n_batch)
        self.history_rows: list[dict[str, float]] = []
        self._sums: dict[str, Tensor] = {}
        self.automatic_optimization = False
        # The count-likelihood implementation of this fit, chosen when it starts.
        self.kernel: CountKernel = EAGER
        self._device_copies: dict[int, CellData] = {}

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
        totals = torch.stack([out.elbo.detach().sum(), out.reconstruction.detach().sum(),
                              out.kl.detach().sum()])
        key = f"{prefix}_totals"
        self._sums[key] = totals if key not in self._sums else self._sums[key] + totals
        n_key = f"{prefix}_n"
        self._sums[n_key] = self._sums.get(n_key, 0) + out.elbo.shape[0]

    def _epoch_means(self, prefix: str) -> dict[str, float]:
        n = self._sums.pop(f"{prefix}_n", 0)
        totals = self._sums.pop(f"{prefix}_totals", None)
        if totals is None or not n:
            return {}
        values = totals.double().cpu().tolist()  # the one host sync of the epoch
        return {f"{name}_{prefix}": value / n
                for name, value in zip(("elbo", "reconstruction", "kl"), values, strict=True)}

    @property
    def adversarial_weight(self) -> float:
        """``κ``: the weight of the batch adversary's terms (0 without an adversary)."""
        if self.adversary is None:
            return 0.0
        scale = self.settings["scale_adversarial_loss"]
        return 1.0 - self.kl_weight if scale == "auto" else float(scale)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        optimizers = self.optimizers()
        module_optimizer = optimizers[0] if isinstance(optimizers, list) else optimizers
        out = self.module.loss(batch, kl_weight=self.kl_weight, kernel=self.kernel)
        kappa = self.adversarial_weight
        loss = out.loss
        if kappa > 0:
            if out.latent is None:
                raise ValueError(f"{type(self.module).__name__}.loss returns no latent "
                                 "sample, which the batch adversary needs.")
            batch_codes = batch["categorical"][:, 0]
            loss = loss + kappa * self.adversary.fooling_loss(out.latent, batch_codes)
        module_optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        module_optimizer.step()
        if kappa > 0:
            adversary_optimizer = optimizers[1]
            adversary_optimizer.zero_grad(set_to_none=True)
            self.manual_backward(kappa * self.adversary.classification_loss(
                out.latent.detach(), batch_codes))
            adversary_optimizer.step()
        self._accumulate("train", out)
        return out.loss.detach()

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._accumulate("validation",
                         self.module.loss(batch, kl_weight=1.0, kernel=self.kernel))

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

    def _adam(self, parameters: list[Tensor], lr: float) -> torch.optim.Optimizer:
        # The fused kernel updates every parameter in one pass; it exists for these devices.
        fused = bool(parameters) and all(
            p.device.type in ("cpu", "cuda", "mps", "xpu") and p.dtype.is_floating_point
            for p in parameters
        )
        return torch.optim.Adam(parameters, lr=lr, eps=self.settings["eps"],
                                weight_decay=self.settings["weight_decay"],
                                fused=fused or None)

    def configure_optimizers(self) -> torch.optim.Optimizer | list[torch.optim.Optimizer]:
        trainable = [p for p in self.module.parameters() if p.requires_grad]
        module_optimizer = self._adam(trainable, self.settings["lr"])
        if self.adversary is None:
            return module_optimizer
        # The adversary learns at Adam's usual rate, whatever the module's.
        return [module_optimizer, self._adam(list(self.adversary.parameters()), 1e-3)]

    # where the work happens ---------------------------------------------------------------
    def on_train_start(self) -> None:
        loader = self.trainer.train_dataloader
        self.kernel = COMPILED if self._should_compile(loader) else EAGER
        self._place_loader(loader)

    def _should_compile(self, loader: Any) -> bool:
        if not isinstance(loader, MinibatchLoader) or self.settings["compile"] != "auto":
            # A fixed setting needs no sizes (and a fit without validation data has none).
            return self.settings["compile"] is True
        trainer = self.trainer
        n_batches = trainer.num_training_batches
        train_cells = len(loader.indices)
        if math.isfinite(n_batches):
            train_cells = min(train_cells, int(n_batches) * loader.batch_size)
        val_loop = trainer.fit_loop.epoch_loop.val_loop
        source = getattr(val_loop, "_data_source", None)  # None where Lightning drops it
        if trainer.val_dataloaders is None and (source is None or source.is_defined()):
            # Lightning loads the validation data when the first validation epoch comes
            # (later than this when check_val_every_n_epoch > 1); its size is needed now.
            # A fit without validation cells (train_size=1) has none to load.
            val_loop.setup_data()
        validation = trainer.val_dataloaders
        validation_cells = 0.0
        if isinstance(validation, MinibatchLoader):
            validation_cells = len(validation.indices) / (trainer.check_val_every_n_epoch or 1)
        entries = fit_entries(loader.host_data.counts.shape[1], train_cells, validation_cells,
                              trainer.max_epochs)
        return should_compile(self.settings["compile"], entries)

    def on_validation_start(self) -> None:
        self._place_loader(self.trainer.val_dataloaders)

    def _place_loader(self, loader: Any) -> None:
        """Serve the loader's cells from the training device (a no-op on the CPU)."""
        if not isinstance(loader, MinibatchLoader) or self.device.type == "cpu":
            return
        host = loader.host_data
        if id(host) not in self._device_copies:
            self._device_copies[id(host)] = host.on_device(self.device)
        loader.place_on(self._device_copies[id(host)])

    def on_fit_end(self) -> None:
        for loader in (self.trainer.train_dataloader, self.trainer.val_dataloaders):
            if isinstance(loader, MinibatchLoader):
                loader.place_on(loader.host_data)
        self._device_copies.clear()

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
    early_stopping_min_delta: float = 0.0,
    enable_progress_bar: bool = True,
    limit_train_batches: int | float | None = None,
    **trainer_kwargs: Any,
) -> pl.Trainer:
    """A Lightning trainer without loggers, checkpoints or sanity checks: the plan keeps
    its own history and the model saves itself. Early stopping waits
    ``early_stopping_patience`` epochs for the monitored ELBO (per cell) to rise by more
    than ``early_stopping_min_delta``."""
    if max_epochs < 1:
        raise ValueError(f"max_epochs must be at least 1, got {max_epochs}.")
    callbacks = list(trainer_kwargs.pop("callbacks", []))
    if early_stopping:
        callbacks.append(
            EarlyStopping(
                monitor=early_stopping_monitor,
                mode="max",  # the ELBO: higher is better
                patience=early_stopping_patience,
                min_delta=early_stopping_min_delta,
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


class EpochLog(pl.Callback):
    """Write each ``every``-th epoch's row of the training history (ELBOs, KL weight) to
    ``logger`` (the rule's log), so a long run can be followed with ``tail -f``.

    The training plan appends an epoch's row after the callbacks' epoch-end hooks have
    run, so the row of epoch ``e`` is read when epoch ``e + 1`` starts (or training ends).
    """

    def __init__(self, logger: logging.Logger, every: int) -> None:
        self.logger = logger
        self.every = max(1, every)
        self.n_logged = 0

    def _log_new_rows(self, trainer: pl.Trainer, plan: pl.LightningModule) -> None:
        rows = getattr(plan, "history_rows", [])
        for row in rows[self.n_logged:]:
            epoch = int(row["epoch"]) + 1
            if epoch % self.every == 0 or epoch == trainer.max_epochs:
                values = {k: round(v, 3) for k, v in row.items() if k != "epoch"}
                self.logger.info("epoch %d/%d %s", epoch, trainer.max_epochs, values)
        self.n_logged = len(rows)

    def on_train_epoch_start(self, trainer: pl.Trainer, plan: pl.LightningModule) -> None:
        self._log_new_rows(trainer, plan)

    def on_train_end(self, trainer: pl.Trainer, plan: pl.LightningModule) -> None:
        self._log_new_rows(trainer, plan)
