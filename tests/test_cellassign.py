"""CellAssign: marker matrix validation, δ clamp, probabilities, accuracy against the
marker-sum baseline, save/load and determinism."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import torch
from anndata import AnnData

from scprob.data.simulate.pbmc_markers import marker_sum_labels, simulate_pbmc_markers
from scprob.models import CellAssign
from scprob.models.cellassign import MIN_DELTA
from scprob.nn.distributions import log_nb

QUICK = {"max_epochs": 20, "min_steps_per_epoch": 5}


def _data(n_cells: int = 1000, seed: int = 1) -> tuple[AnnData, pd.DataFrame]:
    adata, rho = simulate_pbmc_markers(n_cells, seed=seed)
    CellAssign.setup_anndata(adata)
    return adata, rho


@pytest.fixture(scope="module")
def fitted() -> tuple[CellAssign, AnnData, pd.DataFrame]:
    adata, rho = _data()
    model = CellAssign(adata, rho)
    model.train(**QUICK)
    return model, adata, rho


@pytest.mark.parametrize(("edit", "message"), [
    (lambda r: r.rename(index={"CD19": "NOT_A_GENE", "LYZ": "ALSO_NOT"}),
     "marker genes missing from the data: ['ALSO_NOT', 'NOT_A_GENE']."),
    (lambda r: r.assign(**{"NK cells": 0}), "cell types without any marker gene: ['NK cells']."),
    (lambda r: r.replace(1, 2), "marker_gene_mat must be binary (0/1 or booleans)."),
    (lambda r: pd.concat([r, r.iloc[:1]]), "marker_gene_mat has duplicated genes: ['CD19']."),
])
def test_marker_matrix_errors(edit, message) -> None:
    adata, rho = _data(50)
    with pytest.raises(ValueError, match=re.escape(message)):
        CellAssign(adata, edit(rho))


def test_uses_marker_genes_in_matrix_order() -> None:
    adata, rho = _data(50)
    shuffled = rho.iloc[::-1]
    model = CellAssign(adata, shuffled)
    assert list(model.get_delta().index) == list(shuffled.index)


def test_fit_accuracy_clamp_and_probabilities(fitted) -> None:
    model, adata, rho = fitted
    probabilities = model.predict()
    assert probabilities.shape == (adata.n_obs, rho.shape[1])
    assert list(probabilities.columns) == list(rho.columns)
    np.testing.assert_allclose(probabilities.sum(1), 1.0, atol=1e-5)
    truth = adata.obs["cell_type"].astype(str).to_numpy()
    accuracy = float((probabilities.idxmax(1).to_numpy() == truth).mean())
    baseline = float((marker_sum_labels(adata, rho).to_numpy() == truth).mean())
    assert accuracy >= 0.93
    assert accuracy >= baseline + 0.02
    delta = model.get_delta().to_numpy()[rho.to_numpy() > 0]
    assert delta.min() >= MIN_DELTA


def test_save_load_round_trip(fitted, tmp_path) -> None:
    model, adata, _ = fitted
    model.save(tmp_path / "m")
    loaded = CellAssign.load(tmp_path / "m", adata=adata)
    pd.testing.assert_frame_equal(loaded.predict(), model.predict())


def test_deterministic_under_seed() -> None:
    def fit() -> pd.DataFrame:
        adata, rho = _data(300, seed=2)
        model = CellAssign(adata, rho, seed=3)
        model.train(max_epochs=2, min_steps_per_epoch=2)
        return model.predict()

    pd.testing.assert_frame_equal(fit(), fit())


def test_radial_basis_gradients_match_autograd_of_the_expression() -> None:
    from scprob.models.cellassign import RadialBasis

    torch.manual_seed(0)
    mu = (torch.rand(7, 4, dtype=torch.float64) * 30).requires_grad_()
    a = torch.rand(10, dtype=torch.float64).requires_grad_()
    centres = torch.linspace(0.0, 40.0, 10, dtype=torch.float64)
    width = float(1 / (2 * (centres[1] - centres[0]) ** 2))
    assert torch.autograd.gradcheck(lambda m, w: RadialBasis.apply(m, w, centres, width),
                                    (mu, a))
    expression = (a * torch.exp(-width * (mu[..., None] - centres) ** 2)).sum(-1)
    torch.testing.assert_close(RadialBasis.apply(mu, a, centres, width), expression)


def test_each_type_likelihood_equals_the_full_genes_by_types_sum(fitted) -> None:
    model, _, _ = fitted
    m = model.module
    batch = next(model.batches(batch_size=64))
    with torch.no_grad():
        per_type, joint = m.log_likelihoods(batch)
        offset = (m.beta0 + batch["size_factor"].log()[:, None]
                  + m.design(batch) @ m.beta.T)
        mu = torch.exp(offset[:, :, None] + (m.delta * m.rho)[None])  # (n, G, C)
        naive = log_nb(batch["x"][:, :, None], mu, m.dispersion(mu) + 1e-8,
                       include_constant=False).sum(1)
    torch.testing.assert_close(per_type, naive, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(joint - per_type,
                               torch.log_softmax(m.type_logits, 0).expand_as(joint))


def test_only_the_marker_genes_are_served_to_the_module(fitted) -> None:
    model, adata, rho = fitted
    data = model.cell_data()
    assert data.counts.shape == (adata.n_obs, len(rho))
    np.testing.assert_array_equal(data.counts.numpy(), adata[:, rho.index].X)
    # The size factor still comes from every gene's counts.
    totals = np.asarray(adata.X.sum(1)).ravel()
    np.testing.assert_allclose(data.values["size_factor"].numpy(), totals / totals.mean(),
                               rtol=1e-5)


def test_minibatch_em_reaches_the_full_batch_fit() -> None:
    """Minibatches of 1,024 cells with the N/M rescaling against one batch of every cell:
    the same labels for at least 99 % of cells and fold changes within 0.15 (log scale)."""
    adata, rho = _data(3000, seed=4)
    fits = {}
    for batch_size in (1024, 3000):
        model = CellAssign(adata, rho, seed=0)
        model.train(batch_size=batch_size, early_stopping=False, max_epochs=60,
                    min_steps_per_epoch=5)
        fits[batch_size] = model
    labels = {b: m.predict().idxmax(1) for b, m in fits.items()}
    assert (labels[1024] == labels[3000]).mean() >= 0.99
    log_fold = {b: np.log(m.get_delta().to_numpy()[rho.to_numpy() > 0]) for b, m in fits.items()}
    assert np.abs(log_fold[1024] - log_fold[3000]).max() < 0.15



def test_early_stopping_waits_patience_epochs_for_a_rise_of_min_delta() -> None:
    adata, rho = _data(300, seed=2)
    model = CellAssign(adata, rho)
    model.train(early_stopping_patience=3, early_stopping_min_delta=1e6, min_steps_per_epoch=1)
    assert len(model.history) == 1 + 3  # the first epoch sets the best, three more wait
    model.train(early_stopping_patience=3, early_stopping_min_delta=0.0, max_epochs=12,
                min_steps_per_epoch=1)
    assert len(model.history) > 4
