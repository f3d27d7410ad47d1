# All set-up lives here: `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch first, pinned: the CPU wheel is local; an unpinned torch pulls GBs of CUDA packages.
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[test,tune]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/study submit configs/quick.yaml
	$(VENV)/bin/study results quick --group-by T,kappa --metric root_error,rho_ratio,mse_ratio
	$(VENV)/bin/study figures quick
	$(VENV)/bin/study report quick -o report-quick
	@echo
	@echo "Sweep report:     report-quick/index.html"
	@echo "MLflow UI:        $(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$$(pwd)/mlflow.db   (then open http://127.0.0.1:5000 and click Model training)"

test: $(STAMP)
	# The import contracts first (.importlinter: no cycles across layers, a light Ray task, pure workers/).
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -ra

clean:
	rm -rf $(VENV) .pytest_cache
