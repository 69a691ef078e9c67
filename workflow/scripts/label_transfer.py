"""Rule label_transfer: random-forest label transfer on one model's latent space (paper
Fig. 3, Methods; ``scprob.bench.scarches.query_predictions``): ``scarches``, the latents of
the scArches query model; ``de_novo``, those of totalVI fitted on reference and query.
Writes one row per query cell: ``cell``, ``donor``, ``condition``, ``batch``,
``true_label``, ``predicted_label``."""

from workflow_helpers import limit_threads, logged_to, read_latent, write_csv

from scprob.bench.scarches import query_predictions


def main(latent_path: str, label_key: str, n_estimators: int, seed: int, threads: int,
         predictions_path: str) -> None:
    obs, latent = read_latent(latent_path)
    predictions = query_predictions(obs, latent, label_key, seed=seed,
                                    n_estimators=n_estimators, n_jobs=threads)
    write_csv(predictions, predictions_path)


with logged_to(snakemake.log[0]):
    limit_threads(snakemake.threads)
    main(
        latent_path=snakemake.input.latent,
        label_key=snakemake.params.label_key,
        n_estimators=snakemake.params.n_estimators,
        seed=snakemake.params.seed,
        threads=snakemake.threads,
        predictions_path=snakemake.output.predictions,
    )
