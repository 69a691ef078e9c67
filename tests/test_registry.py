"""Registration: what is recorded, and a clear error for each kind of bad input."""

from __future__ import annotations

import re

import numpy as np
import pytest
import scipy.sparse as sp

from scprob.data.registry import get_registry
from scprob.models import SCVI
from tests.conftest import make_counts_adata


def test_registry_records_categories_covariates_and_genes(counts_adata) -> None:
    SCVI.setup_anndata(counts_adata, layer="counts", batch_key="batch",
                       categorical_covariate_keys=["donor"],
                       continuous_covariate_keys=["nuisance"])
    registry = get_registry(counts_adata, "SCVI")
    assert registry.categorical_columns == ["batch", "donor"]
    assert registry.categories == {"batch": ["b1", "b2"], "donor": ["d1", "d2", "d3"]}
    assert registry.continuous_covariate_keys == ["nuisance"]
    assert registry.gene_names == list(counts_adata.var_names)
    assert registry.n_categories == [2, 3]


def test_single_category_batch_is_fine(counts_adata) -> None:
    counts_adata.obs["batch"] = "only"
    SCVI.setup_anndata(counts_adata, batch_key="batch")
    assert get_registry(counts_adata).n_batch == 1


def test_non_integer_counts_name_the_cell_and_gene(counts_adata) -> None:
    x = counts_adata.X.toarray()
    x[4, 7] = 2.5
    counts_adata.X = sp.csr_matrix(x)
    message = ("adata.X must hold raw counts (non-negative integers), but the value "
               "np.float32(2.5) of cell 'cell_4', gene 'gene_7' is not an integer.")
    with pytest.raises(ValueError, match=re.escape(message)):
        SCVI.setup_anndata(counts_adata)


def test_negative_counts_in_a_dense_layer(counts_adata) -> None:
    dense = counts_adata.X.toarray()
    dense[2, 3] = -1
    counts_adata.layers["dense"] = dense
    with pytest.raises(ValueError, match=r"adata.layers\['dense'\].*cell 'cell_2', gene "
                                         r"'gene_3' is negative"):
        SCVI.setup_anndata(counts_adata, layer="dense")


def test_missing_obs_key_names_the_key(counts_adata) -> None:
    with pytest.raises(ValueError, match=r"batch_key 'sample' is not a column of adata.obs "
                                         r"\(available: 'batch', 'cluster'"):
        SCVI.setup_anndata(counts_adata, batch_key="sample")
    with pytest.raises(ValueError, match="continuous covariate 'pct_mito' is not a column"):
        SCVI.setup_anndata(counts_adata, continuous_covariate_keys=["pct_mito"])


def test_missing_layer(counts_adata) -> None:
    with pytest.raises(ValueError, match=r"layer 'raw' is not in adata.layers \(available: "
                                         r"\['counts'\]\)"):
        SCVI.setup_anndata(counts_adata, layer="raw")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_continuous_covariate_names_the_cell(counts_adata, bad: float) -> None:
    counts_adata.obs.loc["cell_9", "nuisance"] = bad
    with pytest.raises(ValueError, match=r"continuous covariate 'nuisance' has 1 NaN or "
                                         r"infinite values, first in cell 'cell_9'"):
        SCVI.setup_anndata(counts_adata, continuous_covariate_keys=["nuisance"])


def test_nan_categorical_covariate(counts_adata) -> None:
    donor = counts_adata.obs["donor"].astype(object)
    donor.iloc[5] = np.nan
    counts_adata.obs["donor"] = donor
    with pytest.raises(ValueError, match=r"categorical covariate 'donor' is missing \(NaN\) "
                                         r"for 1 cells, first 'cell_5'"):
        SCVI.setup_anndata(counts_adata, categorical_covariate_keys=["donor"])


def test_empty_matrix() -> None:
    adata = make_counts_adata()[:0].copy()
    with pytest.raises(ValueError, match=r"adata.X is empty \(0 cells × 60 genes\)"):
        SCVI.setup_anndata(adata)


def test_model_on_unregistered_anndata() -> None:
    with pytest.raises(ValueError, match=re.escape("call SCVI.setup_anndata(adata, ...) first")):
        SCVI(make_counts_adata())


def test_non_numeric_continuous_covariate(counts_adata) -> None:
    with pytest.raises(ValueError, match="continuous covariate 'donor' is not numeric"):
        SCVI.setup_anndata(counts_adata, continuous_covariate_keys=["donor"])


def test_registry_survives_an_h5ad_round_trip(tmp_path) -> None:
    from scprob.models import TOTALVI
    from tests.test_totalvi import make_cite_seq_adata

    adata = make_cite_seq_adata()
    TOTALVI.setup_anndata(adata, batch_key="batch", continuous_covariate_keys=None)
    adata.write_h5ad(tmp_path / "a.h5ad")
    import anndata as ad

    reread = get_registry(ad.read_h5ad(tmp_path / "a.h5ad"), "TOTALVI")
    assert reread.to_dict() == get_registry(adata).to_dict()
    assert reread.fields["protein"].observed_mask.shape == (reread.n_batch, 8)


def test_labels_field_codes_labels_and_names_unseen_ones(counts_adata) -> None:
    from scprob.data.fields import CountsField, LabelsField
    from scprob.data.registry import register_fields

    registry = register_fields(counts_adata, "Labelled", [CountsField(), LabelsField("cluster")])
    assert registry.fields["labels"].categories == ["0", "1", "2"]
    data = registry.cell_data(counts_adata)
    np.testing.assert_array_equal(data.values["labels"].numpy(),
                                  counts_adata.obs["cluster"].astype(int).to_numpy())
    other = counts_adata.copy()
    other.obs["cluster"] = other.obs["cluster"].cat.add_categories("9")
    other.obs.loc[other.obs_names[0], "cluster"] = "9"
    with pytest.raises(ValueError, match=r"labels_key 'cluster' has labels the model has not "
                                         r"seen: \['9'\]"):
        registry.cell_data(other)
