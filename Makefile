# twostream — every target creates the environment on first use (.venv, stamp file).
PYTHON   ?= python3
VENV     ?= .venv
BIN      := $(VENV)/bin
STAMP    := $(VENV)/.installed
CONFIG   ?= experiments/pretrain/default.yaml
TOKENIZER := runs/tokenizer/vqvae.pt
SEEDS    ?= 5
# make tables: seeds of the single-stream and VLDeformer rows (each seed costs about 5 CLIP runs)
CROSS_SEEDS ?= 3
JOBS     ?= 2
# COOKIE's frozen teachers: the towers of a default-config run
TEACHER  := runs/teacher/teacher.ckpt
# The files a config needs (visual tokenizer, teachers, stage-1 checkpoint), read from the config's own
# values by the classes that declare them: `$(PREREQ) CONFIG [OVERLAY...]` lists the missing ones and the
# command that builds each, `--build` runs those commands; `--latest RUN_ROOT` is the highest version_<N>'s last.ckpt.
PREREQ    = $(BIN)/python -m twostream.prerequisites
PYTEST_ARGS ?=
# CPU machines pin exact versions (and get the CPU torch wheel); GPU machines resolve freely.
CONSTRAINTS := $(if $(shell command -v nvidia-smi 2>/dev/null),,-c constraints-cpu.txt)

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export PYTHONUNBUFFERED := 1

.PHONY: install pretrain finetune tokenizer teacher ablate tables testbed test test-browser bench clean-runs help

help:
	@echo "make pretrain [CONFIG=path.yaml]   train + evaluate (default: tiny model on synthetic shapes)"
	@echo "make finetune [PRETRAINED=ckpt]    fine-tune the newest make-pretrain checkpoint on new embedded data"
	@echo "make tokenizer                     train the VQ-VAE visual tokenizer (MVM targets) -> $(TOKENIZER)"
	@echo "make teacher                       train COOKIE's frozen teachers (the default model) -> $(TEACHER)"
	@echo "make ablate [SEEDS=5] [JOBS=2] [ABLATE_FAST=1]  COTS ablation rows x seeds -> experiments/results/cots_ablation.md"
	@echo "make tables [SEEDS=5] [CROSS_SEEDS=3] [JOBS=2] [TABLES_FAST=1]  run/reuse the configs behind every table -> experiments/results/tables.md"
	@echo "make testbed [SEEDS=5]             the testbed measurements of docs/testbed.md (recipes, default and mini-schedule seeds)"
	@echo "make test                          CPU, offline test suite"
	@echo "make test-browser                  the search page in Debian's headless Chromium (installs it; screenshot)"
	@echo "make bench                         benchmarks -> experiments/results/*.md"

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml constraints-cpu.txt tools/install_fix.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(CONSTRAINTS) torch torchvision
	$(BIN)/python -m pip install --quiet $(CONSTRAINTS) -e ".[dev,serve,bench]"
	@$(BIN)/python -c "import torchvision.ops" 2>/dev/null || $(BIN)/python tools/install_fix.py
	$(BIN)/python -c "import torch, torchvision, open_clip, lightning; from torchvision.ops import nms; print('env ok: torch', torch.__version__)"
	@touch $(STAMP)

pretrain: $(STAMP)
	$(PREREQ) --build $(CONFIG)
	$(BIN)/twostream fit --config $(CONFIG)

# the highest-numbered `make pretrain` run's checkpoint unless PRETRAINED is given
PRETRAINED ?= $(shell $(PREREQ) --latest runs/default 2>/dev/null)
FINETUNE_CONFIG ?= experiments/finetune/synthetic.yaml

finetune: $(STAMP)
	@test -n "$(PRETRAINED)" && test -f "$(PRETRAINED)" || { echo "make finetune: no pre-trained checkpoint (runs/default/version_*/checkpoints/last.ckpt): run \`make pretrain\` first, or pass PRETRAINED=path/to/last.ckpt"; exit 2; }
	$(BIN)/twostream fit --config $(FINETUNE_CONFIG) --model.init_args.init_from=$(PRETRAINED)

tokenizer: $(STAMP)
	$(BIN)/twostream fit --config experiments/tokenizer/vqvae.yaml

$(TOKENIZER):
	$(MAKE) tokenizer

teacher: $(STAMP)
	$(BIN)/twostream fit --config experiments/pretrain/default.yaml --trainer.logger.init_args.name=teacher
	@ckpt="$$($(PREREQ) --latest runs/teacher --command 'make teacher')" && mkdir -p $(dir $(TEACHER)) \
		&& cp "$$ckpt" $(TEACHER) && echo "teacher: $$ckpt -> $(TEACHER)"

$(TEACHER):
	$(MAKE) teacher

