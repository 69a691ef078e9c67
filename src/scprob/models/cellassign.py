"""CellAssign (Zhang et al. 2019): marker-based cell-type annotation by EM on a negative-
binomial mixture, with the minibatch M step of scvi-tools (paper, Supp. Note).

Inputs: counts ``x`` ``(N, G)`` of the ``G`` marker genes, a binary marker matrix ``ρ``
``(G, C)``, size factors ``s`` ``(N,)`` and an optional design ``D`` ``(N, P)``
(batch and categorical covariates one-hot without their first level, continuous ones as
they are). Cell ``n`` of type ``c``::

    x_ng | z_n = c ~ NB(μ_ngc, φ_ngc),    z_n ~ Cat(π),    π ~ Dirichlet(0.01)
    log μ_ngc = β0_g + δ_gc ρ_gc + log s_n + (D β)_ng
    δ_gc = max(exp(log δ_gc), 2),         log δ_gc ~ N(δ̄, σ²)
    φ_ngc = Σ_b a_b exp(−b_rbf (μ_ngc − v_b)²)

``v`` ``(B = 10,)`` evenly spaced over the range of the counts, ``b_rbf = 1 / (2 (v_2 −
v_1)²)``. **E step**: ``γ_nc ∝ π_c Π_g NB(x_ng | μ_ngc, φ_ngc)`` in closed form. **M step**:
Adam on minibatches of ``M`` cells of ``−[(N/M) Σ_batch Σ_c γ_nc (log π_c + log p(x_n |
c)) + log p(π) + log p(δ)]`` (divided by ``N``, which Adam does not see).

Initialisation, where ours departs from the published port (whose start merges types
on small data sets; docs/cellassign.md has the ablation that traces the collapse to it):

* ``β0`` starts at each marker's log mean expression per unit size factor in the cells
  that express it least (the lower half), so ``β0`` is the off-type level;
* ``log δ`` starts near ``log 2.5`` (plus a tenth of a standard normal draw), so every
  type starts with its markers over-expressed, none at the clamp;
* an epoch is at least ``min_steps_per_epoch`` steps (the training cells are cycled), so
  early stopping judges a small data set after as many updates as a large one.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from anndata import AnnData
from torch import Tensor, nn

from scprob.data.fields import CategoricalField, ContinuousField, CountsField, SizeFactorField
from scprob.data.loader import Batch, CellData, train_validation_split
from scprob.models.base import BaseModel
from scprob.nn.distributions import log_nb
from scprob.nn.module import LossOutput

MIN_DELTA = 2.0
DIRICHLET_ALPHA = 0.01
N_BASIS = 10


class RadialBasis(torch.autograd.Function):
    """``φ = Σ_b a_b e_b`` with ``e_b = exp(−w (μ − v_b)²)``, and its gradients from the
    saved ``e`` ``(..., B)``: ``∂φ/∂μ = −2w (μ φ − Σ_b a_b v_b e_b)``, ``∂φ/∂a_b = e_b``.
    Autograd through the expression would keep and revisit five ``(..., B)`` temporaries;
    this is the step's largest tensor, so a step costs about a third less."""

    @staticmethod
    def forward(ctx: Any, mu: Tensor, a: Tensor, centres: Tensor, width: float) -> Tensor:
        e = torch.exp(-width * (mu[..., None] - centres) ** 2)
        phi = e @ a
        ctx.save_for_backward(mu, a, centres, e, phi)
        ctx.width = width
        return phi

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, None, None]:
        mu, a, centres, e, phi = ctx.saved_tensors
        grad_mu = grad * (-2.0 * ctx.width) * (mu * phi - e @ (a * centres))
        grad_a = grad.reshape(-1) @ e.reshape(-1, e.shape[-1])
        return grad_mu, grad_a, None, None


