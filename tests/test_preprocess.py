"""log_normalize and add_nuisance_covariates: exact values on hand-checked counts."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from scprob.data.preprocess import add_nuisance_covariates, log_normalize

COUNTS = np.array(
    [
        [1.0, 3.0, 0.0, 0.0],  # total 4
        [2.0, 2.0, 2.0, 2.0],  # total 8
        [0.0, 0.0, 10.0, 2.0],  # total 12
    ]
)


def test_log_normalize_scales_every_cell_to_the_median_total() -> None:
    result = log_normalize(COUNTS)
    # Median total is 8: each row becomes counts / total * 8, then log1p.
    expected = np.log1p(COUNTS / COUNTS.sum(axis=1, keepdims=True) * 8.0)
    np.testing.assert_allclose(result, expected)
    np.testing.assert_allclose(np.expm1(result).sum(axis=1), [8.0, 8.0, 8.0])


def test_log_normalize_explicit_target_sum() -> None:
    result = log_normalize(COUNTS, target_sum=1e4)
    np.testing.assert_allclose(np.expm1(result).sum(axis=1), [1e4, 1e4, 1e4])


def test_log_normalize_sparse_stays_sparse_and_matches_dense() -> None:
    sparse = log_normalize(sp.csr_matrix(COUNTS))
    assert sp.issparse(sparse)
    assert sparse.nnz == np.count_nonzero(COUNTS)
    np.testing.assert_allclose(sparse.toarray(), log_normalize(COUNTS))


def test_log_normalize_keeps_float32_and_empty_cells_zero() -> None:
    counts = np.vstack([COUNTS, np.zeros(4)]).astype(np.float32)
    result = log_normalize(counts)
    assert result.dtype == np.float32
    np.testing.assert_array_equal(result[3], 0.0)
    assert np.all(np.isfinite(result))


def test_log_normalize_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="counts must be non-negative"):
        log_normalize(-COUNTS)
    with pytest.raises(ValueError, match="target_sum must be positive"):
        log_normalize(COUNTS, target_sum=0.0)
    with pytest.raises(ValueError, match=r"2-D \(n_cells, n_genes\)"):
        log_normalize(COUNTS[0])


def _adata() -> ad.AnnData:
    adata = ad.AnnData(
        X=np.zeros_like(COUNTS),
        obs=pd.DataFrame(index=["c0", "c1", "c2"]),
        var=pd.DataFrame(index=["PCNA", "lncRNA:roX1", "vg", "other"]),
    )
    adata.layers["counts"] = sp.csr_matrix(COUNTS)
    return adata


def test_add_nuisance_covariates_writes_log_normalised_columns_in_gene_order() -> None:
    adata = _adata()
    keys = add_nuisance_covariates(adata, ["lncRNA:roX1", "PCNA"])
    assert keys == ["nuisance_lncRNA:roX1", "nuisance_PCNA"]
    # Normalised over all four genes (median total 8), not over the nuisance genes only.
    expected = log_normalize(COUNTS)
    np.testing.assert_allclose(adata.obs["nuisance_lncRNA:roX1"], expected[:, 1], rtol=1e-6)
    np.testing.assert_allclose(adata.obs["nuisance_PCNA"], expected[:, 0], rtol=1e-6)
    assert adata.obs["nuisance_PCNA"].dtype == np.float32


def test_add_nuisance_covariates_from_x_with_custom_prefix() -> None:
    adata = _adata()
    adata.X = COUNTS.copy()
    keys = add_nuisance_covariates(adata, ["vg"], layer=None, prefix="cc_")
    assert keys == ["cc_vg"]
    np.testing.assert_allclose(adata.obs["cc_vg"], log_normalize(COUNTS)[:, 2], rtol=1e-6)


def test_add_nuisance_covariates_names_missing_genes_and_the_fix() -> None:
    adata = _adata()
    missing = [f"CG{i}" for i in range(7)]
    with pytest.raises(ValueError) as error:
        add_nuisance_covariates(adata, ["PCNA", *missing])
    message = str(error.value)
    assert message.startswith("7 of 8 nuisance genes are not in adata.var_names")
    assert "CG0, CG1, CG2, CG3, CG4, ..." in message
    assert "CG5" not in message
    assert "Drop them from the list" in message
    assert not any(k.startswith("nuisance_") for k in adata.obs)


def test_add_nuisance_covariates_other_errors() -> None:
    adata = _adata()
    with pytest.raises(ValueError, match=r"layer 'raw' is not in adata\.layers"):
        add_nuisance_covariates(adata, ["PCNA"], layer="raw")
    with pytest.raises(ValueError, match="genes is empty"):
        add_nuisance_covariates(adata, [])
    with pytest.raises(ValueError, match=r"more than once: \['PCNA'\]"):
        add_nuisance_covariates(adata, ["PCNA", "vg", "PCNA"])
