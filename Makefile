# The two commands of the README. Both create .venv and install what they need on first use.
#   make demo   run the main job on the embedded default
#   make test   run the test suite (starts a private redis-server when $REDIS_URL does not answer)
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
STAMP = $(VENV)/.installed

.PHONY: demo test install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# the CPU torch wheel first, so no extra below can pull a multi-GB CUDA build
	$(BIN)/python -m pip install -q torch==2.13.0 2>&1 | grep -v "is ignored" || true
	$(BIN)/python -m pip install -q -e ".[dev]" 2>&1 | grep -v "is ignored" || true
	$(BIN)/python -c "import torch, transformers, fastapi, redis, alphagrpo" && touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/alphagrpo demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

clean:
	rm -rf $(VENV)
