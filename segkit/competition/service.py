"""The competition as a web service: `segkit competition serve COMP` on the instructor's laptop.

Built on Starlette (routing, requests, responses), served by uvicorn, pages from Jinja2 templates with
autoescaping on; every dynamic text in a page is set with `textContent` by scripts served from this
server (a Content-Security-Policy forbids any other script), so a team's file names or a zip's member names
show as text, never as HTML.

Pages                          HTTP API (JSON; `Authorization: Bearer TOKEN` where a token is needed)
  /            live board        GET  /api/leaderboard      the public board (the final one once closed)
  /submit      upload page       POST /api/submissions      team token; multipart field `file`: a zip of
  /team        own history                                  masks, or a checkpoint (.pt) the server runs
  /instructor  private board     GET  /api/submissions      team token: the team's own history
                                 POST /api/choices          team token; {"ids": [...]}: final choices
                                 GET  /api/instructor       instructor token: private board, choices
                                 POST /api/instructor/close instructor token: close the competition

An upload is streamed to disk under a size cap before anything parses it (segkit.competition.uploads), kept
in COMP/uploads/ and entered in the board's `uploads` table, then scored by a worker process under the
wall-clock and memory limits (segkit.competition.workers) and recorded in one transaction that also marks
the upload as scored (segkit.competition.board).  On start, uploads that were received but never scored
(the server was stopped in between) are scored, so a restart loses no submission.
"""

from __future__ import annotations

import asyncio
import math
import os
from contextlib import asynccontextmanager
from pathlib import Path

from segkit.competition.board import Board, utc_now
from segkit.competition.checkpoints import is_checkpoint_name
from segkit.competition.ranking import counted_submissions, final_standings, ladder, live_standings
from segkit.competition.render import note_of, title_of
from segkit.competition.scoring import ScoreResult, daily_limit_message, record_result, shown_classes
from segkit.competition.submission import Problem
from segkit.competition.teams import Teams
from segkit.competition.uploads import MULTIPART_OVERHEAD, UploadError, extract_file, receive_body
from segkit.competition.workers import WorkerPool, failure

WEB = Path(__file__).resolve().parent / "web"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; object-src 'none'; base-uri 'none'; "
                               "frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _number(value: float | None) -> float | None:
    """JSON has no NaN or infinity: those become null."""
    return None if value is None or not math.isfinite(value) else float(value)


