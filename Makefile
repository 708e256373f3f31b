# Two entry points, both self-contained on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

$(VENV)/.installed-%: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e ".[$*]"
	touch $@

.PHONY: demo test lint bench clean
demo: $(VENV)/.installed-examples
	WANDB_MODE=offline $(PY) examples/mnist1d_demo.py

test: lint
	WANDB_MODE=offline WANDB_SILENT=true $(PY) -m pytest -q

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .

bench: $(VENV)/.installed-test
	$(PY) benchmarks/mask_overhead.py

clean:
	rm -rf $(VENV) lightning_logs outputs wandb
