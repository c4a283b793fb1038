# Development entry points. Everything runs inside .venv, which `make setup` creates.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup test lint clean

setup:  ## create or complete .venv (idempotent)
	@bash scripts/setup_venv.sh $(VENV)

test: setup  ## the whole test suite
	$(PY) -m pytest test $(PYTEST_ARGS)

lint: setup  ## flake8 and pep257 as ament runs them
	$(PY) -m pytest test/lint -q

clean:
	rm -rf build install log out .pytest_cache
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +
