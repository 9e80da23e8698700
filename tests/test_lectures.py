"""The lectures: their ```python blocks run against the current segkit (quick mode), their figures exist and
come from lectures/make_figures.py, and each cites its sources in a References section.

Each lecture's python blocks run in order in one namespace, in a fresh subprocess per lecture (like a
reader pasting them into a new Python session). Use ```text or ```bash for anything that must not run.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
LECTURES_DIR = REPO / "lectures"
LECTURES = sorted(LECTURES_DIR.glob("[0-9][0-9]*_*.md"))  # 01_..., 08b_...

CODE_BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
IMAGE_LINK = re.compile(r"!\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCES_HEADING = re.compile(r"^#{1,3}\s+References\s*$", re.MULTILINE)

# Runs in the subprocess: reads [(first_line, source), ...] from stdin and executes them in one namespace.
# Each block is compiled as if it sat at its place in the lecture file, so tracebacks give lecture lines.
RUNNER = """
import json, sys, traceback
lecture, blocks = sys.argv[1], json.load(sys.stdin)
namespace = {"__name__": "__main__"}
for number, (first_line, source) in enumerate(blocks, start=1):
    try:
        exec(compile("\\n" * (first_line - 1) + source, lecture, "exec"), namespace)
    except BaseException:
        traceback.print_exc()
        print(f"FAILED: {lecture}, python block {number} (starting at line {first_line})", file=sys.stderr)
        sys.exit(1)
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")
print(f"ran {len(blocks)} python block(s) of {lecture}")
"""


def python_blocks(text: str) -> list[tuple[int, str]]:
    """The ```python blocks of a markdown text as (line number of the block's first code line, source)."""
    return [(text.count("\n", 0, match.start(1)) + 1, match.group(1)) for match in CODE_BLOCK.finditer(text)]


def test_python_blocks_are_found_with_their_line_numbers():
    text = "# Title\n\n```python\nx = 1\n```\n\n```text\nnot run\n```\n\n"
    text += "```python\ny = x + 1\nprint(y)\n```\n"
    assert python_blocks(text) == [(4, "x = 1\n"), (12, "y = x + 1\nprint(y)\n")]


def run_blocks(name: str, blocks, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, SEGKIT_QUICK="1", MPLBACKEND="Agg")
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    env.setdefault("OMP_NUM_THREADS", "2")
    return subprocess.run([sys.executable, "-c", RUNNER, name], input=json.dumps(blocks), env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def test_a_failing_block_names_the_lecture_block_and_line():
    text = "# L\n\n```python\nvalue = 2\n```\n\nprose\n\n"
    text += "```python\nok = value\nraise ValueError('bad')\n```\n"
    result = run_blocks("lectures/99_demo.md", python_blocks(text), timeout=60)
    assert result.returncode == 1
    assert 'File "lectures/99_demo.md", line 11' in result.stderr  # the line of the raise in the lecture
    assert "FAILED: lectures/99_demo.md, python block 2 (starting at line 10)" in result.stderr


@pytest.mark.parametrize("lecture", LECTURES, ids=lambda p: p.name)
def test_code_blocks_run(lecture):
    blocks = python_blocks(lecture.read_text())
    result = run_blocks(f"lectures/{lecture.name}", blocks)
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-6000:]}"


@pytest.mark.parametrize("lecture", LECTURES, ids=lambda p: p.name)
def test_referenced_figures_exist(lecture):
    links = IMAGE_LINK.findall(lecture.read_text())
    links = [link for link in links if not link.startswith(("http:", "https:"))]
    missing = [link for link in links if not (LECTURES_DIR / link).is_file()]
    assert not missing, f"{lecture.name}: missing figure(s) {missing}; run python lectures/make_figures.py"
    hand_made = [link for link in links if Path(link).stem not in generated_figure_stems()]
    assert not hand_made, f"{lecture.name}: {hand_made} are not made by lectures/make_figures.py (FIGURES)"


@pytest.mark.parametrize("lecture", LECTURES, ids=lambda p: p.name)
def test_has_a_references_section(lecture):
    text = lecture.read_text()
    heading = REFERENCES_HEADING.search(text)
    assert heading, f"{lecture.name}: no '## References' section"
    section = text[heading.end() :].split("\n#", 1)[0]
    entries = [line for line in section.splitlines() if re.match(r"\s*(?:[-*]|\d+\.)\s+\S", line)]
    assert entries, f"{lecture.name}: the References section lists no entries"


# ------------------------------------------------------------------------------------ make_figures.py


def load_make_figures():
    sys.path.insert(0, str(LECTURES_DIR))
    try:
        return importlib.import_module("make_figures")
    finally:
        sys.path.remove(str(LECTURES_DIR))


@functools.cache
def generated_figure_stems() -> frozenset[str]:
    """The file stems of every figure make_figures.py makes (imports the figure modules once)."""
    make_figures = load_make_figures()
    modules = make_figures.FIGURE_MODULES
    return frozenset(stem for module in modules for stem in make_figures.load_figure_functions(module))


def test_every_generated_figure_is_committed():
    make_figures = load_make_figures()
    missing = [
        f"{module}: {stem}.png"
        for module in make_figures.FIGURE_MODULES
        for stem in make_figures.load_figure_functions(module)
        if not (LECTURES_DIR / "figures" / f"{stem}.png").is_file()
    ]
    assert not missing, f"figures not generated yet (python lectures/make_figures.py): {missing}"


def test_make_figures_writes_small_deterministic_pngs(tmp_path, monkeypatch):
    (tmp_path / "figures_s99.py").write_text(
        "import matplotlib.pyplot as plt\n"
        "def square():\n"
        "    figure, ax = plt.subplots(figsize=(2, 1))\n"
        "    ax.plot([0, 1], [0, 1])\n"
        "    return figure\n"
        "def not_a_figure():\n"
        "    return 3\n"
        "FIGURES = {'demo_square': square}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    make_figures = load_make_figures()
    monkeypatch.setattr(make_figures, "FIGURE_MODULES", ["figures_s99"])
    out = tmp_path / "out"
    assert make_figures.make_figures(only="s99", out_dir=out) == [out / "demo_square.png"]
    first = (out / "demo_square.png").read_bytes()
    with Image.open(out / "demo_square.png") as image:
        assert image.size[0] <= 2 * make_figures.DPI  # at most the requested 2 inches (tight bbox)
    make_figures.make_figures(out_dir=out)
    assert (out / "demo_square.png").read_bytes() == first
    with pytest.raises(ValueError, match="no figure module matches 's42'"):
        make_figures.make_figures(only="s42", out_dir=out)
    sys.modules["figures_s99"].FIGURES["bad"] = sys.modules["figures_s99"].not_a_figure
    with pytest.raises(TypeError, match=r"FIGURES\['bad'\] returned int, expected a matplotlib Figure"):
        make_figures.make_figures(out_dir=out)
    sys.modules.pop("figures_s99")
