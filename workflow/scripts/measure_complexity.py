"""Rule measure_complexity: the table behind paper Fig. 5c, one row per group (our models,
our shared core, the peers' groups measured from their sdists or as recorded), its
per-file detail, and the claim check (``scprob.bench.complexity``)."""

import logging

from workflow_helpers import logged_to, write_csv

from scprob.bench.complexity import (
    ORIGINAL_PEER,
    REIMPLEMENTATION_PEER,
    complexity_claims,
    measure_study,
    peer_source,
    recorded_note,
)

log = logging.getLogger(snakemake.rule)


def main(settings: dict, peers: list[str], sdists: list[str], package_root: str,
         table_path: str, files_path: str, claim_check_path: str) -> None:
    table, files = measure_study(settings, package_root, dict(zip(peers, sdists, strict=True)))
    log.info("complexity table (%s):\n%s", recorded_note(table),
             table.drop(columns="files").to_string(index=False))
    claims = complexity_claims(
        table,
        reimplementation_source=peer_source(settings["peers"][REIMPLEMENTATION_PEER]),
        original_source=peer_source(settings["peers"][ORIGINAL_PEER]),
        max_line_ratio=settings["max_line_ratio"],
    )
    log.info("claim check:\n%s", claims.to_string(index=False))
    write_csv(table, table_path)
    write_csv(files, files_path)
    write_csv(claims, claim_check_path)


with logged_to(snakemake.log[0]):
    main(
        settings=dict(snakemake.params.settings),
        peers=list(snakemake.params.peers),
        sdists=list(snakemake.input.sdists),
        package_root=snakemake.params.package_root,
        table_path=snakemake.output.table,
        files_path=snakemake.output.files,
        claim_check_path=snakemake.output.claim_check,
    )
