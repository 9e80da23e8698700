"""`make slides`: every lecture becomes an HTML slide deck, with Marp CLI (an npm package, see package.json).

    python docs/build_slides.py                 # -> build/slides/NN_topic.html, build/slides/index.html
    python docs/build_slides.py --only 04 06    # some lectures

The lecture Markdown stays the only source. Slide breaks come from it:
- every heading of level 1 to 3 starts a slide (Marp's `headingDivider: 3`); the title slide holds the
  `# Session N — ...` heading and the paragraphs before the first section;
- inside a long section, a line `<!-- slide -->` (invisible on GitHub and in the site) starts a new slide.

What this script does besides calling Marp: it writes a copy of each lecture under build/slides/src/ with
the markers turned into Marp's `---` and a front matter (theme docs/slides-theme.css, page numbers, math
with MathJax), copies lectures/figures/ next to the decks, and writes an index page. Marp writes each deck
as one HTML file with its scripts, styles and formulas (MathJax as SVG) inside; the figures are the only
other files, so build/slides/ works offline on a projector: open index.html in a browser, arrow keys or
the space bar change slides, F toggles full screen.

    python docs/build_slides.py --fit           # for the lecture's author: add `<!-- slide -->` markers

`--fit` opens every deck in headless Chromium (Playwright), finds the slides whose content is taller than
the slide, and inserts a marker into the lecture before the first paragraph, list item, figure or code
block that ends below the slide's bottom; it rebuilds and repeats until every slide fits, and names what it
cannot split (one block taller than a slide). tests/test_slides.py fails on a slide that overflows.
"""

from __future__ import annotations

import argparse
import html
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LECTURES = REPO / "lectures"
THEME = REPO / "docs" / "slides-theme.css"
MARP_CONFIG = REPO / "docs" / "marp.config.json"  # wrapped lines stay one paragraph; no emoji images
MARP = REPO / "node_modules" / ".bin" / "marp"
OUT = REPO / "build" / "slides"

SLIDE_MARKER = re.compile(r"^<!--\s*slide\s*-->\s*$", re.MULTILINE)
TITLE = re.compile(r"^#\s+(.+?)\s*$", re.MULTILINE)
HEADING_LEVELS = 3
"""Headings of level 1..HEADING_LEVELS start a slide."""


def lecture_paths(only: list[str] | None = None) -> list[Path]:
    paths = sorted(LECTURES.glob("[0-9][0-9]*_*.md"))
    if only:
        paths = [path for path in paths if any(path.stem.startswith(prefix) for prefix in only)]
    if not paths:
        raise SystemExit(f"no lecture matches {only} in {LECTURES}")
    return paths


def lecture_title(text: str, path: Path) -> str:
    match = TITLE.search(text)
    if match is None:
        raise SystemExit(f"{path}: no '# Title' line")
    return match.group(1)


def marp_source(text: str, title: str) -> str:
    """The lecture as Marp reads it: front matter first, `<!-- slide -->` markers turned into `---`."""
    front = "\n".join([
        "---",
        "marp: true",
        "theme: segkit",
        "paginate: true",
        f"headingDivider: {HEADING_LEVELS}",
        "math: mathjax",
        f"title: {json_string(title)}",
        "---",
        "",
    ])  # fmt: skip
    return front + SLIDE_MARKER.sub("\n---\n", text)


def json_string(text: str) -> str:
    """A YAML-safe double-quoted string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def index_page(decks: list[tuple[str, str]]) -> str:
    items = "\n".join(f'<li><a href="{html.escape(name)}.html">{html.escape(title)}</a></li>'
                      for name, title in decks)  # fmt: skip
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>segkit course: slides</title>
<style>body {{ font-family: sans-serif; max-width: 48em; margin: 3em auto; line-height: 1.6 }}</style>
</head><body>
<h1>segkit course: slides</h1>
<p>One deck per lecture, made from lectures/NN_topic.md. Arrow keys or the space bar change slides; F toggles
full screen.</p>
<ul>
{items}
</ul>
</body></html>
"""


