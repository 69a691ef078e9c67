# The two commands of the README:
#   make workflow   set up (once) and run the whole default workflow offline
#   make test       set up (once) and run the test suite
# Both are idempotent: the environment is rebuilt only when a pin changes.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CORES  ?= all
STAMP  := $(VENV)/.installed

.PHONY: setup workflow test lint clean peer-env benchmark deconvolution cellassign complexity \
	real report slurm-test

setup: $(STAMP)

$(STAMP): envs/requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r envs/requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

workflow: $(STAMP)
	$(BIN)/snakemake --cores $(CORES)

test: $(STAMP)
	$(BIN)/python -m pytest

# The peers' environments, only for the comparisons (scprob never imports them): scvi-tools
# 1.4.2 (throughput benchmark, deconvolution) and the original stereoscope 0.3
# (deconvolution).
PEER       := .venv-peer
PEER_STAMP := $(PEER)/.installed
STSC       := .venv-stereoscope
STSC_STAMP := $(STSC)/.installed

peer-env: $(PEER_STAMP) $(STSC_STAMP)

$(PEER_STAMP): envs/scvi-tools.lock
	test -x $(PEER)/bin/python || $(PYTHON) -m venv $(PEER)
	$(PEER)/bin/python -m pip install --quiet --disable-pip-version-check -r envs/scvi-tools.lock
	touch $(PEER_STAMP)

$(STSC_STAMP): envs/stereoscope.lock
	test -x $(STSC)/bin/python || $(PYTHON) -m venv $(STSC)
	$(STSC)/bin/python -m pip install --quiet --disable-pip-version-check -r envs/stereoscope.lock
	touch $(STSC_STAMP)

# The deconvolution study with both peers on the same data and epochs.
deconvolution: $(STAMP) $(PEER_STAMP) $(STSC_STAMP)
	$(BIN)/snakemake results/deconvolution/tables/claim_check.csv \
		results/deconvolution/figures/fig5g_proportion_maps.png --cores $(CORES) \
		--configfile config/config.yaml config/peer.yaml

# The CellAssign study with scvi-tools' CellAssign on the same data in the same run.
cellassign: $(STAMP) $(PEER_STAMP)
	$(BIN)/snakemake results/cellassign/tables/claim_check.csv \
		results/cellassign/figures/supp_fig6g_runtime.png --cores $(CORES) \
		--configfile config/config.yaml config/peer.yaml

benchmark: $(STAMP) $(PEER_STAMP)
	$(BIN)/snakemake results/benchmarks/throughput.json results/benchmarks/fit_order.json \
		--cores $(CORES) \
		--forcerun benchmark_throughput benchmark_fit_order --configfile config/config.yaml config/peer.yaml

# The code-complexity study with the peers' sdists downloaded from PyPI and measured.
complexity: $(STAMP)
	$(BIN)/snakemake results/complexity/tables/complexity.csv \
		results/complexity/figures/fig5c_complexity.png --cores $(CORES) \
		--forcerun measure_complexity --configfile config/config.yaml config/peer.yaml

# The small real-data run (config/real.yaml): downloads from the original repositories.
real: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) --configfile config/real.yaml

# One HTML report of a finished run: every figure and table with its caption. CONFIG
# names the run's config (default: the offline default), e.g. make report
# CONFIG=config/real.yaml; the report lands in results/report.html.
CONFIG ?= config/config.yaml
report: $(STAMP)
	$(BIN)/snakemake --report results/report.html --configfile $(CONFIG)

# profiles/slurm against a real scheduler: install Debian's slurm-wlm and munge (root),
# start a one-node cluster, run the test workflow through the profile (plus a retry with
# more memory and a cancelled job), stop the daemons. About 12 minutes on 2 cores.
slurm-test: $(STAMP)
	command -v slurmctld >/dev/null && command -v munged >/dev/null || \
		profiles/slurm/local-cluster.sh install
	SCPROB_SLURM_TESTS=1 $(BIN)/python -m pytest tests/test_slurm_cluster.py

lint: $(STAMP)
	$(BIN)/ruff check src tests workflow/scripts
	$(BIN)/snakemake --lint

clean:
	rm -rf results .snakemake
