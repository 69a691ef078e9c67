"""CellAssign: marker matrix validation, δ clamp, probabilities, accuracy against the
marker-sum baseline, save/load and determinism."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from anndata import AnnData

from scprob.data.simulate.pbmc_markers import marker_sum_labels, simulate_pbmc_markers
from scprob.models import CellAssign
from scprob.models.cellassign import MIN_DELTA

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
