# edgeml_ros: `make demo` and `make test` set up everything they need (see tools/bootstrap.sh).
SHELL := /bin/bash
RUN := tools/run_in_env.sh
DEMO_ARGS ?=
TEST_ARGS ?=

.PHONY: setup demo test lint format train clean

setup:
	@tools/bootstrap.sh

demo: setup
	@$(RUN) python -m edgeml_ros.cli demo $(DEMO_ARGS)

lint: setup
	$(RUN) ruff check .
	$(RUN) ruff format --check .

test: lint
	$(RUN) python -m pytest $(TEST_ARGS)

format: setup
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

# Re-create the committed default checkpoint (the command is recorded in its metadata).
train: setup
	$(RUN) python -m edgeml_ros.cli train --epochs 10

clean:
	rm -rf build install log .venv
