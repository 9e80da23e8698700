# segkit course — the two commands a person needs are `make demo` and `make test`.
# Both install everything through uv (installing uv itself with pip when missing) and are idempotent.

PYTHON ?= python3
UV := $(PYTHON) -m uv
RUN := $(UV) run --frozen
SHAPES ?= data/shapes

.PHONY: demo test lint setup student clean-data help postgresql

help:
	@echo "make demo   - shapes dataset (if missing) + statistics, train the small UNet, evaluate, write a submission"
	@echo "make test   - lint with ruff and run the test suite (notebooks in quick mode)"
	@echo "make setup  - only install the environment (.venv) from uv.lock"
	@echo "make student - write student copies of the notebooks (solutions stubbed) to student/notebooks/"

setup: .venv/.synced

# uv itself comes from PyPI through pip, once; the environment comes from the committed uv.lock, with every
# optional extra (segkit[postgres], segkit[tensorboard]) so that their tests run.
.venv/.synced: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	$(UV) sync --frozen --all-extras
	@touch $@

demo: .venv/.synced
	$(RUN) segkit data shapes --out $(SHAPES) --if-missing $(DEMO_DATA)
	$(RUN) segkit data stats $(SHAPES) --split train
	$(RUN) segkit train shapes_unet --resume --set data.root=$(SHAPES) run.dir=runs run.name=demo $(DEMO_SET)
	$(RUN) segkit evaluate runs/demo/last.pt --split val
	$(RUN) segkit predict runs/demo/last.pt --split test --out runs/demo/submission.zip

# Student copies: solution cells replaced by stubs (segkit/course/student.py), into the git-ignored student/.
student: .venv/.synced
	$(RUN) segkit student --out student

lint: .venv/.synced
	$(RUN) ruff check .

# pytest runs tests/ and executes every notebook in notebooks/ with nbval in quick mode
# (testpaths and --nbval-lax in pyproject.toml; SEGKIT_QUICK=1 in notebooks/conftest.py).
test: lint postgresql
	$(RUN) pytest

# The search tests start a throwaway PostgreSQL server (tests/postgres.py); Debian's package provides it.
# Installed only when missing, and only by root (apt-get); anyone else is told what to install.
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; \
	  else echo "PostgreSQL is missing: install Debian's postgresql package (the search tests need it)"; exit 1; fi
