# Paper Section 2.5 and Fig. 5c: source lines of code and average cyclomatic complexity
# (radon, as the paper measured them) of each of our models and of our shared core,
# beside scvi-tools' Stereoscope and the original stereoscope. With `download: true` the
# peers' sdists are fetched with pip, checked against the recorded sha256 and measured
# straight from the .tar.gz; by default (offline) the table carries the counts the config
# records for them, labelled "recorded". Protocol: src/scprob/bench/complexity.py.


rule download_sdist:
    output:
        sdist="resources/complexity/{sdist}",
    wildcard_constraints:
        sdist=complexity_sdist_pattern(),
    params:
        peer=lambda wildcards: complexity_peer_of(wildcards.sdist),
        index_url=config["complexity"]["index_url"],
        find_links=config["complexity"]["find_links"],
    log:
        "logs/complexity/download_{sdist}.log",
    conda:
        "../../envs/scprob.yaml"
    script:
        "../scripts/download_sdist.py"


rule measure_complexity:
    input:
        sources=complexity_sources(),
        sdists=complexity_sdists(),
    output:
        table=report(
            "results/complexity/tables/complexity.csv",
            caption="../report/complexity_table.rst",
            category="Code complexity (Fig. 5c)",
            labels={"panel": "Fig. 5c", "figure": "complexity table"},
        ),
        files="results/complexity/tables/complexity_files.csv",
        claim_check=report(
            "results/complexity/tables/claim_check.csv",
            caption="../report/complexity_claim_check.rst",
            category="Code complexity (Fig. 5c)",
            labels={"panel": "Fig. 5c", "figure": "claim check"},
        ),
    params:
        settings=config["complexity"],
        peers=complexity_peers(),
        # The repository's package, which the inputs list file by file (a function, as
        # the folder is no file of the rule).
        package_root=lambda wildcards: str(COMPLEXITY_PACKAGE),
    log:
        "logs/complexity/measure_complexity.log",
    benchmark:
        "results/complexity/benchmarks/measure_complexity.tsv"
    conda:
        "../../envs/scprob.yaml"
    script:
        "../scripts/measure_complexity.py"


rule figure_complexity:
    input:
        table="results/complexity/tables/complexity.csv",
    output:
        png=report(
            "results/complexity/figures/fig5c_complexity.png",
            caption="../report/complexity.rst",
            category="Code complexity (Fig. 5c)",
            labels={"panel": "Fig. 5c", "figure": "SLOC and average CC"},
        ),
        pdf="results/complexity/figures/fig5c_complexity.pdf",
    log:
        "logs/complexity/figure_complexity.log",
    conda:
        "../../envs/scprob.yaml"
    script:
        "../scripts/figure_complexity.py"
