# authlens: one entry point. `make demo` serves a model; `make test` runs the test suite.
# Every target creates .venv and installs what it needs (pinned by constraints.txt) on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
PIN    := -c constraints.txt

HOST ?= 127.0.0.1
PORT ?= 8000
DEMO_DATA   := datasets/demo
DEMO_BUNDLE := bundles/demo
DEMO_RUN    := runs/demo

.PHONY: help demo test test-all lint format typecheck bench fuzz soak browser-deps postgres-deps lock clean-demo

help:
	@echo "make demo      synthesise data, fine-tune, export and serve on http://$(HOST):$(PORT)/"
	@echo "make test      run the test suite (slow tests excluded); installs chromium for the page test"
	@echo "make test-all  run every test, slow ones included"
	@echo "make lint      ruff check + format check, mypy on model/ and serving/"
	@echo "make bench     measure decoding, inference and HTTP throughput on this machine"
	@echo "make soak      soak (10 min at 80 % of capacity) and overload (2 min at 3x) a local server"
	@echo "make fuzz      fuzz image decoding with atheris for FUZZ_SECONDS (default 60)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# One stamp per extra: re-installs when pyproject.toml or constraints.txt change.
$(VENV)/.installed-%: pyproject.toml constraints.txt | $(BIN)/python
	@echo ">> installing authlens[$*] into $(VENV) (first run only; torch makes this take a few minutes)"
	$(PIP) install --progress-bar on $(PIN) -e ".[$*]"
	@touch $@

