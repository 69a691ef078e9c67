"""Covariate injection: every hidden layer of the decoder sees every covariate."""

from __future__ import annotations

import pytest
import torch

from scprob.models.scvi import VAE
from scprob.nn.layers import CovariateLinear, FCLayers


def _inputs(n: int = 8) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    return torch.randn(n, 5), torch.stack([torch.arange(n) % 3, torch.arange(n) % 2], 1), \
        torch.randn(n, 4)


def test_covariate_linear_equals_linear_on_concatenated_one_hots() -> None:
    h, cat, cont = _inputs()
    layer = CovariateLinear(5, 7, n_categories=[3, 2], n_continuous=4)
    one_hots = [torch.nn.functional.one_hot(cat[:, k], n).float() for k, n in enumerate([3, 2])]
    concatenated = torch.cat([h, *one_hots, cont], dim=1)
    weight = torch.cat(
        [layer.linear.weight, layer.category_tables[0].T, layer.category_tables[1].T,
         layer.continuous_weight.T], dim=1
    )
    expected = concatenated @ weight.T + layer.linear.bias
    torch.testing.assert_close(layer(h, cat, cont), expected)


def test_every_hidden_layer_receives_the_covariates() -> None:
    stack = FCLayers(5, 16, n_layers=3, n_categories=[3, 2], n_continuous=4)
    for layer in stack.layers:
        assert [t.shape[0] for t in layer.category_tables] == [3, 2]
        assert layer.continuous_weight is not None and layer.continuous_weight.shape == (4, 16)


def test_changing_a_covariate_changes_the_last_hidden_layer_directly() -> None:
    """Gradients of the last layer's output reach the covariates through that layer's own
    weights, not only through earlier layers."""
    stack = FCLayers(5, 16, n_layers=3, n_categories=[3, 2], n_continuous=4, dropout_rate=0.0,
                     use_batch_norm=False)
    h, cat, cont = _inputs()
    cont = cont.requires_grad_()
    out = stack(h, cat, cont).sum()
    grads = torch.autograd.grad(out, [layer.continuous_weight for layer in stack.layers])
    assert all(g.abs().sum() > 0 for g in grads)


def test_first_layer_only_when_injection_is_off() -> None:
    stack = FCLayers(5, 16, n_layers=3, n_categories=[3], n_continuous=4, inject_covariates=False)
    assert stack.layers[0].continuous_weight is not None
    assert all(layer.continuous_weight is None for layer in stack.layers[1:])
    assert all(len(layer.category_tables) == 0 for layer in stack.layers[1:])


def test_scvi_decoder_heads_see_covariates_and_encoder_does_not_by_default() -> None:
    vae = VAE(n_genes=30, n_categories=[2, 3], n_continuous=4, n_layers=2)
    for layer in [*vae.decoder.layers, vae.scale_head, vae.zi_head]:
        assert layer.continuous_weight.shape[0] == 4
        assert [t.shape[0] for t in layer.category_tables] == [2, 3]
    assert all(layer.continuous_weight is None for layer in vae.encoder.hidden.layers)


def test_added_categories_start_at_the_mean_row_and_only_they_are_new() -> None:
    layer = CovariateLinear(5, 7, n_categories=[3, 2])
    before = layer.table(1).detach().clone()
    layer.add_categories([0, 2])
    assert layer.n_categories == [3, 4]
    torch.testing.assert_close(layer.table(1)[:2], before)
    torch.testing.assert_close(layer.table(1)[2], before.mean(0))


@pytest.mark.parametrize("n_categories", [3, 100])
def test_covariate_linear_one_hot_and_lookup_paths_equal_the_definition(n_categories: int
                                                                         ) -> None:
    from scprob.nn.layers import ONE_HOT_MAX_CATEGORIES, CovariateLinear

    assert (n_categories <= ONE_HOT_MAX_CATEGORIES) == (n_categories == 3)
    torch.manual_seed(0)
    layer = CovariateLinear(5, 7, n_categories=[n_categories, 2], n_continuous=4).double()
    h, cont = torch.randn(50, 5, dtype=torch.float64), torch.randn(50, 4, dtype=torch.float64)
    cat = torch.stack([torch.randint(0, n_categories, (50,)), torch.randint(0, 2, (50,))], 1)
    expected = (layer.linear(h) + layer.table(0)[cat[:, 0]] + layer.table(1)[cat[:, 1]]
                + cont @ layer.continuous_weight)
    out = layer(h, cat, cont)
    torch.testing.assert_close(out, expected)
    parameters = [p for p in layer.parameters() if p.numel() > 0]  # no query rows yet
    grads = torch.autograd.grad(out.square().sum(), parameters)
    want = torch.autograd.grad(expected.square().sum(), parameters)
    for got, reference in zip(grads, want, strict=True):
        torch.testing.assert_close(got, reference)
