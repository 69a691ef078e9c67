"""scVI-cc removes the nuisance that scVI keeps: the claim of the paper's Fig. 2, checked
against the simulator's ground truth on a small wing-disc simulation."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

from scprob.data.preprocess import add_nuisance_covariates
from scprob.data.simulate.wing_disc import simulate_wing_disc
from scprob.models import SCVI


def _latent(adata, continuous_covariate_keys=None) -> np.ndarray:
    SCVI.setup_anndata(adata, layer="counts", batch_key="batch",
                       continuous_covariate_keys=continuous_covariate_keys)
    model = SCVI(adata, n_latent=10, gene_likelihood="nb")
    # Warm-up over a third of the run, so that the KL term acts at full weight for the
    # rest: that is what pushes covariate-explained signal out of z.
    model.train(max_epochs=30, plan_kwargs={"n_epochs_kl_warmup": 10},
                enable_progress_bar=False)
    return model.get_latent_representation()


@pytest.fixture(scope="module")
def latents() -> tuple[dict[str, np.ndarray], object]:
    adata = simulate_wing_disc(n_cells=800, n_genes=300, seed=0)
    nuisance = list(adata.uns["nuisance_genes"])
    keys = add_nuisance_covariates(adata, nuisance)
    without_nuisance_genes = adata[:, ~adata.var_names.isin(nuisance)].copy()
    return {
        "scVI": _latent(adata.copy()),
        "scVI-cc": _latent(without_nuisance_genes, continuous_covariate_keys=keys),
    }, adata.obs


def _knn_r2(z: np.ndarray, y: np.ndarray) -> float:
    return cross_val_score(KNeighborsRegressor(15), z, y, cv=5, scoring="r2").mean()


def _knn_accuracy(z: np.ndarray, labels) -> float:
    return cross_val_score(KNeighborsClassifier(15), z, labels, cv=5).mean()


def test_cell_cycle_leaks_into_scvi_but_not_scvi_cc(latents) -> None:
    z, obs = latents
    leak_scvi = _knn_r2(z["scVI"], obs["cycle_score"])
    leak_cc = _knn_r2(z["scVI-cc"], obs["cycle_score"])
    assert leak_scvi > 0.6  # the nuisance is real and scVI encodes it
    assert leak_cc < 0.2
    assert leak_scvi - leak_cc > 0.4


def test_sex_is_encoded_by_scvi_only(latents) -> None:
    z, obs = latents
    chance = obs["sex"].value_counts(normalize=True).max()
    assert _knn_accuracy(z["scVI"], obs["sex"]) > 0.9
    assert _knn_accuracy(z["scVI-cc"], obs["sex"]) < chance + 0.1


def test_biology_is_kept_by_both(latents) -> None:
    z, obs = latents
    for name in ("scVI", "scVI-cc"):
        assert _knn_accuracy(z[name], obs["domain"]) > 0.9, name
