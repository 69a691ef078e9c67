"""The training plan: its settings and the kernel choice it owns."""

from __future__ import annotations

import pytest

from scprob.models import SCVI
from scprob.train import TrainingPlan, should_compile
from tests.conftest import make_counts_adata


def test_compile_setting_is_validated_and_auto_stays_eager_on_small_fits() -> None:
    adata = make_counts_adata()
    SCVI.setup_anndata(adata, batch_key="batch")
    with pytest.raises(ValueError, match=r"plan_kwargs\['compile'\] must be 'auto', True or "
                                         "False, got 'yes'"):
        TrainingPlan(SCVI(adata).module, compile="yes")
    model = SCVI(adata, n_latent=4, n_hidden=16)
    model.train(max_epochs=2, batch_size=64, enable_progress_bar=False)
    assert model.likelihood_kernel == "eager"  # a 300-cell fit never pays for compilation
    assert should_compile("auto", 20_000, 2_000, 50) and not should_compile("auto", 300, 60, 2)
    assert should_compile(True, 1, 1, 1) and not should_compile(False, 10**6, 10**4, 10**3)


def test_two_models_in_one_process_choose_their_kernels_independently(monkeypatch) -> None:
    """The kernel is the plan's, per fit: a compiled fit leaves the next fit's eager kernel
    eager, and each fit's loss calls receive its own kernel."""
    adata = make_counts_adata()
    SCVI.setup_anndata(adata, batch_key="batch")
    seen: list[str] = []
    for setting in (True, False):
        model = SCVI(adata, n_latent=4, n_hidden=16)
        loss = model.module.loss

        def spy(batch, kl_weight=1.0, kernel=None, loss=loss):
            seen.append(kernel.compiled)
            return loss(batch, kl_weight, kernel)

        model.module.loss = spy
        model.train(max_epochs=1, batch_size=64, enable_progress_bar=False,
                    plan_kwargs={"compile": setting})
        assert model.likelihood_kernel in (("compiled", "eager (compilation failed)")
                                           if setting else ("eager",))
    n_first = len(seen) // 2
    assert all(seen[:n_first]) and not any(seen[n_first:])


