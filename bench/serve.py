"""Benchmark of the competition service: sustained accepted submissions per minute, and a submission's
server-side time against plain scoring of the same zip.

Makes (in a temporary folder, deleted afterwards) a competition drawn from the shapes dataset with a secret
seed (--n-test images of --size pixels), registers --teams teams, starts `segkit competition serve` on
127.0.0.1 with --workers scoring processes, and a submission zip (the truth with 30 % of the pixels changed).
Then, in the same run:

    plain    `score_submission(zip)` in this process (check + score, no board, no HTTP): the reference;
    served   one upload at a time through the HTTP API (`segkit.competition.client.submit_file`): the time
             from sending the request to the answer, which holds the upload streamed to disk, its parsing,
             the hand-over to a worker process, the scoring there, and the board's transaction;

taking turns, --repeats rounds, and prints the medians and the ratio served / plain.  Last, --clients
threads upload as fast as the server answers for --seconds seconds (the teams' daily limit is lifted), and
the number of accepted submissions per minute is printed.  Times are only meaningful as the ratio, measured
in the same run on the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from test_competition_service import Server  # noqa: E402

from segkit.competition.board import Board  # noqa: E402
from segkit.competition.client import submit_file  # noqa: E402
from segkit.competition.prepare import prepare_competition  # noqa: E402
from segkit.competition.scoring import score_submission  # noqa: E402
from segkit.competition.teams import Teams  # noqa: E402
from segkit.competition.truth import TestSet  # noqa: E402
from segkit.data import write_mask  # noqa: E402


def noisy_submission(comp: Path, out: Path, seed: int) -> Path:
    """A zip of the truth masks with void filled in and 30 % of the pixels set to a random shapes class."""
    rng = np.random.default_rng(seed)
    test_set = TestSet.load(comp / "truth")
    with tempfile.TemporaryDirectory() as scratch, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for image_id in sorted(test_set.sizes):
            mask = test_set.read(image_id).copy()
            changed = (mask == 255) | (rng.random(mask.shape) < 0.3)
            mask[changed] = rng.choice([0, 1, 3, 7, 15, 16], size=int(changed.sum()))
            png = Path(scratch) / f"{image_id}.png"
            write_mask(png, mask)
            archive.write(png, arcname=png.name)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-test", type=int, default=100, help="test images (shapes default: 100)")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels (shapes default: 128)")
    parser.add_argument("--workers", type=int, default=2, help="scoring processes of the server")
    parser.add_argument("--teams", type=int, default=10)
    parser.add_argument("--clients", type=int, default=8, help="concurrent uploaders for the throughput")
    parser.add_argument("--seconds", type=float, default=60.0, help="duration of the throughput run")
    parser.add_argument("--repeats", type=int, default=7, help="rounds of plain vs served; medians printed")
    args = parser.parse_args(argv)

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="segkit-bench-serve-") as scratch:
        scratch = Path(scratch)
        comp = scratch / "comp"
        prepare_competition("shapes", comp, size=args.size, n_test=args.n_test)
        rules_file = comp / "board" / "competition.json"
        rules_file.write_text(json.dumps({**json.loads(rules_file.read_text()), "daily_limit": 10**9}))
        teams = Teams(Board(comp / "board"))
        tokens = [teams.add(f"team {k}")[1] for k in range(args.teams)]
        submission = noisy_submission(comp, scratch / "submission.zip", seed=0)
        test_set, rules = TestSet.load(comp / "truth"), Board(comp / "board").rules
        start = time.perf_counter()
        server = Server(comp, scratch / "server.log", workers=args.workers).start()
        print(f"competition: {args.n_test} test images of {args.size}×{args.size}, zip "
              f"{submission.stat().st_size / 1e3:.0f} kB; server with {args.workers} workers started in "
              f"{time.perf_counter() - start:.1f} s")
        try:
            plain, served = [], []
            reference = score_submission(submission, test_set, rules)
            assert not reference.problems, reference.problems[:3]
            for _ in range(args.repeats):
                begin = time.perf_counter()
                score_submission(submission, test_set, rules)
                plain.append(time.perf_counter() - begin)
                begin = time.perf_counter()
                status, answer = submit_file(submission, server.url, tokens[0])
                served.append(time.perf_counter() - begin)
                assert status == 200 and answer["accepted"], answer
                assert answer["public_miou"] == reference.public["miou"]  # the same score, served or not
            accepted, stop = [], time.monotonic() + args.seconds

            def client(token: str):
                while time.monotonic() < stop:
                    status, answer = submit_file(submission, server.url, token)
                    if status == 200 and answer["accepted"]:
                        accepted.append(time.monotonic())

            begin = time.monotonic()
            threads = [threading.Thread(target=client, args=(tokens[k % len(tokens)],))
                       for k in range(args.clients)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.monotonic() - begin
        finally:
            server.stop()
    plain_s, served_s = statistics.median(plain), statistics.median(served)
    print(f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after; median of {args.repeats} "
          "rounds taken in turns")
    print(f"plain scoring of the zip (this process):    {plain_s * 1e3:8.1f} ms")
    print(f"one upload through the server (HTTP):       {served_s * 1e3:8.1f} ms")
    print(f"ratio served / plain:                       {served_s / plain_s:8.2f}")
    print(f"sustained: {len(accepted)} accepted in {elapsed:.1f} s with {args.clients} clients = "
          f"{60 * len(accepted) / elapsed:.1f} accepted submissions per minute")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
