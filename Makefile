# Two commands on a fresh machine: `make run` (train everything on the embedded data) and `make test`.
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export DVC_NO_ANALYTICS := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export GX_ANALYTICS_ENABLED := false

# `dvc plots show` page with the Vega libraries inlined (.dvc/config plots.html_template): charts render offline
PLOTS_PAGE := .dvc/plots.html

.PHONY: run run-pool test test-fast install clean-data

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --disable-pip-version-check -q -e '.[pipeline,test]'
	touch $(STAMP)

$(PLOTS_PAGE): $(STAMP) src/dlkdd/vega_page.py
	$(VENV)/bin/python -m dlkdd.vega_page $@

install: $(STAMP) $(PLOTS_PAGE)

run: $(STAMP) $(PLOTS_PAGE)
	dvc repro
	dlkdd summary

# the unlabelled-pool profile (README "Learn from unlabelled footage"): a 1x pool and the student's 100-epoch budget,
# as a DVC experiment on top of the default run (its teacher and baseline are reused from the run-cache)
run-pool: $(STAMP) $(PLOTS_PAGE)
	dvc exp run -n pool-1x -S generate.unlabeled_per_class=30 -S kd.epochs=100
	dlkdd summary

# two pytest-xdist workers (this project's CI machine has 2 cores), one group per module (tests/conftest.py);
# `make test PYTEST_WORKERS=0` runs the suite in one process
PYTEST_WORKERS ?= 2
PYTEST := pytest -q -n $(PYTEST_WORKERS) --dist loadgroup

test: $(STAMP) $(PLOTS_PAGE)
	ruff check .
	$(PYTEST)

# the inner loop: everything but the tests marked e2e (dvc repro, Prefect, clusters, training); `make test` runs all
test-fast: $(STAMP) $(PLOTS_PAGE)
	ruff check .
	$(PYTEST) -m "not e2e"

clean-data:
	rm -rf data/raw data/frames data/enhanced data/pool data/pool_enhanced models/*.pt

# Retrain when footage lands (README: "Retrain when new footage lands"). Two terminals: the server, then the flows.
.PHONY: prefect-server serve
PREFECT_API_URL ?= http://127.0.0.1:4200/api

prefect-server: $(STAMP)
	prefect server start --host 127.0.0.1 --port 4200

serve: $(STAMP)
	PREFECT_API_URL=$(PREFECT_API_URL) python -m flows.serve
