"""What every model shares: reading a registered AnnData, training, inference passes,
save and load.

A model (the user's API) owns a *module* (a pure ``nn.Module`` with the math) and the
*registry* of the AnnData it was set up on. ``BaseModel`` holds that pair and the few
behaviours that do not depend on the math; a concrete model adds ``setup_anndata``, its
constructor arguments and its queries. There is no deeper hierarchy.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from torch import nn

from scprob.data.loader import Batch, CellData, MinibatchLoader, train_validation_split
from scprob.data.registry import (
    UNS_KEY,
    Registry,
    category_codes,
    check_genes_match,
    check_proteins_match,
    extract_cell_data,
    get_registry,
)
from scprob.models.surgery import restore_query_module
from scprob.train import TrainingPlan, make_trainer

MODEL_FILE = "model.pt"
META_FILE = "model.json"


class BaseModel:
    """A trained or trainable model: ``module`` + ``registry`` + the AnnData it reads."""

    module_class: ClassVar[type[nn.Module]]
    # Constructor arguments that scArches surgery overrides for the query model.
    query_init_params: ClassVar[dict[str, Any]] = {}

    def __init__(self, adata: AnnData, seed: int = 0, **module_kwargs: Any) -> None:
        self.registry: Registry = get_registry(adata, type(self).__name__)
        self.adata = adata
        self.seed = seed
        self.init_params: dict[str, Any] = dict(module_kwargs)
        torch.manual_seed(seed)  # the initial weights depend on the seed only
        self.module = self.build_module(**module_kwargs)
        self.is_trained = False
        self.history = pd.DataFrame()
        self.likelihood_kernel: str | None = None  # the kernel of the last fit
        self.train_indices = np.arange(adata.n_obs)
        self.validation_indices = np.arange(0)
        self._cell_data: CellData | None = None

    def build_module(self, **module_kwargs: Any) -> nn.Module:
        raise NotImplementedError

    @classmethod
    def hyperparameter_names(cls) -> list[str]:
        """The constructor's architecture arguments (everything but the data and seed)."""
        import inspect

        names = list(inspect.signature(cls.__init__).parameters)
        return [n for n in names if n not in ("self", "adata", "seed")]

    # data -------------------------------------------------------------------------------
    def cell_data(self, adata: AnnData | None = None) -> CellData:
        if adata is None or adata is self.adata:
            if self._cell_data is None:
                self._cell_data = extract_cell_data(self.adata, self.registry)
            return self._cell_data
        return extract_cell_data(adata, self.registry)

    def batches(
        self,
        adata: AnnData | None = None,
        indices: np.ndarray | None = None,
        batch_size: int = 1024,
    ) -> Iterator[Batch]:
        """Ordered minibatches on the module's device, for inference."""
        data = self.cell_data(adata)
        indices = np.arange(len(data)) if indices is None else np.asarray(indices)
        device = self.device
        for batch in MinibatchLoader(data, indices, batch_size, shuffle=False):
            yield {k: v.to(device) for k, v in batch.items()}

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    # training ---------------------------------------------------------------------------
    def train(
        self,
        max_epochs: int = 400,
        batch_size: int = 128,
        train_size: float = 0.9,
        early_stopping: bool = False,
        early_stopping_patience: int = 45,
        accelerator: str = "auto",
        devices: int | str = "auto",
        limit_train_batches: int | float | None = None,
        plan_kwargs: dict[str, Any] | None = None,
        seed: int | None = None,
        enable_progress_bar: bool = True,
        **trainer_kwargs: Any,
    ) -> None:
        """Fit the module by maximising the ELBO on ``train_size`` of the cells; the rest
        are held out for validation (and early stopping on their ELBO)."""
        seed = self.seed if seed is None else seed
        torch.manual_seed(seed)  # dropout and the reparametrisation noise
        data = self.cell_data()
        self.train_indices, self.validation_indices = train_validation_split(
            len(data), train_size, seed
        )
        if len(self.train_indices) < 3:
            raise ValueError(
                f"only {len(self.train_indices)} training cells: a model needs at least 3."
            )
        train_loader = MinibatchLoader(data, self.train_indices, batch_size, True, seed)
        validation_loader = (
            MinibatchLoader(data, self.validation_indices, max(batch_size, 1024))
            if len(self.validation_indices) > 0
            else None
        )
        if early_stopping and validation_loader is None:
            raise ValueError(
                "early_stopping monitors the validation ELBO, but train_size=1.0 leaves no "
                "validation cells: use train_size < 1 or early_stopping=False."
            )
        plan = TrainingPlan(self.module, n_batch=self.registry.n_batch,
                            n_latent=self.init_params.get("n_latent"), **(plan_kwargs or {}))
        trainer = make_trainer(
            max_epochs=max_epochs,
            accelerator=accelerator,
            devices=devices,
            early_stopping=early_stopping,
            early_stopping_patience=early_stopping_patience,
            enable_progress_bar=enable_progress_bar,
            limit_train_batches=limit_train_batches,
            **trainer_kwargs,
        )
        # Lightning keeps the module's mode: after a query (eval mode) a second fit, or a
        # query model (built in eval mode), would train without dropout or batch-norm
        # updates. Surgery's frozen batch norms stay in eval mode whatever is asked.
        self.module.train()
        trainer.fit(plan, train_dataloaders=train_loader, val_dataloaders=validation_loader)
        self.module.eval()
        self.history = plan.history
        self.likelihood_kernel = plan.kernel_name
        self.is_trained = True

    # inference helpers ------------------------------------------------------------------
    @torch.inference_mode()
    def _map_batches(
        self,
        fn: Callable[[Batch], torch.Tensor],
        adata: AnnData | None = None,
        indices: np.ndarray | None = None,
        batch_size: int = 1024,
    ) -> np.ndarray:
        self.module.eval()
        parts = [fn(batch).cpu().numpy() for batch in self.batches(adata, indices, batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0,))

    def _default_indices(self, adata: AnnData | None, indices: np.ndarray | None) -> np.ndarray:
        if indices is not None:
            return np.asarray(indices)
        return np.arange((adata if adata is not None else self.adata).n_obs)

    # save / load ------------------------------------------------------------------------
    def save(
        self, dir_path: str | Path, overwrite: bool = False, save_anndata: bool = False
    ) -> None:
        """Write the weights, the registry and the constructor arguments to ``dir_path``.

        The directory is assembled beside its destination and moved into place, so an
        interrupted save never leaves a half-written model.
        """
        dir_path = Path(dir_path)
        if dir_path.exists() and not overwrite:
            raise ValueError(
                f"{dir_path} already exists: pass overwrite=True to replace it."
            )
        dir_path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{dir_path.name}.", dir=dir_path.parent))
        try:
            torch.save({k: v.cpu() for k, v in self.module.state_dict().items()},
                       staging / MODEL_FILE)
            meta = {
                "model_class": type(self).__name__,
                "init_params": self.init_params,
                "seed": self.seed,
                "registry": self.registry.to_dict(),
                "is_trained": self.is_trained,
                "train_indices": self.train_indices.tolist(),
                "validation_indices": self.validation_indices.tolist(),
            }
            (staging / META_FILE).write_text(json.dumps(meta))
            self.history.to_csv(staging / "history.csv", index=False)
            if save_anndata:
                self.adata.write_h5ad(staging / "adata.h5ad")
            if dir_path.exists():
                shutil.rmtree(dir_path)
            os.replace(staging, dir_path)
        finally:
            if staging.exists():
                shutil.rmtree(staging)

    @classmethod
    def load(
        cls, dir_path: str | Path, adata: AnnData | None = None, accelerator: str = "cpu"
    ) -> BaseModel:
        """Rebuild a saved model on ``adata`` (whose genes must be the model's)."""
        dir_path = Path(dir_path)
        meta_file = dir_path / META_FILE
        if not meta_file.exists():
            raise ValueError(f"{dir_path} holds no saved model ({META_FILE} is missing).")
        meta = json.loads(meta_file.read_text())
        if meta["model_class"] != cls.__name__:
            raise ValueError(
                f"{dir_path} holds a {meta['model_class']}, not a {cls.__name__}: load it "
                f"with {meta['model_class']}.load."
            )
        registry = Registry.from_dict(meta["registry"])
        if adata is None:
            if not (dir_path / "adata.h5ad").exists():
                raise ValueError(
                    f"pass the AnnData to load the model on: {dir_path} holds no copy "
                    "(save with save_anndata=True to keep one)."
                )
            import anndata

            adata = anndata.read_h5ad(dir_path / "adata.h5ad")
        transfer_registry(adata, registry)
        model = cls.__new__(cls)
        BaseModel.__init__(model, adata, seed=meta["seed"], **meta["init_params"])
        state = torch.load(dir_path / MODEL_FILE, map_location="cpu", weights_only=True)
        model.prepare_state(state)
        model.module.load_state_dict(state)
        model.module.eval()
        model.is_trained = meta["is_trained"]
        model.train_indices = np.asarray(meta["train_indices"], dtype=np.int64)
        model.validation_indices = np.asarray(meta["validation_indices"], dtype=np.int64)
        history = dir_path / "history.csv"
        if history.exists() and history.stat().st_size > 1:
            model.history = pd.read_csv(history)
        if accelerator not in ("cpu", "auto") or (
            accelerator == "auto" and torch.cuda.is_available()
        ):
            model.module.to("cuda" if accelerator in ("auto", "gpu") else accelerator)
        return model

    def prepare_state(self, state: dict[str, torch.Tensor]) -> None:
        """Grow the module to the shapes in ``state`` (query categories), before loading.

        A query model's registry says how many rows of each category table the reference
        owns; the fresh module is split and frozen the same way (scArches surgery).
        """
        restore_query_module(self.module, self.registry)


def transfer_registry(adata: AnnData, registry: Registry) -> None:
    """Set ``adata`` up with a saved ``registry``: same genes, same category codes."""
    check_genes_match(adata, registry)
    check_proteins_match(adata, registry)
    category_codes(adata, registry)  # raises on unseen categories or missing columns
    adata.uns[UNS_KEY] = registry.to_dict()
