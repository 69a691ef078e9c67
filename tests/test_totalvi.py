"""TOTALVI: the protein mixture, the observation mask, the data-derived background prior,
queries, save/load, scArches surgery with a smaller protein panel, and real CITE-seq data."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from scprob.models import TOTALVI
from scprob.models.protein_background import background_prior_from_data
from scprob.nn.surgery import n_trainable_parameters

FAST = {"max_epochs": 3, "batch_size": 64, "enable_progress_bar": False}
SMALL = {"n_latent": 4, "n_hidden": 32}


def make_cite_seq_adata(
    n_cells: int = 240,
    n_genes: int = 50,
    n_proteins: int = 8,
    batches: tuple[str, ...] = ("b1", "b2", "b3"),
    unmeasured: dict[str, list[int]] | None = None,
    seed: int = 0,
) -> ad.AnnData:
    """RNA and protein counts of 3 cell types. Each protein has a background (log-mean
    2 + a batch shift) and, in the types that carry it, a foreground 8-20 times larger.
    ``unmeasured`` maps a batch to the protein indices it did not measure (all zero)."""
    unmeasured = {"b3": [0, 1, 2]} if unmeasured is None else unmeasured
    rng = np.random.default_rng(seed)
    cell_type = rng.integers(0, 3, n_cells)
    batch = rng.integers(0, len(batches), n_cells)
    programs = rng.normal(0, 1.0, (3, n_genes))
    mu = np.exp(1.0 + programs[cell_type] + 0.3 * rng.normal(size=(len(batches), n_genes))[batch])
    rna = rng.negative_binomial(5, 5 / (5 + mu)).astype(np.float32)
    carries = rng.random((3, n_proteins)) < 0.5
    log_background = 2.0 + 0.3 * rng.normal(size=(len(batches), n_proteins))
    scaling = rng.uniform(8, 20, n_proteins)
    mean = np.exp(log_background[batch] + 0.2 * rng.normal(size=(n_cells, n_proteins)))
    mean = mean * np.where(carries[cell_type], scaling, 1.0)
    proteins = rng.negative_binomial(10, 10 / (10 + mean)).astype(np.float32)
    for name, columns in unmeasured.items():
        proteins[np.ix_(batch == batches.index(name), columns)] = 0.0
    adata = ad.AnnData(sp.csr_matrix(rna))
    adata.obs_names = [f"cell_{i}" for i in range(n_cells)]
    adata.var_names = [f"gene_{j}" for j in range(n_genes)]
    adata.obs["batch"] = pd.Categorical(np.asarray(batches)[batch], categories=list(batches))
    adata.obs["cell_type"] = pd.Categorical(cell_type.astype(str))
    adata.obsm["protein_expression"] = pd.DataFrame(
        proteins, index=adata.obs_names, columns=[f"CD{t}" for t in range(n_proteins)]
    )
    adata.layers["counts"] = adata.X.copy()
    return adata


def _trained(adata: ad.AnnData, trained: bool = True, **kwargs) -> TOTALVI:
    TOTALVI.setup_anndata(adata, layer="counts", batch_key="batch")
    model = TOTALVI(adata, **{**SMALL, **kwargs})
    if trained:  # tests of shapes and messages skip training: surgery does not care
        model.train(**FAST)
    return model


# ------------------------------------------------------------------------------- model


@pytest.mark.parametrize("likelihood", ["nb", "zinb"])
def test_trains_and_answers_queries(likelihood: str) -> None:
    adata = make_cite_seq_adata()
    model = _trained(adata, gene_likelihood=likelihood)
    latent = model.get_latent_representation()
    assert latent.shape == (240, 4) and np.isfinite(latent).all()
    assert list(model.history["epoch"]) == [0, 1, 2]
    elbo = model.get_elbo()
    assert np.isfinite(elbo) and elbo < 0
    rna, protein = model.get_normalized_expression(library_size=1e4)
    assert rna.shape == (240, 50) and list(protein.columns) == [f"CD{t}" for t in range(8)]
    np.testing.assert_allclose(rna.sum(axis=1), 1e4, rtol=1e-4)
    assert (protein.to_numpy() > 0).all()
    _, with_background = model.get_normalized_expression(include_protein_background=True)
    assert (with_background.to_numpy() > protein.to_numpy()).all()
    foreground = model.get_protein_foreground_probability()
    assert foreground.shape == (240, 8)
    assert ((foreground.to_numpy() > 0) & (foreground.to_numpy() < 1)).all()
    _, sampled = model.get_normalized_expression(n_samples=3, return_numpy=True)
    assert sampled.shape == (240, 8) and np.isfinite(sampled).all()


def test_same_seed_same_latent() -> None:
    latents = [_trained(make_cite_seq_adata(), seed=s).get_latent_representation()
               for s in (3, 3, 4)]
    np.testing.assert_array_equal(latents[0], latents[1])
    assert not np.allclose(latents[0], latents[2])


def test_refined_latent_raises_each_cells_elbo_and_moves_no_weight() -> None:
    """Per-cell refinement starts at the encoder's posterior and climbs the ELBO: averaged
    over many posterior samples the refined posterior's ELBO is higher; the module's
    weights are untouched; the same seed gives the same refined means."""
    adata = make_cite_seq_adata()
    model = _trained(adata)
    weights = {k: v.clone() for k, v in model.module.state_dict().items()}
    refined = model.get_latent_representation(refine_steps=30)
    assert refined.shape == (240, 4)
    np.testing.assert_array_equal(refined, model.get_latent_representation(refine_steps=30))
    np.testing.assert_array_equal(model.get_latent_representation(refine_steps=0),
                                  model.get_latent_representation())
    assert not np.allclose(refined, model.get_latent_representation())
    for name, value in model.module.state_dict().items():
        torch.testing.assert_close(value, weights[name], rtol=0, atol=0)

    batch = next(model.batches(batch_size=240))
    module = model.module
    torch.manual_seed(0)
    with torch.no_grad():
        q = module.inference(batch)
        r = module.refine_latent(batch, n_steps=30)

        def mean_negative_elbo(posterior: dict[str, torch.Tensor]) -> float:
            draws = [module.negative_elbo_of(batch, posterior["qz_mean"], posterior["qz_var"])
                     for _ in range(50)]
            return float(torch.stack(draws).mean())

        assert mean_negative_elbo(r) < mean_negative_elbo(q)
    with pytest.raises(ValueError, match="refine_steps must be ≥ 0, got -1"):
        model.get_latent_representation(refine_steps=-1)


def test_observation_mask_marks_the_unmeasured_proteins() -> None:
    adata = make_cite_seq_adata(unmeasured={"b2": [5], "b3": [0, 1, 2]})
    TOTALVI.setup_anndata(adata, layer="counts", batch_key="batch")
    observed = TOTALVI(adata, **SMALL).protein_observed
    expected = np.ones((3, 8), dtype=bool)
    expected[1, 5] = False
    expected[2, [0, 1, 2]] = False
    np.testing.assert_array_equal(observed.to_numpy(), expected)
    assert list(observed.index) == ["b1", "b2", "b3"]


def test_masked_proteins_contribute_nothing_to_the_loss() -> None:
    adata = make_cite_seq_adata()
    TOTALVI.setup_anndata(adata, layer="counts", batch_key="batch")
    model = TOTALVI(adata, **SMALL)
    module = model.module.eval()
    batch = model.cell_data().rows(np.arange(adata.n_obs))
    masked = ~module.observed_mask(batch["categorical"])
    assert masked.sum() == 3 * (adata.obs["batch"] == "b3").sum()

    def loss(proteins: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        torch.manual_seed(0)  # the same draws of z and of the background
        out = module.loss({**batch, "protein": proteins})
        return out.loss, out.elbo

    reference = loss(batch["protein"])
    scrambled = batch["protein"].clone()
    scrambled[masked] = torch.randint(0, 5000, (int(masked.sum()),)).float()
    for a, b in zip(reference, loss(scrambled), strict=True):
        assert torch.equal(a, b)
    # Whereas a measured entry does count.
    changed = batch["protein"].clone()
    changed[~masked] += 7.0
    assert not torch.equal(reference[0], loss(changed)[0])


def test_background_prior_recovers_the_background_peak() -> None:
    rng = np.random.default_rng(0)
    n = 2000
    foreground = rng.random(n) < 0.3
    protein_0 = rng.poisson(np.where(foreground, np.exp(5.0), np.exp(2.0)))
    protein_1 = rng.poisson(np.where(foreground, np.exp(4.0), np.exp(1.0)))
    proteins = np.stack([protein_0, protein_1], axis=1).astype(float)
    batch = (np.arange(n) >= n // 2).astype(int)  # two batches
    observed = np.array([[True, True], [True, False]])
    mean, sd = background_prior_from_data(proteins, batch, observed)
    # log(1 + Poisson(λ)) has mean ≈ log λ for λ of a few units and more.
    expected = [np.mean(np.log1p(rng.poisson(np.exp(2.0), 10**5))),
                np.mean(np.log1p(rng.poisson(np.exp(1.0), 10**5)))]
    np.testing.assert_allclose(mean[0], expected, atol=0.05)
    np.testing.assert_allclose(mean[1, 0], expected[0], atol=0.05)
    assert (sd > 0.1).all() and (sd < 0.7).all()
    # The unmeasured entry takes the protein's prior from the batches that measured it.
    assert mean[1, 1] == mean[0, 1] and sd[1, 1] == sd[0, 1]


def test_module_prior_starts_at_the_data_prior() -> None:
    adata = make_cite_seq_adata()
    TOTALVI.setup_anndata(adata, layer="counts", batch_key="batch")
    model = TOTALVI(adata, **SMALL)
    mean, sd = background_prior_from_data(
        adata.obsm["protein_expression"].to_numpy(), adata.obs["batch"].cat.codes.to_numpy(),
        model.protein_observed.to_numpy(),
    )
    table = model.module.background_prior_mean.table(0).detach().numpy()
    np.testing.assert_allclose(table, mean, rtol=1e-6)
    log_sd = model.module.background_prior_log_sd.table(0).detach().numpy()
    np.testing.assert_allclose(np.exp(log_sd), sd, rtol=1e-5)
    assert np.abs(table[:, 3:] - 2.3).max() < 0.8  # the simulated log background (+ NB noise)


def test_save_load_round_trip(tmp_path) -> None:
    model = _trained(make_cite_seq_adata())
    model.save(tmp_path / "model")
    loaded = TOTALVI.load(tmp_path / "model", make_cite_seq_adata())
    np.testing.assert_array_equal(loaded.get_latent_representation(),
                                  model.get_latent_representation())
    assert loaded.get_elbo() == model.get_elbo()
    pd.testing.assert_frame_equal(loaded.protein_observed, model.protein_observed)


def test_bad_arguments() -> None:
    adata = make_cite_seq_adata()
    with pytest.raises(ValueError, match=r"protein_expression_obsm_key 'adt' is not in "
                                         r"adata.obsm"):
        TOTALVI.setup_anndata(adata, protein_expression_obsm_key="adt")
    empty = adata.copy()
    empty.obsm["protein_expression"] = empty.obsm["protein_expression"].iloc[:, :0]
    with pytest.raises(ValueError, match=r"has no protein columns: this model needs protein "
                                         r"counts \(use SCVI for RNA alone\)"):
        TOTALVI.setup_anndata(empty)
    TOTALVI.setup_anndata(adata)
    with pytest.raises(ValueError, match="gene_likelihood must be 'nb' or 'zinb', got 'poisson'"):
        TOTALVI(adata, gene_likelihood="poisson")


def test_centred_protein_input_ignores_a_background_shift_matched_by_the_prior() -> None:
    """The encoder reads log(1 + y) − c_b: a batch whose every protein sits δ higher on the
    log scale, with its prior mean δ higher, gives the same latent; uncentred it does not."""
    adata = make_cite_seq_adata(unmeasured={})
    for center in (True, False):
        module = _trained(adata, trained=False, encode_covariates=False,
                          center_protein_input=center).module.eval()
        n, delta = 6, 0.7
        x = torch.poisson(torch.full((n, 50), 3.0)) + 1.0
        y = torch.poisson(torch.full((n, 8), 20.0))
        shifted = torch.expm1(torch.log1p(y) + delta)  # log(1 + y') = log(1 + y) + δ
        with torch.no_grad():
            table = module.background_prior_mean.category_tables[0]
            table[1] = table[0] + delta
        cat = torch.zeros(n, 1, dtype=torch.long)
        cont = torch.zeros(n, 0)
        with torch.no_grad():
            z_batch_0 = module.inference({"x": x, "protein": y, "categorical": cat,
                                          "continuous": cont})["qz_mean"]
            z_batch_1 = module.inference({"x": x, "protein": shifted, "categorical": cat + 1,
                                          "continuous": cont})["qz_mean"]
        assert torch.allclose(z_batch_0, z_batch_1, atol=1e-5) == center


def test_protein_panel_dropout_hides_random_panels_from_the_encoder_only_in_training() -> None:
    adata = make_cite_seq_adata(n_cells=600, unmeasured={})
    model = _trained(adata, trained=False, protein_panel_dropout=1.0)
    module = model.module
    torch.manual_seed(0)
    shown = module.random_panels(4000)
    kept_per_cell = shown.float().mean(dim=1)
    # Every cell hides a share drawn uniformly: mean 1/2, the whole range covered.
    assert abs(kept_per_cell.mean().item() - 0.5) < 0.02
    assert kept_per_cell.min() < 0.05 and kept_per_cell.max() > 0.95
    module.protein_panel_dropout = 0.25
    whole_panel = module.random_panels(4000).all(dim=1).float().mean().item()
    assert 0.72 < whole_panel < 0.80  # 75 % of the cells see everything (plus lucky draws)

    # Training mode only: the latent and the ELBO read every measured protein.
    reference = _trained(adata, trained=False, protein_panel_dropout=0.0)
    module.load_state_dict(reference.module.state_dict())
    np.testing.assert_array_equal(model.get_latent_representation(),
                                  reference.get_latent_representation())
    assert model.get_elbo() == reference.get_elbo()
    batch = model.cell_data().rows(np.arange(64))
    module.train()
    torch.manual_seed(1)
    z_train_a = module.inference(batch)
    torch.manual_seed(2)
    z_train_b = module.inference(batch)
    assert not torch.equal(z_train_a["qz_mean"], z_train_b["qz_mean"])
    with pytest.raises(ValueError, match=r"protein_panel_dropout is the share of training "
                                         r"cells .* give a number in \[0, 1\], got 1.5"):
        TOTALVI(adata, protein_panel_dropout=1.5)


# ----------------------------------------------------------------------------- scArches


def _query(n_proteins_kept: int | None = None, seed: int = 5) -> ad.AnnData:
    query = make_cite_seq_adata(n_cells=150, batches=("q1", "q2"), unmeasured={}, seed=seed)
    if n_proteins_kept is not None:  # a smaller panel, in another order
        kept = [f"CD{t}" for t in (7, 3, 5, 4, 6)][:n_proteins_kept]
        query.obsm["protein_expression"] = query.obsm["protein_expression"][kept]
    return query


def test_query_with_a_smaller_panel_masks_the_missing_proteins() -> None:
    reference = make_cite_seq_adata()
    model = _trained(reference)
    latent_before = model.get_latent_representation()
    n_reference_trainable = n_trainable_parameters(model.module)
    with pytest.warns(UserWarning, match="3 of the reference's 8 proteins are not in the "
                                         "query's panel; they are masked out"):
        query_model = TOTALVI.load_query_data(_query(n_proteins_kept=5), model)
    observed = query_model.protein_observed
    assert list(observed.index) == ["b1", "b2", "b3", "q1", "q2"]
    np.testing.assert_array_equal(observed.iloc[:3], model.protein_observed)
    assert observed.loc["q1"].tolist() == [False] * 3 + [True] * 5
    # Trainable: 2 new batch rows of every table that reads the batch: encoder and decoder
    # layers (2 × 32 each), the RNA head (50), four protein heads (8 each), and the two
    # per-batch prior tables (8 each).
    widths = 2 * 32 + 2 * 32 + 50 + 4 * 8 + 2 * 8
    assert n_trainable_parameters(query_model.module) == 2 * widths == 452
    assert n_reference_trainable > 10 * 452
    # The new batches' background prior comes from the query's own counts.
    aligned = query_model.adata
    mean, _ = background_prior_from_data(
        aligned.obsm["protein_expression"].to_numpy(),
        aligned.obs["batch"].cat.codes.to_numpy(), observed.to_numpy()[3:])
    prior = query_model.module.background_prior_mean.new_category_tables[0].detach().numpy()
    np.testing.assert_allclose(prior, mean, rtol=1e-6)

    query_model.train(**{**FAST, "plan_kwargs": {"weight_decay": 0.5, "lr": 0.01}})
    latent_after = query_model.get_latent_representation(reference)
    assert np.array_equal(latent_before, latent_after)
    query_latent = query_model.get_latent_representation()
    assert query_latent.shape == (150, 4) and np.isfinite(query_latent).all()
    assert np.isfinite(query_model.get_elbo())


def test_query_masked_proteins_are_never_trained_as_zeros() -> None:
    model = _trained(make_cite_seq_adata(), trained=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        query_model = TOTALVI.load_query_data(_query(n_proteins_kept=5), model)
    module = query_model.module.eval()
    batch = query_model.cell_data().rows(np.arange(150))
    masked = ~module.observed_mask(batch["categorical"])
    assert masked.sum() == 3 * 150

    def loss(proteins: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(0)
        return module.loss({**batch, "protein": proteins}).loss

    scrambled = batch["protein"].clone()
    scrambled[masked] = 1234.0
    assert torch.equal(loss(batch["protein"]), loss(scrambled))


def test_query_model_save_load(tmp_path) -> None:
    model = _trained(make_cite_seq_adata(), protein_panel_dropout=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        query_model = TOTALVI.load_query_data(_query(n_proteins_kept=5), model)
    query_model.train(**FAST)
    query_model.save(tmp_path / "query", save_anndata=True)
    loaded = TOTALVI.load(tmp_path / "query")
    np.testing.assert_array_equal(loaded.get_latent_representation(),
                                  query_model.get_latent_representation())
    assert n_trainable_parameters(loaded.module) == n_trainable_parameters(query_model.module)
    pd.testing.assert_frame_equal(loaded.protein_observed, query_model.protein_observed)
    # Random panels train the reference's encoder; the query (and its reload) reads all.
    assert model.module.protein_panel_dropout == 0.5
    assert query_model.init_params["protein_panel_dropout"] == 0.0
    assert loaded.module.protein_panel_dropout == 0.0
    # The raw query (5 proteins) is not what the model reads: a clear error, not a crash.
    with pytest.raises(ValueError, match=r"differ from the model's panel \(8 proteins\): 3 "
                                         r"of its proteins are missing, 0 unexpected\. A query"):
        TOTALVI.load(tmp_path / "query", adata=_query(n_proteins_kept=5))


def test_protein_panel_errors() -> None:
    model = _trained(make_cite_seq_adata(), trained=False)
    query = _query()
    del query.obsm["protein_expression"]
    with pytest.raises(ValueError, match=r"the reference model reads proteins from "
                                         r"obsm\['protein_expression'\], which the query lacks"):
        TOTALVI.load_query_data(query, model)
    renamed = _query()
    renamed.obsm["protein_expression"].columns = [f"{c}_TotalSeqB" for c in
                                                  renamed.obsm["protein_expression"].columns]
    with pytest.raises(ValueError, match=r"none of the query's 8 proteins \(e.g. "
                                         r"\['CD0_TotalSeqB'.*is in the reference's panel of 8"):
        TOTALVI.load_query_data(renamed, model)
    # Query cells of a reference batch must measure that batch's panel.
    shared_batch = _query(n_proteins_kept=5)
    shared_batch.obs["batch"] = pd.Categorical(["b1"] * 75 + ["q1"] * 75)
    with (warnings.catch_warnings(),
          pytest.raises(ValueError, match=r"the query's cells of the reference batch 'b1' "
                                          r"have no counts for 3 proteins that batch measured")):
        warnings.simplefilter("ignore", UserWarning)  # the smaller panel's notice
        TOTALVI.load_query_data(shared_batch, model)


# ---------------------------------------------------------------------------- real data


def test_real_cite_seq_reference_and_query(shared_data) -> None:
    from scprob.data.io import read_h5ad_cite_seq

    folder = shared_data / "pbmc_cite_seq_10x"
    reference = read_h5ad_cite_seq(folder / "pbmc_10k_protein_v3.h5ad")
    query = read_h5ad_cite_seq(folder / "pbmc_5k_protein_v3.h5ad")
    # The 1,000 genes with the most reference counts keep the test fast.
    top = np.argsort(-np.asarray(reference.layers["counts"].sum(axis=0)).ravel())[:1000]
    reference = reference[:, np.sort(top)].copy()
    reference.obs["batch"] = "pbmc10k"
    query.obs["batch"] = "pbmc5k"
    TOTALVI.setup_anndata(reference, layer="counts", batch_key="batch")
    model = TOTALVI(reference, n_latent=10, n_hidden=64)
    model.train(max_epochs=5, batch_size=64, enable_progress_bar=False)
    latent_before = model.get_latent_representation()
    assert np.isfinite(latent_before).all()

    # The 5k panel (29 proteins) holds all 14 of the 10k panel: the rest are dropped.
    with pytest.warns(UserWarning) as notices:
        query_model = TOTALVI.load_query_data(query, model)
    messages = [str(w.message) for w in notices]
    assert "15 of the query's 29 proteins are not in the reference's panel and are dropped: " \
           "the reference model has no weights for them." in messages
    n_missing = len(set(reference.var_names) - set(query.var_names))
    assert (f"{n_missing} of the reference's 1000 genes are missing from the query; they "
            "are filled with zero counts.") in messages
    assert query_model.protein_observed.to_numpy().all()
    query_model.train(max_epochs=5, batch_size=64, enable_progress_bar=False)
    assert np.isfinite(query_model.get_latent_representation()).all()
    assert np.array_equal(latent_before, query_model.get_latent_representation(reference))
    _, protein = query_model.get_normalized_expression()
    assert protein.shape == (200, 14) and np.isfinite(protein.to_numpy()).all()
