"""What the rule scripts of the scArches study (paper Fig. 3) share: training a totalVI
model with the study's settings, timing its stages, and the on-disk form of a latent space.

Snakemake puts this folder on ``sys.path`` of every ``script:``, so a script imports this
module by name. The study's logic (label transfer, scores) lives in
``scprob.bench.label_transfer``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anndata as ad
import numpy as np
import pandas as pd
from workflow_helpers import atomic_output

if TYPE_CHECKING:
    from scprob.models import TOTALVI

log = logging.getLogger("scarches")

# The obs columns a latent file keeps: the truth (held out from every model), the design.
LATENT_OBS_COLUMNS = ("cell_type", "batch", "donor", "condition", "dataset")
LATENT_KEY = "X_latent"
# Constructor arguments of TOTALVI that the config's totalvi block sets.
ARCHITECTURE_KEYS = ("n_latent", "n_hidden", "n_layers_encoder", "n_layers_decoder",
                     "dropout_rate", "gene_likelihood", "encode_covariates",
                     "use_batch_norm", "use_layer_norm", "center_protein_input",
                     "protein_panel_dropout")


def build_totalvi(adata: ad.AnnData, architecture: dict[str, Any], batch_key: str,
                  seed: int) -> TOTALVI:
    """A fresh totalVI on the raw counts of ``adata`` with the study's architecture."""
    # Imported here: the label-transfer and UMAP jobs read latents only, and importing the
    # models (torch, Lightning) would cost each of them about 8 s.
    from scprob.models import TOTALVI

    TOTALVI.setup_anndata(adata, protein_expression_obsm_key="protein_expression",
                          layer="counts", batch_key=batch_key)
    return TOTALVI(adata, seed=seed, **{k: architecture[k] for k in ARCHITECTURE_KEYS})


def train_totalvi(model: TOTALVI, training: dict[str, Any], seed: int, accelerator: str
                  ) -> None:
    """Fit ``model`` with one stage's ``training`` block (reference, query or de novo)."""
    from scprob.train import EpochLog

    model.train(
        max_epochs=training["max_epochs"],
        batch_size=training["batch_size"],
        train_size=training["train_size"],
        plan_kwargs={
            "lr": training["lr"],
            "weight_decay": training["weight_decay"],
            "n_epochs_kl_warmup": training["n_epochs_kl_warmup"],
            "adversarial_classifier": training["adversarial_classifier"],
        },
        seed=seed,
        accelerator=accelerator,
        enable_progress_bar=False,
        callbacks=[EpochLog(log, every=max(1, training["max_epochs"] // 10))],
    )
    history = model.history
    log.info("trained %d epochs; last train ELBO %.2f", len(history),
             float(history["elbo_train"].iloc[-1]))


class StageClock:
    """Wall-clock and process CPU seconds of named sections of one stage.

    CPU time is the process's, over all its threads, so ``cpu_s / wall_s`` tells how many
    cores the section kept busy (and a loaded machine shows as wall time well above it).
    """

    def __init__(self) -> None:
        self.sections: dict[str, dict[str, float]] = {}

    @contextlib.contextmanager
    def section(self, name: str) -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.process_time()
        yield
        self.sections[name] = {"wall_s": time.perf_counter() - wall,
                               "cpu_s": time.process_time() - cpu}
        log.info("%s: %.1f s wall, %.1f s CPU", name, self.sections[name]["wall_s"],
                 self.sections[name]["cpu_s"])

    def total(self, names: tuple[str, ...], key: str = "wall_s") -> float:
        return float(sum(self.sections[n][key] for n in names))


def write_timing(path: str | os.PathLike[str], stage: str, clock: StageClock,
                 fit_sections: tuple[str, ...], **facts: Any) -> None:
    """The stage's timings as JSON: every section, and ``fit_s`` / ``fit_cpu_s``, the sum
    over ``fit_sections`` (building the model and training it, the paper's runtime)."""
    record = {
        "stage": stage,
        "fit_sections": list(fit_sections),
        "fit_s": clock.total(fit_sections),
        "fit_cpu_s": clock.total(fit_sections, "cpu_s"),
        "sections": clock.sections,
        **facts,
    }
    with atomic_output(path) as partial:
        partial.write_text(json.dumps(record, indent=2))


def latent_obs(*adatas: ad.AnnData) -> pd.DataFrame:
    """The :data:`LATENT_OBS_COLUMNS` of ``adatas``, stacked; a column a dataset lacks
    (the reference has no ``condition``) is missing there."""
    frames = [a.obs.reindex(columns=list(LATENT_OBS_COLUMNS)).astype(object) for a in adatas]
    obs = pd.concat(frames)
    for column in LATENT_OBS_COLUMNS:
        categories = list(dict.fromkeys(obs[column].dropna().astype(str)))
        obs[column] = pd.Categorical(obs[column].where(obs[column].notna(), None),
                                     categories=categories)
    return obs


def write_latent(path: str | os.PathLike[str], obs: pd.DataFrame, latent: np.ndarray,
                 model: str) -> None:
    """Store ``latent`` ``(n_cells, n_latent)`` with the cells' ``obs`` as a small h5ad."""
    if latent.shape[0] != obs.shape[0]:
        raise ValueError(f"{latent.shape[0]} latent rows for {obs.shape[0]} cells.")
    adata = ad.AnnData(obs=obs.copy())
    adata.obsm[LATENT_KEY] = np.asarray(latent, dtype=np.float32)
    adata.uns["model"] = model
    with atomic_output(path) as partial:
        adata.write_h5ad(partial)


def read_latent(path: str | os.PathLike[str]) -> ad.AnnData:
    """A latent file of :func:`write_latent`: obs and ``obsm["X_latent"]``."""
    return ad.read_h5ad(Path(path))
