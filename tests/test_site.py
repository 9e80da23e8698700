"""The course site (`make site`, docs/build_site.py), built from the notebooks' executed copies and opened in
headless Chromium from file:// with every network request refused. What the browser shows is compared with
the sources: the notebook page reached by following links from the home page shows as many output figures
as the executed notebook holds, a lecture shows one typeset formula per $$ block, the syllabus shows the
measured times of bench/notebook_times.json, and search finds a page that contains the word searched.

The executed notebooks come from tests/test_notebooks_run.py earlier in the same run (build/notebooks/);
a copy that is missing or stale (another notebook source or segkit source) is executed here.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import nbformat
import pytest
from browser_tools import browser_page, require_browser_tools

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = "06_imbalance_and_metrics"


def _module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    require_browser_tools(need_marp=True)
    build_site = _module("docs_build_site", REPO / "docs" / "build_site.py")
    return build_site.build(tmp_path_factory.mktemp("site") / "site").parent


@pytest.fixture(scope="module")
def page():
    with browser_page() as page:
        page.outside = []
        page.route(re.compile(r"^(https?|wss?)://"), lambda route: (page.outside.append(route.request.url),
                                                                  route.abort()))  # fmt: skip
        yield page


def image_outputs(notebook) -> int:
    return sum("image/png" in output.get("data", {}) for cell in notebook.cells if cell.cell_type == "code"
               for output in cell.outputs)  # fmt: skip


def test_links_lead_from_the_home_page_to_a_notebook_with_its_figures(site, page):
    """Home page -> syllabus -> the notebook's row of the time table -> the executed notebook."""
    page.goto((site / "index.html").as_uri())
    page.locator('article a[href$="lectures/syllabus.html"]').first.click()  # the home page's text
    page.wait_for_load_state("load")
    assert page.url.endswith("lectures/syllabus.html")
    page.locator(f'article table a[href$="notebooks/{NOTEBOOK}.html"]').click()  # the syllabus's time table
    page.wait_for_load_state("load")
    assert page.url.endswith(f"notebooks/{NOTEBOOK}.html")
    executed = nbformat.read(REPO / "build" / "notebooks" / f"{NOTEBOOK}.ipynb", as_version=4)
    expected = image_outputs(executed)
    assert expected >= 1
    shown = page.evaluate("() => [...document.querySelectorAll('.jp-OutputArea-output img')]"
                          ".filter(i => i.complete && i.naturalWidth > 0).length")  # fmt: skip
    assert shown == expected
    title = executed.cells[0].source.splitlines()[0].lstrip("# ").strip()
    assert title in page.locator("article").inner_text()
    assert page.outside == []


LECTURES = sorted((REPO / "lectures").glob("[0-9][0-9]*_*.md"))


@pytest.mark.parametrize("lecture", LECTURES, ids=[path.stem for path in LECTURES])
def test_a_lecture_shows_its_formulas_and_figures(site, page, lecture):
    text = lecture.read_text(encoding="utf-8")
    outside_code = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    page.goto((site / "lectures" / f"{lecture.stem}.html").as_uri())
    page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise")
    page.evaluate("() => MathJax.startup.promise")
    displays = len(re.findall(r"\$\$.+?\$\$", outside_code, flags=re.DOTALL))
    assert page.locator('article mjx-container[display="true"]').count() == displays
    prose = page.locator("article").evaluate(
        "a => { const c = a.cloneNode(true); "
        "c.querySelectorAll('pre, code, mjx-container').forEach(e => e.remove()); return c.textContent; }")
    assert "$" not in prose, "a formula was not typeset: a $ is left in the text"
    figures = re.findall(r"!\[[^\]]*\]\((figures/[^)]+)\)", text)
    loaded = page.evaluate("() => [...document.querySelectorAll('article img')]"
                           ".filter(i => i.complete && i.naturalWidth > 0).map(i => i.getAttribute('src'))")
    assert sorted(loaded) == sorted(figures)
    assert page.outside == []


def shown_seconds(text: str) -> tuple[float, float]:
    """'40 s' -> (40, 0.5), '6 min' -> (360, 30), '1 h 05 min' -> (3900, 30): a time and its rounding."""
    match = re.fullmatch(r"(?:(\d+) h )?(\d+) (s|min)(?: \(= full\))?", text)
    assert match, f"not a measured time: {text!r}"
    hours, value, unit = match.groups()
    if unit == "s":
        return float(value), 0.5
    return 3600 * int(hours or 0) + 60 * int(value), 30.0


def test_the_syllabus_shows_the_measured_times(site, page):
    times = json.loads((REPO / "bench" / "notebook_times.json").read_text())
    page.goto((site / "lectures" / "syllabus.html").as_uri())
    rows = page.evaluate("() => [...document.querySelectorAll('article table tr')].map(r => "
                         "[...r.cells].map(c => c.innerText.trim()))")  # fmt: skip
    by_notebook = {row[1]: row for row in rows[1:]}
    assert set(by_notebook) == set(times["notebooks"])
    for stem, sizes in times["notebooks"].items():
        for column, size in zip((2, 3, 4), ("quick", "class", "full"), strict=True):
            assert size in sizes, f"{stem}: no {size} time in bench/notebook_times.json"
            seconds, rounding = shown_seconds(by_notebook[stem][column])
            assert abs(seconds - sizes[size]["seconds"]) <= rounding, (stem, size, by_notebook[stem][column])


def test_search_finds_the_pages_that_contain_a_word(site, page):
    page.goto((site / "index.html").as_uri())
    page.locator("input.md-search__input").fill("bincount")
    results = page.locator(".md-search-result__item a")
    results.first.wait_for(timeout=20_000)
    hrefs = results.evaluate_all("as => as.map(a => a.href)")
    found = {href.split("#")[0].split("?")[0].split("/")[-1] for href in hrefs}
    sources = {path.stem + ".html" for path in [*(REPO / "lectures").glob("*.md"), *(REPO / "notebooks").glob(
        "*.ipynb")] if "bincount" in path.read_text(encoding="utf-8")}  # fmt: skip
    assert found and found <= sources, (found, sources)
    assert page.outside == []
