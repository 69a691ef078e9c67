# The two commands of the README:
#   make workflow   set up (once) and run the whole default workflow offline
#   make test       set up (once) and run the test suite
# Both are idempotent: the environment is rebuilt only when a pin changes.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CORES  ?= all
STAMP  := $(VENV)/.installed

.PHONY: setup workflow test lint clean peer-env benchmark complexity

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

# The scvi-tools 1.4.2 environment, only for the throughput benchmark's comparison
# (scprob never imports it), and that benchmark run against it.
PEER       := .venv-peer
PEER_STAMP := $(PEER)/.installed

peer-env: $(PEER_STAMP)

$(PEER_STAMP): envs/scvi-tools.lock
	test -x $(PEER)/bin/python || $(PYTHON) -m venv $(PEER)
	$(PEER)/bin/python -m pip install --quiet --disable-pip-version-check -r envs/scvi-tools.lock
	touch $(PEER_STAMP)

benchmark: $(STAMP) $(PEER_STAMP)
	$(BIN)/snakemake results/benchmarks/throughput.json results/benchmarks/fit_order.json \
		--cores $(CORES) \
		--forcerun benchmark_throughput benchmark_fit_order --configfile config/config.yaml config/peer.yaml

# The code-complexity study with the peers' sdists downloaded from PyPI and measured.
complexity: $(STAMP)
	$(BIN)/snakemake results/complexity/tables/complexity.csv \
		results/complexity/figures/fig5c_complexity.png --cores $(CORES) \
		--forcerun measure_complexity --configfile config/config.yaml config/peer.yaml

lint: $(STAMP)
	$(BIN)/ruff check src tests workflow/scripts
	$(BIN)/snakemake --lint

clean:
	rm -rf results .snakemake