# each row on top of the base and schedule, as run_ablation.py merges them (rows with MVM need the tokenizer)
ABLATE_BASE     := experiments/pretrain/cots.yaml
ABLATE_SCHEDULE := experiments/testbed/mini.yaml
ABLATE_ROWS     := experiments/ablations/cots
ablate: $(STAMP)
	$(PREREQ) --build --base $(ABLATE_BASE) $(ABLATE_SCHEDULE) --each $(ABLATE_ROWS)/*.yaml
	$(BIN)/python experiments/ablations/run_ablation.py --base $(ABLATE_BASE) \
		--schedule $(ABLATE_SCHEDULE) --rows $(ABLATE_ROWS) --seeds $(SEEDS) --jobs $(JOBS) \
		--out experiments/results/cots_ablation$(if $(ABLATE_FAST),_fast) $(if $(ABLATE_FAST),--fast)

# docs/testbed.md: every recipe once (seed 0, two runs side by side, one thread each), the default over
# SEEDS seeds (two threads, one at a time), the mini schedule vs a 300-step warm-up over SEEDS seeds
SWEEP := $(BIN)/python experiments/testbed/sweep.py --recipes experiments/testbed/recipes.yaml
testbed: $(STAMP)
	$(SWEEP) --jobs 2 --out experiments/results/testbed_lr --title "Learning rate and warm-up (small towers, patch stem)" \
		--only small_lr4e-3 small_lr2e-3 small small_lr5e-4 small_lr2.5e-4 small_warmup300
	$(SWEEP) --jobs 2 --out experiments/results/testbed_towers --title "Tower shape and stem" \
		--only old_default small small_conv small_conv_lr5e-4 small_conv_lr2.5e-4
	$(SWEEP) --jobs 2 --out experiments/results/testbed_other --title "Batch, temperature, data quantity, augmentation (small towers, patch stem)" \
		--only small small_batch128 small_temp0.03 small_temp_fixed small_data20k small_augment
	$(SWEEP) --jobs 2 --out experiments/results/testbed_combined --title "Combinations (small towers, conv stem)" \
		--only small_conv small_conv_lr5e-4_t0.03 small_conv_lr5e-4_b128 small_conv_b128_w300
	$(SWEEP) --jobs 1 --threads 0 --seeds $(SEEDS) --workdir runs/testbed_default --out experiments/results/testbed_default \
		--title "make pretrain's recipe" --only new_default
	$(SWEEP) --jobs 2 --seeds $(SEEDS) --workdir runs/testbed_mini --baseline mini --out experiments/results/testbed_mini \
		--title "The mini schedule" --only mini mini_warmup100 mini_3epochs

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# `twostream serve`'s page in a real headless browser (Debian's chromium + chromium-driver, installed with apt
# when missing; needs root or sudo): types a query, uploads an image, screenshots -> $(BROWSER_SHOT)
BROWSER_SHOT ?= runs/test-browser/search_page.png
test-browser: $(STAMP)
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
		$(if $(shell command -v sudo 2>/dev/null),sudo) apt-get update -qq && \
		$(if $(shell command -v sudo 2>/dev/null),sudo) apt-get install -y -qq chromium chromium-driver; }
	TWOSTREAM_BROWSER=1 TWOSTREAM_BROWSER_SHOT=$(BROWSER_SHOT) $(BIN)/python -m pytest -m browser tests/test_serve_browser.py $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python experiments/benchmarks/recall_eval.py
	$(BIN)/python experiments/benchmarks/cots_step.py
	$(BIN)/python experiments/benchmarks/data_images.py
	$(BIN)/python experiments/benchmarks/data_video.py
	$(BIN)/python experiments/benchmarks/collect_data.py
	$(BIN)/python experiments/benchmarks/efficiency.py
	$(BIN)/python experiments/benchmarks/search.py
	$(BIN)/python experiments/benchmarks/efficiency_paper.py
	$(BIN)/python experiments/benchmarks/vs_open_clip.py
	$(if $(shell command -v nvidia-smi 2>/dev/null),$(BIN)/python experiments/benchmarks/gpu_throughput.py,@echo "no GPU: skipping experiments/benchmarks/gpu_throughput.py")

# every results table: runs (or reuses) the configs behind them; TABLES_FAST=1 is a quick run check (it
# builds untrained stand-ins for the tokenizer and teachers). The configs make_tables.py runs, but not
# vldeformer.yaml: each of its seeds starts from that seed's single-stream run, not from its init_from.
TABLES_CONFIGS := $(addprefix experiments/pretrain/,default.yaml cots.yaml cookie.yaml single_stream.yaml video.yaml)
tables: $(STAMP)
	$(if $(TABLES_FAST),,$(PREREQ) --build --each $(TABLES_CONFIGS))
	$(BIN)/python experiments/tables/make_tables.py $(if $(TABLES_FAST),--fast --workdir runs/tables_fast --out experiments/results/tables_fast,--seeds $(SEEDS) --cross-encoder-seeds $(CROSS_SEEDS) --jobs $(JOBS))
	$(if $(TABLES_FAST),,$(BIN)/python experiments/tables/claims.py)

clean-runs:
	rm -rf runs lightning_logs
