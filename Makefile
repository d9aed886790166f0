# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install billmig with its dev tools

demo: $(STAMP)  ## synthetic legacy DB on SQLite → every built phase → summary
	$(BIN)/billmig demo

lint: $(STAMP)  ## ruff, mypy and the import-linter layering contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint  ## lint, then the test suite (database tests skip unless the servers are up)
	$(BIN)/pytest

BENCH_ACCOUNTS = $(or $(ACCOUNTS),1000000)
BENCH_WORK = /tmp/billmig-bench-$(BENCH_ACCOUNTS)

bench: $(STAMP)  ## speed and memory benchmarks, run by hand: make bench ACCOUNTS=1000000
	$(BIN)/python bench/bench_extract.py --accounts $(BENCH_ACCOUNTS)
	$(BIN)/python bench/bench_map.py --accounts $(BENCH_ACCOUNTS) --keep $(BENCH_WORK)
	$(BIN)/python bench/bench_load.py --work $(BENCH_WORK) --accounts $(BENCH_ACCOUNTS)
	$(BIN)/python bench/bench_validate.py --work $(BENCH_WORK) --accounts $(BENCH_ACCOUNTS)

clean:
	rm -rf $(VENV) runs .mypy_cache .ruff_cache .pytest_cache .import_linter_cache *.egg-info
