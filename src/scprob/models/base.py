"""The user's API of every model: setup, training, queries, save/load, scArches.

A model is a *module* (a pure ``nn.Module`` with the math: ``inference``, ``generative``,
``loss``; see ``scprob.nn.module``) plus the *registry* of the AnnData it reads. A concrete
model declares three things and writes only what is its own:

* ``module_class``: the module. Its constructor's signature is the single source of the
  model's hyperparameters: what the registered fields do not provide (``n_genes``,
  ``n_categories``…, see ``Field.module_inputs``) the user passes to the model;
* ``setup_anndata``: the list of fields it reads (``register_fields``);
* optionally ``initialise_from_data`` (data-dependent initial values, skipped on load),
  ``after_surgery`` (what a query model needs beyond grown tables) and
  ``query_hyperparameters`` (settings only a reference needs).
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from torch import Tensor, nn

from scprob.data.fields import MODULE_INPUTS, Field
from scprob.data.loader import Batch, CellData, MinibatchLoader, train_validation_split
from scprob.data.registry import UNS_KEY, Registry, get_registry, register_fields
from scprob.nn.surgery import graft_reference, restore_query_module
from scprob.train import TrainingPlan, make_trainer

MODEL_FILE = "model.pt"
META_FILE = "model.json"
HISTORY_FILE = "history.csv"
ADATA_FILE = "adata.h5ad"
MODEL_FILES = (MODEL_FILE, META_FILE, HISTORY_FILE, ADATA_FILE)

ModelT = TypeVar("ModelT", bound="BaseModel")


class BaseModel:
    """A trained or trainable model: ``module`` + ``registry`` + the AnnData it reads."""

    module_class: ClassVar[type[nn.Module]]
    # Hyperparameters a query model overrides: settings that only reference training uses.
    query_hyperparameters: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "module_class" in cls.__dict__:
            # help(Model) and IDEs show the module's hyperparameters as the constructor's.
            parameters = [inspect.Parameter("adata", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                            annotation="AnnData")]
            parameters += [inspect.signature(cls.module_class).parameters[name].replace(
                kind=inspect.Parameter.KEYWORD_ONLY) for name in cls.hyperparameter_names()]
            parameters.append(inspect.Parameter("seed", inspect.Parameter.KEYWORD_ONLY,
                                                default=0, annotation="int"))
            cls.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]

    def __init__(self, adata: AnnData, seed: int = 0, **hyperparameters: Any) -> None:
        registry = get_registry(adata, type(self).__name__)
        self._build(adata, registry, seed, hyperparameters)
        self.initialise_from_data()

    def _build(self, adata: AnnData, registry: Registry, seed: int,
               hyperparameters: dict[str, Any]) -> None:
        names = self.hyperparameter_names()
        unknown = sorted(set(hyperparameters) - set(names))
        if unknown:
            raise ValueError(
                f"{type(self).__name__} got unknown arguments {unknown}; its hyperparameters "
                f"are {names} (and seed)."
            )
        self.adata, self.registry, self.seed = adata, registry, seed
        # Every hyperparameter, defaults included: what save records and surgery edits.
        parameters = inspect.signature(self.module_class).parameters
        self.init_params: dict[str, Any] = {
            name: parameters[name].default for name in names
            if parameters[name].default is not inspect.Parameter.empty}
        self.init_params.update(hyperparameters)
        torch.manual_seed(seed)  # the initial weights depend on the seed only
        inputs = registry.module_inputs()
        self.module = self.module_class(
            **{k: v for k, v in inputs.items() if k in parameters}, **self.init_params)
        self.is_trained = False
        self.history = pd.DataFrame()
        self.likelihood_kernel: str | None = None  # the kernel of the last fit
        self.train_indices = np.arange(adata.n_obs)
        self.validation_indices = np.arange(0)
        self._cell_data: CellData | None = None

    @classmethod
    def hyperparameter_names(cls) -> list[str]:
        """The module's constructor arguments that the data do not determine."""
        return [name for name in inspect.signature(cls.module_class).parameters
                if name not in MODULE_INPUTS]

    @classmethod
    def register_fields(cls, adata: AnnData, fields: Sequence[Field]) -> None:
        """Validate and record ``fields`` of ``adata`` for this model (``setup_anndata``)."""
        register_fields(adata, cls.__name__, fields)

    # hooks ------------------------------------------------------------------------------
    def initialise_from_data(self) -> None:
        """Data-dependent initial values of a new model (none by default; not on load)."""

    def after_surgery(self) -> None:
        """What a query model needs after its tables grew (none by default)."""

    def module_data(self, data: CellData) -> CellData:
        """What the module reads of the registered data (all of it by default; a model that
        reads some genes only selects them here, once per data set)."""
        return data

    # data -------------------------------------------------------------------------------
    def cell_data(self, adata: AnnData | None = None) -> CellData:
        if adata is None or adata is self.adata:
            if self._cell_data is None:
                self._cell_data = self.module_data(self.registry.cell_data(self.adata))
            return self._cell_data
        return self.module_data(self.registry.cell_data(adata))

    def batches(self, adata: AnnData | None = None, indices: np.ndarray | None = None,
                batch_size: int = 1024) -> Iterator[Batch]:
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
        min_steps_per_epoch: int = 1,
        plan_kwargs: dict[str, Any] | None = None,
        seed: int | None = None,
        enable_progress_bar: bool = True,
        **trainer_kwargs: Any,
    ) -> None:
        """Fit the module by maximising the ELBO on ``train_size`` of the cells; the rest
        are held out for validation (and early stopping on their ELBO). An epoch takes at
        least ``min_steps_per_epoch`` minibatches, cycling the training cells of a small
        data set (1,000 cells in minibatches of 1,024 would otherwise be one step); a data
        set smaller than ``batch_size`` steps on as many cells as it has for training."""
        seed = self.seed if seed is None else seed
        torch.manual_seed(seed)  # dropout and the reparametrisation noise
        data = self.cell_data()
        self.train_indices, self.validation_indices = train_validation_split(
            len(data), train_size, seed)
        if len(self.train_indices) < 3:
            raise ValueError(
                f"only {len(self.train_indices)} training cells: a model needs at least 3.")
        # A data set smaller than a minibatch steps on as many cells as it has training
        # cells, not on a minibatch-sized draw of repeats: the step costs what the data hold.
        step_size = min(batch_size, len(self.train_indices))
        repeats = max(1, -(-min_steps_per_epoch * step_size // len(self.train_indices)))
        train_loader = MinibatchLoader(data, np.tile(self.train_indices, repeats), step_size,
                                       True, seed)
        validation_loader = (
            MinibatchLoader(data, self.validation_indices, max(batch_size, 1024))
            if len(self.validation_indices) > 0 else None)
        if early_stopping and validation_loader is None:
            raise ValueError(
                "early_stopping monitors the validation ELBO, but train_size=1.0 leaves no "
                "validation cells: use train_size < 1 or early_stopping=False.")
        plan = TrainingPlan(self.module, n_batch=self.registry.n_batch,
                            n_latent=self.init_params.get("n_latent"), **(plan_kwargs or {}))
        trainer = make_trainer(
            max_epochs=max_epochs, accelerator=accelerator, devices=devices,
            early_stopping=early_stopping, early_stopping_patience=early_stopping_patience,
            enable_progress_bar=enable_progress_bar, limit_train_batches=limit_train_batches,
            **trainer_kwargs)
        # Lightning keeps the module's mode: after a query (eval mode) a second fit, or a
        # query model (built in eval mode), would train without dropout or batch-norm
        # updates. Surgery's frozen batch norms stay in eval mode whatever is asked.
        self.module.train()
        trainer.fit(plan, train_dataloaders=train_loader, val_dataloaders=validation_loader)
        self.module.eval()
        self.history = plan.history
        self.likelihood_kernel = plan.kernel.name
        self.is_trained = True

    # queries ----------------------------------------------------------------------------
    @torch.inference_mode()
    def _map_batches(self, fn: Callable[[Batch], Tensor], adata: AnnData | None = None,
                     indices: np.ndarray | None = None, batch_size: int = 1024) -> np.ndarray:
        if not self.is_trained:
            warnings.warn(f"this {type(self).__name__} has not been trained: its outputs "
                          "come from randomly initialised weights. Call .train() first.",
                          UserWarning, stacklevel=3)
        self.module.eval()
        parts = [fn(batch).cpu().numpy() for batch in self.batches(adata, indices, batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0,))

    def _indices(self, adata: AnnData | None, indices: np.ndarray | None) -> np.ndarray:
        if indices is not None:
            return np.asarray(indices)
        return np.arange((adata if adata is not None else self.adata).n_obs)

    def _frame(self, values: np.ndarray, adata: AnnData | None, indices: np.ndarray | None,
               columns: list[str]) -> pd.DataFrame:
        source = adata if adata is not None else self.adata
        return pd.DataFrame(values, index=source.obs_names[self._indices(adata, indices)],
                            columns=columns)

    def get_latent_representation(
        self, adata: AnnData | None = None, indices: np.ndarray | None = None,
        give_mean: bool = True, batch_size: int = 1024,
    ) -> np.ndarray:
        """Posterior means (or one sample each) of ``z``, ``(n_cells, n_latent)``."""
        key = "qz_mean" if give_mean else "z"
        return self._map_batches(lambda b: self.module.inference(b)[key], adata, indices,
                                 batch_size)

    def _batch_code(self, transform_batch: str | None) -> int | None:
        if transform_batch is None:
            return None
        known = self.registry.batch_categories
        if str(transform_batch) not in known:
            raise ValueError(f"transform_batch {transform_batch!r} is not one of {known}.")
        return known.index(str(transform_batch))

    def _decoded(
        self,
        fn: Callable[[dict[str, Tensor]], Tensor],
        adata: AnnData | None,
        indices: np.ndarray | None,
        transform_batch: str | None,
        n_samples: int,
        batch_size: int,
    ) -> np.ndarray:
        """Average of ``fn(generative output)`` ``(n, k)`` over ``n_samples`` fresh draws of
        ``z`` from each cell's posterior (its mean when ``n_samples == 1``). Each cell is
        encoded with its own batch and decoded as ``transform_batch`` if given."""
        if n_samples < 1:
            raise ValueError(f"n_samples must be at least 1, got {n_samples}.")
        code = self._batch_code(transform_batch)

        def decode(batch: Batch) -> Tensor:
            q = self.module.inference(batch)
            decode_batch = dict(batch)
            if code is not None:
                decode_batch["categorical"] = batch["categorical"].clone()
                decode_batch["categorical"][:, 0] = code
            if n_samples == 1:
                return fn(self.module.generative(decode_batch, q["qz_mean"]))
            scale = q["qz_var"].sqrt()
            total: Tensor | float = 0.0
            for _ in range(n_samples):
                z = q["qz_mean"] + scale * torch.randn_like(scale)
                total = total + fn(self.module.generative(decode_batch, z, sample=True))
            return total / n_samples

        return self._map_batches(decode, adata, indices, batch_size)

    def get_normalized_expression(
        self,
        adata: AnnData | None = None,
        indices: np.ndarray | None = None,
        library_size: float | Literal["latent"] = 1.0,
        transform_batch: str | None = None,
        n_samples: int = 1,
        batch_size: int = 1024,
        return_numpy: bool = False,
    ) -> pd.DataFrame | np.ndarray:
        """Denoised expression ``(n_cells, n_genes)``: the decoder's frequencies ``ρ``
        times ``library_size`` (``"latent"``: each cell's observed library), from the
        posterior mean (``n_samples=1``) or averaged over ``n_samples`` draws of ``z``.
        ``transform_batch`` decodes every cell as if it came from that batch."""
        values = self._decoded(lambda p: _scaled(p, library_size), adata, indices,
                               transform_batch, n_samples, batch_size)
        if return_numpy:
            return values
        return self._frame(values, adata, indices, self.registry.gene_names)

    def _evaluation_indices(self, adata: AnnData | None, indices: np.ndarray | None
                            ) -> np.ndarray:
        if indices is not None or adata is not None:
            return self._indices(adata, indices)
        return self.validation_indices if len(self.validation_indices) else self.train_indices

    def _per_cell(self, quantity: str, adata: AnnData | None, indices: np.ndarray | None,
                  batch_size: int) -> np.ndarray:
        torch.manual_seed(self.seed)  # one-sample estimates, repeatable
        idx = self._evaluation_indices(adata, indices)
        return self._map_batches(lambda b: getattr(self.module.loss(b), quantity), adata, idx,
                                 batch_size)

    def get_elbo(self, adata: AnnData | None = None, indices: np.ndarray | None = None,
                 batch_size: int = 1024) -> float:
        """Mean per-cell ELBO (a one-sample estimate, seeded; higher is better), by default
        on the held-out validation cells."""
        return float(self._per_cell("elbo", adata, indices, batch_size).mean())

    def get_reconstruction_error(
        self, adata: AnnData | None = None, indices: np.ndarray | None = None,
        batch_size: int = 1024,
    ) -> dict[str, float]:
        """Mean per-cell negative log-likelihood ``−log p(data | z)``, by default on the
        validation cells."""
        ll = self._per_cell("reconstruction", adata, indices, batch_size)
        return {"reconstruction_loss": float(-ll.mean())}

    # save / load ------------------------------------------------------------------------
    def save(self, dir_path: str | Path, overwrite: bool = False,
             save_anndata: bool = False) -> None:
        """Write the weights, the registry and the hyperparameters to ``dir_path``.

        The files are written beside their destination and moved into place, so an
        interrupted save never leaves a half-written model. ``overwrite`` replaces a saved
        model's files only: a directory holding anything else is refused.
        """
        dir_path = Path(dir_path)
        _check_save_target(dir_path, overwrite)
        dir_path.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".saving.", dir=dir_path))
        try:
            torch.save({k: v.cpu() for k, v in self.module.state_dict().items()},
                       staging / MODEL_FILE)
            meta = {
                "model_class": type(self).__name__, "init_params": self.init_params,
                "seed": self.seed, "registry": self.registry.to_dict(),
                "is_trained": self.is_trained, "train_indices": self.train_indices.tolist(),
                "validation_indices": self.validation_indices.tolist(),
            }
            (staging / META_FILE).write_text(json.dumps(meta))
            self.history.to_csv(staging / HISTORY_FILE, index=False)
            if save_anndata:
                self.adata.write_h5ad(staging / ADATA_FILE)
            elif (dir_path / ADATA_FILE).exists():
                (dir_path / ADATA_FILE).unlink()  # a stale copy of other data
            # The metadata goes first and comes back last: a directory holds a model only
            # once every file of this save is in place, never old metadata on new weights.
            (dir_path / META_FILE).unlink(missing_ok=True)
            for name in (MODEL_FILE, HISTORY_FILE, ADATA_FILE, META_FILE):
                if (staging / name).exists():
                    os.replace(staging / name, dir_path / name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    @classmethod
    def load(cls: type[ModelT], dir_path: str | Path, adata: AnnData | None = None,
             accelerator: str = "cpu") -> ModelT:
        """Rebuild a saved model on ``adata`` (whose genes must be the model's)."""
        dir_path = Path(dir_path)
        meta = _read_meta(dir_path)
        if meta["model_class"] != cls.__name__:
            raise ValueError(
                f"{dir_path} holds a {meta['model_class']}, not a {cls.__name__}: load it "
                f"with {meta['model_class']}.load.")
        registry = Registry.from_dict(meta["registry"])
        adata = _anndata_for(dir_path, adata)
        # Raises, naming the problem, unless adata reads as the model's data; kept for use.
        cell_data = registry.cell_data(adata)
        adata.uns[UNS_KEY] = registry.to_dict()
        model = cls.__new__(cls)
        model._build(adata, registry, meta["seed"], meta["init_params"])
        model._cell_data = model.module_data(cell_data)
        categorical = registry.categorical
        restore_query_module(model.module, categorical.n_reference_rows,
                             categorical.n_categories)
        model.module.load_state_dict(_read_state(dir_path))
        model.module.eval()
        model.is_trained = meta["is_trained"]
        model.train_indices = np.asarray(meta["train_indices"], dtype=np.int64)
        model.validation_indices = np.asarray(meta["validation_indices"], dtype=np.int64)
        history = dir_path / HISTORY_FILE
        if history.exists() and history.stat().st_size > 1:
            model.history = pd.read_csv(history)
        if accelerator not in ("cpu", "auto") or (
                accelerator == "auto" and torch.cuda.is_available()):
            model.module.to("cuda" if accelerator in ("auto", "gpu") else accelerator)
        return model

    # scArches ---------------------------------------------------------------------------
    @classmethod
    def load_query_data(
        cls: type[ModelT],
        query_adata: AnnData,
        reference_model: ModelT,
        freeze_dropout: bool = True,
        min_gene_overlap: float = 0.5,
    ) -> ModelT:
        """scArches surgery: a query model with the reference's frozen weights and one
        trainable row per new category of any categorical covariate, in every layer that
        reads it (``scprob.nn.surgery``). The query is aligned to the reference's genes (and
        other fields) by name; the query model reads it as ``model.adata``. Train it with
        ``.train()``."""
        if not isinstance(reference_model, cls):
            name = type(reference_model).__name__
            raise ValueError(f"the reference model is a {name}, not a {cls.__name__}: call "
                             f"{name}.load_query_data.")
        reference = reference_model.registry
        aligned = reference.align_query(query_adata, min_gene_overlap)
        registry = reference.extend_for_query(aligned)
        if not registry.is_query:
            raise ValueError(
                "the query adds no new category to any categorical covariate "
                f"({reference.categorical_columns}): the reference model reads it as it is, "
                "and surgery would have nothing to train. Map the query with the reference "
                "model (on reference_model.registry.align_query(query)), or give the "
                "query's batches names of their own.")
        aligned.uns[UNS_KEY] = registry.to_dict()
        hyperparameters = dict(reference_model.init_params)
        if freeze_dropout and "dropout_rate" in hyperparameters:
            # Recorded in init_params, so a saved query model is rebuilt without dropout too.
            hyperparameters["dropout_rate"] = 0.0
        hyperparameters.update({k: v for k, v in cls.query_hyperparameters.items()
                                if k in hyperparameters})
        model = cls.__new__(cls)
        model._build(aligned, registry, reference_model.seed, hyperparameters)
        graft_reference(model.module, reference_model.module,
                        reference.categorical.n_categories, registry.categorical.n_categories)
        model.is_trained = reference_model.is_trained  # new rows start as an average batch
        model.after_surgery()
        return model


def _scaled(p: dict[str, Tensor], library_size: float | Literal["latent"]) -> Tensor:
    return p["mu"] if library_size == "latent" else p["scale"] * library_size


def _check_save_target(dir_path: Path, overwrite: bool) -> None:
    if dir_path.exists() and not dir_path.is_dir():
        raise ValueError(f"{dir_path} is a file: a model is saved as a directory; choose "
                         "another path.")
    if not dir_path.exists() or not any(dir_path.iterdir()):
        return
    if not overwrite:
        raise ValueError(f"{dir_path} already exists: pass overwrite=True to replace it.")
    others = sorted(p.name for p in dir_path.iterdir()
                    if p.name not in MODEL_FILES and not p.name.startswith(".saving."))
    if others:
        raise ValueError(
            f"{dir_path} holds files that are not a saved model's ({others[:5]}): "
            "overwrite=True replaces a saved model only; choose an empty or new directory.")


def _damaged(path: Path, error: Exception) -> ValueError:
    return ValueError(
        f"the saved model in {path.parent} is damaged: {path.name} cannot be read "
        f"({type(error).__name__}: {error or 'empty file'}). Save the model again.")


def _read_meta(dir_path: Path) -> dict[str, Any]:
    meta_file = dir_path / META_FILE
    if not meta_file.exists():
        raise ValueError(f"{dir_path} holds no saved model ({META_FILE} is missing).")
    try:
        meta = json.loads(meta_file.read_text())
        if not isinstance(meta, dict) or "model_class" not in meta:
            raise ValueError("no model_class")
    except (ValueError, UnicodeDecodeError) as error:
        raise _damaged(meta_file, error) from error
    return meta


def _read_state(dir_path: Path) -> dict[str, Tensor]:
    path = dir_path / MODEL_FILE
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, EOFError, RuntimeError, ValueError) as error:
        raise _damaged(path, error) from error


def _anndata_for(dir_path: Path, adata: AnnData | None) -> AnnData:
    if adata is not None:
        return adata
    if not (dir_path / ADATA_FILE).exists():
        raise ValueError(
            f"pass the AnnData to load the model on: {dir_path} holds no copy (save with "
            "save_anndata=True to keep one).")
    import anndata

    return anndata.read_h5ad(dir_path / ADATA_FILE)
