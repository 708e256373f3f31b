# Two entry points, both self-contained on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

# -qq: pip's warnings (an index location it skips, setuptools' note on editable installs) say nothing about the
# project; errors still show, and a failed install stops make.
$(VENV)/.installed-%: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -qq --upgrade pip
	$(PIP) install -qq -e ".[$*]"
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
