# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint unit integration bench-intake bench-sla clean

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $(STAMP)

## Start the embedded store (unless MONGO_URI is set) and every service, in the foreground.
run: $(STAMP)
	$(BIN)/python -m deploy.local

## Lint, architecture contract, then the whole suite.
test: $(STAMP) lint
	$(BIN)/pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

integration: $(STAMP)
	$(BIN)/pytest -q tests/integration

bench-intake: $(STAMP)
	$(BIN)/python -m bench.intake

bench-sla: $(STAMP)
	$(BIN)/python -m bench.sla

clean:
	rm -rf $(VENV) var
