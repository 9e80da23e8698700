"""Leaderboard tables as plain text (terminal), Markdown (leaderboard.md) and one self-contained HTML page.

The HTML page is made for a projector: large type that scales with the window, dark text on white (the
highest contrast), no scripts, no fonts or images from elsewhere, so it opens from a USB stick, offline.
Every team name is escaped, since students choose them.
"""

from __future__ import annotations

import html
import math

from segkit.competition.ranking import Standing


def _score(value: float | None) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.4f}"


def _change(standing: Standing) -> str:
    change = standing.rank_change
    if not change:
        return "–"
    return f"▲ {change}" if change > 0 else f"▼ {-change}"


def table_rows(standings: list[Standing], final: bool) -> tuple[list[str], list[list[str]]]:
    """Header and cells (strings) of the leaderboard, in rank order."""
    if final:
        header = ["Rank", "Team", "Private mIoU", "Public mIoU", "Public rank", "Change"]
        rows = [[str(s.private_rank), s.team, _score(s.private_score), _score(s.public_score),
                 str(s.public_rank), _change(s)] for s in standings]
    else:
        header = ["Rank", "Team", "Public mIoU", "Submissions", "Last (UTC)"]
        rows = [[str(s.public_rank), s.team, _score(s.public_score), str(s.submissions),
                 s.last_time[:16].replace("T", " ")] for s in standings]
    return header, rows


def title_of(final: bool) -> str:
    return "Final leaderboard (private split)" if final else "Live leaderboard (public split)"


def note_of(final: bool, ladder_margin: float | None) -> str:
    if final:
        return ("Each team is ranked on the best private-split mIoU among its counted submissions; "
                "Change = public rank − private rank.")
    note = "Scores on the public part of the test set; the final ranking uses the hidden private part."
    if ladder_margin:
        note += f" Ladder: a shown score changes only when it improves by more than {ladder_margin:g}."
    return note


def to_text(standings: list[Standing], final: bool) -> str:
    header, rows = table_rows(standings, final)
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _markdown_cell(text: str) -> str:
    for special in "\\|*_`<>[]#":
        text = text.replace(special, "\\" + special)
    return text


def to_markdown(standings: list[Standing], final: bool, ladder_margin: float | None = None) -> str:
    header, rows = table_rows(standings, final)
    lines = [f"# {title_of(final)}", "", note_of(final, ladder_margin), "",
             "| " + " | ".join(header) + " |",
             "|" + "|".join("---:" if h != "Team" else "---" for h in header) + "|"]
    lines += ["| " + " | ".join(_markdown_cell(cell) for cell in row) + " |" for row in rows]
    if not rows:
        lines.append("\nNo accepted submission yet.")
    return "\n".join(lines) + "\n"


STYLE = """
html { background: #ffffff; color: #111111; }
body { font-family: "DejaVu Sans", "Helvetica Neue", Arial, sans-serif; margin: 1.5vw 3vw;
       font-size: clamp(18px, 2vw, 44px); line-height: 1.3; }
h1 { font-size: 1.5em; margin: 0 0 0.2em 0; }
p.note { font-size: 0.7em; margin: 0 0 0.8em 0; color: #333333; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th { background: #0b2545; color: #ffffff; text-align: right; padding: 0.3em 0.6em; white-space: nowrap; }
td { text-align: right; padding: 0.2em 0.6em; border-bottom: 2px solid #c8ccd2; white-space: nowrap; }
th.team, td.team { text-align: left; width: 100%; min-width: 8em; white-space: normal;
                   overflow-wrap: break-word; }
tbody tr:nth-child(even) { background: #eef1f5; }
tbody tr:nth-child(-n+3) td { font-weight: bold; }
td.up { color: #0a6b2d; } td.down { color: #b00020; }
p.empty { font-size: 1.2em; }
"""


def to_html(standings: list[Standing], final: bool, ladder_margin: float | None = None,
            refresh_s: int | None = 60) -> str:
    """One self-contained page; the live board reloads itself every `refresh_s` seconds (None: never)."""
    header, rows = table_rows(standings, final)
    head_cells = "".join(f'<th class="{"team" if h == "Team" else "num"}">{html.escape(h)}</th>'
                         for h in header)
    body = []
    for standing, row in zip(standings, rows, strict=True):
        cells = []
        for name, cell in zip(header, row, strict=True):
            css = "team" if name == "Team" else "num"
            if name == "Change" and standing.rank_change:
                css += " up" if standing.rank_change > 0 else " down"
            cells.append(f'<td class="{css}">{html.escape(cell)}</td>')
        body.append(f'<tr data-rank="{row[0]}">' + "".join(cells) + "</tr>")
    refresh = f'<meta http-equiv="refresh" content="{refresh_s}">' if refresh_s and not final else ""
    empty = '<p class="empty">No accepted submission yet.</p>' if not rows else ""
    title = html.escape(title_of(final))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
{refresh}
<title>{title}</title>
<style>{STYLE}</style>
</head>
<body>
<h1>{title}</h1>
<p class="note">{html.escape(note_of(final, ladder_margin))}</p>
<table id="leaderboard">
<thead><tr>{head_cells}</tr></thead>
<tbody>
{chr(10).join(body)}
</tbody>
</table>
{empty}
</body>
</html>
"""
