# Development entry points. Everything runs inside .venv, which `make setup` creates.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
BENCH_ARGS ?=
DEMO_ARGS ?=

.PHONY: setup test lint bench demo clean

setup:  ## create or complete .venv (idempotent)
	@bash scripts/setup_venv.sh $(VENV)

test: setup  ## the whole test suite
	$(PY) -m pytest test $(PYTEST_ARGS)

lint: setup  ## flake8 and pep257 as ament runs them
	$(PY) -m pytest test/lint -q

bench: setup  ## every benchmark in quick mode -> benchmarks/results/summary.{json,md}
	@$(PY) -c 'import gtsam' 2>/dev/null || $(PY) -m pip install -q --no-deps -r requirements-bench.txt
	$(PY) benchmarks/run_all.py $(BENCH_ARGS)

demo: setup  ## synthetic drive through the nodes -> out/demo/report.md
	$(PY) -m i2p_registration.tools.demo $(DEMO_ARGS)

clean:
	rm -rf build install log out .pytest_cache
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +
