"""totalVI: one latent space for the RNA and surface proteins of CITE-seq cells.

After Gayoso, Steier et al., *Joint probabilistic modeling of single-cell multi-omic data
with totalVI*, Nat. Methods 18 (2021). Generative model, for cell ``n`` with RNA counts
``x_n`` ``(n_genes,)``, protein counts ``y_n`` ``(n_proteins,)``, batch ``b_n`` and other
covariates ``s_n``::

    z_n   ~ N(0, I)                                         shared latent state, (n_latent,)
    h_n   = f(z_n, b_n, s_n)                                decoder, covariates in every layer
    ρ_n   = softmax(f_ρ(h_n))                               RNA frequencies, (n_genes,)
    x_ng  ~ NB(l_n ρ_ng, θ_g)    (or ZINB)                  l_n = Σ_g x_ng, observed library
    β_nt  ~ LogNormal(c_bt, d_bt²),  b = b_n                protein background, (n_proteins,)
    α_nt  = 1 + softplus(f_α(h_n))_t  ≥ 1                   foreground scaling
    π_nt  = sigmoid(f_π(h_n))_t                             probability y_nt is background
    y_nt  ~ π_nt NB(β_nt, φ_t) + (1 − π_nt) NB(α_nt β_nt, φ_t)

The background ``β`` is what an antibody yields on a cell without its epitope (ambient
antibody, non-specific binding); the foreground, ``α ≥ 1`` times larger, what it yields on
a cell with it. Integrating out the Bernoulli "is background" indicator gives the NB
mixture. The paper's ``α`` passes through a ReLU; a softplus keeps ``α ≥ 1`` with a
gradient everywhere, so a protein whose foreground starts at ``α = 1`` is not stuck there.

Background prior. ``c_bt, d_bt`` are learned, one per batch and protein, and initialised
from the data: in each batch a two-component Gaussian mixture is fitted to every protein's
``log(1 + y)`` and the component with the smaller mean, the background peak, gives the
initial mean and standard deviation.

Posterior ``q(z_n | x_n, y_n, b_n, s_n) q(β_n | z_n, b_n, s_n)``: a diagonal Gaussian for
``z`` whose encoder reads ``[log(1 + x_n), log(1 + y_n) − c_b]`` (and the covariates if
``encode_covariates``), and a log-normal for each ``β_nt`` whose parameters the decoder
computes from ``h_n``. Its mean is an offset from the prior mean ``c_bt``, so an untrained
network starts at the prior.

Protein input relative to the batch's background (``center_protein_input``, beyond the
paper). The encoder reads each protein's ``log(1 + y_nt)`` minus its batch's background
log-mean ``c_bt`` (the prior's, without gradient): how far above the background of its own
batch a count lies. A batch or a query whose antibodies bind more unspecifically, so that
every protein's background is higher, then reads like the reference instead of shifting
every encoder input. It matters most for scArches, whose frozen encoder cannot learn a new
batch's protein-specific background shift; on the simulated COVID query (a +0.5 log
background shift) it raised label-transfer accuracy by about 13 points.

Proteins missing from a batch. Batches measure different antibody panels; a protein whose
counts are zero in every cell of a batch was not measured there (the registry's
``protein_observed`` mask ``m_bt``). Such entries are left out of everything: the encoder
reads them as zero (at the background, when centred) whatever the data hold, and they add
nothing to the likelihood or to the background KL. The model still predicts them, from
``z``, so it imputes them.

Random panels in training (``protein_panel_dropout``, beyond the paper). The paper masks
the proteins of 5 of its 24 reference batches "to help the model generalize to query data
with mismatched proteins". This generalises that: in training, a share
``protein_panel_dropout`` of the cells of each minibatch shows the encoder only a random
subset of its measured proteins (each kept with a probability drawn uniformly per cell),
while the likelihood still scores all of them. The encoder learns to infer ``z`` from
partial panels and the RNA, which is what a query with a smaller panel asks of a frozen
encoder. The ELBO stays a bound: ``q`` may read less than all the data. Queries read
their whole panel (surgery sets the share to 0 for the query model).

Refined latents (``get_latent_representation(refine_steps=k)``, beyond the paper). The
encoder is amortised: one network guesses every cell's posterior. For cells of a donor it
never trained on (a scArches query, whose encoder is frozen) the guess can sit away from
the posterior that the decoder, which has learned the donor's batch rows, would choose.
``k`` Adam steps on each cell's own posterior mean and log-variance, maximising its ELBO
under the unchanged weights, start from the guess and close part of that gap
(``TOTALVAE.refine_latent``; semi-amortised inference). The weights do not move, so a
reference cell's refined latent is the same under the reference and the query model.

Training as in the paper's runs: when some batches lack proteins, a batch adversary on
``z`` (``plan_kwargs={"adversarial_classifier": True}``, ``scprob.train``) keeps the
batch out of the latent space.

ELBO, per cell::

    E_q[ log p(x_n | z_n) + Σ_t m_bt log p(y_nt | z_n, β_nt) ]
        − KL(q(z_n) ‖ N(0, I)) − Σ_t m_bt E_q(z_n) KL(q(β_nt | z_n) ‖ p(β_nt))

KL warm-up scales the first KL only: the warm-up frees ``z`` early in training, while the
background should stay anchored to its data-derived prior from the first step (an
unanchored background can trade places with the foreground).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from anndata import AnnData
from torch import Tensor, nn

from scprob.data.loader import Batch
from scprob.data.registry import (
    Registry,
    category_codes,
    protein_counts,
    register_anndata,
)
from scprob.models.base import BaseModel
from scprob.models.surgery import build_query_model
from scprob.nn.distributions import (
    gaussian_kl_to_standard_normal,
    log_factorial,
    log_nb_mixture,
    summed_count_log_likelihood,
)
from scprob.nn.layers import CovariateLinear, Encoder, FCLayers
from scprob.train import LossOutput

GeneLikelihood = Literal["nb", "zinb"]

# Floor of the background prior's standard deviation (log scale): a batch whose protein
# counts barely vary would otherwise pin the background to a point.
MIN_BACKGROUND_SD = 0.1
# Keeps posterior scales of the log background strictly positive.
SCALE_EPS = 1e-4


# ------------------------------------------------------- background prior from the data


def _two_gaussian_mixture(
    values: np.ndarray, n_iterations: int = 100
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """EM for a two-component Gaussian mixture on every column of ``values``
    ``(n_cells, n_columns)`` at once. Returns means, standard deviations and weights, each
    ``(2, n_columns)``; component 0 starts at the lower quartile, component 1 at the upper.
    """
    n_cells = values.shape[0]
    means = np.quantile(values, [0.25, 0.75], axis=0)
    means[1] = np.maximum(means[1], means[0] + 0.1)  # two distinct starting points
    sds = np.full_like(means, max(float(values.std()), MIN_BACKGROUND_SD))
    weights = np.full_like(means, 0.5)
    for _ in range(n_iterations):
        # E step: responsibilities (2, n_cells, n_columns).
        log_density = (np.log(weights)[:, None] - np.log(sds)[:, None]
                       - 0.5 * ((values[None] - means[:, None]) / sds[:, None]) ** 2)
        log_density -= log_density.max(axis=0, keepdims=True)
        responsibility = np.exp(log_density)
        responsibility /= responsibility.sum(axis=0, keepdims=True)
        # M step.
        mass = responsibility.sum(axis=1) + 1e-10
        weights = np.clip(mass / n_cells, 1e-6, 1.0)
        means = (responsibility * values[None]).sum(axis=1) / mass
        variance = (responsibility * (values[None] - means[:, None]) ** 2).sum(axis=1) / mass
        sds = np.sqrt(np.maximum(variance, 1e-6))
    return means, sds, weights


def background_prior_from_data(
    proteins: np.ndarray, batch: np.ndarray, observed: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Initial background prior: mean and standard deviation of ``log β``, each
    ``(n_batch, n_proteins)``, from counts ``proteins`` ``(n_cells, n_proteins)``, batch
    codes ``batch`` ``(n_cells,)`` and the observation mask ``observed``
    ``(n_batch, n_proteins)``.

    In each batch, the lower component of a two-component mixture on ``log(1 + y)``. An
    unmeasured entry (or a batch without cells here) gets the protein's average over the
    batches that measured it; a protein measured nowhere gets N(0, 1).
    """
    n_batch, n_proteins = observed.shape
    mean = np.zeros((n_batch, n_proteins))
    sd = np.ones((n_batch, n_proteins))
    log_counts = np.log1p(np.asarray(proteins, dtype=np.float64))
    for b in range(n_batch):
        cells = batch == b
        if not cells.any():
            continue
        means, sds, _ = _two_gaussian_mixture(log_counts[cells])
        lower = np.argmin(means, axis=0)
        columns = np.arange(n_proteins)
        mean[b], sd[b] = means[lower, columns], sds[lower, columns]
    fitted = observed & np.isin(np.arange(n_batch), batch)[:, None]
    n_fitted = fitted.sum(axis=0)
    with np.errstate(invalid="ignore"):
        fallback_mean = np.where(n_fitted > 0, (mean * fitted).sum(0) / n_fitted, 0.0)
        fallback_sd = np.where(n_fitted > 0, (sd * fitted).sum(0) / n_fitted, 1.0)
    mean = np.where(fitted, mean, fallback_mean)
    sd = np.where(fitted, sd, fallback_sd)
    return mean, np.maximum(sd, MIN_BACKGROUND_SD)


