"""The competition as a web service, tested against a real server (`segkit competition serve`, a subprocess on
127.0.0.1 with its scoring workers) through its HTTP API, `segkit submit` and a real headless Chromium
(Debian's, driven by Playwright): scores equal an independent computation,
tokens and sizes are enforced, every hostile file of the battery is refused over HTTP with the board
unchanged, 40 concurrent uploads keep the daily limit exact, a stuck worker stalls nothing, a killed server
loses nothing, a model checkpoint scores what `segkit predict` + upload scores, and a browser uploads through
the page and watches the board update itself.  One server serves the whole module (it takes a while to start).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from browser_tools import browser_page
from test_competition_hostile import hostile_cases, write_zip
from test_competition_scoring import reference_metrics
from test_competition_setup import SIZES, competition, make_competition, noisy, prediction_zip

from segkit.competition.board import Board
from segkit.competition.client import ClientError, request_json, submit_file
from segkit.competition.ranking import final_standings
from segkit.competition.teams import Teams
from segkit.trainer.checkpoint import save_checkpoint

REPO = Path(__file__).resolve().parent.parent
TEAMS = [f"team {i}" for i in range(10)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """`segkit competition serve COMP` in a process group of its own (the workers are in it too)."""

    def __init__(self, comp: Path, log: Path, workers: int = 2):
        self.comp, self.log, self.workers = comp, log, workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = None

    def start(self, timeout: float = 300) -> Server:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "segkit", "competition", "serve", str(self.comp), "--port", str(self.port),
             "--workers", str(self.workers)], stdout=open(self.log, "ab"), stderr=subprocess.STDOUT,  # noqa: SIM115
            start_new_session=True, env=env, cwd=REPO)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited ({self.process.returncode}):\n{self.log.read_text()}")
            try:
                status, _ = request_json(self.url + "/api/leaderboard", timeout=5)
                if status == 200:
                    return self
            except Exception:
                pass
            time.sleep(0.3)
        self.kill()
        raise RuntimeError(f"the server did not answer within {timeout} s:\n{self.log.read_text()}")

    def workers_pids(self) -> list[int]:
        """The scoring workers: the processes of the server's group whose parent is not the server (they are
        the children of the forkserver, which, like the resource tracker, is the server's child)."""
        group, found = os.getpgid(self.process.pid), []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == group and int(fields[1]) != self.process.pid and int(entry.name) != group:
                found.append(int(entry.name))
        return sorted(found)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A competition (six small test images, daily limit 3) with ten registered teams and an instructor
    token, served by a real server for the whole module."""
    root = tmp_path_factory.mktemp("service")
    comp = make_competition(root, daily_limit=3)
    teams = Teams(Board(comp.board))
    names = [*TEAMS, "alpha", "beta", "gamma", "mallory", "models", "browser"]
    tokens = {name: teams.add(name)[1] for name in names}
    instructor = teams.new_instructor_token()
    server = Server(comp.root, root / "server.log").start()
    yield comp, server, tokens, instructor
    server.stop()


def upload(server: Server, token: str | None, path: Path) -> tuple[int, dict]:
    return submit_file(path, server.url, token) if token else request_json(server.url + "/api/submissions",
                                                                           method="POST")


def test_an_upload_is_scored_as_an_independent_computation_says(served, tmp_path, capsys):
    comp, server, tokens, _ = served
    rng = np.random.default_rng(11)
    predictions = {i: noisy(comp.masks[i], rng) for i in SIZES}
    path = prediction_zip(tmp_path / "alpha.zip", predictions)
    status, answer = upload(server, tokens["alpha"], path)
    assert status == 200 and answer["accepted"], answer
    reference = reference_metrics([comp.masks[i] for i in comp.public], [predictions[i] for i in comp.public])
    assert answer["public_miou"] == pytest.approx(reference["miou"], rel=1e-6)  # torchmetrics: float32
    assert answer["team"] == "alpha" and answer["problems"] == [] and answer["used_today"] == 1
    stored = Board(comp.board).submissions("alpha")[-1]
    assert stored.id == answer["id"] and stored.public_miou == answer["public_miou"]
    private = reference_metrics([comp.masks[i] for i in comp.private], [predictions[i] for i in comp.private])
    assert stored.private_miou == pytest.approx(private["miou"], rel=1e-6)
    assert "private" not in json.dumps(answer).lower()  # the team sees the public part only
    # the board's JSON is the live ranking of the stored rows
    status, board = request_json(server.url + "/api/leaderboard")
    assert status == 200 and not board["final"]
    assert {"team": "alpha", "score": answer["public_miou"]}.items() <= next(
        r for r in board["rows"] if r["team"] == "alpha").items()
    # the terminal client prints the report and exits 0 (accepted) or 1 (rejected)
    from segkit.cli import main as segkit

    bad = write_zip(tmp_path / "bad.zip", [("img_a.png", b"junk")])
    assert segkit(["submit", str(bad), "--server", server.url, "--token", tokens["alpha"]]) == 1
    printed = capsys.readouterr().out
    assert "REJECTED" in printed and "'img_a.png': not a PNG file" in printed
    history = request_json(server.url + "/api/submissions", tokens["alpha"])[1]["submissions"]
    assert [h["status"] for h in history[:2]] == ["rejected", "accepted"]
    assert {"member": "img_a.png", "message": "not a PNG file: content starts with b'junk', expected the PNG "
            "signature"} in history[0]["problems"]


def test_tokens_sizes_and_malformed_requests_are_refused_and_nothing_recorded(served, tmp_path):
    comp, server, tokens, instructor = served
    before = Board(comp.board).submissions()
    sample = comp.root / "sample_submission.zip"
    assert upload(server, None, sample)[0] == 401
    status, answer = upload(server, "not-a-token", sample)
    assert status == 401 and "team token is needed" in answer["error"]
    assert upload(server, tokens["alpha"][:-1], sample)[0] == 401  # one character short
    assert upload(server, instructor, sample)[0] == 403
    assert request_json(server.url + "/api/instructor", tokens["alpha"])[0] == 401
    # a declared Content-Length over the cap: refused before the body is read
    rules = Board(comp.board).rules
    cap = max(rules.max_zip_bytes, rules.max_checkpoint_bytes) + 64 * 1024
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.putrequest("POST", "/api/submissions")
    connection.putheader("Authorization", f"Bearer {tokens['alpha']}")
    connection.putheader("Content-Type", "multipart/form-data; boundary=x")
    connection.putheader("Content-Length", str(cap + 1))
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413 and f"at most {cap}" in json.loads(response.read())["error"]
    connection.close()
    # a chunked body with no length that goes past the cap: stopped while streaming
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    chunks = (bytes(1 << 20) for _ in range(cap // (1 << 20) + 2))
    connection.request("POST", "/api/submissions", body=chunks, encode_chunked=True,
                       headers={"Authorization": f"Bearer {tokens['alpha']}",
                                "Content-Type": "multipart/form-data; boundary=x"})
    response = connection.getresponse()
    assert response.status == 413 and "stopped reading" in json.loads(response.read())["error"]
    connection.close()
    # not multipart, no field 'file', two fields 'file'
    def part(name: str, file_name: str | None, data: bytes) -> bytes:
        disposition = f'form-data; name="{name}"' + (f'; filename="{file_name}"' if file_name else "")
        return f"--b\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"

    multipart = "multipart/form-data; boundary=b"
    for content_type, body, phrase in [
        ("application/zip", sample.read_bytes(), "multipart/form-data"),
        (multipart, part("other", None, b"x") + b"--b--\r\n", "no field named 'file'"),
        (multipart, part("file", "a.zip", b"x") + part("file", "b.zip", b"y") + b"--b--\r\n",
         "more than one field"),
    ]:
        status, answer = request_json(server.url + "/api/submissions", tokens["alpha"], "POST", body,
                                      {"Content-Type": content_type})
        assert status in (400, 415) and phrase in answer["error"], answer
    assert Board(comp.board).submissions() == before
    assert not any((comp.root / "uploads" / "incoming").iterdir())  # no body left behind
    # another team's token submits as that team, and each history holds only its own rows
    status, answer = upload(server, tokens["beta"], sample)
    assert status == 200 and answer["team"] == "beta"
    alpha = request_json(server.url + "/api/submissions", tokens["alpha"])[1]["submissions"]
    assert answer["id"] not in [h["id"] for h in alpha]


def test_html_in_names_is_kept_as_text(served, tmp_path):
    comp, server, tokens, _ = served
    evil = "<img src=x onerror=alert(1)>"
    path = write_zip(tmp_path / f"{evil}.zip", [(f"{evil}.png", b"x")])
    status, answer = upload(server, tokens["mallory"], path)
    assert status == 200 and not answer["accepted"]
    assert answer["file_name"] == path.name  # stored as given, as text
    assert any(p["member"] == f"{evil}.png" for p in answer["problems"])
    # the pages: templates escape, scripts set text with textContent (the browser test looks at the result),
    # and the Content-Security-Policy runs no script but the server's own files
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request("GET", "/")
    response = connection.getresponse()
    html = response.read().decode()
    assert response.status == 200 and "<img" not in html
    csp = response.getheader("Content-Security-Policy")
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp
    connection.close()


def test_hostile_battery_over_http_is_rejected_and_the_board_unchanged(served, tmp_path):
    comp, server, tokens, _ = served
    rng = np.random.default_rng(12)
    cases = hostile_cases(comp, rng)
    board_before = request_json(server.url + "/api/leaderboard")[1]
    rows_before = Board(comp.board).submissions()
    for number, (case, content, expected) in enumerate(cases):
        path = tmp_path / f"case{number:02d}.zip"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            write_zip(path, content)
        status, answer = upload(server, tokens["mallory"], path)
        assert status == 200 and not answer["accepted"], (case, answer)
        for member, phrase in expected:
            assert any(phrase in p["message"] and (member is None or p["member"] == member)
                       for p in answer["problems"]), (case, member, phrase, answer["problems"])
    rows_after = Board(comp.board).submissions()
    assert rows_after[:len(rows_before)] == rows_before
    assert [r.status for r in rows_after[len(rows_before):]] == ["rejected"] * len(cases)
    assert request_json(server.url + "/api/leaderboard")[1] == board_before


def test_forty_concurrent_uploads_from_ten_teams_keep_the_daily_limit_exact(served, tmp_path):
    comp, server, tokens, _ = served
    rng = np.random.default_rng(13)
    paths = [prediction_zip(tmp_path / f"{k}.zip", {i: noisy(comp.masks[i], rng) for i in SIZES})
             for k in range(4)]
    answers, barrier = [], threading.Barrier(40)

    def send(team: str, path: Path):
        barrier.wait()
        answers.append((team, *upload(server, tokens[team], path)))

    threads = [threading.Thread(target=send, args=(team, path)) for team in TEAMS for path in paths]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    assert len(answers) == 40 and all(status == 200 for _, status, _ in answers)
    rows = [r for r in Board(comp.board).submissions() if r.team in TEAMS]
    assert len(rows) == 40 and len({r.id for r in rows}) == 40
    assert Counter((r.team, r.status) for r in rows) == Counter(
        {**{(t, "accepted"): 3 for t in TEAMS}, **{(t, "rejected"): 1 for t in TEAMS}})
    assert all("daily limit reached" in r.message for r in rows if not r.accepted)
    connection = Board(comp.board)._connect()
    assert connection.execute("SELECT COUNT(*) FROM uploads WHERE submission_id IS NULL").fetchone() == (0,)
    connection.close()


def test_a_stuck_worker_stalls_nothing_and_a_killed_server_loses_nothing(served, tmp_path):
    """Stop both workers (as a long C call would), upload: the board keeps answering; the pool kills the
    stuck worker after the time limit and answers.  Then stop the workers again, upload, kill the whole
    server while the upload waits, start it again: the upload is scored and recorded once."""
    comp, server, tokens, _ = served
    rules_file = comp.board / "competition.json"
    original = rules_file.read_text()
    rules_file.write_text(json.dumps({**json.loads(original), "time_limit_s": 1.0}))
    rng = np.random.default_rng(14)
    path = prediction_zip(tmp_path / "gamma.zip", {i: noisy(comp.masks[i], rng) for i in SIZES})
    try:
        stopped = server.workers_pids()
        for pid in stopped:
            os.kill(pid, signal.SIGSTOP)
        result = {}
        sender = threading.Thread(target=lambda: result.update(answer=upload(server, tokens["gamma"], path)))
        sender.start()
        status, board = request_json(server.url + "/api/leaderboard", timeout=10)
        assert status == 200 and sender.is_alive()  # the board answered while the upload was stuck
        sender.join(120)
        status, answer = result["answer"]
        assert status == 200 and not answer["accepted"]
        message = answer["problems"][0]["message"]
        assert "time limit of 1 s exceeded; the scoring worker was stopped" in message
        for pid in stopped:  # the worker that was not given the job goes on; the other one was replaced
            if Path(f"/proc/{pid}").exists():
                os.kill(pid, signal.SIGCONT)
        assert len(server.workers_pids()) == 2
        status, answer = upload(server, tokens["gamma"], path)
        assert status == 200 and answer["accepted"], answer

        for pid in server.workers_pids():
            os.kill(pid, signal.SIGSTOP)

        def send_and_lose_the_answer():
            with pytest.raises(ClientError, match="Remote end closed connection"):
                upload(server, tokens["gamma"], path)  # the server is killed before it answers

        sender = threading.Thread(target=send_and_lose_the_answer)
        sender.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not unscored(comp):
            time.sleep(0.1)
        assert unscored(comp) == ["gamma.zip"]
        server.kill()
        sender.join(60)
    finally:
        rules_file.write_text(original)
    rows_before = len(Board(comp.board).submissions())
    server.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and unscored(comp):
        time.sleep(0.2)
    assert unscored(comp) == []
    rows = Board(comp.board).submissions()
    assert len(rows) == rows_before + 1 and rows[-1].team == "gamma" and rows[-1].accepted


def unscored(comp) -> list[str]:
    connection = Board(comp.board)._connect()
    try:
        return [r[0] for r in connection.execute("SELECT file_name FROM uploads WHERE submission_id IS NULL")]
    finally:
        connection.close()


# ---- model submissions -------------------------------------------------------------------------------------

TINY = ["data.crop_size=32", "data.base_size=32", "data.batch_size=4", "model.options.base_channels=4",
        "model.options.depth=2", "train.epochs=1", "train.device=cpu", "train.progress_bar=false",
        "train.print_table=false"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from segkit.cli import main as segkit
    from segkit.data import make_shapes

    root = tmp_path_factory.mktemp("model")
    shapes = make_shapes(root / "shapes", size=32, n_train=4, n_val=2, n_test=2)
    assert segkit(["train", "shapes_unet", "--set", f"data.root={shapes}", f"run.dir={root / 'runs'}",
                   "run.name=tiny", *TINY]) == 0
    return root / "runs" / "tiny" / "last.pt"


def test_a_model_scores_what_predict_and_upload_score(served, checkpoint, tmp_path):
    comp, server, tokens, _ = served
    from segkit.cli import main as segkit

    predicted = tmp_path / "predicted.zip"
    assert segkit(["predict", str(checkpoint), "--root", str(comp.root / "student-pack"), "--out",
                   str(predicted), "--device", "cpu"]) == 0
    status, by_hand = upload(server, tokens["models"], predicted)
    assert status == 200 and by_hand["accepted"], by_hand
    status, by_server = upload(server, tokens["models"], checkpoint)
    assert status == 200 and by_server["accepted"], by_server
    assert by_server["kind"] == "model" and by_server["seconds_per_image"] > 0
    assert by_server["public_miou"] == by_hand["public_miou"]
    rows = Board(comp.board).submissions("models")
    assert rows[-1].private_miou == rows[-2].private_miou and rows[-1].seconds_per_image > 0
    board = request_json(server.url + "/api/leaderboard")[1]
    entry = next(r for r in board["rows"] if r["team"] == "models")
    assert entry["ms_per_image"] is None or entry["ms_per_image"] > 0


def test_hostile_checkpoints_are_refused(served, checkpoint, tmp_path):
    comp, server, tokens, _ = served
    state = torch.load(checkpoint, weights_only=True)
    cases = []
    cases.append(("not a zip.pt", b"\x80\x04K\x01.", "no zip end record"))
    renamed = {**state, "config": {**state["config"], "model": {**state["config"]["model"], "name": "evil"}}}
    cases.append(("unknown model.pt", renamed, "unknown model 'evil'"))
    pickled = {**state, "extra": argparse.Namespace(a=1)}  # a global that weights_only refuses
    cases.append(("code in the pickle.pt", pickled, "Weights only load failed"))
    fewer_classes = {**state, "model": {k: v[:1] if v.dim() and v.shape[0] == 21 else v
                                        for k, v in state["model"].items()}}
    cases.append(("tampered.pt", fewer_classes, "damaged"))  # tensors changed, the checksum not rewritten
    cases.append(("wrong classes.pt", ("resaved", fewer_classes), "size mismatch"))  # a valid checksum
    for name, content, phrase in cases:
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif isinstance(content, tuple):
            save_checkpoint(content[1], path)
        else:
            torch.save(content, path)
        status, answer = upload(server, tokens["models"], path)
        assert status == 200 and not answer["accepted"], (name, answer)
        assert phrase in answer["problems"][0]["message"], (name, answer["problems"])
    # the memory limit: a worker may grow by 20 MB only, less than loading and running the model takes
    rules_file = comp.board / "competition.json"
    original = rules_file.read_text()
    rules_file.write_text(json.dumps({**json.loads(original), "memory_limit_mb": 20}))
    try:
        big = {**state, "model": {**state["model"], "padding": torch.zeros(8 * 2**20)}}  # 32 MB of weights
        save_checkpoint(big, tmp_path / "big.pt")
        status, answer = upload(server, tokens["models"], tmp_path / "big.pt")
    finally:
        rules_file.write_text(original)
    assert status == 200 and not answer["accepted"]
    assert "out of memory" in answer["problems"][0]["message"] or "died" in answer["problems"][0]["message"]
    status, answer = upload(server, tokens["models"], checkpoint)  # and the pool goes on
    assert status == 200 and answer["accepted"], answer


# ---- a real browser ---------------------------------------------------------------------------------------


@pytest.fixture
def browser():
    with browser_page(height=900) as page:
        yield page


def wait_until(condition, timeout: float = 60):
    """The first true value of condition(), polled every 0.2 s (the pages refresh themselves)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            assert value, f"not true after {timeout} s: {condition}"
            return value
        time.sleep(0.2)


