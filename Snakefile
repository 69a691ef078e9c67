# scprob: regenerate the benchmarks of the scvi-tools paper (Gayoso et al. 2021).
#
#   snakemake --cores all                      offline default (config/config.yaml)
#   snakemake --profile profiles/slurm         on a SLURM cluster
#   snakemake --report report.html             figures with their captions
#
# Results and logs are written under results/ and logs/ of the working directory
# (--directory); config/config.yaml is read from there too, or pass --configfile.

import os
from pathlib import Path

from snakemake.utils import min_version, validate

min_version("9.0")

# Scripts import scprob from this checkout, also inside environments that do not install
# it (e.g. the conda environments of --sdm conda). Jobs inherit this variable.
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(Path(workflow.basedir) / "src"), os.environ.get("PYTHONPATH")) if p
)


configfile: "config/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/covariates.smk"


rule all:
    input:
        covariates_targets(),
    default_target: True
