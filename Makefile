# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo test test-slow lint lock bench clean

# Installs the versions pinned in requirements.lock: the libraries that shape outputs (pyarrow,
# pandas, duckdb, SQLAlchemy, drivers) are the same on every machine, so rehearsals compare.
$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install billmig with its dev tools

demo: $(STAMP)  ## synthetic legacy DB on SQLite → every built phase → summary
	$(BIN)/billmig demo

lint: $(STAMP)  ## ruff, mypy and the import-linter layering contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint  ## lint, then the suite on every core minus the slow and kill tests (see test-slow)
	$(BIN)/pytest -n auto --dist loadfile -m "not slow and not kill"

test-slow: $(STAMP)  ## the slow and kill-anywhere tests that `make test` leaves out; .ci/run runs both
	$(BIN)/pytest -n auto --dist loadfile -m "slow or kill"

LOCK_VENV = /tmp/billmig-lock-venv

lock:  ## re-resolve every dependency from pyproject.toml into requirements.lock
	rm -rf $(LOCK_VENV) && $(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LOCK_VENV)/bin/python -m pip install --quiet -e '.[dev]'
	{ echo "# Resolved versions that make demo / make test install (pip install -c requirements.lock)."; \
	  echo "# Outputs (snapshots, mapped files, packs) are byte-identical only across machines on these."; \
	  echo "# Regenerate with: make lock"; \
	  $(LOCK_VENV)/bin/python -m pip freeze --exclude-editable | grep -v '^billmig'; } > requirements.lock
	rm -rf $(LOCK_VENV)

BENCH_ACCOUNTS = $(or $(ACCOUNTS),1000000)
BENCH_WORK = /tmp/billmig-bench-$(BENCH_ACCOUNTS)

bench: $(STAMP)  ## speed and memory benchmarks, run by hand: make bench ACCOUNTS=1000000
	$(BIN)/python bench/bench_extract.py --accounts $(BENCH_ACCOUNTS)
	$(BIN)/python bench/bench_map.py --accounts $(BENCH_ACCOUNTS) --keep $(BENCH_WORK)
	$(BIN)/python bench/bench_load.py --work $(BENCH_WORK) --accounts $(BENCH_ACCOUNTS)
	$(BIN)/python bench/bench_validate.py --work $(BENCH_WORK) --accounts $(BENCH_ACCOUNTS)

clean:
	rm -rf $(VENV) runs .mypy_cache .ruff_cache .pytest_cache .import_linter_cache *.egg-info
