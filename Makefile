# Two entry points for a fresh machine: `make generate` (the main job) and `make test`.
# Both create ./.venv on first use. torch is installed first so that the CPU build is used:
#   - here and in CI, `pip install torch==2.13.0` takes the local CPU wheel;
#   - elsewhere, add the CPU index: make test TORCH_INDEX=https://download.pytorch.org/whl/cpu
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
BIN := $(VENV)/bin
ARGS ?=
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1

# setuptools says "Editable installation." as a warning of its InformationOnly kind (the package
# maps pipelines/ to solar_diffusion.pipelines, so the editable install uses a meta path finder):
# information, not a problem, so the install filters that one message by its text.
$(BIN)/.installed: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)" $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))
	$(BIN)/python -W "ignore:Editable installation" -m pip install -q -e ".[test]"
	touch $@

install: $(BIN)/.installed

# every class by default (no --flare-class here: a --flare-class in ARGS chooses the classes), at the
# bundled cascade's 256 px (--image-size 64 in ARGS: its 64 px base stage); two images per class keep
# it to about 40 s on 2 CPU cores (about 2.4 s per 256 px image)
generate: $(BIN)/.installed
	$(OFFLINE) $(BIN)/solar-diffusion generate --num-images 2 --out generated --overwrite $(ARGS)

test: $(BIN)/.installed
	$(OFFLINE) $(BIN)/python -m pytest -n 2 -m "not slow and not live" --durations=15

test-slow: $(BIN)/.installed
	$(OFFLINE) $(BIN)/python -m pytest -m slow

# the paper-mode model's weights (22 MB; out of the tree so that a checkout, a training pack and the
# wheels fit the GPU machine's transfer budget): restored from the commit that bundled them
PAPER_WEIGHTS := solar_diffusion/models/paper-171/unet/diffusion_pytorch_model.safetensors
PAPER_COMMIT := bb31570bdf45dcf2f617ad55565db307c198944f
paper-model: $(PAPER_WEIGHTS)
$(PAPER_WEIGHTS):
	git show $(PAPER_COMMIT):solar_diffusion/models/default/unet/diffusion_pytorch_model.safetensors > $@.tmp && mv $@.tmp $@

# the results page, README summary and model cards, from the JSON in reports/
results: $(BIN)/.installed
	$(BIN)/python -m solar_diffusion.results

.PHONY: install generate test test-slow results paper-model space space-screenshot

# the demo Space: the package wheel its requirements.txt installs, and the README's screenshot
space: $(BIN)/.installed
	rm -rf space/wheels && $(BIN)/python -m pip wheel -q --no-deps . -w space/wheels
space-screenshot: $(BIN)/.installed
	$(OFFLINE) $(BIN)/python space/browser.py --screenshot space/screenshot.png
