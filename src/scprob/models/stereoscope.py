"""Stereoscope (Andersson et al. 2020): cell-type proportions of spatial spots from a
single-cell reference, in two maximum-likelihood fits.

**1. Signatures** (:class:`RNAStereoscope`), from cells ``c`` with counts ``x_cg``, type
``t_c`` and library ``l_c = Σ_g x_cg``::

    x_cg ~ NB(total_count = l_c r_g,t_c,  logits = o_g)       mean l_c μ_g,t_c
    μ_gt = softplus(w_gt)        expression of gene g in type t per unit library, (G, K)
    r_gt = μ_gt exp(−o_g)        the NB's number of failures; o_g its gene-wise log-odds

Because a type's variance is ``mean · (1 + exp(o_g))`` with a logit shared by all types,
a sum of cells of different types is again NB with the same logit and the summed
``total_count``: what makes the spots' model below exact.

**2. Proportions** (:class:`SpatialStereoscope`), for spots ``s`` with counts ``y_sg``, the
signatures fixed::

    y_sg ~ NB(total_count = Σ_t β_g r_gt v_ts + ε_g v_s,noise,  logits = o_g)
    β_g = softplus(b_g)          gene-specific technical factor between the platforms
    ε_g = softplus(η_g),  η_g ~ N(0, 1)     the "noise" dummy type's profile
    proportions_s = v_s / Σ_z v_zs         (over the K types and the noise type)

as in the original. What is ours is how the abundances ``v`` ``(S, K + 1)`` are
parametrised and started (``docs/stereoscope.md`` has the measurements):

* ``v_s = exp(a_s) · softmax(ℓ_s)``: a per-spot scale ``a_s`` (log library units) and
  per-spot logits. A spot's depth and its composition are separate coordinates, so a
  step of Adam changes a proportion by the same relative amount whatever the spot's depth
  (unnormalised softplus abundances must travel thousands of units at a fixed step size);
* ``v`` and ``β`` start at the Poisson maximum-likelihood solution of the same mean model
  (multiplicative updates), ``β`` near 1, the noise type at a
  small share, its profile at the types' average;
* full-batch Adam (all spots each step) at ``lr = 0.05``: the per-spot parameters are
  updated every step instead of once per epoch's minibatch.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from anndata import AnnData
from torch import Tensor, nn

from scprob.data.fields import CategoricalField, CountsField, IndexField, LabelsField
from scprob.data.loader import Batch
from scprob.data.registry import get_registry
from scprob.models.base import BaseModel
from scprob.nn.count_kernel import EAGER, CountKernel, summed_count_log_likelihood
from scprob.nn.module import LossOutput, cell_log_factorial

NOISE = "noise"
_SOFTPLUS_OF_ONE = math.log(math.e - 1.0)  # softplus(b) = 1


def _inverse_softplus(y: Tensor) -> Tensor:
    return y + torch.log(-torch.expm1(-y))


def _nb_log_likelihood(x: Tensor, total_count: Tensor, logits: Tensor,
                       kernel: CountKernel | None) -> Tensor:
    """``log NB(x | total_count, logits)`` without ``log x!``, summed per row ``(n,)``: the
    shared count kernel, at mean ``total_count · e^logits`` and inverse dispersion
    ``total_count`` (one per matrix entry)."""
    return summed_count_log_likelihood(x, total_count * logits.exp(), total_count,
                                       kernel=kernel or EAGER)


def _loss_output(loss: Tensor, ll: Tensor, batch: Batch) -> LossOutput:
    """No latent variables: the ELBO is the log-likelihood (``log x!`` added back)."""
    reconstruction = ll.detach() - cell_log_factorial(batch)
    return LossOutput(loss, reconstruction, reconstruction, torch.zeros_like(reconstruction))


# ------------------------------------------------------------------ 1. the signatures


class RNADeconv(nn.Module):
    """Per-type NB signatures: means ``μ`` ``(n_genes, n_labels)`` per unit library and
    gene-wise log-odds ``o`` ``(n_genes,)``; no latent variables."""

    def __init__(self, n_genes: int, n_labels: int) -> None:
        super().__init__()
        self.mean_raw = nn.Parameter(torch.zeros(n_genes, n_labels))  # softplus → μ
        self.logits = nn.Parameter(torch.zeros(n_genes))  # o

    @property
    def means(self) -> Tensor:
        return F.softplus(self.mean_raw)

    def loss(self, batch: Batch, kl_weight: float = 1.0,
             kernel: CountKernel | None = None) -> LossOutput:
        x = batch["x"]
        mean = x.sum(1, keepdim=True) * self.means.T[batch["labels"]]  # (n, n_genes)
        ll = _nb_log_likelihood(x, mean * torch.exp(-self.logits), self.logits, kernel)
        return _loss_output(-ll.mean(), ll, batch)


class RNAStereoscope(BaseModel):
    """Stereoscope's single-cell step: an NB signature per cell type.

    >>> RNAStereoscope.setup_anndata(sc_adata, labels_key="cell_type")
    >>> sc_model = RNAStereoscope(sc_adata)
    >>> sc_model.train()
    >>> sc_model.get_signatures()  # genes × types
    """

    module_class = RNADeconv

    @classmethod
    def setup_anndata(cls, adata: AnnData, labels_key: str, layer: str | None = None,
                      min_cells_per_type: int = 3) -> None:
        """Register the counts and the cell types; every type needs at least
        ``min_cells_per_type`` cells (below 3, a type's signature is the sampling noise of
        one or two cells)."""
        # Checked first, so that refused data are left unregistered (a missing column is
        # the fields' error, which names it).
        sizes = (adata.obs[labels_key].astype(str).value_counts()
                 if labels_key in adata.obs else pd.Series(dtype=int))
        small = sizes[sizes < min_cells_per_type]
        if len(small):
            listed = ", ".join(f"{name!r} ({n} cells)" for name, n in small.items())
            raise ValueError(
                f"cell types of obs[{labels_key!r}] with fewer than min_cells_per_type="
                f"{min_cells_per_type} cells: {listed}. Their signatures would be a few "
                "cells' noise: drop or merge those types, or lower min_cells_per_type.")
        cls.register_fields(adata, [CountsField(layer), CategoricalField(),
                                    LabelsField(labels_key)])

    def initialise_from_data(self) -> None:
        """Start ``μ`` at each type's pooled expression per unit library (its maximum-
        likelihood value under a Poisson model), so training only refines it."""
        data = self.cell_data()
        x, labels = data.counts, data.values["labels"].numpy()
        n_labels = self.module.mean_raw.shape[1]
        onehot = np.zeros((len(labels), n_labels), dtype=np.float32)
        onehot[np.arange(len(labels)), labels] = 1.0
        summed = np.asarray((x.T @ onehot) if not isinstance(x, Tensor)
                            else x.numpy().T @ onehot)  # (n_genes, n_labels)
        pooled = torch.as_tensor(summed / np.maximum(summed.sum(0), 1.0))
        with torch.no_grad():
            self.module.mean_raw.copy_(_inverse_softplus(pooled.clamp_min(1e-8)))

    def train(self, max_epochs: int = 100, lr: float = 0.01, batch_size: int = 1024,
              train_size: float = 1.0, **kwargs: Any) -> None:
        """Maximum likelihood on minibatches of cells (Adam). Defaults: see
        ``docs/stereoscope.md``."""
        _train(self, max_epochs, lr, batch_size, train_size, kwargs)

    @property
    def cell_types(self) -> list[str]:
        return list(self.registry.fields["labels"].categories)  # type: ignore[attr-defined]

    def get_signatures(self) -> pd.DataFrame:
        """Each type's mean expression per unit library ``μ``, genes × types."""
        return pd.DataFrame(self.module.means.detach().cpu().numpy(),
                            index=self.registry.gene_names, columns=self.cell_types)


