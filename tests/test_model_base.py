"""The shared model base: posterior sampling, counterfactual batches, save/load safety, bad
input, and a new model written as its module plus a few declarations."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from anndata import AnnData
from torch import Tensor, nn

from scprob.data.fields import CategoricalField, CountsField
from scprob.models import SCVI, TOTALVI
from scprob.models.base import BaseModel
from scprob.nn.distributions import gaussian_kl_to_standard_normal, log_poisson
from scprob.nn.layers import CovariateLinear, Encoder
from scprob.nn.module import LossOutput, cell_log_factorial
from scprob.nn.surgery import n_trainable_parameters
from tests.conftest import make_counts_adata
from tests.test_totalvi import make_cite_seq_adata

FAST = {"max_epochs": 3, "batch_size": 64, "enable_progress_bar": False}


def _scvi(adata: AnnData | None = None, **kwargs) -> SCVI:
    adata = make_counts_adata() if adata is None else adata
    SCVI.setup_anndata(adata, layer="counts", batch_key="batch")
    model = SCVI(adata, n_latent=4, n_hidden=32, **kwargs)
    model.train(**FAST)
    return model


def _totalvi() -> TOTALVI:
    adata = make_cite_seq_adata()
    TOTALVI.setup_anndata(adata, batch_key="batch")
    model = TOTALVI(adata, n_latent=4, n_hidden=32, encode_covariates=True)
    model.train(**FAST)
    return model


def _spy(module: nn.Module, method: str, record: list) -> None:
    original = getattr(module, method)

    def spy(batch, *args, **kwargs):
        record.append((dict(batch), args))
        return original(batch, *args, **kwargs)

    setattr(module, method, spy)


# ----------------------------------------------------------------- posterior sampling


def test_n_samples_averages_fresh_draws_of_z() -> None:
    model = _scvi()
    calls: list = []
    _spy(model.module, "generative", calls)
    model.get_normalized_expression(indices=np.arange(20), n_samples=3)
    draws = [args[0] for _, args in calls]
    assert len(draws) == 3
    for a in range(3):
        for b in range(a + 1, 3):
            assert not torch.equal(draws[a], draws[b])


def test_a_mean_over_many_draws_is_closer_to_the_posterior_mean() -> None:
    """E_q[ρ] by a 2,000-draw Monte Carlo; the 50-draw average must be several times closer
    to it than a 2-draw one (error ∝ 1/√n), which a loop reusing one draw is not."""
    model = _scvi()
    cells = np.arange(40)
    batch = next(model.batches(indices=cells))
    with torch.no_grad():
        q = model.module.inference(batch)
        draws = q["qz_mean"] + q["qz_var"].sqrt() * torch.randn(2000, *q["qz_mean"].shape)
        reference = torch.stack([model.module.generative(batch, z)["scale"]
                                 for z in draws]).mean(0).numpy()
    errors = {n: np.abs(model.get_normalized_expression(indices=cells, n_samples=n,
                                                        return_numpy=True) - reference).mean()
              for n in (2, 50)}
    assert errors[50] < errors[2] / 2.5


@pytest.mark.parametrize("make", [_scvi, _totalvi], ids=["SCVI", "TOTALVI"])
def test_transform_batch_changes_the_decoder_input_only(make) -> None:
    model = make() if make is _totalvi else make(encode_covariates=True)
    own = model.cell_data().values["categorical"][:, 0]
    encoded: list = []
    decoded: list = []
    _spy(model.module, "inference", encoded)
    _spy(model.module, "generative", decoded)
    model.get_normalized_expression(transform_batch="b2", n_samples=2)
    seen_by_encoder = torch.cat([batch["categorical"][:, 0] for batch, _ in encoded])
    seen_by_decoder = torch.cat([batch["categorical"][:, 0] for batch, _ in decoded[::2]])
    assert torch.equal(seen_by_encoder, own) and (own == 0).any()
    assert (seen_by_decoder == model.registry.batch_categories.index("b2")).all()


# ----------------------------------------------------------------------- save and load


def test_overwrite_replaces_a_model_but_never_other_files(tmp_path) -> None:
    model = _scvi()
    target = tmp_path / "model"
    model.save(target)
    other = _scvi(seed=3)
    other.save(target, overwrite=True)
    reloaded = SCVI.load(target, model.adata)
    np.testing.assert_array_equal(reloaded.get_latent_representation(),
                                  other.get_latent_representation())
    (target / "precious.txt").write_text("keep me")
    with pytest.raises(ValueError, match=re.escape(
            f"{target} holds files that are not a saved model's (['precious.txt'])")):
        model.save(target, overwrite=True)
    assert (target / "precious.txt").read_text() == "keep me"
    np.testing.assert_array_equal(SCVI.load(target, model.adata).get_latent_representation(),
                                  other.get_latent_representation())
    a_file = tmp_path / "file.pt"
    a_file.write_text("")
    with pytest.raises(ValueError, match=re.escape(f"{a_file} is a file: a model is saved as "
                                                   "a directory")):
        model.save(a_file, overwrite=True)


@pytest.mark.parametrize("damage", ["truncated weights", "empty weights", "truncated json"])
def test_a_damaged_model_directory_is_named(tmp_path, damage: str) -> None:
    model = _scvi()
    model.save(tmp_path / "m")
    name = "model.json" if "json" in damage else "model.pt"
    path = tmp_path / "m" / name
    data = path.read_bytes()
    path.write_bytes(b"" if damage == "empty weights" else data[: len(data) // 2])
    with pytest.raises(ValueError, match=re.escape(
            f"the saved model in {tmp_path / 'm'} is damaged: {name} cannot be read")):
        SCVI.load(tmp_path / "m", model.adata)


def test_load_does_not_refit_data_dependent_initial_values(tmp_path, monkeypatch) -> None:
    model = _totalvi()
    model.save(tmp_path / "m")

    def refuse(*args, **kwargs):
        raise AssertionError("the background prior was refitted on load")

    monkeypatch.setattr("scprob.models.totalvi.background_prior_from_data", refuse)
    loaded = TOTALVI.load(tmp_path / "m", model.adata)
    np.testing.assert_array_equal(loaded.get_latent_representation(),
                                  model.get_latent_representation())


# ------------------------------------------------------------------------- bad input


def test_duplicated_gene_or_cell_names_are_refused() -> None:
    adata = make_counts_adata()
    adata.var_names = ["gene_1", *adata.var_names[1:]]
    with pytest.raises(ValueError, match=re.escape(
            "the gene names (adata.var_names) are not unique (['gene_1'] occur more than "
            "once): make them unique first, e.g. adata.var_names_make_unique().")):
        SCVI.setup_anndata(adata)
    adata = make_counts_adata()
    adata.obs_names = ["cell_1", *adata.obs_names[1:]]
    with pytest.raises(ValueError, match=r"the cell names \(adata.obs_names\) are not unique"):
        SCVI.setup_anndata(adata)


def test_an_untrained_model_warns_before_answering() -> None:
    adata = make_counts_adata()
    SCVI.setup_anndata(adata)
    with pytest.warns(UserWarning, match="this SCVI has not been trained"):
        SCVI(adata).get_latent_representation()


def test_unknown_hyperparameters_list_the_accepted_ones() -> None:
    adata = make_counts_adata()
    SCVI.setup_anndata(adata)
    with pytest.raises(ValueError, match=r"SCVI got unknown arguments \['n_lattent'\]; its "
                                         r"hyperparameters are \['n_latent', 'n_hidden'"):
        SCVI(adata, n_lattent=5)


@pytest.mark.parametrize("form", ["csr", "csc"])
def test_sparse_protein_counts_train_like_dense_ones(form: str) -> None:
    dense = make_cite_seq_adata()
    sparse = dense.copy()
    values = dense.obsm["protein_expression"].to_numpy()
    sparse.obsm["protein_expression"] = getattr(sp, f"{form}_matrix")(values)
    latents = []
    for adata in (dense, sparse):
        TOTALVI.setup_anndata(adata, batch_key="batch")
        model = TOTALVI(adata, n_latent=4, n_hidden=32)
        model.train(**FAST)
        latents.append(model.get_latent_representation())
    np.testing.assert_array_equal(latents[0], latents[1])


# ---------------------------------------------------- a new model is its math, declared


class PoissonFactorModule(nn.Module):
    """A Poisson VAE with a batch-aware linear decoder: ``x ~ Poisson(l softmax(W z + b_b))``."""

    def __init__(self, n_genes: int, n_categories: Sequence[int], n_latent: int = 3) -> None:
        super().__init__()
        self.encoder = Encoder(n_genes, n_latent, n_hidden=16)
        self.decoder = CovariateLinear(n_latent, n_genes, n_categories[:1])

    def inference(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        mean, var, z = self.encoder(torch.log1p(batch["x"]))
        return {"qz_mean": mean, "qz_var": var, "z": z}

    def generative(self, batch: dict[str, Tensor], z: Tensor, sample: bool = False
                   ) -> dict[str, Tensor]:
        scale = torch.softmax(self.decoder(z, batch["categorical"]), dim=-1)
        return {"scale": scale, "mu": batch["x"].sum(1, keepdim=True) * scale}

    def loss(self, batch: dict[str, Tensor], kl_weight: float = 1.0, kernel=None
             ) -> LossOutput:
        q = self.inference(batch)
        ll = log_poisson(batch["x"], self.generative(batch, q["z"])["mu"],
                         include_constant=False).sum(-1)
        kl = gaussian_kl_to_standard_normal(q["qz_mean"], q["qz_var"])
        reconstruction = ll.detach() - cell_log_factorial(batch)
        return LossOutput(torch.mean(kl_weight * kl - ll), reconstruction - kl.detach(),
                          reconstruction, kl.detach(), latent=q["z"])


class PoissonFactors(BaseModel):
    module_class = PoissonFactorModule

    @classmethod
    def setup_anndata(cls, adata: AnnData, batch_key: str | None = None) -> None:
        cls.register_fields(adata, [CountsField(), CategoricalField(batch_key)])


def test_a_new_model_gets_the_whole_api_from_its_module_and_fields(tmp_path) -> None:
    adata = make_counts_adata()
    PoissonFactors.setup_anndata(adata, batch_key="batch")
    assert PoissonFactors.hyperparameter_names() == ["n_latent"]
    model = PoissonFactors(adata, n_latent=2)
    model.train(**FAST)
    assert model.get_latent_representation().shape == (300, 2)
    assert np.isfinite(model.get_elbo())
    expression = model.get_normalized_expression(transform_batch="b1", n_samples=3)
    np.testing.assert_allclose(expression.sum(axis=1), 1.0, rtol=1e-5)
    model.save(tmp_path / "m")
    loaded = PoissonFactors.load(tmp_path / "m", adata)
    np.testing.assert_array_equal(loaded.get_latent_representation(),
                                  model.get_latent_representation())
    query = make_counts_adata(seed=1)
    query.obs["batch"] = query.obs["batch"].cat.rename_categories({"b1": "q1", "b2": "q2"})
    query_model = PoissonFactors.load_query_data(query, model)
    assert n_trainable_parameters(query_model.module) == 2 * 60  # two new decoder rows
    query_model.train(**FAST)
    # The reference's cells decode as before: their rows of every table stayed frozen.
    aligned = query_model.registry.align_query(adata)
    np.testing.assert_allclose(query_model.get_normalized_expression(aligned, return_numpy=True),
                               model.get_normalized_expression(return_numpy=True), rtol=1e-6)


def test_a_query_of_a_default_built_reference_has_no_dropout() -> None:
    """Surgery edits the reference's hyperparameters, defaults included: a reference built
    with every default still gives a query model without dropout (freeze_dropout)."""
    adata = make_counts_adata()
    SCVI.setup_anndata(adata, batch_key="batch")
    reference = SCVI(adata)
    assert reference.init_params["dropout_rate"] == 0.1
    query = make_counts_adata(seed=1)
    query.obs["batch"] = query.obs["batch"].cat.rename_categories({"b1": "q1", "b2": "q2"})
    query_model = SCVI.load_query_data(query, reference)
    assert query_model.init_params["dropout_rate"] == 0.0
    assert not any(isinstance(m, nn.Dropout) for m in query_model.module.modules())


def test_a_small_data_set_still_takes_min_steps_per_epoch(monkeypatch) -> None:
    """300 cells, 270 training, in minibatches of 100: 3 steps an epoch, or at least 7 when
    asked (the training cells are cycled)."""
    adata = make_counts_adata(n_cells=300, n_genes=20)
    SCVI.setup_anndata(adata)
    model = SCVI(adata, n_latent=2, n_hidden=8)
    steps: list[int] = []
    loss = model.module.loss

    def counting(batch, *args, **kwargs):
        if model.module.training:
            steps.append(batch["x"].shape[0])
        return loss(batch, *args, **kwargs)

    monkeypatch.setattr(model.module, "loss", counting)
    model.train(max_epochs=1, batch_size=100, enable_progress_bar=False)
    assert steps == [100, 100, 70]
    steps.clear()
    model.train(max_epochs=1, batch_size=100, min_steps_per_epoch=7, enable_progress_bar=False)
    assert len(steps) == 9 and sum(steps) == 270 * 3  # the 270 cells, three times
    # Fewer training cells than a minibatch: steps of 270 cells, not of 500 with repeats.
    steps.clear()
    model.train(max_epochs=1, batch_size=500, min_steps_per_epoch=4, enable_progress_bar=False)
    assert steps == [270] * 4
