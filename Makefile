# compression-course: `make lab` to study, `make test` to run every check.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.stamp-install
KERNEL := compression-course
PYTEST_WORKERS ?= 2

.PHONY: setup lab test lint format release bench grade-bench lock doctor clean site

$(PY):
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the lock or the package metadata changed.
$(STAMP): requirements.lock pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

# The course kernel loads course_utils.jupyter at start (figures as PNG, "run the first cell").
KERNEL_JSON := $(VENV)/share/jupyter/kernels/$(KERNEL)/kernel.json
$(KERNEL_JSON): course_utils/jupyter.py | $(STAMP)
	$(PY) -m course_utils kernel >/dev/null

setup: $(STAMP) $(KERNEL_JSON)

# JupyterLab refuses to run as root (containers, CI) unless told so.
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)

# JupyterLab at the course root (lessons, exercises and solutions all reachable), opening
# START.ipynb: how to work and one row per chapter with links (regenerated each time).
# jupyter-config/ hides nbgrader's instructor menus (nbgrader is installed for `make test`).
lab: setup
	$(PY) -m course_utils start
	JUPYTER_CONFIG_PATH=$(CURDIR)/jupyter-config $(VENV)/bin/jupyter lab --ServerApp.root_dir=. \
		--LabApp.default_url=/lab/tree/START.ipynb $(ALLOW_ROOT)

# Static HTML of every executed lesson + index (offline). Reuses the notebooks nbval executed
# during `make test` (build/executed) when their sources still match; executes the rest.
site: setup
	$(PY) -m course_utils site --executed build/executed --out build/site

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

release: setup
	$(PY) -m course_utils release

# One torch thread per pytest worker: 2 workers x 2 threads would oversubscribe 2 cores.
test: lint
	$(PY) -m course_utils release --check
	OMP_NUM_THREADS=1 COURSE_EXECUTED_DIR=build/executed $(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile \
		-p course_utils.nbval_plugin --nbval-lax --nbval-current-env tests notebooks solutions

bench: setup
	$(PY) -m course_utils bench

grade-bench: setup
	$(PY) benchmarks/grade_bench.py

doctor: setup
	$(PY) -m course_utils doctor

lock: setup
	$(PY) -m pip freeze --exclude-editable | grep -v '^compression-course' > requirements.lock.new
	mv requirements.lock.new requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