def _train(model: BaseModel, max_epochs: int, lr: float, batch_size: int, train_size: float,
           kwargs: dict[str, Any]) -> None:
    """The base training loop with plain Adam: no KL warm-up (nothing latent), no weight
    decay (it would shrink the signatures), a small ``eps`` so that the weak gradients of
    rare types and single spots are not damped, and the eager count kernel (fits this
    short never repay a compilation)."""
    plan = {"lr": lr, "weight_decay": 0.0, "eps": 1e-8, "n_epochs_kl_warmup": None,
            "compile": False,
            **kwargs.pop("plan_kwargs", {})}
    BaseModel.train(model, max_epochs=max_epochs, batch_size=batch_size,
                    train_size=train_size, plan_kwargs=plan, **kwargs)


# ----------------------------------------------------------------- 2. the proportions


class SpatialDeconv(nn.Module):
    """Spots as NB mixtures of fixed signatures (module docstring). Buffers from the RNA
    model: ``signatures`` ``μ`` ``(n_genes, K)`` and ``logits`` ``o`` ``(n_genes,)``;
    parameters: ``b`` and ``η`` ``(n_genes,)``, per-spot ``scale`` ``(n_obs,)`` and
    ``type_logits`` ``(n_obs, K + 1)``, the noise type last."""

    def __init__(self, n_genes: int, n_obs: int, cell_types: Sequence[str] = ()) -> None:
        super().__init__()
        n_types = len(cell_types)
        self.register_buffer("signatures", torch.zeros(n_genes, n_types))
        self.register_buffer("logits", torch.zeros(n_genes))
        self.gene_factor_raw = nn.Parameter(torch.full((n_genes,), _SOFTPLUS_OF_ONE))  # b
        self.noise_raw = nn.Parameter(torch.zeros(n_genes))  # η
        self.scale = nn.Parameter(torch.zeros(n_obs))  # a
        self.type_logits = nn.Parameter(torch.zeros(n_obs, n_types + 1))  # ℓ
        self.n_obs = n_obs

    def rates(self) -> Tensor:
        """``[β_g r_gt, ε_g]``: each type's (and the noise's) total count per unit
        abundance, ``(n_genes, K + 1)``."""
        r = self.signatures * torch.exp(-self.logits)[:, None]
        beta = F.softplus(self.gene_factor_raw)[:, None]
        return torch.cat([beta * r, F.softplus(self.noise_raw)[:, None]], dim=1)

    def proportions(self, index: Tensor) -> Tensor:
        return torch.softmax(self.type_logits[index], dim=-1)

    def loss(self, batch: Batch, kl_weight: float = 1.0,
             kernel: CountKernel | None = None) -> LossOutput:
        index = batch["index"]
        abundance = self.scale[index].exp()[:, None] * self.proportions(index)  # v, (n, K+1)
        total_count = abundance @ self.rates().T  # (n, n_genes)
        ll = _nb_log_likelihood(batch["x"], total_count, self.logits, kernel)
        # The noise prior counts once per data set: 1/n_obs of it per spot's mean loss.
        prior = 0.5 * self.noise_raw.pow(2).sum() / self.n_obs
        return _loss_output(-ll.mean() + prior, ll, batch)