def _batch_table(n_batch: int, n_features: int) -> CovariateLinear:
    """A per-batch table ``(n_batch, n_features)``: a CovariateLinear without inputs whose
    only categorical input is the batch. Surgery grows it like every covariate table."""
    with warnings.catch_warnings():
        # nn.Linear(0, ·) notes that initialising its empty weight does nothing: by design.
        warnings.filterwarnings("ignore", "Initializing zero-element tensors is a no-op")
        return CovariateLinear(0, n_features, [n_batch], bias=False)


# ---------------------------------------------------------------------------- the module


class TOTALVAE(nn.Module):
    """The totalVI module: ``inference`` (x, y → z), ``generative`` (z → RNA and protein
    distributions, sampling the background), ``loss`` (negative ELBO)."""

    def __init__(
        self,
        n_genes: int,
        n_proteins: int,
        protein_observed: Tensor,
        background_prior_mean: Tensor,
        background_prior_sd: Tensor,
        n_categories: Sequence[int] = (1,),
        n_continuous: int = 0,
        n_latent: int = 20,
        n_hidden: int = 256,
        n_layers_encoder: int = 2,
        n_layers_decoder: int = 2,
        dropout_rate: float = 0.2,
        gene_likelihood: GeneLikelihood = "nb",
        encode_covariates: bool = True,
        use_batch_norm: bool = True,
        use_layer_norm: bool = False,
        center_protein_input: bool = True,
        protein_panel_dropout: float = 0.0,
    ) -> None:
        """``protein_observed``, ``background_prior_mean`` and ``background_prior_sd`` are
        ``(n_batch, n_proteins)``: the observation mask and the initial prior of ``log β``."""
        super().__init__()
        if not 0.0 <= protein_panel_dropout <= 1.0:
            raise ValueError("protein_panel_dropout is the share of training cells whose "
                             "encoder sees a random part of their panel: give a number in "
                             f"[0, 1], got {protein_panel_dropout!r}.")
        self.center_protein_input = center_protein_input
        self.protein_panel_dropout = protein_panel_dropout
        n_categories = list(n_categories)
        n_batch = n_categories[0]
        expected = (n_batch, n_proteins)
        for name, value in (("protein_observed", protein_observed),
                            ("background_prior_mean", background_prior_mean),
                            ("background_prior_sd", background_prior_sd)):
            if tuple(value.shape) != expected:
                raise ValueError(f"{name} must be (n_batch, n_proteins) = {expected}, got "
                                 f"{tuple(value.shape)}.")
        self.n_genes, self.n_proteins = n_genes, n_proteins
        self.gene_likelihood = gene_likelihood
        self.encode_covariates = encode_covariates
        # Data, not a weight: rebuilt from the registry, so never in the state dict.
        self.register_buffer("protein_observed", protein_observed.bool(), persistent=False)

        self.encoder = Encoder(
            n_genes + n_proteins,
            n_latent,
            n_hidden,
            n_layers_encoder,
            n_categories if encode_covariates else (),
            n_continuous if encode_covariates else 0,
            dropout_rate,
            use_batch_norm,
            use_layer_norm,
        )
        self.decoder = FCLayers(
            n_latent,
            n_hidden,
            n_layers_decoder,
            n_categories,
            n_continuous,
            dropout_rate,
            use_batch_norm,
            use_layer_norm,
        )

        def head(n_out: int) -> CovariateLinear:
            return CovariateLinear(n_hidden, n_out, n_categories, n_continuous)

        # RNA: frequencies ρ (and zero-inflation logits), gene dispersion θ.
        self.rna_scale_head = head(n_genes)
        self.rna_zi_head = head(n_genes) if gene_likelihood == "zinb" else None
        self.log_theta = nn.Parameter(torch.randn(n_genes))
        # Proteins: foreground scaling α, background probability π, q(log β | z), φ.
        self.foreground_head = head(n_proteins)
        self.background_logit_head = head(n_proteins)
        self.background_offset_head = head(n_proteins)
        self.background_scale_head = head(n_proteins)
        self.log_phi = nn.Parameter(torch.ones(n_proteins))
        # Prior of log β per batch and protein: mean c and log standard deviation log d.
        self.background_prior_mean = _batch_table(n_batch, n_proteins)
        self.background_prior_log_sd = _batch_table(n_batch, n_proteins)
        self.set_background_prior(background_prior_mean, background_prior_sd)

    @torch.no_grad()
    def set_background_prior(
        self, mean: Tensor, sd: Tensor, batches: slice | None = None
    ) -> None:
        """Set the prior of ``log β`` for the batch codes ``batches`` (default: all);
        ``mean`` and ``sd`` are ``(n_batches_set, n_proteins)``. Writes into whichever
        parameter holds those rows (reference rows or rows appended by surgery)."""
        batches = slice(None) if batches is None else batches
        for table, values in ((self.background_prior_mean, mean),
                              (self.background_prior_log_sd, torch.log(sd))):
            n_old = table.category_tables[0].shape[0]
            codes = range(table.n_categories[0])[batches]
            for row, code in zip(values.to(torch.float32), codes, strict=True):
                if code < n_old:
                    table.category_tables[0][code] = row
                else:
                    table.new_category_tables[0][code - n_old] = row

    # inference -------------------------------------------------------------------------
    def observed_mask(self, cat: Tensor) -> Tensor:
        """``(n, n_proteins)`` bool: which proteins each cell's batch measured."""
        return self.protein_observed[cat[:, 0]]

    def random_panels(self, n_cells: int) -> Tensor:
        """``(n_cells, n_proteins)`` bool, the proteins the encoder may see: all of them for
        a share ``1 − protein_panel_dropout`` of the cells; for the others, each protein with
        a probability drawn uniformly per cell (from nearly all to nearly none)."""
        device = self.log_phi.device
        hidden_cells = torch.rand(n_cells, 1, device=device) < self.protein_panel_dropout
        keep_probability = torch.rand(n_cells, 1, device=device)
        kept = torch.rand(n_cells, self.n_proteins, device=device) < keep_probability
        return kept | ~hidden_cells

    def inference(
        self, x: Tensor, y: Tensor, cat: Tensor, cont: Tensor
    ) -> dict[str, Tensor]:
        """``x`` ``(n, n_genes)``, ``y`` ``(n, n_proteins)`` → posterior mean and variance
        of ``z`` ``(n, n_latent)``, a sample ``z`` and the log library ``(n, 1)``."""
        log_library = torch.log(x.sum(dim=1, keepdim=True))
        shown = self.observed_mask(cat)
        if self.training and self.protein_panel_dropout > 0:
            shown = shown & self.random_panels(y.shape[0])
        log_y = torch.log1p(y)
        if self.center_protein_input:
            log_y = log_y - self.background_prior_mean.table(0)[cat[:, 0]].detach()
        # Unmeasured (or hidden) proteins are read as zero, whatever the data hold there.
        log_y = torch.where(shown, log_y, torch.zeros_like(log_y))
        h = torch.cat([torch.log1p(x), log_y], dim=-1)
        if self.encode_covariates:
            mean, var, z = self.encoder(h, cat, cont)
        else:
            mean, var, z = self.encoder(h)
        return {"qz_mean": mean, "qz_var": var, "z": z, "log_library": log_library}

    # generative ------------------------------------------------------------------------
    def generative(
        self,
        z: Tensor,
        log_library: Tensor,
        cat: Tensor,
        cont: Tensor,
        sample_background: bool = True,
    ) -> dict[str, Tensor]:
        """``z`` ``(n, n_latent)`` → RNA NB parameters ``(n, n_genes)`` and protein
        mixture parameters ``(n, n_proteins)``: background ``β`` (a reparametrised sample
        of ``q(log β | z)``, or its mean if not ``sample_background``), foreground mean
        ``α β``, background logits, dispersion ``φ``; and the posterior and prior of
        ``log β`` for the KL."""
        h = self.decoder(z, cat, cont)
        scale = torch.softmax(self.rna_scale_head(h, cat, cont), dim=-1)
        out = {"scale": scale, "mu": torch.exp(log_library) * scale,
               "theta": torch.exp(self.log_theta)}
        if self.rna_zi_head is not None:
            out["zi_logits"] = self.rna_zi_head(h, cat, cont)

        batch = cat[:, 0]
        prior_mean = self.background_prior_mean.table(0)[batch]
        prior_sd = torch.exp(self.background_prior_log_sd.table(0)[batch])
        q_mean = prior_mean + self.background_offset_head(h, cat, cont)
        q_sd = F.softplus(self.background_scale_head(h, cat, cont)) + SCALE_EPS
        log_background = q_mean + q_sd * torch.randn_like(q_sd) if sample_background else q_mean
        background = torch.exp(log_background)
        foreground_scaling = 1.0 + F.softplus(self.foreground_head(h, cat, cont))
        out.update(
            background=background,
            foreground=background * foreground_scaling,
            background_logits=self.background_logit_head(h, cat, cont),
            phi=torch.exp(self.log_phi),
            qb_mean=q_mean, qb_sd=q_sd, pb_mean=prior_mean, pb_sd=prior_sd,
        )
        return out

    # loss ------------------------------------------------------------------------------
    @staticmethod
    def rna_log_likelihood(x: Tensor, px: dict[str, Tensor]) -> Tensor:
        """Per-cell ``log p(x | z) + Σ_g log x_g!`` (NB or ZINB), ``(n,)``."""
        return summed_count_log_likelihood(x, px["mu"], px["theta"], px.get("zi_logits"))

    def protein_log_likelihood(
        self, y: Tensor, py: dict[str, Tensor], observed: Tensor, include_constant: bool
    ) -> Tensor:
        """Per-cell ``Σ_t m_t log p(y_t | z, β_t)``, ``(n,)``: unmeasured entries add an
        exact zero (``where``, not a product, so no value there can leak in)."""
        ll = log_nb_mixture(y, py["background"], py["foreground"], py["phi"],
                            py["background_logits"], include_constant=include_constant)
        return torch.where(observed, ll, torch.zeros_like(ll)).sum(dim=-1)

    @staticmethod
    def background_kl(py: dict[str, Tensor], observed: Tensor) -> Tensor:
        """Per-cell ``Σ_t m_t KL(N(qb_mean, qb_sd²) ‖ N(pb_mean, pb_sd²))``, ``(n,)``: the KL
        of the log-normals equals that of the Gaussians of ``log β``."""
        kl = (torch.log(py["pb_sd"] / py["qb_sd"])
              + (py["qb_sd"] ** 2 + (py["qb_mean"] - py["pb_mean"]) ** 2)
              / (2.0 * py["pb_sd"] ** 2) - 0.5)
        return torch.where(observed, kl, torch.zeros_like(kl)).sum(dim=-1)

    def _elbo_terms(
        self, batch: Batch, observed: Tensor, z: Tensor, qz_mean: Tensor, qz_var: Tensor,
        log_library: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Per-cell ``(n,)`` terms of the ELBO at a sample ``z`` of the Gaussian posterior
        ``(qz_mean, qz_var)``: the log-likelihood without the constants ``log x!``,
        ``log y!``, the KL of ``z`` and the KL of the background."""
        p = self.generative(z, log_library, batch["cat"], batch["cont"])
        ll = (self.rna_log_likelihood(batch["x"], p)
              + self.protein_log_likelihood(batch["protein"], p, observed,
                                            include_constant=False))
        return (ll, gaussian_kl_to_standard_normal(qz_mean, qz_var),
                self.background_kl(p, observed))

    def negative_elbo_of(
        self, batch: Batch, qz_mean: Tensor, qz_var: Tensor
    ) -> Tensor:
        """Per-cell negative ELBO ``(n,)`` (without ``log x!``, ``log y!``) of a given
        Gaussian posterior of ``z`` (means and variances ``(n, n_latent)``), one sample."""
        x = batch["x"]
        z = qz_mean + torch.sqrt(qz_var) * torch.randn_like(qz_mean)
        ll, kl_z, kl_background = self._elbo_terms(
            batch, self.observed_mask(batch["cat"]), z, qz_mean, qz_var,
            torch.log(x.sum(dim=1, keepdim=True)))
        return -ll + kl_z + kl_background

    @torch.enable_grad()
    def refine_latent(self, batch: Batch, n_steps: int, lr: float = 0.05
                      ) -> dict[str, Tensor]:
        """The posterior of ``z`` refined cell by cell: from the encoder's
        ``q(z | x, y)``, ``n_steps`` Adam steps on each cell's own mean and log-variance
        ``(n, n_latent)`` maximise its ELBO under the unchanged decoder. Returns the refined
        ``qz_mean`` and ``qz_var``.

        Semi-amortised inference: an encoder that never saw a cell's donor places it only
        approximately (the amortisation gap); the decoder, which has learned the donor's
        batch rows, says where it belongs. No weight of the module moves.
        """
        with torch.no_grad():
            q = self.inference(batch["x"], batch["protein"], batch["cat"], batch["cont"])
        mean = q["qz_mean"].detach().clone().requires_grad_(True)
        log_var = torch.log(q["qz_var"]).detach().clone().requires_grad_(True)
        optimizer = torch.optim.Adam([mean, log_var], lr=lr)
        for _ in range(n_steps):
            # Cells are independent: the gradient of the sum is each cell's own.
            loss = self.negative_elbo_of(batch, mean, torch.exp(log_var)).sum()
            mean.grad, log_var.grad = torch.autograd.grad(loss, [mean, log_var])
            optimizer.step()
        return {"qz_mean": mean.detach(), "qz_var": torch.exp(log_var.detach())}

    def loss(self, batch: Batch, kl_weight: float = 1.0) -> LossOutput:
        x, y, cat, cont = batch["x"], batch["protein"], batch["cat"], batch["cont"]
        observed = self.observed_mask(cat)
        q = self.inference(x, y, cat, cont)
        # log x! and log y! are constant: out of the gradient path, into what we report.
        ll, kl_z, kl_background = self._elbo_terms(
            batch, observed, q["z"], q["qz_mean"], q["qz_var"], q["log_library"])
        loss = torch.mean(-ll + kl_weight * kl_z + kl_background)
        with torch.no_grad():
            rna_constant = batch.get("log_factorial")  # served by the loader, per cell
            if rna_constant is None:
                rna_constant = log_factorial(x).sum(-1)
            constant = rna_constant + torch.where(
                observed, log_factorial(y), torch.zeros_like(y)).sum(-1)
            reconstruction = ll - constant
            kl = kl_z + kl_background
        return LossOutput(loss, reconstruction - kl, reconstruction, kl, latent=q["z"])


# ----------------------------------------------------------------------------- the model


class TOTALVI(BaseModel):
    """totalVI for CITE-seq: RNA and protein counts share one latent space.

    >>> TOTALVI.setup_anndata(adata, protein_expression_obsm_key="protein_expression",
    ...                       layer="counts", batch_key="batch")
    >>> model = TOTALVI(adata)
    >>> model.train(max_epochs=200)
    >>> adata.obsm["X_totalvi"] = model.get_latent_representation()
    >>> rna, protein = model.get_normalized_expression()
    """

    module_class = TOTALVAE
    # A query's frozen encoder learns nothing from hidden proteins: it reads its whole panel.
    query_init_params: ClassVar[dict[str, Any]] = {"protein_panel_dropout": 0.0}

    @classmethod
    def setup_anndata(
        cls,
        adata: AnnData,
        protein_expression_obsm_key: str = "protein_expression",
        layer: str | None = None,
        batch_key: str | None = None,
        categorical_covariate_keys: Sequence[str] | None = None,
        continuous_covariate_keys: Sequence[str] | None = None,
    ) -> None:
        """Validate and register RNA counts, protein counts ``adata.obsm[key]``
        ``(n_cells, n_proteins)`` (a DataFrame names the proteins) and covariates; the
        registry records which proteins each batch measured."""
        registry = register_anndata(
            adata,
            cls.__name__,
            layer=layer,
            batch_key=batch_key,
            categorical_covariate_keys=categorical_covariate_keys,
            continuous_covariate_keys=continuous_covariate_keys,
            protein_expression_obsm_key=protein_expression_obsm_key,
        )
        if not registry.protein_names:
            raise ValueError(
                f"adata.obsm[{protein_expression_obsm_key!r}] has no protein columns: "
                "totalVI needs protein counts (use SCVI for RNA alone)."
            )

    def __init__(
        self,
        adata: AnnData,
        n_latent: int = 20,
        n_hidden: int = 256,
        n_layers_encoder: int = 2,
        n_layers_decoder: int = 2,
        dropout_rate: float = 0.2,
        gene_likelihood: GeneLikelihood = "nb",
        encode_covariates: bool = True,
        use_batch_norm: bool = True,
        use_layer_norm: bool = False,
        center_protein_input: bool = True,
        protein_panel_dropout: float = 0.0,
        seed: int = 0,
    ) -> None:
        if gene_likelihood not in ("nb", "zinb"):
            raise ValueError(f"gene_likelihood must be 'nb' or 'zinb', got {gene_likelihood!r}.")
        super().__init__(
            adata,
            seed=seed,
            n_latent=n_latent,
            n_hidden=n_hidden,
            n_layers_encoder=n_layers_encoder,
            n_layers_decoder=n_layers_decoder,
            dropout_rate=dropout_rate,
            gene_likelihood=gene_likelihood,
            encode_covariates=encode_covariates,
            use_batch_norm=use_batch_norm,
            use_layer_norm=use_layer_norm,
            center_protein_input=center_protein_input,
            protein_panel_dropout=protein_panel_dropout,
        )

    def _protein_observed(self) -> np.ndarray:
        return np.asarray(self.registry.protein_observed, dtype=bool).reshape(
            self.registry.n_batch, len(self.registry.protein_names)
        )

    def _background_prior(self, adata: AnnData) -> tuple[np.ndarray, np.ndarray]:
        proteins = protein_counts(adata, self.registry.protein_expression_obsm_key)
        batch = category_codes(adata, self.registry)[:, 0]
        return background_prior_from_data(proteins, batch, self._protein_observed())

    def build_module(self, **module_kwargs: Any) -> TOTALVAE:
        prior_mean, prior_sd = self._background_prior(self.adata)
        return TOTALVAE(
            n_genes=len(self.registry.gene_names),
            n_proteins=len(self.registry.protein_names),
            protein_observed=torch.as_tensor(self._protein_observed()),
            background_prior_mean=torch.as_tensor(prior_mean, dtype=torch.float32),
            background_prior_sd=torch.as_tensor(prior_sd, dtype=torch.float32),
            n_categories=self.registry.n_categories,
            n_continuous=len(self.registry.continuous_covariate_keys),
            **module_kwargs,
        )

    # scArches ---------------------------------------------------------------------------
    @classmethod
    def load_query_data(
        cls,
        query_adata: AnnData,
        reference_model: TOTALVI,
        freeze_dropout: bool = True,
        min_gene_overlap: float = 0.5,
    ) -> TOTALVI:
        """scArches surgery (``scprob.models.surgery``): a query model with the reference's
        frozen weights and trainable rows for the query's new categories. The query is
        aligned to the reference's genes and protein panel; reference proteins missing from
        the query's panel are masked for its batches. The background prior of each new
        batch is initialised from the query's own counts, as the reference's was."""
        model = build_query_model(cls, query_adata, reference_model, freeze_dropout,
                                  min_gene_overlap)
        prior_mean, prior_sd = model._background_prior(model.adata)
        n_reference_batches = model.registry.n_reference_categories[
            model.registry.batch_column]
        new = slice(n_reference_batches, None)
        model.module.set_background_prior(
            torch.as_tensor(prior_mean[new]), torch.as_tensor(prior_sd[new]), new
        )
        return model

    # queries ----------------------------------------------------------------------------
    def get_latent_representation(
        self,
        adata: AnnData | None = None,
        indices: np.ndarray | None = None,
        give_mean: bool = True,
        batch_size: int = 1024,
        refine_steps: int = 0,
    ) -> np.ndarray:
        """Posterior means (or one sample each) of ``z``, ``(n_cells, n_latent)``.

        ``refine_steps > 0``: the means after that many steps of per-cell ELBO ascent
        from the encoder's (``TOTALVAE.refine_latent``; seeded, so repeatable).
        """
        if refine_steps < 0:
            raise ValueError(f"refine_steps must be ≥ 0, got {refine_steps}.")
        if refine_steps:
            torch.manual_seed(self.seed)
            self.module.eval()
            idx = self._default_indices(adata, indices)
            parts = [self.module.refine_latent(b, refine_steps)["qz_mean"].cpu().numpy()
                     for b in self.batches(adata, idx, batch_size)]
            return np.concatenate(parts)
        key = "qz_mean" if give_mean else "z"
        return self._map_batches(
            lambda b: self.module.inference(b["x"], b["protein"], b["cat"], b["cont"])[key],
            adata, indices, batch_size,
        )

    def _batch_code(self, transform_batch: str | None) -> int | None:
        if transform_batch is None:
            return None
        known = self.registry.categories[self.registry.batch_column]
        if str(transform_batch) not in known:
            raise ValueError(f"transform_batch {transform_batch!r} is not one of {known}.")
        return known.index(str(transform_batch))

    def _decoded(
        self,
        fn: Callable[[Tensor, dict[str, Tensor]], Tensor],
        adata: AnnData | None,
        indices: np.ndarray | None,
        transform_batch: str | None,
        n_samples: int,
        batch_size: int,
    ) -> np.ndarray:
        """Average of ``fn(x, generative output)`` ``(n, k)`` over ``n_samples`` posterior
        draws (the posterior means when ``n_samples == 1``), every cell decoded as
        ``transform_batch`` if given."""
        if n_samples < 1:
            raise ValueError(f"n_samples must be at least 1, got {n_samples}.")
        code = self._batch_code(transform_batch)

        def decode(b: Batch) -> Tensor:
            q = self.module.inference(b["x"], b["protein"], b["cat"], b["cont"])
            cat = b["cat"].clone()
            if code is not None:
                cat[:, 0] = code
            total = 0.0
            for _ in range(n_samples):
                z = q["qz_mean"] if n_samples == 1 else q["z"]
                p = self.module.generative(z, q["log_library"], cat, b["cont"],
                                           sample_background=n_samples > 1)
                total = total + fn(b["x"], p)
            return total / n_samples

        return self._map_batches(decode, adata, indices, batch_size)

    def _frame(self, values: np.ndarray, adata: AnnData | None, indices: np.ndarray | None,
               columns: list[str]) -> pd.DataFrame:
        source = adata if adata is not None else self.adata
        obs_names = source.obs_names[self._default_indices(adata, indices)]
        return pd.DataFrame(values, index=obs_names, columns=columns)

    def get_normalized_expression(
        self,
        adata: AnnData | None = None,
        indices: np.ndarray | None = None,
        library_size: float | Literal["latent"] = 1.0,
        transform_batch: str | None = None,
        include_protein_background: bool = False,
        n_samples: int = 1,
        batch_size: int = 1024,
        return_numpy: bool = False,
    ) -> tuple[pd.DataFrame, pd.DataFrame] | tuple[np.ndarray, np.ndarray]:
        """Denoised RNA ``(n_cells, n_genes)`` and protein ``(n_cells, n_proteins)``.

        RNA: ``ρ`` times ``library_size`` (``"latent"``: each cell's observed library).
        Protein: the expected foreground ``(1 − π) α β``, plus the background ``π β`` with
        ``include_protein_background``. Unmeasured proteins are predicted (imputed) like
        measured ones. From the posterior means (``n_samples=1``) or averaged over
        ``n_samples`` draws; ``transform_batch`` decodes every cell as that batch.
        """

        def expression(x: Tensor, p: dict[str, Tensor]) -> Tensor:
            rna = p["mu"] if library_size == "latent" else p["scale"] * library_size
            probability_background = torch.sigmoid(p["background_logits"])
            protein = (1.0 - probability_background) * p["foreground"]
            if include_protein_background:
                protein = protein + probability_background * p["background"]
            return torch.cat([rna, protein], dim=-1)

        values = self._decoded(expression, adata, indices, transform_batch, n_samples,
                               batch_size)
        n_genes = len(self.registry.gene_names)
        rna, protein = values[:, :n_genes], values[:, n_genes:]
        if return_numpy:
            return rna, protein
        return (self._frame(rna, adata, indices, self.registry.gene_names),
                self._frame(protein, adata, indices, self.registry.protein_names))

    def get_protein_foreground_probability(
        self,
        adata: AnnData | None = None,
        indices: np.ndarray | None = None,
        transform_batch: str | None = None,
        n_samples: int = 1,
        batch_size: int = 1024,
        return_numpy: bool = False,
    ) -> pd.DataFrame | np.ndarray:
        """``1 − π``: the posterior probability that each protein count is foreground
        (the cell carries the epitope), ``(n_cells, n_proteins)``."""
        values = self._decoded(lambda x, p: torch.sigmoid(-p["background_logits"]),
                               adata, indices, transform_batch, n_samples, batch_size)
        if return_numpy:
            return values
        return self._frame(values, adata, indices, self.registry.protein_names)

    def _evaluation_indices(self, adata: AnnData | None, indices: np.ndarray | None
                            ) -> np.ndarray:
        if indices is not None or adata is not None:
            return self._default_indices(adata, indices)
        return self.validation_indices if len(self.validation_indices) else self.train_indices

    def get_elbo(
        self, adata: AnnData | None = None, indices: np.ndarray | None = None,
        batch_size: int = 1024,
    ) -> float:
        """Mean per-cell ELBO (one-sample estimate, seeded), by default on the held-out
        validation cells."""
        torch.manual_seed(self.seed)
        idx = self._evaluation_indices(adata, indices)
        return float(self._map_batches(lambda b: self.module.loss(b).elbo, adata, idx,
                                       batch_size).mean())

    def get_reconstruction_error(
        self, adata: AnnData | None = None, indices: np.ndarray | None = None,
        batch_size: int = 1024,
    ) -> dict[str, float]:
        """Mean per-cell ``−log p(x, y | z, β)`` over measured entries, by default on the
        validation cells."""
        torch.manual_seed(self.seed)
        idx = self._evaluation_indices(adata, indices)
        ll = self._map_batches(lambda b: self.module.loss(b).reconstruction, adata, idx,
                               batch_size)
        return {"reconstruction_loss": float(-ll.mean())}

    @property
    def protein_observed(self) -> pd.DataFrame:
        """Which proteins each batch measured, ``(n_batch, n_proteins)`` bool."""
        registry: Registry = self.registry
        return pd.DataFrame(self._protein_observed(),
                            index=registry.categories[registry.batch_column],
                            columns=registry.protein_names)
