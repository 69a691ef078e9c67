"""The compiled likelihood kernel is compiled once per process and graph, whatever trains
on it next: a second model of the same shapes, a query model with frozen parameters, a
last minibatch of another size or of a single cell. Compilations are counted, not timed."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from scprob.models import SCVI
from tests.conftest import make_counts_adata

pytest.importorskip("torch._dynamo")

# 300 cells at train_size 0.9: 270 training cells in batches of 29 (the last holds 9) and
# 30 validation cells (the last batch holds one).
FIT = {"max_epochs": 2, "batch_size": 29, "train_size": 0.9, "enable_progress_bar": False,
       "plan_kwargs": {"compile": True}}


def compiled_graphs() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def reference_data() -> ad.AnnData:
    adata = make_counts_adata(n_cells=300, n_genes=60)
    SCVI.setup_anndata(adata, layer="counts", batch_key="batch",
                       categorical_covariate_keys=["donor"],
                       continuous_covariate_keys=["nuisance"])
    return adata


def test_later_models_reuse_the_graphs_the_first_fit_compiled() -> None:
    adata = reference_data()
    first = SCVI(adata, n_latent=4, n_hidden=16)
    first.train(**FIT)
    if first.likelihood_kernel != "compiled":
        pytest.skip("torch.compile does not work here (no C++ compiler)")
    assert len(first.validation_indices) % FIT["batch_size"] == 1  # a one-cell batch ran
    assert len(first.train_indices) % FIT["batch_size"] not in (0, 1)
    after_first = compiled_graphs()
    assert after_first >= 2  # training and validation graphs

    second = SCVI(adata, n_latent=4, n_hidden=16, seed=1)
    second.train(**FIT)
    assert compiled_graphs() == after_first, "a second model of the same shapes recompiled"

    # A query model: new batches, frozen reference weights (dispersion included) and a
    # different number of cells.
    query = make_counts_adata(n_cells=200, seed=1)
    query.obs["batch"] = pd.Categorical(np.where(query.obs["batch"] == "b1", "q1", "q2"))
    query_model = SCVI.load_query_data(query, first)
    assert not query_model.module.log_theta.requires_grad
    query_model.train(**FIT)
    assert query_model.likelihood_kernel == "compiled"
    assert compiled_graphs() == after_first, "the query model recompiled the kernel"

    # The same cells, stored dense instead of CSR.
    dense = adata.copy()
    dense.layers["counts"] = dense.layers["counts"].toarray()
    SCVI(dense, n_latent=4, n_hidden=16).train(**FIT)
    assert compiled_graphs() == after_first, "dense input recompiled the kernel"
