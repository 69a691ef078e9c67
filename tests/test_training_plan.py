"""The training plan: its settings and the kernel choice it owns."""

from __future__ import annotations

import pytest

from scprob.models import SCVI
from scprob.train import TrainingPlan, fit_entries, should_compile
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
    # 400 epochs of 18,000 cells x 2,000 genes repay a compilation; 2 epochs capped at 20
    # minibatches of 1,024 cells (the runtime study's capped fit) do not.
    assert should_compile("auto", fit_entries(2_000, 18_000, 2_000, 400))
    assert not should_compile("auto", fit_entries(4_000, 20 * 1024, 2_500, 2))
    assert should_compile(True, 0) and not should_compile(False, 1e15)


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




def test_auto_counts_the_whole_fit_as_it_will_run(monkeypatch) -> None:
    """The entries ``"auto"`` weighs are the cells each epoch trains on after
    ``limit_train_batches`` plus the validation cells, × genes × max_epochs."""
    import scprob.train as train

    asked: list[float] = []

    def recording(setting, entries):
        asked.append(entries)
        return False

    monkeypatch.setattr(train, "should_compile", recording)
    adata = make_counts_adata(n_cells=300, n_genes=60)
    SCVI.setup_anndata(adata, batch_key="batch")
    model = SCVI(adata, n_latent=4, n_hidden=16)
    model.train(max_epochs=3, batch_size=50, limit_train_batches=2, train_size=0.9,
                enable_progress_bar=False)
    assert len(model.train_indices) == 270 and len(model.validation_indices) == 30
    assert asked == [60 * (2 * 50 + 30) * 3]
    model.train(max_epochs=2, batch_size=50, train_size=0.9, check_val_every_n_epoch=2,
                enable_progress_bar=False)
    assert asked[-1] == 60 * (270 + 30 / 2) * 2
    # Without validation cells there is nothing to load, and "auto" counts the training.
    model.train(max_epochs=2, batch_size=50, train_size=1.0, enable_progress_bar=False)
    assert asked[-1] == 60 * 300 * 2 and len(model.history) == 2
