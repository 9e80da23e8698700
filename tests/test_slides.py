"""The slide decks (`make slides`, docs/build_slides.py): every lecture built with Marp and opened in headless
Chromium. What the browser shows is compared with what the lecture's Markdown says, counted here by hand:
one slide per heading of level 1-3 and per `<!-- slide -->` marker, the title on the first slide, every
display formula typeset, every figure loaded, no slide taller than its frame, and no request leaving the
machine (the decks must work offline on a projector).
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
from browser_tools import browser_page, require_browser_tools

REPO = Path(__file__).resolve().parent.parent
LECTURES = sorted((REPO / "lectures").glob("[0-9][0-9]*_*.md"))


def _slides_module():
    spec = importlib.util.spec_from_file_location("docs_slides", REPO / "docs" / "build_slides.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def expected_slides(text: str) -> int:
    """Headings of level 1-3 and slide markers outside code fences: each starts one slide."""
    count, in_fence = 0, False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        elif not in_fence and (re.match(r"#{1,3} ", line) or line.strip() == "<!-- slide -->"):
            count += 1
    return count


def display_formulas(text: str) -> int:
    """$$...$$ blocks outside code fences."""
    outside = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    return len(re.findall(r"\$\$.+?\$\$", outside, flags=re.DOTALL))


def test_the_hand_counts_on_a_small_lecture():
    text = "# T\n\nintro\n\n## A\n\n$$x$$\n\n<!-- slide -->\n\n```python\n# not a heading\n```\n\n### B\n"
    assert expected_slides(text) == 4 and display_formulas(text) == 1


@pytest.fixture(scope="module")
def decks(tmp_path_factory):
    require_browser_tools(need_marp=True)
    out = tmp_path_factory.mktemp("slides")
    written = _slides_module().build(out=out)
    return {path.stem: path for path in written}


@pytest.fixture(scope="module")
def page():
    with browser_page() as page:
        yield page


@pytest.mark.parametrize("lecture", LECTURES, ids=[path.stem for path in LECTURES])
def test_deck_shows_the_lecture(lecture, decks, page):
    text = lecture.read_text(encoding="utf-8")
    title = re.search(r"^# (.+)$", text, re.MULTILINE).group(1).strip()
    outside = []
    page.on("request", lambda request: outside.append(request.url)
            if not request.url.startswith(("file:", "data:", "blob:", "about:")) else None)  # fmt: skip
    page.goto(decks[lecture.stem].as_uri())
    _slides_module().settle(page)  # Marp fits wide code blocks to the slide by script, after loading
    slides = page.locator("svg[data-marpit-svg] > foreignObject > section")
    assert slides.count() == expected_slides(text)
    first_heading = page.locator("svg.bespoke-marp-active section h1")
    assert first_heading.is_visible() and first_heading.inner_text().strip() == title
    assert page.locator('mjx-container[display="true"]').count() == display_formulas(text)
    figures = re.findall(r"!\[[^\]]*\]\((figures/[^)]+)\)", text)
    loaded = page.evaluate("() => [...document.images].filter(i => i.complete && i.naturalWidth > 0)"
                           ".map(i => i.getAttribute('src'))")  # fmt: skip
    assert sorted(loaded) == sorted(figures)
    too_tall = page.evaluate("() => [...document.querySelectorAll('svg[data-marpit-svg] section')]"
                             ".map((s, i) => [i + 1, s.scrollHeight - s.clientHeight]).filter(x => x[1] > 1)")
    assert not too_tall, (f"slides taller than the frame (slide, px): {too_tall}; "
                          f"run `python docs/build_slides.py --fit --only {lecture.stem[:2]}`")  # fmt: skip
    assert outside == [], f"the deck asked the network for {outside[:3]}"


def test_index_links_every_deck(decks):
    index = (next(iter(decks.values())).parent / "index.html").read_text()
    assert re.findall(r'href="([^"]+)\.html"', index) == [path.stem for path in LECTURES]


def test_the_syllabus_quotes_each_lectures_slide_count():
    """lectures/syllabus.md plans each session's theory half by its deck's slides: the counts it quotes are
    the decks' counts."""
    syllabus = (REPO / "lectures" / "syllabus.md").read_text()
    quoted = dict(re.findall(r"### Session (\w+) — .*?\(([0-9]+) slides\)", syllabus, flags=re.DOTALL))
    counted = {path.name.split("_")[0].lstrip("0"): expected_slides(path.read_text()) for path in LECTURES}
    assert {session: int(count) for session, count in quoted.items()} == counted