def build(only: list[str] | None = None, out: Path = OUT) -> list[Path]:
    """Write the decks (and index.html) to `out`; return the deck paths."""
    if not MARP.is_file():
        raise SystemExit(f"Marp CLI not found at {MARP}: run `npm ci` in {REPO} (make slides does)")
    source_dir = out / "src"
    shutil.rmtree(source_dir, ignore_errors=True)
    source_dir.mkdir(parents=True)
    decks = []
    for path in lecture_paths(only):
        text = path.read_text(encoding="utf-8")
        title = lecture_title(text, path)
        (source_dir / path.name).write_text(marp_source(text, title), encoding="utf-8")
        decks.append((path.stem, title))
    shutil.copytree(LECTURES / "figures", out / "figures", dirs_exist_ok=True)
    command = [str(MARP), "--no-stdin", "--config-file", str(MARP_CONFIG), "--theme-set", str(THEME),
               "--input-dir", str(source_dir), "--output", str(out)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"marp failed ({result.returncode}):\n{result.stderr}")
    shutil.rmtree(source_dir)
    if not only:
        (out / "index.html").write_text(index_page(decks), encoding="utf-8")
    written = [out / f"{name}.html" for name, _ in decks]
    missing = [path for path in written if not path.is_file()]
    if missing:
        raise SystemExit(f"marp wrote no {', '.join(str(p) for p in missing)}:\n{result.stderr}")
    return written


# ------------------------------------------------------------------------------ fitting the slides

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(rf"^#{{1,{HEADING_LEVELS}}}\s")
BLOCK_START = re.compile(r"^(\s{0,3}([-*+]|\d+\.)\s|\|)")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--disable-default-apps", "--no-first-run",
]  # fmt: skip

# For every slide taller than its frame: the first top-level element (or list item) that ends below it.
OVERFLOW_JS = """() => [...document.querySelectorAll('svg[data-marpit-svg] > foreignObject > section')].map(
  (section, i) => {
    if (section.scrollHeight <= section.clientHeight + 1) return null;
    const frame = section.getBoundingClientRect(), scale = frame.height / section.clientHeight;
    const limit = section.clientHeight - parseFloat(getComputedStyle(section).paddingBottom);
    const bottom = el => (el.getBoundingClientRect().bottom - frame.top) / scale;
    const kids = [...section.children];
    for (let k = 0; k < kids.length; k++) {
      if (bottom(kids[k]) <= limit) continue;
      let anchor = kids[k], item = -1;
      if (anchor.tagName === 'UL' || anchor.tagName === 'OL') {
        item = [...anchor.children].findIndex(li => bottom(li) > limit);
        if (item > 0) anchor = anchor.children[item];
      }
      const image = anchor.querySelector && anchor.querySelector('img');
      const plain = anchor.cloneNode(true);  // its words without the formulas' hidden MathML
      plain.querySelectorAll('mjx-container, svg').forEach(math => math.remove());
      return {slide: i + 1, over: section.scrollHeight - section.clientHeight, index: k, item: item,
              tag: anchor.tagName, text: plain.textContent.slice(0, 300),
              image: image ? image.getAttribute('src') : null};
    }
    return {slide: i + 1, over: section.scrollHeight - section.clientHeight, index: -1};
  }).filter(x => x)"""


def settle(page, seconds: float = 10) -> None:
    """Wait until the slides' heights have not changed for four reads in a row (a quarter second apart):
    Marp scales wide code blocks and formulas down to the slide's width by script after the page has
    loaded, later on a busy machine."""
    sections = "document.querySelectorAll('svg[data-marpit-svg] section')"
    heights_js = f"() => [...{sections}].map(s => s.scrollHeight)"
    page.evaluate("() => document.fonts.ready.then(() => true)")
    previous, unchanged = None, 0
    for _ in range(int(seconds / 0.25)):
        page.wait_for_timeout(250)
        heights = page.evaluate(heights_js)
        unchanged = unchanged + 1 if heights == previous else 0
        if unchanged >= 3:
            return
        previous = heights


