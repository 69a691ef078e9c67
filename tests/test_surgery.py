"""scArches surgery on SCVI: exactly the new rows are trainable, the reference stays fixed
bit for bit, queries are aligned by gene name, and query models save and load."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from scprob.models import SCVI
from scprob.nn.surgery import (
    FrozenBatchNorm1d,
    covariate_layers,
    n_trainable_parameters,
)
from tests.conftest import make_counts_adata

FAST = {"max_epochs": 3, "batch_size": 64, "enable_progress_bar": False}
N_HIDDEN, N_GENES = 32, 60


def _reference(
    encode_covariates: bool = True, trained: bool = True, **kwargs
) -> tuple[ad.AnnData, SCVI]:
    """A reference SCVI on batches b1, b2 and donors d1-d3 (untrained where the test is
    about shapes and messages only: surgery does not care)."""
    adata = make_counts_adata()
    SCVI.setup_anndata(adata, layer="counts", batch_key="batch",
                       categorical_covariate_keys=["donor"],
                       continuous_covariate_keys=["nuisance"])
    model = SCVI(adata, n_latent=4, n_hidden=N_HIDDEN, encode_covariates=encode_covariates,
                 **kwargs)
    if trained:
        model.train(**FAST)
    return adata, model


def _query(seed: int = 1, batches: tuple[str, str] = ("q1", "q2"),
           new_donor: str | None = "d4") -> ad.AnnData:
    """Cells from two new batches; donor d3 renamed ``new_donor`` (d1, d2 are shared)."""
    query = make_counts_adata(n_cells=200, seed=seed)
    query.obs["batch"] = pd.Categorical(np.where(query.obs["batch"] == "b1", *batches))
    if new_donor is not None:
        donors = query.obs["donor"].astype(str).replace("d3", new_donor)
        query.obs["donor"] = pd.Categorical(donors)
    return query


def test_surgery_appends_exactly_the_new_categories_and_freezes_the_rest() -> None:
    _, model = _reference(trained=False)
    n_reference = n_trainable_parameters(model.module)
    query_model = SCVI.load_query_data(_query(), model)
    registry = query_model.registry
    assert registry.categories == {"batch": ["b1", "b2", "q1", "q2"],
                                   "donor": ["d1", "d2", "d3", "d4"]}
    assert registry.n_reference_categories == {"batch": 2, "donor": 3}
    # Shared donors keep the reference's codes; the new one is appended.
    codes = query_model.cell_data().values["categorical"].numpy()
    donors = query_model.adata.obs["donor"].astype(str).to_numpy()
    assert set(codes[donors == "d1", 1]) == {0} and set(codes[donors == "d4", 1]) == {3}
    assert set(codes[:, 0]) == {2, 3}
    # Trainable: 2 batch rows + 1 donor row in the encoder layer (32 wide), decoder layer
    # (32), scale and zero-inflation heads (60 each) — nothing else.
    trainable = {n: tuple(p.shape) for n, p in query_model.module.named_parameters()
                 if p.requires_grad}
    assert trainable == {
        f"{layer}.new_category_tables.{k}": (rows, width)
        for layer, width in (("encoder.hidden.layers.0", N_HIDDEN),
                             ("decoder.layers.0", N_HIDDEN),
                             ("scale_head", N_GENES), ("zi_head", N_GENES))
        for k, rows in ((0, 2), (1, 1))
    }
    assert n_trainable_parameters(query_model.module) == 3 * (2 * N_HIDDEN + 2 * N_GENES) == 552
    assert n_reference > 10 * 552
    # The optimizer receives exactly those parameters.
    from scprob.train import TrainingPlan

    optimizer = TrainingPlan(query_model.module).configure_optimizers()
    in_optimizer = [p for group in optimizer.param_groups for p in group["params"]]
    assert sum(p.numel() for p in in_optimizer) == 552


def test_reference_is_bit_identical_after_query_training_with_weight_decay() -> None:
    reference_adata, model = _reference()
    latent_before = model.get_latent_representation()
    reference_state = {k: v.clone() for k, v in model.module.state_dict().items()}
    query_model = SCVI.load_query_data(_query(), model)
    frozen_before = {k: v.clone() for k, v in query_model.module.state_dict().items()
                     if "new_category_tables" not in k}
    new_before = [p.detach().clone() for p in query_model.module.parameters()
                  if p.requires_grad]

    query_model.train(**{**FAST, "plan_kwargs": {"weight_decay": 0.5, "lr": 0.01}})
    # Every reference weight and batch-norm statistic is unchanged, bit for bit ...
    for key, value in query_model.module.state_dict().items():
        if "new_category_tables" not in key:
            assert torch.equal(value, frozen_before[key]), key
    # ... while the new rows were trained.
    new_after = [p.detach() for p in query_model.module.parameters() if p.requires_grad]
    assert all(not torch.equal(a, b) for a, b in zip(new_before, new_after, strict=True))
    # The reference model itself is untouched, and the reference cells' latents are the
    # same whether computed by the reference or by the query model.
    for key, value in model.module.state_dict().items():
        assert torch.equal(value, reference_state[key]), key
    latent_after = query_model.get_latent_representation(reference_adata)
    assert np.array_equal(latent_before, latent_after)


def test_norms_stay_in_eval_mode_and_dropout_is_frozen() -> None:
    _, model = _reference(dropout_rate=0.3, trained=False)
    query_model = SCVI.load_query_data(_query(), model)
    query_model.module.train()
    norms = [m for m in query_model.module.modules() if isinstance(m, nn.BatchNorm1d)]
    assert norms and all(isinstance(m, FrozenBatchNorm1d) and not m.training for m in norms)
    assert not any(isinstance(m, nn.Dropout) for m in query_model.module.modules())
    assert query_model.init_params["dropout_rate"] == 0.0
    kept = SCVI.load_query_data(_query(), model, freeze_dropout=False)
    dropouts = [m for m in kept.module.modules() if isinstance(m, nn.Dropout)]
    assert dropouts and all(m.p == 0.3 for m in dropouts)


def test_new_categories_of_a_non_batch_covariate_land_in_its_own_table() -> None:
    _, model = _reference(trained=False)
    # Reference batches, but a new donor: only the donor tables grow.
    query = _query(batches=("b1", "b2"), new_donor="d9")
    query_model = SCVI.load_query_data(query, model)
    assert query_model.registry.categories["batch"] == ["b1", "b2"]
    assert query_model.registry.categories["donor"] == ["d1", "d2", "d3", "d9"]
    for name, layer in covariate_layers(query_model.module):
        assert [t.shape[0] for t in layer.new_category_tables] == [0, 1], name
    assert n_trainable_parameters(query_model.module) == 2 * N_HIDDEN + 2 * N_GENES
    # A d9 cell reads the new row of the donor table; its batch row is the reference's.
    layer = query_model.module.scale_head
    cat = torch.tensor([[1, 3]])
    h, cont = torch.randn(1, N_HIDDEN), torch.randn(1, 1)
    expected = (layer.linear(h) + layer.category_tables[0][1] + layer.new_category_tables[1][0]
                + cont @ layer.continuous_weight)
    torch.testing.assert_close(layer(h, cat, cont), expected)
    # New rows start as the mean of the reference rows ("an average donor").
    torch.testing.assert_close(layer.new_category_tables[1][0],
                               layer.category_tables[1].mean(dim=0))


def test_shuffled_gene_order_gives_the_same_query_model() -> None:
    reference_adata, model = _reference()
    query = _query()
    shuffled = query[:, np.random.default_rng(0).permutation(N_GENES)].copy()
    latents = []
    for data in (query, shuffled):
        query_model = SCVI.load_query_data(data, model)
        assert query_model.adata.var_names.tolist() == reference_adata.var_names.tolist()
        query_model.train(**FAST)
        latents.append(query_model.get_latent_representation())
    np.testing.assert_array_equal(latents[0], latents[1])


def test_missing_extra_and_too_few_genes() -> None:
    _, model = _reference(trained=False)
    query = _query()
    # Drop 6 reference genes, add 3 the reference does not have.
    partial = query[:, 6:].copy()
    extra = ad.AnnData(np.ones((200, 3), dtype=np.float32), obs=partial.obs.copy())
    extra.var_names = ["novel_0", "novel_1", "novel_2"]
    extra.layers["counts"] = extra.X.copy()
    partial = ad.concat([partial, extra], axis=1, merge="first")
    partial.obs = query.obs.copy()
    with pytest.warns(UserWarning, match="6 of the reference's 60 genes are missing from the "
                                         "query; they are filled with zero counts"):
        query_model = SCVI.load_query_data(partial, model)
    aligned = query_model.adata
    assert aligned.var_names.tolist() == [f"gene_{j}" for j in range(N_GENES)]
    assert aligned.layers["counts"][:, :6].nnz == 0
    np.testing.assert_array_equal(aligned.layers["counts"][:, 6:].toarray(),
                                  query.layers["counts"][:, 6:].toarray())

    too_few = query[:, :20].copy()
    with pytest.raises(ValueError, match=r"the query shares 20 of the reference's 60 genes "
                                         r"\(33%\), fewer than min_gene_overlap=50%: check "
                                         r"that both use the same gene identifiers"):
        SCVI.load_query_data(too_few, model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        SCVI.load_query_data(too_few, model, min_gene_overlap=0.3)
    with pytest.raises(ValueError, match=r"min_gene_overlap must be in \(0, 1\], got 0"):
        SCVI.load_query_data(query, model, min_gene_overlap=0)
    duplicated = query.copy()
    duplicated.var_names = ["gene_0", *duplicated.var_names.tolist()[1:-1], "gene_0"]
    with pytest.raises(ValueError, match=r"the gene names \(adata.var_names\) are not unique "
                                         r"\(\['gene_0'\] occur more than once\)"):
        SCVI.load_query_data(duplicated, model)


def test_refused_surgeries() -> None:
    _, model = _reference(trained=False)
    same = make_counts_adata(n_cells=100, seed=2)
    with pytest.raises(ValueError, match=r"the query adds no new category to any categorical "
                                         r"covariate \(\['batch', 'donor'\]\)"):
        SCVI.load_query_data(same, model)
    _, per_batch_dispersion = _reference(dispersion="gene-batch", trained=False)
    with pytest.raises(ValueError, match=r"parameter 'log_theta' depends on the number of "
                                         r"categories \(\(60, 2\) in the reference, \(60, 4\) "
                                         r"with the query's categories\)"):
        SCVI.load_query_data(_query(), per_batch_dispersion)

    class OtherModel(SCVI):
        pass

    with pytest.raises(ValueError, match="the reference model is a SCVI, not a OtherModel"):
        OtherModel.load_query_data(_query(), model)


def test_query_model_save_load_and_chained_surgery(tmp_path) -> None:
    reference_adata, model = _reference()
    latent_reference = model.get_latent_representation()
    query_model = SCVI.load_query_data(_query(), model)
    query_model.train(**FAST)
    query_model.save(tmp_path / "query", save_anndata=True)
    loaded = SCVI.load(tmp_path / "query")
    np.testing.assert_array_equal(loaded.get_latent_representation(),
                                  query_model.get_latent_representation())
    assert n_trainable_parameters(loaded.module) == 552
    assert loaded.registry.n_reference_categories == {"batch": 2, "donor": 3}
    loaded.train(**FAST)  # a loaded query model trains on, still frozen
    assert np.array_equal(loaded.get_latent_representation(reference_adata), latent_reference)

    # The query model is the reference of a second query: its own rows freeze in turn.
    latent_first_query = loaded.get_latent_representation()
    second = SCVI.load_query_data(_query(seed=3, batches=("r1", "r2"), new_donor=None), loaded)
    assert second.registry.n_reference_categories == {"batch": 4, "donor": 4}
    assert n_trainable_parameters(second.module) == 2 * (2 * N_HIDDEN + 2 * N_GENES)
    second.train(**FAST)
    assert np.array_equal(second.get_latent_representation(reference_adata), latent_reference)
    assert np.array_equal(second.get_latent_representation(loaded.adata), latent_first_query)


def test_surgery_without_encoded_covariates_leaves_the_encoder_frozen() -> None:
    reference_adata, model = _reference(encode_covariates=False)
    latent = model.get_latent_representation()
    query_model = SCVI.load_query_data(_query(), model)
    assert not any(p.requires_grad for p in query_model.module.encoder.parameters())
    assert n_trainable_parameters(query_model.module) == 3 * (N_HIDDEN + 2 * N_GENES)
    query_model.train(**FAST)
    assert np.array_equal(query_model.get_latent_representation(reference_adata), latent)
