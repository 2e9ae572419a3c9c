# Colorflow: `make demo` runs the pipeline on the embedded stack; `make test` runs every test.
# Both prepare the machine first (Debian packages, .venv) when something is missing.

PY := .venv/bin/python
COLORFLOW := .venv/bin/colorflow
BOOTSTRAP := scripts/bootstrap.sh

.PHONY: help bootstrap up down status demo test drills lint format bench bench-pipeline lock

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

bootstrap:  ## install Debian packages and .venv when missing or out of date
	@bash $(BOOTSTRAP)

up: bootstrap  ## start Airflow, MLflow and the sandbox on loopback (waits until healthy); EXECUTOR=celery adds Redis and workers
	$(COLORFLOW) stack up $(if $(EXECUTOR),--executor $(EXECUTOR))

down:  ## stop the services `make up` started
	@if [ -x $(COLORFLOW) ]; then $(COLORFLOW) stack down; else echo "nothing to stop"; fi

status:  ## show the state of each local service
	$(COLORFLOW) stack status

demo: up  ## run the whole pipeline through Airflow and print a summary; leaves the UIs up
	$(COLORFLOW) stack demo

test: bootstrap  ## run every test and the fast drills (starts its own services on free ports)
	$(PY) -m pytest -m "not slow_drill" --durations=30

drills: bootstrap  ## run every reliability and security drill; prints the table (.colorflow/drills.md)
	$(PY) -m pytest tests/drills

lint: bootstrap  ## ruff lint and format check
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: bootstrap  ## apply ruff fixes and formatting
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

bench: bootstrap  ## run the benchmarks; results go to bench/results/
	$(PY) -m bench

bench-pipeline: bootstrap  ## real pixels at 10,000 and 100,000 through Airflow (hours); bench/results/
	$(PY) -m bench.pipeline_scale

lock:  ## re-resolve requirements.in into the full lock requirements.txt
	bash scripts/lock.sh
