"""Scoring in worker processes, so that a hostile upload costs at most a worker, never the server.

`WorkerPool(comp, size)` keeps `size` long-lived processes.  Each one has torch and the scorer imported
once (they are forked from a forkserver that preloads this module, so a replacement starts in a moment),
scores one job at a time, and answers with a plain dict.  Limits on every job:

- wall clock: inside the worker an alarm (segkit.competition.submission.wall_clock_limit) stops the work at
  rules.time_limit_s and the worker answers "time limit exceeded"; if it has not answered GRACE_S seconds
  later (stuck in a long C call), the pool kills it and starts another;
- memory: the worker's address space may grow by rules.memory_limit_mb beyond its size at rest
  (RLIMIT_AS); past that an allocation fails with MemoryError, the worker answers "out of memory" and is
  replaced, as it is when the operating system kills it.

The event loop only waits on the workers' pipes (`loop.add_reader`), so the board and every page keep
answering while jobs run.  Jobs (dicts): {"kind": "masks" | "model", "path": file to score}.  Answers:
{"sha256", "problems": [[member or None, message], ...], "public", "private", "seconds_per_image"}.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import resource
import signal
from dataclasses import dataclass
from pathlib import Path

GRACE_S = 5.0  # how long after its time limit a worker may take to answer before it is killed
MB = 2**20


def _address_space() -> int:
    """This process's virtual memory size in bytes (VmSize)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def worker_main(connection, comp: str) -> None:
    """The loop of one worker process: receive a job, score it under the limits, send the answer."""
    import torch

    from segkit.competition.board import Board
    from segkit.competition.prepare import PACK
    from segkit.competition.submission import TimeLimitExceeded, wall_clock_limit
    from segkit.competition.truth import TestSet

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in the terminal stops the server, which stops us
    torch.set_num_threads(1)
    comp_dir = Path(comp)
    test_set = TestSet.load(comp_dir / "truth")
    at_rest = _address_space()
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    connection.send({"ready": os.getpid()})
    while True:
        try:
            job = connection.recv()
        except EOFError:
            return
        if job is None:
            return
        rules = Board(comp_dir / "board").rules
        limit = at_rest + rules.memory_limit_mb * MB
        resource.setrlimit(resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard),
                                                hard))
        out_of_memory = False
        try:
            with wall_clock_limit(rules.time_limit_s):
                answer = run_job(job, test_set, rules, comp_dir / PACK, comp_dir / "uploads")
        except TimeLimitExceeded:
            answer = failure(f"time limit of {rules.time_limit_s:g} s exceeded; stopped")
        except MemoryError:
            answer = failure(f"out of memory: scoring needed more than the limit of "
                             f"{rules.memory_limit_mb} MB")
            out_of_memory = True
        finally:
            resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
        # a process that ran out of memory may be in any state: it says so, and a fresh one takes over
        connection.send({**answer, "retire": out_of_memory})
        if out_of_memory:
            return


def run_job(job: dict, test_set, rules, pack: Path, scratch: Path) -> dict:
    """Score one uploaded file: a zip of masks, or a model checkpoint run on the pack's images."""
    from segkit.competition.checkpoints import score_checkpoint
    from segkit.competition.scoring import score_submission

    if job["kind"] == "model":
        result = score_checkpoint(job["path"], test_set, rules, pack, scratch=scratch)
    else:
        result = score_submission(job["path"], test_set, rules)
    return {"sha256": result.sha256, "problems": [[p.member, p.message] for p in result.problems],
            "public": result.public, "private": result.private, "seconds_per_image": result.seconds_per_image}


def failure(message: str, sha256: str = "(not hashed)") -> dict:
    return {"sha256": sha256, "problems": [[None, message]], "public": None, "private": None,
            "seconds_per_image": None}


@dataclass
class Worker:
    process: multiprocessing.process.BaseProcess
    connection: object


class WorkerPool:
    """`size` scoring processes for the competition folder `comp`; `await pool.run(job)` scores one job."""

    def __init__(self, comp: str | os.PathLike, size: int = 2):
        if size < 1:
            raise ValueError(f"a pool needs at least 1 worker, got {size}")
        self.comp = Path(comp)
        self.size = size
        self.context = multiprocessing.get_context("forkserver")
        self.context.set_forkserver_preload(["segkit.competition.workers", "segkit.competition.checkpoints",
                                             "segkit.build", "segkit.inference"])
        self.idle: asyncio.Queue[Worker] | None = None
        self.workers: list[Worker] = []

    def _spawn(self) -> Worker:
        """Start one worker and wait (blocking) until it has loaded the truth."""
        ours, theirs = self.context.Pipe()
        process = self.context.Process(target=worker_main, args=(theirs, str(self.comp)), daemon=True,
                                       name="segkit-scorer")
        process.start()
        theirs.close()
        if not ours.poll(600):
            process.kill()
            raise RuntimeError("a scoring worker did not start within 10 minutes")
        ours.recv()
        worker = Worker(process, ours)
        self.workers.append(worker)
        return worker

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.idle = asyncio.Queue()
        for _ in range(self.size):
            await self.idle.put(await loop.run_in_executor(None, self._spawn))

    async def _replace(self, worker: Worker) -> None:
        """Kill a worker that misbehaved (or died) and put a fresh one in its place."""
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join(5)
        worker.connection.close()
        self.workers.remove(worker)
        loop = asyncio.get_running_loop()
        await self.idle.put(await loop.run_in_executor(None, self._spawn))

    async def run(self, job: dict, time_limit_s: float) -> dict:
        """Score `job` in the next free worker; the answer comes within time_limit_s + GRACE_S."""
        for _ in range(2):
            worker = await self.idle.get()
            try:
                worker.connection.send(job)
            except OSError:  # the worker had died while idle: never given the job, so try a fresh one
                await self._replace(worker)
                continue
            return await self._answer(worker, time_limit_s)
        return failure("no scoring worker could be started; tell the instructor")

    async def _answer(self, worker: Worker, time_limit_s: float) -> dict:
        """Wait for the answer of a worker that was sent a job; replace the worker when it misbehaved."""
        loop = asyncio.get_running_loop()
        ready = loop.create_future()
        descriptor = worker.connection.fileno()
        loop.add_reader(descriptor, lambda: ready.done() or ready.set_result(None))
        healthy = True
        try:
            await asyncio.wait_for(ready, time_limit_s + GRACE_S)
            answer = worker.connection.recv()
            healthy = not answer.pop("retire", False)
        except TimeoutError:
            healthy = False
            answer = failure(f"time limit of {time_limit_s:g} s exceeded; the scoring worker was stopped")
        except (EOFError, OSError):
            healthy = False
            worker.process.join(1)
            code = worker.process.exitcode
            answer = failure(f"the scoring worker died (exit code {code}): the submission needed more memory "
                             "than allowed, or crashed it")
        finally:
            loop.remove_reader(descriptor)
        if healthy:
            await self.idle.put(worker)
        else:
            await self._replace(worker)
        return answer

    async def close(self) -> None:
        for worker in list(self.workers):
            try:
                worker.connection.send(None)
            except OSError:
                pass
        for worker in list(self.workers):
            worker.process.join(5)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(5)
        self.workers.clear()