class SpatialStereoscope(BaseModel):
    """Stereoscope's spatial step: per-spot proportions of the RNA model's cell types.

    >>> SpatialStereoscope.setup_anndata(st_adata)
    >>> model = SpatialStereoscope.from_rna_model(st_adata, sc_model)
    >>> model.train()
    >>> st_adata.obsm["proportions"] = model.get_proportions()  # (when no spot is empty)
    """

    module_class = SpatialDeconv

    @classmethod
    def setup_anndata(cls, adata: AnnData, layer: str | None = None) -> None:
        """Register the spots' counts (and their row numbers: the per-spot parameters)."""
        cls.register_fields(adata, [CountsField(layer), CategoricalField(), IndexField()])

    @classmethod
    def from_rna_model(cls, st_adata: AnnData, rna_model: RNAStereoscope,
                       min_gene_overlap: int = 50, seed: int = 0) -> SpatialStereoscope:
        """A spatial model on the genes shared with ``rna_model`` (in the signatures'
        order; at least ``min_gene_overlap`` of them). Spots without counts over those genes
        carry no information about their composition: they are left out (with a warning),
        so ``model.adata`` and ``get_proportions`` hold the other spots."""
        if not isinstance(rna_model, RNAStereoscope):
            raise ValueError(f"rna_model is a {type(rna_model).__name__}, not an "
                             "RNAStereoscope: train the signatures with RNAStereoscope first.")
        layer = get_registry(st_adata, cls.__name__).layer
        genes = set(map(str, st_adata.var_names))
        shared = [g for g in rna_model.registry.gene_names if g in genes]
        n_sc, n_st = len(rna_model.registry.gene_names), st_adata.n_vars
        if len(shared) < min_gene_overlap:
            raise ValueError(
                f"the spatial data ({n_st} genes) and the RNA model ({n_sc} genes) share "
                f"{len(shared)} genes, fewer than min_gene_overlap={min_gene_overlap}: check "
                "that both name genes the same way (symbols vs Ensembl IDs, case), or lower "
                "min_gene_overlap.")
        aligned = st_adata[:, shared]
        x = aligned.X if layer is None else aligned.layers[layer]
        empty = np.asarray(x.sum(1)).ravel() == 0
        if empty.any():
            warnings.warn(f"{int(empty.sum())} of {len(empty)} spots have no counts over the "
                          f"{len(shared)} shared genes; they are left out of the fit and of "
                          "get_proportions.", UserWarning, stacklevel=2)
        aligned = aligned[~empty].copy()
        cls.setup_anndata(aligned, layer)
        model = cls.__new__(cls)
        model._build(aligned, get_registry(aligned, cls.__name__), seed,
                     {"cell_types": rna_model.cell_types})
        rows = pd.Index(rna_model.registry.gene_names).get_indexer(shared)
        with torch.no_grad():
            model.module.signatures.copy_(rna_model.module.means.detach().cpu()[rows])
            model.module.logits.copy_(rna_model.module.logits.detach().cpu()[rows])
        model.initialise_from_data()
        return model

    def initialise_from_data(self, n_outer: int = 5, n_inner: int = 40,
                             noise_share: float = 0.01) -> None:
        """Start ``v`` and ``β`` at the Poisson maximum likelihood of the mean model
        ``E y_s = β ⊙ (μ v_s)`` (types only): multiplicative updates of ``v`` (Lee & Seung's
        for the KL divergence) alternating with the closed-form ``β``. The noise type starts
        at ``noise_share`` of each spot, with the types' average profile."""
        data = self.cell_data()
        counts = data.counts
        y = torch.as_tensor(counts.toarray() if hasattr(counts, "toarray") else counts)
        mu = self.module.signatures  # (G, K)
        library = y.sum(1, keepdim=True)  # (S, 1)
        v = library / mu.shape[1] / mu.sum(0).clamp_min(1e-12)  # (S, K), uniform start
        beta = torch.ones(mu.shape[0])
        for _ in range(n_outer):
            profile = beta[:, None] * mu  # (G, K)
            for _ in range(n_inner):
                ratio = y / (v @ profile.T).clamp_min(1e-12)
                v = v * (ratio @ profile) / profile.sum(0).clamp_min(1e-12)
            beta = y.sum(0) / (v @ mu.T).sum(0).clamp_min(1e-12)
        beta = beta / beta[beta > 0].log().mean().exp()  # β and v trade a common factor
        v = v * beta[beta > 0].log().mean().exp()
        total = v.sum(1, keepdim=True)
        shares = torch.cat([v / total * (1 - noise_share),
                            torch.full_like(total, noise_share)], dim=1)
        m = self.module
        with torch.no_grad():
            m.gene_factor_raw.copy_(_inverse_softplus(beta.clamp_min(1e-4)))
            m.noise_raw.copy_(_inverse_softplus(
                (mu.mean(1) * torch.exp(-m.logits)).clamp_min(1e-8)))
            m.scale.copy_(torch.log(total[:, 0].clamp_min(1e-8)))
            m.type_logits.copy_(torch.log(shares.clamp_min(1e-4)))

    def train(self, max_epochs: int = 1000, lr: float = 0.05, batch_size: int | None = None,
              **kwargs: Any) -> None:
        """Maximum likelihood of the proportions, ``β`` and ``ε`` (Adam), on all spots
        (``batch_size=None``: full batch, one step per epoch). Defaults: see
        ``docs/stereoscope.md``."""
        _train(self, max_epochs, lr, batch_size or self.adata.n_obs, 1.0, kwargs)

    @property
    def cell_types(self) -> list[str]:
        return list(self.init_params["cell_types"])

    def get_proportions(self, keep_noise: bool = False) -> pd.DataFrame:
        """Each spot's cell-type proportions, spots × types, rows summing to 1; with
        ``keep_noise`` the noise type is a last column, else it is dropped and the rest
        renormalised."""
        shares = self._map_batches(lambda b: self.module.proportions(b["index"]))
        columns = [*self.cell_types, NOISE]
        if not keep_noise:
            shares, columns = shares[:, :-1] / shares[:, :-1].sum(1, keepdims=True), columns[:-1]
        return pd.DataFrame(shares, index=self.adata.obs_names, columns=columns)

    def get_gene_factors(self) -> pd.Series:
        """``β``, the gene-specific technical factor between the platforms, per gene."""
        beta = F.softplus(self.module.gene_factor_raw).detach().cpu().numpy()
        return pd.Series(beta, index=self.registry.gene_names, name="gene_factor")
