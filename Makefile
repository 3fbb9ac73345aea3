# Two entry points: `make run` and `make test`. Both set up the venv themselves.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup run test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

## Run the gateway on embedded defaults: local broker, DIP simulator, dev PKI.
run: setup
	$(VENV)/bin/dcp-gateway demo

## Lint, type-check and run the whole test suite (real Kafka, real TLS, real RSA keys): on
## Apache Kafka (from Maven Central, when java and mvn are here), then the tests marked `tansu`
## again on the embedded broker of `make run`.
test: setup
	$(PY) -m ruff check gateway dipsim tests load-tests
	$(PY) -m mypy --strict gateway dipsim tests
	$(PY) -m pytest
	DCP_GATEWAY_TEST_KAFKA=tansu $(PY) -m pytest -m tansu

lint: setup
	$(PY) -m ruff check gateway dipsim tests load-tests
	$(PY) -m mypy --strict gateway dipsim tests

bench: setup
	$(PY) load-tests/bench_signing.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