def board_rows(page) -> dict[str, list[str]]:
    """team -> the texts of its row's cells, as the page shows them now (read in one script, so the page's
    own refresh cannot replace the rows halfway through)."""
    rows = page.evaluate("() => [...document.querySelectorAll('#rows tr')]"
                         ".map((row) => [...row.cells].map((cell) => cell.textContent))")
    return {cells[1]: cells for cells in rows}


def test_a_browser_uploads_through_the_page_and_watches_the_board_update(served, browser, tmp_path):
    """With nothing but a team's token: paste it, drop a zip on the upload page, see the score; the board in
    another tab shows it without being reloaded, and again after a better submission arrives; the team's
    history shows a file name full of HTML as text."""
    comp, server, tokens, _ = served
    board_tab = browser
    board_tab.goto(server.url + "/")
    board_tab.evaluate("() => { window.notReloaded = true; }")
    wait_until(lambda: "Updated at" in board_tab.inner_text("#updated"))
    assert "browser" not in board_rows(board_tab)

    rng = np.random.default_rng(15)
    first = prediction_zip(tmp_path / "first.zip", {i: noisy(comp.masks[i], rng, flip=0.6) for i in SIZES})
    upload_tab = board_tab.context.new_page()
    upload_tab.goto(server.url + "/submit")
    upload_tab.fill("#token", tokens["browser"])
    upload_tab.set_input_files("#file", str(first))
    upload_tab.click("#send")
    verdict = wait_until(lambda: upload_tab.inner_text("#verdict").strip())
    stored = Board(comp.board).submissions("browser")[-1]
    assert verdict == f"Submission #{stored.id}: ACCEPTED", stored.message
    assert f"Public mIoU: {stored.public_miou:.4f}" in upload_tab.inner_text("#score")
    classes = upload_tab.locator("#per-class tbody tr td:first-child").all_inner_texts()
    assert classes and classes[0] == "background"

    wait_until(lambda: "browser" in board_rows(board_tab))
    assert board_rows(board_tab)["browser"][2] == f"{stored.public_miou:.4f}"
    perfect = {i: np.where(m == 255, 0, m).astype(np.uint8) for i, m in comp.masks.items()}
    status, answer = upload(server, tokens["browser"], prediction_zip(tmp_path / "perfect.zip", perfect))
    assert status == 200 and answer["public_miou"] == 1.0
    wait_until(lambda: board_rows(board_tab)["browser"][2] == "1.0000")
    assert board_rows(board_tab)["browser"][0] == "1"  # first place now
    assert board_tab.evaluate("() => window.notReloaded === true")  # updated in place, never reloaded
    shot = tmp_path / "board.png"
    board_tab.screenshot(path=str(shot))
    assert shot.read_bytes().startswith(b"\x89PNG")

    evil = "<img src=x onerror=alert(1)>"
    hostile = write_zip(tmp_path / f"{evil}.zip", [(f"{evil}.png", b"x")])
    again = board_tab.context.new_page()
    again.goto(server.url + "/submit")  # the token is remembered by this browser
    assert again.input_value("#token") == tokens["browser"]
    again.set_input_files("#file", str(hostile))
    again.click("#send")
    wait_until(lambda: "REJECTED" in again.inner_text("#verdict"))
    problems = again.locator("#problems li").all_inner_texts()
    assert f"{evil}.png: extra member: no test image has id '{evil}'" in problems
    again.goto(server.url + "/team")
    wait_until(lambda: again.locator("#history tbody tr").count() == 3)
    names = again.locator("#history tbody tr td:nth-child(3)").all_inner_texts()
    assert names == [hostile.name, "perfect.zip", "first.zip"]
    assert again.evaluate("() => document.querySelectorAll('img').length") == 0
    assert again.inner_text("#team-name") == "browser"


