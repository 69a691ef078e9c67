# scprob: regenerate the benchmarks of the scvi-tools paper (Gayoso et al. 2021).
#
#   snakemake --cores all                      offline default (config/config.yaml)
#   snakemake --profile profiles/slurm         on a SLURM cluster
#   snakemake --report report.html             figures with their captions
#
# Results and logs are written under results/ and logs/ of the working directory
# (--directory); config/config.yaml is read from there too, or pass --configfile.

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/covariates.smk"
include: "workflow/rules/scaling.smk"
include: "workflow/rules/scarches.smk"
include: "workflow/rules/benchmarks.smk"


rule all:
    input:
        covariates_targets(),
        scaling_targets(),
        scarches_targets(),
        benchmark_targets(),
    default_target: True
