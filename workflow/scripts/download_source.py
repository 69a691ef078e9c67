"""Rule download_source: one declared file, fetched from its URL or the mirror and checked
against its size and sha256 (``scprob.data.download.fetch``)."""

from pathlib import Path

from workflow_helpers import logged_to

from scprob.data.download import Source, fetch


def main(source: dict, destination: str, mirror: str | None, timeout_s: float,
         target: str) -> None:
    fetched = fetch(Source(**source), destination, mirror=mirror, timeout=float(timeout_s))
    if fetched != Path(target):
        raise RuntimeError(f"fetched {fetched}, but the rule's output is {target}.")


with logged_to(snakemake.log[0]):
    main(
        source=dict(snakemake.params.source),
        destination=snakemake.params.destination,
        mirror=snakemake.params.mirror,
        timeout_s=snakemake.params.timeout_s,
        target=snakemake.output[0],
    )