def test_instructor_closes_and_the_final_board_becomes_public(served, tmp_path):
    comp, server, tokens, instructor = served
    status, private = request_json(server.url + "/api/instructor", instructor)
    assert status == 200 and not private["closed"]
    board = Board(comp.board)
    expected = [(s.team, s.private_score)
                for s in final_standings(board.submissions(), board.selections(), board.rules)]
    assert [(r["team"], r["private"]) for r in private["rows"]] == expected
    assert "private" not in json.dumps(request_json(server.url + "/api/leaderboard")[1]["rows"])
    # a team chooses its final submissions through the API
    alpha = [h["id"] for h in request_json(server.url + "/api/submissions", tokens["alpha"])[1]["submissions"]
             if h["status"] == "accepted"]
    choice = json.dumps({"ids": alpha[-1:]}).encode()
    status, history = request_json(server.url + "/api/choices", tokens["alpha"], "POST", choice,
                                   {"Content-Type": "application/json"})
    assert status == 200 and history["chosen"] == alpha[-1:]
    assert request_json(server.url + "/api/instructor/close", tokens["alpha"], "POST")[0] == 401
    status, closed = request_json(server.url + "/api/instructor/close", instructor, "POST")
    assert status == 200 and closed["closed"]
    status, final = request_json(server.url + "/api/leaderboard")
    expected = [(s.team, s.private_score)
                for s in final_standings(board.submissions(), board.selections(), board.rules)]
    assert final["final"] and [(r["team"], r["score"]) for r in final["rows"]] == expected
    status, answer = upload(server, tokens["alpha"], comp.root / "sample_submission.zip")
    assert status == 409 and "closed" in answer["error"]
    assert competition("score", str(comp.root / "sample_submission.zip"), "--team", "alpha", "--comp",
                       str(comp.root)) == 2
