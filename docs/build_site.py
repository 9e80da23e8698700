"""`make site`: the course site, a static MkDocs site (Material theme) that works offline and is searchable.

    python docs/build_site.py      # -> build/site/index.html (open it in a browser, no server needed)

It holds the syllabus (lectures/syllabus.md), every lecture with its figures, every notebook executed in
quick mode with its outputs and figures (mkdocs-jupyter renders them), and the competition rules
(competition/README.md). Steps:

1. executed notebooks: build/notebooks/NN_topic.ipynb, each made by running notebooks/NN_topic.ipynb top to
   bottom in quick mode (segkit.course.execute). A copy is reused while it records the SHA-256 of the
   notebook it came from and of the segkit sources it ran with; tests/test_notebooks_run.py writes the same
   copies, so after `make test` the site build executes nothing;
2. build/site-src/: the pages above, in the repository's layout (so the lectures' links to the notebooks
   work), docs/index.md as the home page, and MathJax copied from node_modules (no CDN);
3. `mkdocs build` with docs/mkdocs.yml plus the navigation (home, syllabus, one section per session with
   its lecture and notebook, the competition), written as build/mkdocs.yml -> build/site/. The offline
   plugin puts the search index into the pages, so search works from file:// too.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

EXECUTED = REPO / "build" / "notebooks"
SOURCE = REPO / "build" / "site-src"
SITE = REPO / "build" / "site"
CONFIG = REPO / "docs" / "mkdocs.yml"
MATHJAX = REPO / "node_modules" / "mathjax" / "es5"
IFRAME_WORKER = REPO / "node_modules" / "iframe-worker" / "shim" / "index.js"  # search from file://
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def segkit_fingerprint() -> str:
    """SHA-256 over the segkit package's Python sources (a changed module re-executes the notebooks)."""
    digest = hashlib.sha256()
    for path in sorted((REPO / "segkit").rglob("*.py")):
        digest.update(str(path.relative_to(REPO)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def provenance(notebook_path: Path) -> dict:
    """What an executed copy records about its source: the notebook's and segkit's SHA-256, the size."""
    return {
        "source_sha256": hashlib.sha256(notebook_path.read_bytes()).hexdigest(),
        "segkit_sha256": segkit_fingerprint(),
        "size": "quick",
    }


def is_current(executed: Path, source: Path) -> bool:
    if not executed.is_file():
        return False
    try:
        recorded = nbformat.read(executed, as_version=4).metadata.get("segkit_executed")
    except Exception:  # a half-written copy
        return False
    return recorded == provenance(source)


def save_executed(notebook, source: Path, out_dir: Path = EXECUTED) -> Path:
    """Write an executed notebook as the reusable copy of `source`, with its provenance."""
    notebook.metadata["segkit_executed"] = provenance(source)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / source.name
    nbformat.write(notebook, target)
    return target


def executed_notebooks(sources: list[Path] | None = None, out_dir: Path = EXECUTED) -> list[Path]:
    """An up-to-date executed copy of every notebook (run now where there is none)."""
    from segkit.course.execute import execute_notebook

    sources = sources or sorted((REPO / "notebooks").glob("[0-9]*.ipynb"))
    copies = []
    for source in sources:
        target = out_dir / source.name
        if not is_current(target, source):
            print(f"executing {source.name} (quick size) ...", flush=True)
            run = execute_notebook(source, size="quick", timeout=900)
            if not run.ok:
                raise SystemExit(f"{source.name} failed: " + "; ".join(str(error) for error in run.errors))
            save_executed(run.notebook, source, out_dir)
        copies.append(target)
    return copies


def for_the_page(notebook):
    """The notebook as the site shows it: widget views (progress bars) become their text, since their
    JavaScript would come from the network."""
    notebook.metadata.pop("widgets", None)
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        for output in cell.outputs:
            output.get("data", {}).pop(WIDGET_VIEW, None)
        cell.outputs = [output for output in cell.outputs if "data" not in output or output["data"]]
    return notebook


def assemble(notebooks: list[Path], out: Path = SOURCE) -> None:
    """Lay out the site's pages in `out` (emptied first)."""
    shutil.rmtree(out, ignore_errors=True)
    (out / "lectures").mkdir(parents=True)
    shutil.copy(REPO / "docs" / "index.md", out / "index.md")
    for lecture in sorted((REPO / "lectures").glob("[0-9][0-9]*_*.md")) + [REPO / "lectures" / "syllabus.md"]:
        shutil.copy(lecture, out / "lectures" / lecture.name)
    shutil.copytree(REPO / "lectures" / "figures", out / "lectures" / "figures")
    (out / "competition").mkdir()
    shutil.copy(REPO / "competition" / "README.md", out / "competition" / "README.md")
    (out / "notebooks").mkdir()
    for path in notebooks:
        nbformat.write(for_the_page(nbformat.read(path, as_version=4)), out / "notebooks" / path.name)
    scripts = out / "javascripts"
    (scripts / "mathjax").mkdir(parents=True)
    shutil.copy(REPO / "docs" / "javascripts" / "mathjax-config.js", scripts / "mathjax-config.js")
    if not MATHJAX.is_dir():
        raise SystemExit(f"MathJax not found at {MATHJAX}: run `npm ci` in {REPO} (make site does)")
    shutil.copy(MATHJAX / "tex-svg.js", scripts / "mathjax" / "tex-svg.js")
    shutil.copytree(MATHJAX / "input", scripts / "mathjax" / "input")  # extensions MathJax loads on demand
    shutil.copy(IFRAME_WORKER, scripts / "iframe-worker-shim.js")


def navigation(out: Path = SOURCE) -> list:
    """Home, the syllabus, one section per session (its lecture and its notebook), the competition."""
    sessions = []
    for lecture in sorted((out / "lectures").glob("[0-9][0-9]*_*.md")):
        title = next(line[2:].strip() for line in lecture.read_text(encoding="utf-8").splitlines()
                     if line.startswith("# "))  # fmt: skip
        pages = [{"Lecture": f"lectures/{lecture.name}"}]
        if (out / "notebooks" / f"{lecture.stem}.ipynb").is_file():
            pages.append({"Notebook": f"notebooks/{lecture.stem}.ipynb"})
        sessions.append({title: pages})
    return [{"Home": "index.md"}, {"Syllabus and time plan": "lectures/syllabus.md"},
            {"Sessions": sessions}, {"The competition": "competition/README.md"}]  # fmt: skip


def write_config(out: Path = SOURCE) -> Path:
    """docs/mkdocs.yml with this build's folders and navigation, written next to the pages' folder."""
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    config.update(docs_dir=str(out), site_dir=str(out.parent / "site"), nav=navigation(out))
    path = out.parent / "mkdocs.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def build(site_dir: Path = SITE, notebooks: list[Path] | None = None) -> Path:
    """Build the whole site into `site_dir`; return its index.html."""
    assemble(notebooks if notebooks is not None else executed_notebooks())
    command = [sys.executable, "-m", "mkdocs", "build", "--quiet", "--clean", "-f", str(write_config()),
               "--site-dir", str(site_dir)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"mkdocs build failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return site_dir / "index.html"


def main(argv=None) -> int:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--out", type=Path, default=SITE, help="the site folder (default build/site)")
    args = parser.parse_args(argv)
    index = build(args.out)
    print(f"wrote {index}: open it in a browser (it works offline, without a server)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
