"""Rule download_sdist: one peer's source distribution, fetched with pip, checked against
the recorded sha256 and moved into resources/complexity/
(``scprob.bench.complexity.download_sdist``)."""

import logging

from workflow_helpers import logged_to

from scprob.bench.complexity import download_sdist

log = logging.getLogger(snakemake.rule)


def main(peer: dict[str, str], index_url: str | None, find_links: str | None,
         target: str) -> None:
    log.info("downloading %s==%s", peer["package"], peer["version"])
    download_sdist(peer["package"], peer["version"], peer["sdist"], peer["sha256"], target,
                   index_url=index_url, find_links=find_links)
    log.info("%s: sha256 %s as recorded", target, peer["sha256"])


with logged_to(snakemake.log[0]):
    main(
        peer=dict(snakemake.params.peer),
        index_url=snakemake.params.index_url,
        find_links=snakemake.params.find_links,
        target=snakemake.output.sdist,
    )