class CellAssignModule(nn.Module):
    """The NB mixture on the marker genes' counts ``(n, G)``. Buffers: ``marker_index``
    ``(G,)`` (the markers' columns in the registered counts), ``rho`` ``(G, C)``, basis
    centres ``(B,)``; parameters as the module docstring, ``log δ`` ``(G, C)``, ``β0``
    ``(G,)``, ``β`` ``(G, P)``."""

    def __init__(self, n_genes: int, marker_index: list[int] = (), rho: list[list[int]] = (),
                 cell_types: list[str] = (), n_categories: list[int] = (),
                 n_continuous: int = 0) -> None:
        super().__init__()
        n_markers, n_types = len(marker_index), len(cell_types)
        self.register_buffer("marker_index", torch.as_tensor(list(marker_index), dtype=torch.long))
        self.register_buffer("rho", torch.as_tensor(np.asarray(rho, dtype=np.float32)
                                                    ).reshape(n_markers, n_types))
        self.register_buffer("basis_centres", torch.linspace(0.0, 1.0, N_BASIS))
        self.register_buffer("n_train", torch.tensor(1.0))
        self.n_categories = list(n_categories)
        n_design = sum(k - 1 for k in self.n_categories) + n_continuous
        self.log_delta = nn.Parameter(torch.randn(n_markers, n_types))  # LogNormal(0, 1)
        self.delta_log_mean = nn.Parameter(torch.zeros(()))  # δ̄
        self.delta_log_log_var = nn.Parameter(torch.zeros(()))  # log σ²
        self.beta0 = nn.Parameter(torch.randn(n_markers))
        self.beta = nn.Parameter(torch.randn(n_markers, n_design))
        self.type_logits = nn.Parameter(torch.zeros(n_types))  # π = softmax, 1/C at start
        self.log_a = nn.Parameter(torch.zeros(N_BASIS))

    @property
    def delta(self) -> Tensor:
        return self.log_delta.exp().clamp_min(MIN_DELTA)

    def design(self, batch: Batch) -> Tensor:
        """``D`` ``(n, P)``: one-hot codes without the first level, then continuous."""
        parts = [F.one_hot(batch["categorical"][:, i], k)[:, 1:].float()
                 for i, k in enumerate(self.n_categories)]
        if "continuous" in batch:
            parts.append(batch["continuous"])
        n = batch["x"].shape[0]
        return torch.cat(parts, dim=1) if parts else batch["x"].new_zeros(n, 0)

    def dispersion(self, mu: Tensor) -> Tensor:
        """``φ(μ) = Σ_b a_b exp(−b_rbf (μ − v_b)²)``, elementwise."""
        centres = self.basis_centres
        width = float(1.0 / (2.0 * (centres[1] - centres[0]) ** 2))
        return RadialBasis.apply(mu, self.log_a.exp(), centres, width)

    def log_likelihoods(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """``log p(x_n | z_n = c)`` ``(n, C)`` (without ``Σ_g log x_ng!``) and ``log π_c +
        log p(x_n | c)`` ``(n, C)``.

        Off its types a gene's mean is the same for every type (``δ ρ = 0``), so its
        likelihood is computed once per cell, ``(n, G)``, and once more for each marker
        entry ``(g, c)`` with ``ρ_gc = 1``, ``(n, K)``: ``G + K`` terms instead of
        ``G C``."""
        x = batch["x"]  # (n, G): the model serves the marker columns only
        gene, cell_type = self.rho.nonzero(as_tuple=True)  # the K marker entries
        offset = self.beta0 + batch["size_factor"].log()[:, None] + self.design(batch) @ self.beta.T
        log_mu = torch.cat([offset, offset[:, gene] + self.delta[gene, cell_type]], dim=1)
        mu = log_mu.exp()  # (n, G + K)
        counts = torch.cat([x, x[:, gene]], dim=1)
        ll = log_nb(counts, mu, self.dispersion(mu) + 1e-8, include_constant=False)
        off_type, on_type = ll[:, : x.shape[1]], ll[:, x.shape[1]:]
        entry_to_type = F.one_hot(cell_type, self.rho.shape[1]).to(ll.dtype)  # (K, C)
        per_type = off_type.sum(1, keepdim=True) + (on_type - off_type[:, gene]) @ entry_to_type
        return per_type, per_type + torch.log_softmax(self.type_logits, 0)

    def log_prior(self) -> Tensor:
        """``log p(π) + log p(log δ)`` on the marker entries (constants dropped)."""
        log_pi = torch.log_softmax(self.type_logits, 0)
        var = self.delta_log_log_var.exp()
        z = self.log_delta[self.rho > 0] - self.delta_log_mean
        log_delta = -0.5 * (z.pow(2) / var + self.delta_log_log_var).sum()
        return (DIRICHLET_ALPHA - 1.0) * log_pi.sum() + log_delta

    def responsibilities(self, batch: Batch) -> Tensor:
        """E step: ``γ`` ``(n, C)``."""
        return torch.softmax(self.log_likelihoods(batch)[1], dim=1)

    def loss(self, batch: Batch, kl_weight: float = 1.0, kernel: Any = None) -> LossOutput:
        _, joint = self.log_likelihoods(batch)
        gamma = torch.softmax(joint, dim=1).detach()  # E step, fixed for the M step
        expected = (gamma * joint).sum(1)  # (n,)
        # (N/M) Σ_batch + prior, divided by N: the prior counts once per data set.
        loss = -(expected.mean() + self.log_prior() / self.n_train)
        # log p(x_n), the held-out score
        marginal = torch.logsumexp(joint.detach(), dim=1) - batch["log_factorial"]
        return LossOutput(loss, marginal, marginal, torch.zeros_like(marginal))


def check_marker_matrix(marker_gene_mat: pd.DataFrame, gene_names: list[str]) -> None:
    """Raise a ValueError naming the problem of a marker matrix for these genes."""
    genes = [str(g) for g in marker_gene_mat.index]
    duplicated = sorted({g for g in genes if genes.count(g) > 1})
    if duplicated:
        raise ValueError(f"marker_gene_mat has duplicated genes: {duplicated}.")
    values = marker_gene_mat.to_numpy()
    if not np.isin(values, (0, 1)).all():
        raise ValueError("marker_gene_mat must be binary (0/1 or booleans).")
    empty = [str(c) for c in marker_gene_mat.columns[values.sum(0) == 0]]
    if empty:
        raise ValueError(f"cell types without any marker gene: {empty}.")
    missing = sorted(set(genes) - set(gene_names))
    if missing:
        raise ValueError(f"marker genes missing from the data: {missing}.")


class CellAssign(BaseModel):
    """Marker-based annotation.

    >>> CellAssign.setup_anndata(adata)
    >>> model = CellAssign(adata, marker_gene_mat)  # genes × types, binary
    >>> model.train()
    >>> probabilities = model.predict()  # cells × types
    """

    module_class = CellAssignModule

    def __init__(self, adata: AnnData, marker_gene_mat: pd.DataFrame, seed: int = 0) -> None:
        from scprob.data.registry import get_registry

        genes = get_registry(adata, type(self).__name__).gene_names
        check_marker_matrix(marker_gene_mat, genes)
        super().__init__(
            adata, seed=seed,
            marker_index=pd.Index(genes).get_indexer(marker_gene_mat.index.astype(str)).tolist(),
            rho=marker_gene_mat.to_numpy(dtype=int).tolist(),
            cell_types=[str(c) for c in marker_gene_mat.columns])

    @classmethod
    def setup_anndata(cls, adata: AnnData, size_factor_key: str | None = None,
                      batch_key: str | None = None,
                      categorical_covariate_keys: list[str] | None = None,
                      continuous_covariate_keys: list[str] | None = None,
                      layer: str | None = None) -> None:
        """Register the counts (all genes: the size factor reads them), the size factor
        (``obs[size_factor_key]``, else each cell's total count over the mean total) and
        the design's covariates."""
        cls.register_fields(adata, [
            CountsField(layer), SizeFactorField(size_factor_key),
            CategoricalField(batch_key, categorical_covariate_keys or []),
            ContinuousField(continuous_covariate_keys or [])])

    def module_data(self, data: CellData) -> CellData:
        """The marker genes' columns only, in the marker matrix's order."""
        return data.select_genes(self.module.marker_index.cpu().numpy())

    @property
    def cell_types(self) -> list[str]:
        return list(self.init_params["cell_types"])

    def initialise_from_data(self) -> None:
        """``β0`` from the lower half of each marker's normalised expression, the basis
        centres over the counts' range, ``log δ`` near ``log 2.5`` (module docstring)."""
        data = self.cell_data()
        x = data.counts.toarray() if data.is_sparse else data.counts.numpy()
        normalised = x / data.values["size_factor"].numpy()[:, None]
        low = np.sort(normalised, axis=0)[: max(len(x) // 2, 1)].mean(0)
        m = self.module
        with torch.no_grad():
            m.basis_centres.copy_(torch.linspace(float(x.min()), float(x.max()), N_BASIS))
            m.beta0.copy_(torch.as_tensor(np.log(low + 0.1), dtype=torch.float32))
            m.beta.zero_()
            m.log_delta.copy_(math.log(2.5) + 0.1 * m.log_delta)

    def train(self, max_epochs: int = 400, batch_size: int = 1024, lr: float = 1e-2,
              early_stopping: bool = True, train_size: float = 0.9,
              early_stopping_patience: int = 10, early_stopping_min_delta: float = 1e-3,
              min_steps_per_epoch: int = 10, seed: int | None = None,
              **trainer_kwargs: Any) -> None:
        """Minibatch EM (Adam on the M step). Stops once the held-out log-likelihood per
        cell has not risen by ``early_stopping_min_delta`` nats for
        ``early_stopping_patience`` epochs; an epoch takes at least
        ``min_steps_per_epoch`` minibatches (see the module docstring)."""
        seed = self.seed if seed is None else seed
        n_train = len(train_validation_split(self.adata.n_obs, train_size, seed)[0])
        self.module.n_train.fill_(float(n_train))  # the E step's N / M rescaling
        plan = {"lr": lr, "weight_decay": 0.0, "eps": 1e-8, "n_epochs_kl_warmup": None,
                "compile": False}
        super().train(max_epochs=max_epochs, batch_size=batch_size, train_size=train_size,
                      early_stopping=early_stopping,
                      early_stopping_patience=early_stopping_patience,
                      early_stopping_min_delta=early_stopping_min_delta,
                      min_steps_per_epoch=min_steps_per_epoch, plan_kwargs=plan, seed=seed,
                      **{"enable_progress_bar": False, **trainer_kwargs})
        self.likelihood_kernel = None

    def predict(self, adata: AnnData | None = None) -> pd.DataFrame:
        """Each cell's type probabilities ``γ``, cells × types, rows summing to 1."""
        gamma = self._map_batches(self.module.responsibilities, adata)
        return self._frame(gamma, adata, None, self.cell_types)

    def get_delta(self) -> pd.DataFrame:
        """``δ ρ``: the markers' log fold changes, genes × types (0 off the markers)."""
        values = (self.module.delta * self.module.rho).detach().cpu().numpy()
        genes = np.asarray(self.registry.gene_names)[self.module.marker_index.cpu().numpy()]
        return pd.DataFrame(values, index=genes, columns=self.cell_types)
