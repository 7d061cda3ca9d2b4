# novalite: the two commands a newcomer needs are `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test test-core test-python bench placement-demo clean

setup:
	@scripts/setup.sh

## The main job: the whole stack on this machine, 100 servers booted through the API.
demo: setup
	$(PY) -m novalite.cli demo --data-dir $(CURDIR)/novalite-demo --guest-image $(VENV)/guest

## The placement core alone: 10,000 servers on 100,000 simulated hosts.
placement-demo: setup
	$(PY) -m novalite.cli placement-demo

## Every test: the Rust core's own tests, then pytest for the rest.
test: setup test-core test-python

test-core:
	cargo test --no-default-features --release -q

test-python:
	NOVALITE_TEST_POSTGRES_URL=$$(cat $(VENV)/postgres.url 2>/dev/null) $(PY) -m pytest -q

## Benchmarks (pytest-benchmark); figures go to benches/RESULTS.md by hand.
bench: setup
	OPENBLAS_NUM_THREADS=1 $(PY) -m pytest benches -q --benchmark-only --benchmark-columns=min,median,mean,max,rounds --benchmark-sort=name

clean:
	rm -rf $(VENV) target
