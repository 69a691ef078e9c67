# Declared input files: every source of the config's `download` block (download.sources,
# then the rows of the download.sources_tsv table) becomes resources/{path}, fetched from
# its URL, or from the same path on download.mirror, and checked against its size and
# sha256 before it is moved into place (src/scprob/data/download.py, docs/downloads.md).
# A consumer lists resources/<path> as an input; nothing else needs to know the URL.

import re

from scprob.data.download import sources_from_config

# Declared path -> its Source; read once, so a malformed entry or table stops the run
# before any job starts. A relative sources_tsv is read from the repository (where config/
# lies), whatever the run's working directory.
DOWNLOAD_SOURCES = {
    s.path: s for s in sources_from_config(config["download"], root=workflow.basedir)
}


rule download_source:
    output:
        "resources/{path}",
    wildcard_constraints:
        # Exactly the declared paths, so this rule never claims another rule's resources/.
        path="|".join(re.escape(p) for p in DOWNLOAD_SOURCES) or "(?!)",
    params:
        source=lambda wildcards: DOWNLOAD_SOURCES[wildcards.path].as_dict(),
        # The folder fetch() lays the declared path out under: resources/.
        destination=lambda wildcards, output: output[0][: -len(wildcards.path)],
        mirror=config["download"]["mirror"],
        timeout_s=config["download"]["timeout_s"],
    log:
        "logs/download/{path}.log",
    conda:
        "../../envs/scprob.yaml"
    script:
        "../scripts/download_source.py"
