# Two set-up commands (see README): `make demo` runs the main job on built-in demo data,
# `make test` runs the test suite (`make test-fast`: without the tests marked slow; `make lint`: ruff).
# Each creates .venv and installs everything when needed.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# The optional [encoders] extra lives in its own venv: timm imports torchvision, and no torchvision wheel on
# PyPI loads with the CPU torch wheel, so this venv takes PyPI's torch build of the same version (CUDA-enabled,
# several GB with its nvidia-* packages: 5.5 GB in all here; it runs on CPU too) and the torchvision made for it. --isolated: PyPI only,
# no local find-links that would offer the +cpu wheel again.
ENC_VENV ?= .venv-enc
ENC_TORCH_SPEC ?= torch==2.13.0 torchvision==0.28.0
ENC_BIN := $(ENC_VENV)/bin
ENC_STAMP := $(ENC_VENV)/.installed

.PHONY: install demo test test-fast lint bench clean install-encoders test-encoders

$(STAMP): pyproject.toml requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev,crf,serve,onnx,patchmatch]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/inpaintseg demo --out demo_out

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The quick loop while editing: every test not marked `slow` (pyproject.toml's markers).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

# The rules in pyproject.toml's [tool.ruff]; .ci/run runs this before `make test`.
lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks docs recipes

bench: $(STAMP)
	$(BIN)/python benchmarks/train_speed.py
	$(BIN)/python benchmarks/predict_speed.py

$(ENC_STAMP): pyproject.toml
	test -x $(ENC_BIN)/python || $(PYTHON) -m venv $(ENC_VENV)
	$(ENC_BIN)/python -m pip --isolated install --quiet $(ENC_TORCH_SPEC)
	$(ENC_BIN)/python -m pip install --quiet -e ".[dev,crf,encoders]"
	touch $(ENC_STAMP)

install-encoders: $(ENC_STAMP)

test-encoders: $(ENC_STAMP)
	$(ENC_BIN)/python -m pytest -q tests/test_encoders.py tests/test_encoders_timm.py

clean:
	rm -rf $(VENV) $(ENC_VENV) demo_out
