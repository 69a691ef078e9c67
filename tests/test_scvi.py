"""SCVI: training, queries, save/load, determinism, CPU and CUDA."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from scprob.models import SCVI
from tests.conftest import make_counts_adata

FAST = {"max_epochs": 3, "batch_size": 64, "enable_progress_bar": False}


def _trained(adata, **kwargs) -> SCVI:
    SCVI.setup_anndata(adata, layer="counts", batch_key="batch",
                       categorical_covariate_keys=["donor"],
                       continuous_covariate_keys=["nuisance"])
    model = SCVI(adata, n_latent=4, n_hidden=32, **kwargs)
    model.train(**FAST)
    return model


@pytest.mark.parametrize("likelihood", ["zinb", "nb", "poisson"])
@pytest.mark.parametrize("dispersion", ["gene", "gene-batch"])
def test_trains_and_answers_queries(counts_adata, likelihood: str, dispersion: str) -> None:
    model = _trained(counts_adata, gene_likelihood=likelihood, dispersion=dispersion)
    latent = model.get_latent_representation()
    assert latent.shape == (300, 4) and np.isfinite(latent).all()
    history = model.history
    assert list(history["epoch"]) == [0, 1, 2]
    assert {"elbo_train", "elbo_validation", "kl_weight"} <= set(history.columns)
    elbo = model.get_elbo()
    assert np.isfinite(elbo) and elbo < 0
    assert model.get_reconstruction_error()["reconstruction_loss"] > 0
    expression = model.get_normalized_expression(library_size=1e4)
    assert isinstance(expression, pd.DataFrame) and expression.shape == (300, 60)
    np.testing.assert_allclose(expression.sum(axis=1), 1e4, rtol=1e-4)


def test_latent_library_scales_to_observed_counts(counts_adata) -> None:
    model = _trained(counts_adata)
    expression = model.get_normalized_expression(library_size="latent", return_numpy=True)
    np.testing.assert_allclose(expression.sum(1), counts_adata.X.sum(1).A1, rtol=1e-4)


def test_transform_batch_decodes_as_one_batch(counts_adata) -> None:
    model = _trained(counts_adata)
    as_b1 = model.get_normalized_expression(transform_batch="b1", return_numpy=True)
    as_b2 = model.get_normalized_expression(transform_batch="b2", return_numpy=True)
    assert not np.allclose(as_b1, as_b2)
    with pytest.raises(ValueError, match=r"transform_batch 'b9' is not one of \['b1', 'b2'\]"):
        model.get_normalized_expression(transform_batch="b9")


def test_same_seed_same_latent_and_different_seed_differs() -> None:
    latents = [_trained(make_counts_adata(), seed=s).get_latent_representation() for s in (7, 7, 8)]
    np.testing.assert_array_equal(latents[0], latents[1])
    assert not np.allclose(latents[0], latents[2])


def test_sparse_and_dense_inputs_train_identically() -> None:
    sparse = _trained(make_counts_adata(sparse=True)).get_latent_representation()
    dense = _trained(make_counts_adata(sparse=False)).get_latent_representation()
    np.testing.assert_allclose(sparse, dense, rtol=1e-5, atol=1e-5)


def test_save_load_round_trip(counts_adata, tmp_path) -> None:
    model = _trained(counts_adata)
    model.save(tmp_path / "model")
    loaded = SCVI.load(tmp_path / "model", make_counts_adata())
    np.testing.assert_array_equal(loaded.get_latent_representation(),
                                  model.get_latent_representation())
    assert loaded.get_elbo() == model.get_elbo()
    pd.testing.assert_frame_equal(loaded.history, model.history, check_dtype=False)
    with pytest.raises(ValueError, match="already exists: pass overwrite=True"):
        model.save(tmp_path / "model")
    model.save(tmp_path / "model", overwrite=True)


def test_load_onto_other_genes_is_a_clear_error(counts_adata, tmp_path) -> None:
    _trained(counts_adata).save(tmp_path / "model")
    other = make_counts_adata()
    other.var_names = [f"other_{j}" for j in range(60)]
    with pytest.raises(ValueError, match=r"the genes of this AnnData differ from the model's "
                                         r"\(60 genes\): 60 genes missing"):
        SCVI.load(tmp_path / "model", other)
    shuffled = make_counts_adata()[:, ::-1].copy()
    with pytest.raises(ValueError, match="the same genes in a different order"):
        SCVI.load(tmp_path / "model", shuffled)


def test_unseen_category_after_training_points_to_query_surgery(counts_adata) -> None:
    model = _trained(counts_adata)
    other = make_counts_adata()
    other.obs["batch"] = "b3"
    with pytest.raises(ValueError, match=r"batch_key 'batch' has categories the model has not "
                                         r"seen: \['b3'\].*load_query_data"):
        model.get_latent_representation(other)


def test_early_stopping_stops_and_needs_validation_cells(counts_adata) -> None:
    SCVI.setup_anndata(counts_adata, batch_key="batch")
    model = SCVI(counts_adata, n_latent=4, n_hidden=16)
    model.train(max_epochs=200, early_stopping=True, early_stopping_patience=2,
                plan_kwargs={"lr": 0.05}, enable_progress_bar=False)
    assert len(model.history) < 200
    with pytest.raises(ValueError, match=r"train_size=1\.0 leaves no validation cells"):
        model.train(max_epochs=2, train_size=1.0, early_stopping=True)


def test_bad_arguments(counts_adata) -> None:
    SCVI.setup_anndata(counts_adata)
    with pytest.raises(ValueError, match="gene_likelihood must be 'zinb', 'nb' or 'poisson'"):
        SCVI(counts_adata, gene_likelihood="gaussian")
    with pytest.raises(ValueError, match=r"unknown plan_kwargs \['learning_rate'\]"):
        SCVI(counts_adata).train(max_epochs=1, plan_kwargs={"learning_rate": 1e-3})


def test_frozen_parameters_are_not_given_to_the_optimizer(counts_adata) -> None:
    from scprob.train import TrainingPlan

    SCVI.setup_anndata(counts_adata, batch_key="batch")
    model = SCVI(counts_adata)
    for p in model.module.encoder.parameters():
        p.requires_grad_(False)
    optimizer = TrainingPlan(model.module).configure_optimizers()
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert not any(id(p) in in_optimizer for p in model.module.encoder.parameters())
    assert id(model.module.log_theta) in in_optimizer


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(counts_adata, tmp_path) -> None:
    """The same weights give the same latents and ELBO on both devices, and a fit on the GPU
    reaches the ELBO of the same fit on the CPU."""
    SCVI.setup_anndata(counts_adata, batch_key="batch")
    fits = {}
    for accelerator in ("cpu", "gpu"):
        model = SCVI(counts_adata, seed=0)
        model.train(max_epochs=20, accelerator=accelerator, enable_progress_bar=False)
        fits[accelerator] = model
    assert fits["gpu"].device.type == "cuda"
    assert abs(fits["gpu"].get_elbo() - fits["cpu"].get_elbo()) < 0.02 * abs(fits["cpu"].get_elbo())
    fits["cpu"].save(tmp_path / "m")
    on_gpu = SCVI.load(tmp_path / "m", counts_adata, accelerator="gpu")
    assert on_gpu.device.type == "cuda"
    np.testing.assert_allclose(on_gpu.get_latent_representation(),
                               fits["cpu"].get_latent_representation(), rtol=1e-4, atol=1e-5)
    # One-sample estimates: the devices draw different noise.
    assert on_gpu.get_elbo() == pytest.approx(fits["cpu"].get_elbo(), rel=1e-2)
    np.testing.assert_allclose(on_gpu.get_normalized_expression(return_numpy=True),
                               fits["cpu"].get_normalized_expression(return_numpy=True),
                               rtol=1e-4, atol=1e-7)


def test_every_fit_trains_in_training_mode(counts_adata) -> None:
    """A second fit after a query (which leaves the module in eval mode) still trains with
    dropout and batch-norm updates: every training step sees ``module.training``."""
    model = _trained(counts_adata)
    model.get_latent_representation()
    assert not model.module.training
    modes: list[bool] = []
    loss = model.module.loss

    def spy(batch, kl_weight: float = 1.0, kernel=None):
        if torch.is_grad_enabled():  # a training step, not the validation pass
            modes.append(model.module.training)
        return loss(batch, kl_weight, kernel)

    model.module.loss = spy
    model.train(max_epochs=2, enable_progress_bar=False)
    assert modes and all(modes)
    assert not model.module.training  # queries after training read the eval-mode network
