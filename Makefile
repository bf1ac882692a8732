# twostream — every target creates the environment on first use (.venv, stamp file).
PYTHON   ?= python3
VENV     ?= .venv
BIN      := $(VENV)/bin
STAMP    := $(VENV)/.installed
CONFIG   ?= experiments/pretrain/default.yaml
PYTEST_ARGS ?=
# CPU machines pin exact versions (and get the CPU torch wheel); GPU machines resolve freely.
CONSTRAINTS := $(if $(shell command -v nvidia-smi 2>/dev/null),,-c constraints-cpu.txt)

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export PYTHONUNBUFFERED := 1

.PHONY: install pretrain test bench clean-runs help

help:
	@echo "make pretrain [CONFIG=path.yaml]   train + evaluate (default: tiny model on synthetic shapes)"
	@echo "make test                          CPU, offline test suite"
	@echo "make bench                         benchmarks -> experiments/results/*.md"

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml constraints-cpu.txt src/twostream/install_fix.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(CONSTRAINTS) torch torchvision
	$(BIN)/python -m pip install --quiet $(CONSTRAINTS) -e ".[dev]"
	@$(BIN)/python -c "import torchvision.ops" 2>/dev/null || $(BIN)/python src/twostream/install_fix.py
	$(BIN)/python -c "import torch, torchvision, open_clip, lightning; from torchvision.ops import nms; print('env ok: torch', torch.__version__)"
	@touch $(STAMP)

pretrain: $(STAMP)
	$(BIN)/twostream fit --config $(CONFIG)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python experiments/benchmarks/recall_eval.py

clean-runs:
	rm -rf runs lightning_logs