def slide_segments(lines: list[str]) -> list[int]:
    """Index of the first line of each slide: the first line, every heading of level <= HEADING_LEVELS and
    every `<!-- slide -->` marker outside code fences (the rule Marp applies)."""
    starts, in_fence = [0], False
    for number, line in enumerate(lines):
        if FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence and number > 0 and (HEADING.match(line) or SLIDE_MARKER.match(line)):
            starts.append(number)
    return starts


def block_starts(lines: list[str], first: int, end: int) -> list[int]:
    """Lines in [first, end) where a top-level Markdown block starts (after a blank line, a list item, a
    table, a fence), outside code fences; HTML comments (the slide markers) are no blocks."""
    starts, in_fence = [], False
    for number in range(first, end):
        line = lines[number]
        if FENCE.match(line):
            if not in_fence:
                starts.append(number)
            in_fence = not in_fence
            continue
        if in_fence or not line.strip() or line.lstrip().startswith("<!--"):
            continue
        previous_blank = number == first or not lines[number - 1].strip()
        if previous_blank or (BLOCK_START.match(line) and not line.startswith("|")):
            starts.append(number)
    return starts


def _words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z]{3,}", text)[:5]


def split_point(lines: list[str], first: int, end: int, overflow: dict) -> int | None:
    """The line of the block to start a new slide with, for one overflowing slide [first, end)."""
    blocks = block_starts(lines, first, end)
    # Never split before the slide's first block, nor between a heading and the block under it.
    keep = 2 if blocks and HEADING.match(lines[blocks[0]]) else 1
    candidates = blocks[keep:]
    if overflow.get("index", -1) < keep and overflow.get("item", -1) <= 0:
        return None  # the first block (after the heading) is itself too tall
    for number in candidates:
        chunk = "\n".join(lines[number : number + 6])
        if overflow.get("image") and overflow["image"] in chunk:
            return number
        words = _words(overflow.get("text", ""))
        if words and re.search(r".*?".join(map(re.escape, words)), chunk, re.DOTALL):
            return number
    # No words to find (a formula on its own): the k-th element of the slide is about its k-th block.
    index = overflow.get("index", -1)
    return blocks[index] if keep <= index < len(blocks) else None


def fit(only: list[str] | None = None, rounds: int = 20) -> int:
    """Insert `<!-- slide -->` markers into the lectures until every slide fits; return the markers added."""
    from playwright.sync_api import sync_playwright

    added = 0
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 720})
        for _ in range(rounds):
            changed, stuck = 0, []
            with tempfile.TemporaryDirectory() as out:
                for deck in build(only, Path(out)):
                    page.goto(deck.resolve().as_uri())
                    settle(page)
                    overflows = page.evaluate(OVERFLOW_JS)
                    path = LECTURES / f"{deck.stem}.md"
                    lines = path.read_text(encoding="utf-8").split("\n")
                    starts = slide_segments(lines) + [len(lines)]
                    inserts = []
                    for overflow in overflows:
                        first, end = starts[overflow["slide"] - 1], starts[overflow["slide"]]
                        point = split_point(lines, first, end, overflow)
                        if point is None:
                            what = f"{overflow.get('tag')} {overflow.get('text', '')[:60]!r}"
                            stuck.append(f"{path.name} slide {overflow['slide']}: {what}")
                        else:
                            inserts.append(point)
                    for point in sorted(inserts, reverse=True):
                        lines[point:point] = ["<!-- slide -->", ""]
                    if inserts:
                        path.write_text("\n".join(lines), encoding="utf-8")
                        changed += len(inserts)
            added += changed
            if not changed:
                for line in stuck:
                    print(f"cannot split: {line}")
                break
        browser.close()
    return added


def main(argv=None) -> int:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--only", nargs="+", help="lecture name prefixes, e.g. 04 08b")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--fit", action="store_true", help="add <!-- slide --> where a slide overflows")
    args = parser.parse_args(argv)
    if args.fit:
        print(f"added {fit(args.only)} slide marker(s)")
        return 0
    for path in build(args.only, args.out):
        print(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