class Competition:
    """The competition folder as the service sees it: board, truth, uploads, workers."""

    def __init__(self, comp: str | os.PathLike, workers: int = 2):
        self.comp = Path(comp)
        self.board_dir = self.comp / "board"
        self.uploads = self.comp / "uploads"
        Board(self.board_dir)  # fails early, with a message, when COMP is not a competition
        if not (self.comp / "truth").is_dir():
            raise FileNotFoundError(f"{self.comp / 'truth'} not found: COMP must be a folder made by "
                                    "`segkit competition setup`")
        self.pool = WorkerPool(self.comp, workers)
        self.pending: set[asyncio.Task] = set()

    def board(self) -> Board:
        return Board(self.board_dir)  # rules are read again each time: competition.json may be edited

    # ---- starting and stopping ------------------------------------------------------------------------
    async def start(self) -> None:
        self.uploads.mkdir(exist_ok=True)
        for leftover in (self.uploads / "incoming").glob("*") if (self.uploads / "incoming").is_dir() else ():
            leftover.unlink(missing_ok=True)  # bodies of requests that never finished
        await self.pool.start()
        for upload_id in await asyncio.to_thread(self.unscored_uploads):
            task = asyncio.create_task(self.score_upload(upload_id))
            self.pending.add(task)
            task.add_done_callback(self.pending.discard)

    async def stop(self) -> None:
        for task in list(self.pending):
            task.cancel()
        await self.pool.close()

    def unscored_uploads(self) -> list[int]:
        connection = self.board()._connect()
        try:
            rows = connection.execute("SELECT id FROM uploads WHERE submission_id IS NULL ORDER BY id")
            return [row[0] for row in rows.fetchall()]
        finally:
            connection.close()

    # ---- uploads ----------------------------------------------------------------------------------------
    def register_upload(self, team: str, path: Path, file_name: str, kind: str) -> int:
        """Enter a received file (already on disk, fsynced) in the board's inbox; returns its id."""
        board = self.board()
        with board.lock:
            connection = board._connect()
            try:
                cursor = connection.execute(
                    "INSERT INTO uploads (team, received, file_name, kind, path) VALUES (?, ?, ?, ?, ?)",
                    (team, utc_now().isoformat(timespec="seconds"), file_name, kind, path.name))
                return cursor.lastrowid
            finally:
                connection.close()

    def upload_row(self, upload_id: int) -> tuple[str, str, str, str]:
        connection = self.board()._connect()
        try:
            return connection.execute("SELECT team, file_name, kind, path FROM uploads WHERE id = ?",
                                      (upload_id,)).fetchone()
        finally:
            connection.close()

    async def score_upload(self, upload_id: int):
        """Score one upload of the inbox and record it; returns (the board row, the ScoreResult)."""
        team, file_name, kind, stored = await asyncio.to_thread(self.upload_row, upload_id)
        board = await asyncio.to_thread(self.board)
        rules = board.rules
        path = self.uploads / stored
        used = await asyncio.to_thread(board.accepted_on_day, team, utc_now().isoformat()[:10])
        if used >= rules.daily_limit:  # no worker spent on it; checked again when the row is written
            answer = failure(daily_limit_message(team, used, rules.daily_limit))
        elif not path.is_file():
            answer = failure("the uploaded file was lost before it could be scored; please upload it again")
        else:
            answer = await self.pool.run({"kind": kind, "path": str(path)}, rules.time_limit_s)
        result = ScoreResult(sha256=answer["sha256"], public=answer["public"], private=answer["private"],
                             problems=[Problem(member, message) for member, message in answer["problems"]],
                             seconds_per_image=answer["seconds_per_image"])
        row = await asyncio.to_thread(record_result, board, team, file_name, result, kind=kind,
                                      upload_id=upload_id)
        return row, result

    # ---- what the pages and the API show -------------------------------------------------------------------
    def leaderboard(self) -> dict:
        """The public board: live standings while open, the final (private) ranking once closed."""
        board = self.board()
        rows, closed, rules = board.submissions(), board.closed(), board.rules
        final = closed is not None
        if final:
            standings = final_standings(rows, board.selections(), rules)
        else:
            standings = live_standings(rows, rules)
        by_id = {row.id: row for row in rows}
        entries = []
        for standing in standings:
            shown = by_id.get(standing.score_id)
            seconds = shown.seconds_per_image if shown is not None else None
            entries.append({
                "rank": standing.private_rank if final else standing.public_rank, "team": standing.team,
                "score": _number(standing.private_score if final else standing.public_score),
                "public_score": _number(standing.public_score), "public_rank": standing.public_rank,
                "change": standing.rank_change if final else None, "submissions": standing.submissions,
                "last": standing.last_time, "ms_per_image": None if seconds is None else 1000 * seconds,
            })
        return {"final": final, "closed": closed, "title": title_of(final),
                "note": note_of(final, rules.ladder_margin), "ladder_margin": rules.ladder_margin,
                "daily_limit": rules.daily_limit, "final_count": rules.final_count, "rows": entries}

    def submission_answer(self, row, result: ScoreResult) -> dict:
        """What a team sees of one of its submissions (the answer to an upload)."""
        from segkit.competition.scoring import ladder_shown, student_report

        board = self.board()
        rules = board.rules
        answer = {"id": row.id, "team": row.team, "time": row.time, "file_name": row.file_name,
                  "kind": row.kind, "accepted": row.accepted, "public_miou": None, "ladder": None,
                  "problems": row.problems or [], "seconds_per_image": _number(row.seconds_per_image),
                  "used_today": board.accepted_on_day(row.team, row.day), "daily_limit": rules.daily_limit,
                  "report": student_report(row, result, board)}
        if row.accepted and rules.ladder_margin:
            shown, moved = ladder_shown(board, row)
            answer["public_miou"] = _number(shown)
            answer["ladder"] = {"margin": rules.ladder_margin, "moved": moved}
        elif row.accepted:
            public = row.public_metrics
            answer["public_miou"] = _number(public["miou"])
            answer["pixel_accuracy"] = _number(public["pixel_accuracy"])
            answer["per_class"] = [{"class": rules.class_names[c], "iou": _number(public["iou"][c]),
                                    "precision": _number(public["precision"][c]),
                                    "recall": _number(public["recall"][c])} for c in shown_classes(public)]
        return answer

    def history(self, team: str) -> dict:
        """A team's own submissions, newest first: every accepted score (as it was shown) and every reason."""
        board = self.board()
        rules = board.rules
        rows = board.submissions(team)
        accepted = [r for r in rows if r.accepted]
        scores = [-math.inf if r.public_miou is None else r.public_miou for r in accepted]
        shown = dict(zip((r.id for r in accepted),
                         ladder(scores, rules.ladder_margin) if rules.ladder_margin else scores, strict=True))
        chosen = board.selections().get(team)
        counted = {r.id for r in counted_submissions(rows, chosen, rules.final_count)}
        items = [{"id": r.id, "time": r.time, "file_name": r.file_name, "kind": r.kind, "status": r.status,
                  "public_miou": _number(shown.get(r.id)), "problems": r.problems or [],
                  "ms_per_image": None if r.seconds_per_image is None else 1000 * r.seconds_per_image,
                  "counted": r.id in counted} for r in reversed(rows)]
        return {"team": team, "ladder_margin": rules.ladder_margin, "daily_limit": rules.daily_limit,
                "final_count": rules.final_count, "chosen": chosen or [], "closed": board.closed(),
                "submissions": items}

    def instructor(self) -> dict:
        """The private board (always), every team's counted submissions, the registered teams."""
        board = self.board()
        rules, rows = board.rules, board.submissions()
        selections = board.selections()
        standings = final_standings(rows, selections, rules)
        teams = Teams(board).names()
        return {
            "closed": board.closed(), "ladder_margin": rules.ladder_margin,
            "rows": [{"rank": s.private_rank, "team": s.team, "private": _number(s.private_score),
                      "public": _number(s.public_score), "public_rank": s.public_rank,
                      "change": s.rank_change,
                      "submissions": s.submissions, "counted": list(s.counted_ids),
                      "chosen": s.team in selections} for s in standings],
            "teams": [{"team": team, "accepted": sum(r.team == team and r.accepted for r in rows),
                       "rejected": sum(r.team == team and not r.accepted for r in rows)} for team in teams],
            "unscored_uploads": len(self.unscored_uploads()),
        }


