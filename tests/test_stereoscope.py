"""Stereoscope: signatures and proportions recovered on simulated data, gene alignment,
zero-count spots, the noise type, errors, save/load and determinism."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import torch
from anndata import AnnData
from scipy.stats import spearmanr

from scprob.data.simulate import simulate_hippocampus
from scprob.models import RNAStereoscope, SpatialStereoscope

QUIET = {"enable_progress_bar": False}
RNA_EPOCHS, SPATIAL_EPOCHS = 20, 150


def _simulate() -> tuple[AnnData, AnnData]:
    return simulate_hippocampus(n_cells=1500, n_spots=150, n_genes=200, seed=1)


def _rna_model(sc: AnnData) -> RNAStereoscope:
    RNAStereoscope.setup_anndata(sc, labels_key="cell_type")
    model = RNAStereoscope(sc)
    model.train(max_epochs=RNA_EPOCHS, batch_size=512, **QUIET)
    return model


def _spatial(st: AnnData, rna: RNAStereoscope, **kwargs) -> SpatialStereoscope:
    SpatialStereoscope.setup_anndata(st)
    model = SpatialStereoscope.from_rna_model(st, rna, **kwargs)
    model.train(max_epochs=SPATIAL_EPOCHS, **QUIET)
    return model


def _mean_spearman(estimate: pd.DataFrame, truth: pd.DataFrame) -> float:
    truth = truth.loc[estimate.index, estimate.columns]
    return float(np.mean([spearmanr(estimate[c], truth[c])[0] for c in estimate]))


@pytest.fixture(scope="module")
def fitted() -> tuple[AnnData, AnnData, RNAStereoscope, SpatialStereoscope]:
    torch.set_num_threads(1)
    sc, st = _simulate()
    rna = _rna_model(sc)
    return sc, st, rna, _spatial(st, rna)


def test_signatures_recover_the_true_type_means(fitted) -> None:
    sc, _, rna, _ = fitted
    signatures = rna.get_signatures()
    truth = sc.varm["true_frequencies"]
    assert list(signatures.index) == list(sc.var_names)
    assert list(signatures.columns) == list(truth.columns)
    # On the log scale, over all genes of each type (markers and background); the rarest
    # type has about 8 cells, so many of its genes were never seen.
    correlations = [np.corrcoef(np.log(signatures[t]), np.log(truth[t]))[0, 1]
                    for t in truth]
    assert min(correlations) > 0.6 and np.mean(correlations) > 0.9


def test_proportions_sum_to_one_and_recover_the_truth(fitted) -> None:
    _, st, _, model = fitted
    proportions = model.get_proportions()
    assert proportions.shape == (st.n_obs, 15)
    np.testing.assert_allclose(proportions.sum(1), 1.0, rtol=1e-5)
    assert (proportions.to_numpy() >= 0).all()
    # Measured 0.70 on this small case (150 spots, 200 genes, 20 + 150 epochs).
    assert _mean_spearman(proportions, st.obsm["true_proportions"]) > 0.6


def test_the_noise_type_is_dropped_unless_asked(fitted) -> None:
    _, _, _, model = fitted
    with_noise = model.get_proportions(keep_noise=True)
    assert list(with_noise.columns) == [*model.cell_types, "noise"]
    np.testing.assert_allclose(with_noise.sum(1), 1.0, rtol=1e-5)
    types = with_noise.drop(columns="noise")
    np.testing.assert_allclose(model.get_proportions(),
                               types.div(types.sum(1), axis=0), rtol=1e-5)


def test_genes_are_matched_by_name(fitted) -> None:
    """Shuffled spatial genes give the same fit; the spatial data's own extra genes are
    dropped; a subset of genes still recovers the truth."""
    _, st, rna, model = fitted
    order = np.random.default_rng(0).permutation(st.n_vars)
    shuffled = st[:, order].copy()
    np.testing.assert_allclose(_spatial(shuffled, rna).get_proportions(),
                               model.get_proportions(), atol=1e-5)
    subset = st[:, np.sort(order[:160])].copy()
    sub_model = _spatial(subset, rna)
    assert sub_model.registry.gene_names == [g for g in rna.registry.gene_names
                                             if g in set(subset.var_names)]
    assert _mean_spearman(sub_model.get_proportions(), st.obsm["true_proportions"]) > 0.55


def test_too_few_shared_genes_is_refused(fitted) -> None:
    _, st, rna, _ = fitted
    few = st[:, :30].copy()
    SpatialStereoscope.setup_anndata(few)
    with pytest.raises(ValueError, match=re.escape(
            "the spatial data (30 genes) and the RNA model (200 genes) share 30 genes, "
            "fewer than min_gene_overlap=50: check that both name genes the same way")):
        SpatialStereoscope.from_rna_model(few, rna)
    SpatialStereoscope.from_rna_model(few, rna, min_gene_overlap=30)


def test_spots_without_counts_are_reported_and_left_out(fitted) -> None:
    _, st, rna, _ = fitted
    st = st.copy()
    counts = st.X.toarray()
    counts[[3, 7]] = 0
    st.X = counts
    SpatialStereoscope.setup_anndata(st)
    with pytest.warns(UserWarning, match=re.escape(
            "2 of 150 spots have no counts over the 200 shared genes; they are left out")):
        model = SpatialStereoscope.from_rna_model(st, rna)
    assert model.adata.n_obs == 148 and "spot_3" not in model.adata.obs_names


def test_a_type_with_too_few_cells_is_refused() -> None:
    sc, _ = _simulate()
    labels = sc.obs["cell_type"].astype(str).to_numpy()
    labels[:2] = "Lonely"
    sc.obs["cell_type"] = pd.Categorical(labels)
    with pytest.raises(ValueError, match=re.escape(
            "cell types of obs['cell_type'] with fewer than min_cells_per_type=3 cells: "
            "'Lonely' (2 cells). Their signatures would be a few cells' noise: drop or "
            "merge those types, or lower min_cells_per_type.")):
        RNAStereoscope.setup_anndata(sc, labels_key="cell_type")
    assert "_scprob" not in sc.uns  # refused data stay unregistered
    RNAStereoscope.setup_anndata(sc, labels_key="cell_type", min_cells_per_type=2)


def test_from_rna_model_needs_an_rna_model(fitted) -> None:
    _, st, _, model = fitted
    SpatialStereoscope.setup_anndata(st)
    with pytest.raises(ValueError, match="rna_model is a SpatialStereoscope, not an "
                                         "RNAStereoscope"):
        SpatialStereoscope.from_rna_model(st, model)  # type: ignore[arg-type]


def test_save_and_load_round_trip(fitted, tmp_path) -> None:
    sc, _, rna, model = fitted
    model.save(tmp_path / "spatial", save_anndata=True)
    loaded = SpatialStereoscope.load(tmp_path / "spatial")  # no RNA model needed
    pd.testing.assert_frame_equal(loaded.get_proportions(keep_noise=True),
                                  model.get_proportions(keep_noise=True))
    rna.save(tmp_path / "rna")
    pd.testing.assert_frame_equal(RNAStereoscope.load(tmp_path / "rna", sc).get_signatures(),
                                  rna.get_signatures())


def test_a_seed_gives_the_same_fit(fitted) -> None:
    sc, st, _, model = fitted
    again = _spatial(st, _rna_model(sc))
    pd.testing.assert_frame_equal(again.get_proportions(), model.get_proportions())
