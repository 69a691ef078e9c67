"""The training plan's batch adversary (totalVI's adversarial training): its losses, its
weight, its optimizer, and that it hides the batch from the latent space."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score

from scprob.models import SCVI
from scprob.train import BatchAdversary, TrainingPlan
from tests.conftest import make_counts_adata


def _fixed_logits(adversary: BatchAdversary, logits: torch.Tensor) -> BatchAdversary:
    adversary.forward = lambda z: logits  # type: ignore[method-assign]
    return adversary


def test_fooling_loss_is_smallest_when_the_true_batch_gets_no_mass() -> None:
    n_batch = 4
    batch = torch.tensor([0, 1, 2, 3])
    z = torch.zeros(4, 2)
    uniform = _fixed_logits(BatchAdversary(2, n_batch), torch.zeros(4, n_batch))
    # Uniform over all batches: every log-probability is −log 4.
    assert uniform.fooling_loss(z, batch).item() == pytest.approx(np.log(4))
    assert uniform.classification_loss(z, batch).item() == pytest.approx(np.log(4))
    # Uniform over the other three, none on the true one: the target itself, loss log 3.
    others = torch.full((4, n_batch), 0.0)
    others[torch.arange(4), batch] = -1e4
    hiding = _fixed_logits(BatchAdversary(2, n_batch), others)
    assert hiding.fooling_loss(z, batch).item() == pytest.approx(np.log(3), abs=1e-5)
    # All mass on the true batch: the adversary wins, the encoder pays.
    telling = _fixed_logits(BatchAdversary(2, n_batch), -others)
    assert telling.fooling_loss(z, batch).item() > 1e3
    assert telling.classification_loss(z, batch).item() == pytest.approx(0.0, abs=1e-5)


def test_adversary_weight_optimizers_and_settings() -> None:
    adata = make_counts_adata()
    SCVI.setup_anndata(adata, batch_key="batch")
    module = SCVI(adata, n_latent=4).module
    plan = TrainingPlan(module, n_batch=2, n_latent=4, adversarial_classifier=True,
                        n_epochs_kl_warmup=10)
    assert plan.adversary is not None
    module_optimizer, adversary_optimizer = plan.configure_optimizers()
    in_module = {id(p) for g in module_optimizer.param_groups for p in g["params"]}
    in_adversary = {id(p) for g in adversary_optimizer.param_groups for p in g["params"]}
    assert in_adversary == {id(p) for p in plan.adversary.parameters()}
    assert not in_module & in_adversary
    assert plan.adversarial_weight == pytest.approx(1.0 - plan.kl_weight)  # "auto"
    fixed = TrainingPlan(module, n_batch=2, n_latent=4, adversarial_classifier=True,
                         scale_adversarial_loss=0.5)
    assert fixed.adversarial_weight == 0.5
    # One batch: nothing to hide, no adversary, one optimizer.
    alone = TrainingPlan(module, n_batch=1, n_latent=4, adversarial_classifier=True)
    assert alone.adversary is None and alone.adversarial_weight == 0.0
    assert isinstance(alone.configure_optimizers(), torch.optim.Optimizer)
    with pytest.raises(ValueError, match=r"scale_adversarial_loss'\] must be 'auto' or a "
                                         r"number ≥ 0, got -1"):
        TrainingPlan(module, n_batch=2, n_latent=4, scale_adversarial_loss=-1)


def _batch_shifted_adata(seed: int = 0) -> ad.AnnData:
    """Three clusters in two batches; batch b2 multiplies every gene's mean by its own
    factor (log-fold changes of sd 1)."""
    adata = make_counts_adata(n_cells=600, seed=seed)
    rng = np.random.default_rng(seed + 100)
    counts = np.asarray(adata.layers["counts"].todense())
    in_b2 = (adata.obs["batch"] == "b2").to_numpy()
    fold = np.exp(rng.normal(0.0, 1.0, adata.n_vars))
    counts[in_b2] = rng.poisson(counts[in_b2] * fold).astype(np.float32)
    shifted = ad.AnnData(counts, obs=adata.obs.copy(), var=adata.var.copy())
    shifted.layers["counts"] = shifted.X.copy()
    return shifted


def _batch_readability(adversarial: bool) -> float:
    """Cross-validated accuracy of a linear probe reading the batch from the latent."""
    adata = _batch_shifted_adata()
    SCVI.setup_anndata(adata, layer="counts", batch_key="batch")
    model = SCVI(adata, n_latent=4, n_hidden=32, seed=3)
    model.train(max_epochs=40, batch_size=64, enable_progress_bar=False,
                plan_kwargs={"adversarial_classifier": adversarial,
                             "scale_adversarial_loss": 1.0, "lr": 5e-3,
                             "n_epochs_kl_warmup": 1000})
    latent = model.get_latent_representation()
    batch = pd.Series(adata.obs["batch"]).cat.codes.to_numpy()
    return float(cross_val_score(LogisticRegression(max_iter=2000), latent, batch,
                                 cv=5).mean())


def test_adversary_hides_the_batch_from_the_latent() -> None:
    """With the KL weight held near zero (a 1,000-epoch warm-up over 40 epochs) nothing
    pushes the batch shift out of the latent, and a linear probe reads the batch from it
    (measured 0.91); the adversary pushes it out (0.58, chance 0.5), since the decoder,
    which gets the batch, can explain the shift instead."""
    without = _batch_readability(adversarial=False)
    with_adversary = _batch_readability(adversarial=True)
    assert without > 0.85
    assert with_adversary < without - 0.2
