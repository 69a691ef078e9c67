"""Rule integrate_scvi: scVI or scVI-cc on the wing-disc counts (paper Fig. 2, Methods;
``scprob.bench.covariates``). Writes the representation (latent kNN graph and UMAP, with
the cells' truth), the saved model and the per-epoch history."""

from typing import Any

from workflow_helpers import (
    limit_threads,
    logged_to,
    read_h5ad_input,
    write_csv,
    write_representation,
)

from scprob.bench.covariates import fit_scvi, ground_truth_obs, scvi_representation


def main(prepared_path: str, method: str, display_name: str, settings: dict[str, Any],
         batch_key: str, n_neighbors: int, outputs: Any) -> None:
    prepared = read_h5ad_input(prepared_path)
    model = fit_scvi(prepared, method, settings, batch_key)
    rep, umap = scvi_representation(model, display_name, n_neighbors, settings["seed"])
    model.save(outputs.model, overwrite=True)
    write_csv(model.history.assign(method=method), outputs.history)
    write_representation(outputs.integrated, ground_truth_obs(prepared), rep, umap, method)


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
