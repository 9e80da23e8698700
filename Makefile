# segkit course — the two commands a person needs are `make demo` and `make test`.
# Both install everything through uv (installing uv itself with pip when missing) and are idempotent.

PYTHON ?= python3
UV := $(PYTHON) -m uv
RUN := $(UV) run --frozen
SHAPES ?= data/shapes

.PHONY: demo test lint setup student slides site tools clean-data help postgresql

help:
	@echo "make demo   - shapes dataset (if missing) + statistics, train the small UNet, evaluate, write a submission"
	@echo "make test   - lint with ruff and run the test suite (notebooks in quick mode)"
	@echo "make setup  - only install the environment (.venv) from uv.lock"
	@echo "make student - write student copies of the notebooks (solutions stubbed) to student/notebooks/"
	@echo "make slides - every lecture as an HTML slide deck (Marp) in build/slides/ (offline)"
	@echo "make site   - the course site (MkDocs): lectures, executed notebooks, syllabus, rules in build/site/"

setup: .venv/.synced

# uv itself comes from PyPI through pip, once; the environment comes from the committed uv.lock, with every
# optional extra (segkit[postgres], segkit[tensorboard]) so that their tests run.
.venv/.synced: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	$(UV) sync --frozen --all-extras
	@touch $@

# The slides and the browser tests need Node's Marp CLI (pinned in package-lock.json, into node_modules/) and
# Debian's chromium (driven headless by Playwright, which never downloads a browser). Installed once.
NODE_TOOLS := node_modules/.installed
$(NODE_TOOLS): package.json package-lock.json
	@command -v npm >/dev/null 2>&1 || (apt-get update && apt-get install -y --no-install-recommends nodejs npm)
	npm ci --no-audit --no-fund
	@touch $@

/usr/bin/chromium:
	apt-get update && apt-get install -y --no-install-recommends chromium

tools: .venv/.synced $(NODE_TOOLS) /usr/bin/chromium

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

# Slide decks from the lectures (docs/build_slides.py) and the course site (docs/build_site.py): both work offline.
slides: tools
	$(RUN) python docs/build_slides.py

site: tools
	$(RUN) python docs/build_site.py

# pytest runs tests/: among them tests/test_notebooks_run.py executes every notebook in quick mode (the
# executed copies go to build/notebooks/, which the site test reuses) and the slide and site tests open
# the built pages in headless chromium.
test: lint tools postgresql
	$(RUN) pytest

# The search tests start a throwaway PostgreSQL server (tests/postgres.py); Debian's package provides it.
# Installed only when missing, and only by root (apt-get); anyone else is told what to install.
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; \
	  else echo "PostgreSQL is missing: install Debian's postgresql package (the search tests need it)"; exit 1; fi
