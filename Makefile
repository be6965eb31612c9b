# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv from nothing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch first, pinned: this exact pair lies on the build machines' disk (no download), and the
# project's torch>=… range then installs nothing more.
TORCH := torch==2.14.1 torchvision==0.29.1

.PHONY: demo science theory flow test test-fast lint docs clean wheelhouse

$(BIN)/snakemake: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[test,docs]'
	touch $@

# The embedded demo on CPU: digits, 5 runs × 4 iterations, then the report. `ouroboros run` is
# snakemake with this machine's defaults (ouroboros.cli): the cores (CORES=N to use fewer), as many
# concurrent model jobs ("gpu" slots on a CPU box) and the warm start (model jobs fork from one
# process that imported torch once: the same bytes, seconds less per job). `ouroboros report` draws
# the tables, figures and findings, writes report.html and ends on its path, a headline table and
# the primary findings (ouroboros.ending).
CORES ?=
RUN = $(BIN)/ouroboros run $(if $(CORES),--cores $(CORES))
demo: $(BIN)/snakemake
	$(RUN)
	$(BIN)/ouroboros report

# The reproduction at CPU scale (docs/reproduction.md; experiments/science.yaml): a size sweep under replace and
# the paper's runs at one size, then the report (its findings: results/tables/findings.md; the findings
# read every experiments/*.yaml, so they need no --configfile).
science: $(BIN)/snakemake
	$(RUN) science -- --configfile experiments/science.yaml
	$(BIN)/ouroboros report

# Flow matching against the DDPM under the same loop on the same D_1 (docs/flow.md): replace,
# accumulate and greedy at N = 48, 4 replicates each, then the findings.
flow: $(BIN)/snakemake
	$(RUN) beyond-flow -- --configfile experiments/science.yaml
	$(RUN) findings
	grep -E "^\| (claim|[IS5G]+\.)" results/tables/findings.md | head -40

# The loop against closed forms: gaussian and kde generators on Gaussian vectors, replicates of
# every run, and the findings table with its T.* rows (docs/known-answers.md). numpy only: every
# job is the warm light server's.
theory: $(BIN)/snakemake
	$(RUN) theory -- --configfile experiments/theory.yaml
	$(RUN) findings
	grep -E "^\| (claim|T\.)" results/tables/findings.md

# Four test files at a time on two cores (--dist loadfile keeps a file's shared fixtures in one
# worker): the CLI tests wait on Snakemake's and SLURM's scheduling most of the time (1.2 of 2 cores
# busy with three at a time: 5:52 idle; four: 5:17). --no-loadscope-reorder: files start in the
# order tests/conftest.py gives (longest first), not by their number of tests, which started the
# SLURM and paper-shape files two minutes in and made them end last.
test: $(BIN)/snakemake
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m pytest -n 4 --dist loadfile --no-loadscope-reorder

# The fast tier: every library test and every config check in-process; no snakemake command
# line, no SLURM, no browser.
test-fast: $(BIN)/snakemake
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m pytest -n 2 --dist loadfile -m "not cli and not slurm and not browser"

# Python (ruff), the Snakemake files' format (snakefmt) and Snakemake's own linter; any finding fails
lint: $(BIN)/snakemake
	$(BIN)/ruff check .
	$(BIN)/snakefmt --check Snakefile workflow/
	$(BIN)/snakemake --lint

# The documentation site (docs/, mkdocs.yml) into site/. Strict: a page missing from the nav, a link
# to a missing page or anchor fails the build. NO_MKDOCS_2_WARNING: the theme's banner about its
# successor is not a finding.
docs: $(BIN)/snakemake
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# What an air-gapped GPU node (its own Python with torch, torchvision, transformers, scipy, Pillow)
# lacks for benchmarks/gpu_check.sh, as wheels for its Python, never torch: diffusers, snakemake and
# its dependencies, torch-fidelity, faiss-cpu (48 MiB for CPython 3.12; benchmarks/wheelhouse.py).
# Copy the repository with wheelhouse/ to the node; the check installs from it offline.
NODE_PYTHON ?= 3.12
NODE_TORCH ?= 2.11
wheelhouse: $(BIN)/snakemake
	$(BIN)/python benchmarks/wheelhouse.py --out wheelhouse --python $(NODE_PYTHON) --torch $(NODE_TORCH) --max-mib 60

clean:
	rm -rf results logs .snakemake report.html site
