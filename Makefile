# The two commands of README.md: `make book` builds the book, `make test` runs the tests.
# Both create .venv and install what they need first (Python 3.11, nothing else required).

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: install book test test-fast release chain chain-quick clean

install: $(STAMP)

# torch is installed explicitly and pinned exactly: any other spec pulls a CUDA build (GBs).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[book,test,scale]'
	touch $(STAMP)

# jupyter-cache keys executed notebooks on their code only: when course_lib changes (its code,
# configs or shipped assets such as the base model), the cached outputs are stale, so the cache
# is dropped and the pages run again.
_build/.course_lib.stamp: $(shell find course_lib -type f -not -path '*/__pycache__/*' 2>/dev/null)
	rm -rf _build/.jupyter_cache
	mkdir -p _build && touch $@

book: install _build/.course_lib.stamp
	$(BIN)/jupyter-book build . -W -n --keep-going --all

test: install
	$(BIN)/python -m pytest -n 2 --dist loadfile --durations=25

test-fast: install
	$(BIN)/python -m pytest -m "not slow"

release: install
	$(BIN)/course release

# The whole pipeline, world to DPO, into runs/chain (report_card.md/.html there); ARGS passes
# options on, e.g. `make chain ARGS=--resume` after an interruption.
chain: install
	$(BIN)/python -m course_lib.pipeline --out runs/chain --threads 2 $(ARGS)

chain-quick: install
	$(BIN)/python -m course_lib.pipeline --out runs/chain-quick --quick $(ARGS)

clean:
	rm -rf _build .pytest_cache
