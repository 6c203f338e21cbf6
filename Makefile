# Two entry points for a new user: `make demo` and `make test`. Both set everything up.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
FMNIST := /usr/share/datasets/fashion-mnist

.PHONY: setup data demo test lint bench

$(BIN)/factory: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[agent,dev,ray]'
	touch $@

setup: $(BIN)/factory data

# Fashion-MNIST: Debian's package where apt is available, torchvision's downloader otherwise.
data: $(BIN)/factory
	@if [ -f $(FMNIST)/train-images-idx3-ubyte.gz ]; then \
		echo "Fashion-MNIST found in $(FMNIST)"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; \
	elif command -v apt-get >/dev/null 2>&1 && command -v sudo >/dev/null 2>&1; then \
		sudo apt-get update -qq && sudo apt-get install -y -qq dataset-fashion-mnist; \
	else \
		$(BIN)/python -c "from factory.data import download_fashion_mnist as d; print(d())"; \
	fi

# search -> train (1 epoch) -> export -> report.md, about 30-40 min on 2 cores; re-run with
# DEMO=runs/demo-... to continue one that was interrupted
DEMO ?= runs/demo-$(shell date +%Y%m%d-%H%M%S)
demo: setup
	$(BIN)/factory --version
	$(BIN)/factory targets
	$(BIN)/python bench/demo.py --out $(DEMO)

lint: $(BIN)/factory
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: setup lint
	OMP_NUM_THREADS=1 $(BIN)/pytest

bench: setup
	$(BIN)/python bench/supernet_throughput.py
	$(BIN)/python bench/onnx_exporters.py
	$(BIN)/python bench/profiler_fidelity.py
	$(BIN)/python bench/lut_accuracy.py
	$(BIN)/python bench/strategies.py
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/agent_fuzz.py