demo: $(VENV)/.installed-train
	@if [ -f $(DEMO_BUNDLE)/bundle.json ]; then \
	  echo ">> $(DEMO_BUNDLE) exists: serving it (make clean-demo to rebuild)"; \
	else \
	  set -e; start=$$(date +%s); \
	  if [ -f $(DEMO_DATA)/manifest.csv ]; then \
	    echo ">> [1/3] $(DEMO_DATA) exists: using it"; \
	  else \
	    echo ">> [1/3] synthesising $(DEMO_DATA)"; rm -rf $(DEMO_RUN); \
	    $(BIN)/authlens data synth --out $(DEMO_DATA) --n 4000 --seed 0 --workers 2 --overwrite; \
	  fi; \
	  if [ -f $(DEMO_RUN)/report.json ]; then \
	    echo ">> [2/3] $(DEMO_RUN) is trained: using it"; \
	  elif [ -f $(DEMO_RUN)/last.pt ]; then \
	    echo ">> [2/3] resuming the interrupted fine-tune in $(DEMO_RUN)"; \
	    $(BIN)/authlens train --config configs/demo.yaml --resume last; \
	  else \
	    echo ">> [2/3] fine-tuning EfficientNet-Lite0 (configs/demo.yaml)"; \
	    $(BIN)/authlens train --config configs/demo.yaml; \
	  fi; \
	  echo ">> [3/3] exporting the ONNX bundle to $(DEMO_BUNDLE)"; \
	  $(BIN)/authlens export --checkpoint $(DEMO_RUN)/best.pt --out $(DEMO_BUNDLE) --force; \
	  echo ">> set-up took $$(( $$(date +%s) - start )) s"; \
	fi
	@example=$$(ls $(DEMO_DATA)/*/*.jpg $(DEMO_DATA)/*.jpg 2>/dev/null | head -n 1); \
	echo; echo ">> web page:  http://$(HOST):$(PORT)/"; \
	echo ">> try:       curl -F files=@$${example:-photo.jpg} http://$(HOST):$(PORT)/v1/score"; echo
	$(BIN)/authlens serve --bundle $(DEMO_BUNDLE) --host $(HOST) --port $(PORT)

clean-demo:
	rm -rf $(DEMO_DATA) $(DEMO_RUN) $(DEMO_BUNDLE)

# The web-page test drives Debian's chromium (tests/serving/test_page.py): installed when missing,
# as root or through sudo. .ci/run uses this target too.
BROWSER_PACKAGES := chromium fonts-dejavu-core
browser-deps:
	@if [ ! -x /usr/bin/chromium ] || [ ! -d /usr/share/fonts/truetype/dejavu ]; then \
	  command -v apt-get >/dev/null || { echo "error: install $(BROWSER_PACKAGES) (the page test runs /usr/bin/chromium)" >&2; exit 1; }; \
	  echo ">> installing Debian's $(BROWSER_PACKAGES) for the web-page test"; \
	  SUDO=""; if [ "$$(id -u)" != 0 ]; then SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $(BROWSER_PACKAGES) >/dev/null; \
	fi

# The review store's tests run on PostgreSQL too (tests/serving/pgutil.py starts a server with
# initdb and pg_ctl): Debian's postgresql, installed when missing, as root or through sudo, like
# chromium above. .ci/run uses this target too.
POSTGRES_PACKAGES := postgresql
postgres-deps:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null; then \
	  command -v apt-get >/dev/null || { echo "error: install $(POSTGRES_PACKAGES) (the review store tests start a PostgreSQL server)" >&2; exit 1; }; \
	  echo ">> installing Debian's $(POSTGRES_PACKAGES) for the review store tests"; \
	  SUDO=""; if [ "$$(id -u)" != 0 ]; then SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $(POSTGRES_PACKAGES) >/dev/null; \
	fi

# Two workers, then the load tests (soak, overload, deadlines) alone, so they measure the server
# and not the other tests.
test: $(VENV)/.installed-dev browser-deps postgres-deps
	$(BIN)/python -m pytest -n 2 --dist loadfile -m "not slow and not gpu and not load"
	$(BIN)/python -m pytest -m "load and not slow and not gpu"

test-all: $(VENV)/.installed-dev browser-deps postgres-deps
	$(BIN)/python -m pytest -n 2 --dist loadfile -m "not gpu and not load"
	$(BIN)/python -m pytest -m "load and not gpu"

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(VENV)/.installed-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Every performance figure of this machine in one run, side by side (benchmarks/harness.py, about
# 10 min): model only, decoding, the in-process ceiling, HTTP (authlens serve vs a naive baseline),
# cold start and memory, training. Writes benchmarks/results/<date>-<machine>.json and the table in
# docs/PERFORMANCE.md. Measures bundles/sneakers when present, else a random-weight stand-in of
# configs/sneakers.yaml. Run it on a quiet machine (the results say when it was not):
#   flock /tmp/authlens-heavy.lock make bench
#   make bench BENCH_ARGS="--label c7i.large --bundle bundles/demo"   # or --preset quick (2-3 min check)
BENCH_ARGS ?=
bench: $(VENV)/.installed-dev
	$(BIN)/python -m benchmarks.harness $(BENCH_ARGS)

# Coverage-guided fuzzing of model.imaging.decode_image; crashes land in runs/fuzz/decode/.
FUZZ_SECONDS ?= 60
fuzz: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/fuzz_decode.py -max_total_time=$(FUZZ_SECONDS)

# Long soak and overload against a local server on the 224 px random-weight bundle (benchmarks/soak.py);
# SOAK_BUNDLE=bundles/demo to use another. Writes runs/soak.json; exit 1 on any error or RSS growth >= 10 %.
SOAK_BUNDLE ?= runs/soak-bundle
SOAK_S ?= 600
OVERLOAD_S ?= 120
soak: $(VENV)/.installed-dev
	@mkdir -p runs
	@if [ ! -f $(SOAK_BUNDLE)/bundle.json ]; then \
	  echo ">> exporting a 224 px random-weight bundle to $(SOAK_BUNDLE)"; \
	  PYTHONPATH=tests $(BIN)/python -c "from pathlib import Path; from factories import tiny_bundle; tiny_bundle(Path('$(SOAK_BUNDLE)'), image_size=224)"; \
	fi
	$(BIN)/python benchmarks/soak.py --bundle $(SOAK_BUNDLE) --soak-s $(SOAK_S) --overload-s $(OVERLOAD_S) --out runs/soak.json

# Re-pin every dependency after changing pyproject.toml (needs the network to PyPI).
lock: $(BIN)/python
	$(PIP) install -e ".[dev]"
	$(PIP) freeze --exclude-editable | grep -v '^authlens' > constraints.txt
