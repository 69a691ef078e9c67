"""Rule integrate_scvi: train scVI or scVI-cc on the wing-disc counts (paper Fig. 2, Methods).

- ``scvi``: raw counts of all genes, the batch as the only covariate.
- ``scvi_cc``: the batch plus the 55 nuisance genes' log-normalised expression as
  continuous covariates; the nuisance genes themselves are removed from the input, so the
  model cannot relearn them from the counts.

The latent means ``(n_cells, n_latent)`` go through the same kNN graph and UMAP as every
other method. Writes the representation, the saved model and the per-epoch history.
"""

import logging
from typing import Any

import anndata as ad
from workflow_helpers import limit_threads, logged_to, write_csv, write_representation

from scprob.bench.baselines import neighbor_graph, umap_from_graph
from scprob.models import SCVI
from scprob.train import EpochLog

log = logging.getLogger(snakemake.rule)

ARCHITECTURE_KEYS = ("n_latent", "n_hidden", "n_layers", "dropout_rate", "gene_likelihood",
                     "dispersion")


def model_input(adata: ad.AnnData, method: str) -> tuple[ad.AnnData, list[str] | None]:
    """The AnnData the model reads and its continuous covariate keys (None for scVI)."""
    if method == "scvi":
        return adata, None
    nuisance_genes = [str(g) for g in adata.uns["nuisance_genes"]]
    kept = adata[:, ~adata.var_names.isin(nuisance_genes)].copy()
    return kept, [str(k) for k in adata.uns["nuisance_covariate_keys"]]


def main(
    prepared_path: str,
    method: str,
    display_name: str,
    settings: dict[str, Any],
    batch_key: str,
    n_neighbors: int,
    outputs: Any,
) -> None:
    adata = ad.read_h5ad(prepared_path)
    covariate_keys = [str(k) for k in adata.uns["nuisance_covariate_keys"]]
    ground_truth = adata.obs.drop(columns=covariate_keys)
    model_adata, continuous_keys = model_input(adata, method)
    log.info(
        "%s: %d cells x %d genes, batch %r, %d continuous covariates",
        display_name, model_adata.n_obs, model_adata.n_vars, batch_key,
        len(continuous_keys or []),
    )

    seed = settings["seed"]
    SCVI.setup_anndata(
        model_adata, layer="counts", batch_key=batch_key,
        continuous_covariate_keys=continuous_keys,
    )
    model = SCVI(model_adata, seed=seed, **{k: settings[k] for k in ARCHITECTURE_KEYS})
    model.train(
        max_epochs=settings["max_epochs"],
        batch_size=settings["batch_size"],
        train_size=settings["train_size"],
        early_stopping=settings["early_stopping"],
        early_stopping_patience=settings["early_stopping_patience"],
        plan_kwargs={"lr": settings["lr"], "n_epochs_kl_warmup": settings["n_epochs_kl_warmup"]},
        seed=seed,
        accelerator=settings["accelerator"],
        enable_progress_bar=False,
        callbacks=[EpochLog(log, every=max(1, settings["max_epochs"] // 20))],
    )
    log.info("trained %d epochs; validation ELBO %.2f", len(model.history), model.get_elbo())

    rep = neighbor_graph(
        model.get_latent_representation(), n_neighbors=n_neighbors, seed=seed, name=display_name
    )
    umap = umap_from_graph(rep, seed=seed)

    model.save(outputs.model, overwrite=True)
    write_csv(model.history.assign(method=method), outputs.history)
    write_representation(outputs.integrated, ground_truth, rep, umap, method)


with logged_to(snakemake.log[0]):
    limit_threads(snakemake.threads)
    main(
        prepared_path=snakemake.input.prepared,
        method=snakemake.wildcards.method,
        display_name=snakemake.params.display_name,
        settings=snakemake.params.settings,
        batch_key=snakemake.params.batch_key,
        n_neighbors=snakemake.params.n_neighbors,
        outputs=snakemake.output,
    )