def create_app(comp: str | os.PathLike, workers: int = 2):
    """The Starlette application serving competition folder `comp` with `workers` scoring processes."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles
    from starlette.templating import Jinja2Templates

    competition = Competition(comp, workers)
    templates = Jinja2Templates(directory=str(WEB / "templates"))  # autoescape on for .html

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    async def caller(request: Request) -> tuple[str, str | None] | None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return await asyncio.to_thread(lambda: Teams(competition.board()).authenticate(token.strip()))

    async def team_of(request: Request) -> str | JSONResponse:
        who = await caller(request)
        if who is None:
            return error(401, "a team token is needed: header 'Authorization: Bearer TOKEN' (wrong or "
                              "missing)")
        if who[0] != "team":
            return error(403, "this is the instructor's token; submissions and histories need a team token")
        return who[1]

    def page(name: str):
        async def render(request: Request):
            context = {}
            if name == "board":
                context["leaderboard"] = await asyncio.to_thread(competition.leaderboard)
            return templates.TemplateResponse(request, f"{name}.html", context)
        return render

    async def get_leaderboard(request: Request):
        return JSONResponse(await asyncio.to_thread(competition.leaderboard))

    async def post_submission(request: Request):
        team = await team_of(request)
        if isinstance(team, JSONResponse):
            return team
        board = await asyncio.to_thread(competition.board)
        closed = await asyncio.to_thread(board.closed)
        if closed:
            return error(409, f"the competition was closed at {closed}; no more submissions")
        rules = board.rules
        cap = max(rules.max_zip_bytes, rules.max_checkpoint_bytes) + MULTIPART_OVERHEAD
        try:
            body = await receive_body(request, competition.uploads / "incoming", cap)
            upload = await asyncio.to_thread(
                extract_file, body, request.headers.get("content-type"),
                lambda name: ".pt" if is_checkpoint_name(name) else ".zip")
        except UploadError as err:
            return error(err.status, err.message)
        stored = competition.uploads / upload.path.name
        os.replace(upload.path, stored)
        kind = "model" if is_checkpoint_name(upload.file_name) else "masks"
        upload_id = await asyncio.to_thread(competition.register_upload, team, stored, upload.file_name, kind)
        row, result = await competition.score_upload(upload_id)
        return JSONResponse(await asyncio.to_thread(competition.submission_answer, row, result))

    async def get_submissions(request: Request):
        team = await team_of(request)
        if isinstance(team, JSONResponse):
            return team
        return JSONResponse(await asyncio.to_thread(competition.history, team))

    async def post_choices(request: Request):
        team = await team_of(request)
        if isinstance(team, JSONResponse):
            return team
        try:
            payload = await request.json()
            ids = payload["ids"]
            numbers = isinstance(ids, list) and all(type(i) is int for i in ids)
            if not numbers:
                raise ValueError("'ids' must be a list of submission numbers")
        except (ValueError, KeyError, TypeError) as err:
            return error(400, f"send JSON {{\"ids\": [submission numbers]}} ({err})")
        board = await asyncio.to_thread(competition.board)
        if await asyncio.to_thread(board.closed):
            return error(409, "the competition is closed; the choices are final")
        try:
            await asyncio.to_thread(board.select, team, ids)
        except Exception as err:  # BoardError: not the team's, rejected, too many
            return error(400, str(err))
        return JSONResponse(await asyncio.to_thread(competition.history, team))

    async def instructor_only(request: Request) -> JSONResponse | None:
        who = await caller(request)
        if who is None or who[0] != "instructor":
            return error(401, "the instructor's token is needed (segkit competition teams instructor COMP)")
        return None

    async def get_instructor(request: Request):
        refused = await instructor_only(request)
        return refused or JSONResponse(await asyncio.to_thread(competition.instructor))

    async def post_close(request: Request):
        refused = await instructor_only(request)
        if refused:
            return refused
        board = await asyncio.to_thread(competition.board)
        await asyncio.to_thread(board.close)
        return JSONResponse(await asyncio.to_thread(competition.instructor))

    @asynccontextmanager
    async def lifespan(app):
        await competition.start()
        try:
            yield
        finally:
            await competition.stop()

    routes = [
        Route("/", page("board")), Route("/submit", page("submit")), Route("/team", page("team")),
        Route("/instructor", page("instructor")),
        Route("/api/leaderboard", get_leaderboard),
        Route("/api/submissions", post_submission, methods=["POST"]),
        Route("/api/submissions", get_submissions, methods=["GET"]),
        Route("/api/choices", post_choices, methods=["POST"]),
        Route("/api/instructor", get_instructor),
        Route("/api/instructor/close", post_close, methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(WEB / "static")), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.competition = competition
    return SecurityHeaders(app)


class SecurityHeaders:
    """ASGI middleware: SECURITY_HEADERS on every response."""

    def __init__(self, app):
        self.app = app
        self.state = app.state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def serve(comp: str | os.PathLike, host: str = "127.0.0.1", port: int = 8000, workers: int = 2) -> None:
    """Run the service until Ctrl-C (uvicorn, one process; scoring in `workers` worker processes)."""
    import uvicorn

    uvicorn.run(create_app(comp, workers), host=host, port=port, log_level="info", access_log=False)
