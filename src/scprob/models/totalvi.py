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

The background prior ``c_bt, d_bt`` is learned, one per batch and protein, and initialised
from the data (``scprob.models.protein_background``). The posterior is
``q(z_n | x_n, y_n, b_n, s_n) q(β_n | z_n, b_n, s_n)``: a diagonal Gaussian for ``z`` whose
encoder reads ``[log(1 + x_n), log(1 + y_n) − c_b]``, and a log-normal for each ``β_nt``
centred on the prior mean. A protein whose counts are zero in every cell of a batch was not
measured there (mask ``m_bt``): the encoder reads it as zero and it adds nothing to the
likelihood or the background KL, but the model still predicts (imputes) it. ELBO per cell::

    E_q[ log p(x_n | z_n) + Σ_t m_bt log p(y_nt | z_n, β_nt) ]
        − KL(q(z_n) ‖ N(0, I)) − Σ_t m_bt E_q(z_n) KL(q(β_nt | z_n) ‖ p(β_nt))

KL warm-up scales the first KL only, so the background stays anchored to its prior from
the first step. Beyond the paper (each explained, with measurements, in
``docs/scarches.md``): a softplus instead of a ReLU for ``α``; the protein input centred
on the batch's background (``center_protein_input``); random partial panels in training
(``protein_panel_dropout``); latents refined by per-cell ELBO ascent
(``get_latent_representation(refine_steps=k)``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from anndata import AnnData
from torch import Tensor, nn

from scprob.data.fields import CategoricalField, ContinuousField, CountsField, ProteinField
from scprob.data.loader import Batch
from scprob.models.base import BaseModel
from scprob.models.protein_background import background_prior_from_data
from scprob.nn.count_kernel import EAGER, CountKernel, summed_count_log_likelihood
from scprob.nn.distributions import (
    gaussian_kl_to_standard_normal,
    log_factorial,
    log_nb_mixture,
)
from scprob.nn.layers import CovariateLinear, Encoder, FCLayers
from scprob.nn.module import LossOutput, cell_log_factorial

GeneLikelihood = Literal["nb", "zinb"]

# Keeps posterior scales of the log background strictly positive.
SCALE_EPS = 1e-4


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
        protein_observed: Tensor | np.ndarray,
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
        """``protein_observed`` ``(n_batch, n_proteins)``: which proteins each batch
        measured. The background prior starts at N(0, 1); a model sets it from the data
        (``set_background_prior``)."""
        super().__init__()
        if not 0.0 <= protein_panel_dropout <= 1.0:
            raise ValueError("protein_panel_dropout is the share of training cells whose "
                             "encoder sees a random part of their panel: give a number in "
                             f"[0, 1], got {protein_panel_dropout!r}.")
        self.center_protein_input = center_protein_input
        self.protein_panel_dropout = protein_panel_dropout
        n_categories = list(n_categories)
        n_batch = n_categories[0]
        protein_observed = torch.as_tensor(protein_observed, dtype=torch.bool)
        if tuple(protein_observed.shape) != (n_batch, n_proteins):
            raise ValueError(f"protein_observed must be (n_batch, n_proteins) = "
                             f"{(n_batch, n_proteins)}, got {tuple(protein_observed.shape)}.")
        if gene_likelihood not in ("nb", "zinb"):
            raise ValueError(f"gene_likelihood must be 'nb' or 'zinb', got {gene_likelihood!r}.")
        self.n_genes, self.n_proteins = n_genes, n_proteins
        self.gene_likelihood = gene_likelihood
        self.encode_covariates = encode_covariates
        # Data, not a weight: rebuilt from the registry, so never in the state dict.
        self.register_buffer("protein_observed", protein_observed, persistent=False)

        norms = {"use_batch_norm": use_batch_norm, "use_layer_norm": use_layer_norm}
        # The encoder reads [log(1 + x), centred log(1 + y)] (and the covariates if asked).
        encoder_covariates = (n_categories, n_continuous) if encode_covariates else ((), 0)
        self.encoder = Encoder(n_genes + n_proteins, n_latent, n_hidden, n_layers_encoder,
                               *encoder_covariates, dropout_rate, **norms)
        self.decoder = FCLayers(n_latent, n_hidden, n_layers_decoder, n_categories,
                                n_continuous, dropout_rate, **norms)

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
        self.set_background_prior(torch.zeros(n_batch, n_proteins), torch.ones(n_batch, n_proteins))

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
    def observed_mask(self, categorical: Tensor) -> Tensor:
        """``(n, n_proteins)`` bool: which proteins each cell's batch measured."""
        return self.protein_observed[categorical[:, 0]]

    def random_panels(self, n_cells: int) -> Tensor:
        """``(n_cells, n_proteins)`` bool, the proteins the encoder may see: all of them for
        a share ``1 − protein_panel_dropout`` of the cells; for the others, each protein with
        a probability drawn uniformly per cell (from nearly all to nearly none)."""
        device = self.log_phi.device
        hidden_cells = torch.rand(n_cells, 1, device=device) < self.protein_panel_dropout
        keep_probability = torch.rand(n_cells, 1, device=device)
        kept = torch.rand(n_cells, self.n_proteins, device=device) < keep_probability
        return kept | ~hidden_cells

    def inference(self, batch: Batch) -> dict[str, Tensor]:
        """RNA ``(n, n_genes)`` and protein counts ``(n, n_proteins)`` → posterior mean and
        variance of ``z`` ``(n, n_latent)`` and a sample ``z``."""
        x, y, categorical = batch["x"], batch["protein"], batch["categorical"]
        shown = self.observed_mask(categorical)
        if self.training and self.protein_panel_dropout > 0:
            shown = shown & self.random_panels(y.shape[0])
        log_y = torch.log1p(y)
        if self.center_protein_input:
            log_y = log_y - self.background_prior_mean.table(0)[categorical[:, 0]].detach()
        # Unmeasured (or hidden) proteins are read as zero, whatever the data hold there.
        log_y = torch.where(shown, log_y, torch.zeros_like(log_y))
        h = torch.cat([torch.log1p(x), log_y], dim=-1)
        if self.encode_covariates:
            mean, var, z = self.encoder(h, categorical, batch["continuous"])
        else:
            mean, var, z = self.encoder(h)
        return {"qz_mean": mean, "qz_var": var, "z": z}

    # generative ------------------------------------------------------------------------
    def generative(self, batch: Batch, z: Tensor, sample: bool = False) -> dict[str, Tensor]:
        """``z`` ``(n, n_latent)`` → RNA NB parameters ``(n, n_genes)`` at the observed
        library and protein mixture parameters ``(n, n_proteins)``: background ``β`` (a
        reparametrised sample of ``q(log β | z)`` if ``sample``, else its mean), foreground
        mean ``α β``, background logits, dispersion ``φ``; and the posterior and prior of
        ``log β`` for the KL."""
        categorical, continuous = batch["categorical"], batch["continuous"]
        h = self.decoder(z, categorical, continuous)
        scale = torch.softmax(self.rna_scale_head(h, categorical, continuous), dim=-1)
        log_library = torch.log(batch["x"].sum(dim=1, keepdim=True))
        out = {"scale": scale, "mu": torch.exp(log_library) * scale,
               "theta": torch.exp(self.log_theta)}
        if self.rna_zi_head is not None:
            out["zi_logits"] = self.rna_zi_head(h, categorical, continuous)

        batch_codes = categorical[:, 0]
        prior_mean = self.background_prior_mean.table(0)[batch_codes]
        prior_sd = torch.exp(self.background_prior_log_sd.table(0)[batch_codes])
        q_mean = prior_mean + self.background_offset_head(h, categorical, continuous)
        q_sd = F.softplus(self.background_scale_head(h, categorical, continuous)) + SCALE_EPS
        log_background = q_mean + q_sd * torch.randn_like(q_sd) if sample else q_mean
        background = torch.exp(log_background)
        foreground_scaling = 1.0 + F.softplus(self.foreground_head(h, categorical, continuous))
        out.update(
            background=background,
            foreground=background * foreground_scaling,
            background_logits=self.background_logit_head(h, categorical, continuous),
            phi=torch.exp(self.log_phi),
            qb_mean=q_mean, qb_sd=q_sd, pb_mean=prior_mean, pb_sd=prior_sd,
        )
        return out

    # loss ------------------------------------------------------------------------------
    @staticmethod
    def rna_log_likelihood(x: Tensor, px: dict[str, Tensor], kernel: CountKernel = EAGER
                           ) -> Tensor:
        """Per-cell ``log p(x | z) + Σ_g log x_g!`` (NB or ZINB), ``(n,)``."""
        return summed_count_log_likelihood(x, px["mu"], px["theta"], px.get("zi_logits"),
                                           kernel=kernel)

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
        kernel: CountKernel = EAGER,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Per-cell ``(n,)`` terms of the ELBO at a sample ``z`` of the Gaussian posterior
        ``(qz_mean, qz_var)``: the log-likelihood without the constants ``log x!``,
        ``log y!``, the KL of ``z`` and the KL of the background."""
        p = self.generative(batch, z, sample=True)
        ll = (self.rna_log_likelihood(batch["x"], p, kernel)
              + self.protein_log_likelihood(batch["protein"], p, observed,
                                            include_constant=False))
        return (ll, gaussian_kl_to_standard_normal(qz_mean, qz_var),
                self.background_kl(p, observed))

    def negative_elbo_of(
        self, batch: Batch, qz_mean: Tensor, qz_var: Tensor
    ) -> Tensor:
        """Per-cell negative ELBO ``(n,)`` (without ``log x!``, ``log y!``) of a given
        Gaussian posterior of ``z`` (means and variances ``(n, n_latent)``), one sample."""
        z = qz_mean + torch.sqrt(qz_var) * torch.randn_like(qz_mean)
        ll, kl_z, kl_background = self._elbo_terms(
            batch, self.observed_mask(batch["categorical"]), z, qz_mean, qz_var)
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
            q = self.inference(batch)
        mean = q["qz_mean"].detach().clone().requires_grad_(True)
        log_var = torch.log(q["qz_var"]).detach().clone().requires_grad_(True)
        optimizer = torch.optim.Adam([mean, log_var], lr=lr)
        for _ in range(n_steps):
            # Cells are independent: the gradient of the sum is each cell's own.
            loss = self.negative_elbo_of(batch, mean, torch.exp(log_var)).sum()
            mean.grad, log_var.grad = torch.autograd.grad(loss, [mean, log_var])
            optimizer.step()
        return {"qz_mean": mean.detach(), "qz_var": torch.exp(log_var.detach())}

    def loss(self, batch: Batch, kl_weight: float = 1.0, kernel: CountKernel = EAGER
             ) -> LossOutput:
        y = batch["protein"]
        observed = self.observed_mask(batch["categorical"])
        q = self.inference(batch)
        # log x! and log y! are constant: out of the gradient path, into what we report.
        ll, kl_z, kl_background = self._elbo_terms(
            batch, observed, q["z"], q["qz_mean"], q["qz_var"], kernel)
        loss = torch.mean(-ll + kl_weight * kl_z + kl_background)
        with torch.no_grad():
            constant = cell_log_factorial(batch) + torch.where(
                observed, log_factorial(y), torch.zeros_like(y)).sum(-1)
            reconstruction = ll - constant
            kl = kl_z + kl_background
        return LossOutput(loss, reconstruction - kl, reconstruction, kl, latent=q["z"])


class TOTALVI(BaseModel):
    """totalVI for CITE-seq: RNA and protein counts share one latent space.
    Hyperparameters: those of :class:`TOTALVAE`.

    >>> TOTALVI.setup_anndata(adata, protein_expression_obsm_key="protein_expression",
    ...                       layer="counts", batch_key="batch")
    >>> model = TOTALVI(adata)
    >>> model.train(max_epochs=200)
    >>> adata.obsm["X_totalvi"] = model.get_latent_representation()
    >>> rna, protein = model.get_normalized_expression()
    """

    module_class = TOTALVAE
    # A query's frozen encoder learns nothing from hidden proteins: it reads its whole panel.
    query_hyperparameters: ClassVar[dict[str, Any]] = {"protein_panel_dropout": 0.0}

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
        ``(n_cells, n_proteins)`` (a DataFrame names the proteins; dense or sparse) and
        covariates; the registry records which proteins each batch measured."""
        cls.register_fields(adata, [
            CountsField(layer),
            CategoricalField(batch_key, categorical_covariate_keys),
            ContinuousField(continuous_covariate_keys),
            ProteinField(protein_expression_obsm_key),
        ])

    @property
    def _proteins(self) -> ProteinField:
        return self.registry.fields["protein"]  # type: ignore[return-value]

    def _set_background_prior(self, batches: slice, dtype: torch.dtype) -> None:
        """The prior of ``log β`` of the batch codes ``batches``, fitted to this model's
        data (``scprob.models.protein_background``); ``log d`` is taken in ``dtype``."""
        data = self.cell_data()
        mean, sd = background_prior_from_data(data.values["protein"].numpy(),
                                              data.values["categorical"][:, 0].numpy(),
                                              self._proteins.observed_mask)
        self.module.set_background_prior(torch.as_tensor(mean[batches], dtype=dtype),
                                         torch.as_tensor(sd[batches], dtype=dtype), batches)

    def initialise_from_data(self) -> None:
        self._set_background_prior(slice(None), torch.float32)

    def after_surgery(self) -> None:
        """A new batch's background prior comes from the query's own counts, as the
        reference's came from its own. (The query's log-scale is taken in float64, the
        reference's in float32, as in every model saved so far: their results reproduce
        bit for bit.)"""
        self._set_background_prior(slice(self.registry.categorical.n_reference_rows[0], None),
                                   torch.float64)

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
        if not refine_steps:
            return super().get_latent_representation(adata, indices, give_mean, batch_size)
        torch.manual_seed(self.seed)
        self.module.eval()
        idx = self._indices(adata, indices)
        parts = [self.module.refine_latent(b, refine_steps)["qz_mean"].cpu().numpy()
                 for b in self.batches(adata, idx, batch_size)]
        return np.concatenate(parts)

    def get_normalized_expression(  # type: ignore[override]
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
        ``include_protein_background``; unmeasured proteins are imputed like measured ones.
        From the posterior means (``n_samples=1``) or averaged over ``n_samples`` draws;
        ``transform_batch`` decodes every cell as that batch.
        """

        def expression(p: dict[str, Tensor]) -> Tensor:
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
        values = self._decoded(lambda p: torch.sigmoid(-p["background_logits"]),
                               adata, indices, transform_batch, n_samples, batch_size)
        if return_numpy:
            return values
        return self._frame(values, adata, indices, self.registry.protein_names)

    @property
    def protein_observed(self) -> pd.DataFrame:
        """Which proteins each batch measured, ``(n_batch, n_proteins)`` bool."""
        return pd.DataFrame(self._proteins.observed_mask, index=self.registry.batch_categories,
                            columns=self.registry.protein_names)
