# The whole set-up: `make run` starts the gateway on its embedded default, `make test` passes the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install services stop-services bench bench-pix bench-migrate bench-bridge bench-scale bench-delivery clean portal-messages hcp-messages

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/epr-gateway serve

# Real PostgreSQL and Redis for the tests (Debian packages, installed when missing, started on
# private ports under .test-services/), then the whole suite.
test: $(STAMP)
	scripts/test_services.sh start
	. .test-services/env && $(BIN)/python -m pytest $(PYTEST_ARGS)

services:
	scripts/test_services.sh start

stop-services:
	scripts/test_services.sh stop

bench: $(STAMP)
	$(BIN)/python bench/bench_mhd.py

bench-pix: $(STAMP)
	$(BIN)/python bench/bench_pix.py

# 100,000 generated XDM documents into the embedded default and 20,000 into PostgreSQL (the test
# services' database, reset), each beside its raw baseline; the export is cached under /tmp.
bench-migrate: $(STAMP)
	scripts/test_services.sh start
	. .test-services/env && $(BIN)/python bench/bench_migrate.py $(BENCH_ARGS)
bench-bridge: $(STAMP)
	$(BIN)/python bench/bench_bridge.py

# The gateway on PostgreSQL + Redis (the test services' database, reset, and Redis, flushed) with 1, 2
# and 4 workers and as two nodes, beside a bare baseline on as many workers, the invariants checked
# under the mixed load (bench/README.md).
bench-scale: $(STAMP)
	scripts/test_services.sh start
	. .test-services/env && $(BIN)/python bench/bench_scale.py $(BENCH_ARGS)

# 20,000 documents delivered to the community stub (its own process) beside the raw baseline POSTing the
# same MTOM bytes (BENCH_ARGS: --documents, --concurrency, --postgres, --with-migration).
bench-delivery: $(STAMP)
	scripts/test_services.sh start
	. .test-services/env && $(BIN)/python bench/bench_delivery.py $(BENCH_ARGS)

clean:
	scripts/test_services.sh stop || true
	rm -rf $(VENV) .test-services

# The portal's message catalogues: extract every text, merge into fr/de/it/en, compile (commit all).
portal-messages: $(STAMP)
	$(BIN)/pybabel extract -F gateway/portal/babel.cfg -k N_ --no-location --omit-header \
		-o gateway/portal/locales/messages.pot gateway/portal gateway/pages
	$(BIN)/pybabel update --no-fuzzy-matching --ignore-obsolete -i gateway/portal/locales/messages.pot -d gateway/portal/locales
	$(BIN)/pybabel compile -d gateway/portal/locales
# The physicians' page's catalogues, the same way (the shared layout's texts are in each page's catalogues).
hcp-messages: $(STAMP)
	$(BIN)/pybabel extract -F gateway/hcp/babel.cfg -k N_ --no-location --omit-header \
		-o gateway/hcp/locales/messages.pot gateway/hcp gateway/pages
	for lang in fr de it en; do \
		test -f gateway/hcp/locales/$$lang/LC_MESSAGES/messages.po || \
			$(BIN)/pybabel init --no-wrap -l $$lang -i gateway/hcp/locales/messages.pot -d gateway/hcp/locales; \
	done
	$(BIN)/pybabel update --no-fuzzy-matching --ignore-obsolete -i gateway/hcp/locales/messages.pot -d gateway/hcp/locales
	$(BIN)/pybabel compile -d gateway/hcp/locales
