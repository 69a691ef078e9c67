# scprob: regenerate the benchmarks of the scvi-tools paper (Gayoso et al. 2021).
#
#   snakemake --cores all                          offline default (config/config.yaml)
#   snakemake --cores all --configfile my.yaml     a complete config of your own
#   snakemake --profile profiles/slurm             on a SLURM cluster
#   snakemake --report report.html                 figures with their captions
#
# Results and logs are written under results/ and logs/ of the working directory
# (--directory); config/config.yaml is read from there too. A --configfile replaces it
# (several are merged in order, e.g. --configfile config/config.yaml config/peer.yaml), so
# every key must be given: a file that leaves one out stops the run naming it, instead of
# silently running with the default's value. --config key=value overrides either.

import os

from snakemake.utils import min_version

min_version("9.0")

# OpenMP threads that wait for each other sleep instead of spinning: with spinning waiters
# a multi-thread torch job slows down a hundredfold as soon as another process takes a
# core (docs/performance.md). OpenMP reads this when a job's torch or numba loads it; set
# here, every job inherits it from the start, before any of its imports.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


configfile: "config/config.yaml"


include: "workflow/rules/config.smk"


report: "workflow/report/workflow.rst"


include: "workflow/rules/download.smk"
include: "workflow/rules/common.smk"


# The rule files of the configured studies (config `studies`); the benchmarks train on the
# runtime study's subsamples, so they bring its rules along.
for study in rules_needed(config["studies"]):

    include: f"workflow/rules/{study}.smk"


rule all:
    input:
        [study_targets(study) for study in config["studies"]],
    default_target: True
