"""The mock QPU service: a process of its own that runs jobs for :class:`RemoteMockBackend`.

A stand-in for a cloud quantum service, whose jobs live outside the scheduler's process:
they are acknowledged with an ID, run whether or not their submitter is still alive, and are
collected by that ID later, by any process (what a scheduler restarted after a crash needs).
:class:`~logosq_os_scheduler.backends.MockQPUService` starts it and stops it; run by hand it is
``python _mock_qpu.py [--port N] [--latency S] ...`` (see :func:`main`), which prints the port
it listens on as its first line of output.

It runs as a script, started by :mod:`subprocess`, and imports nothing from the package but
the sampler (``_sampling.py``, standard library only, loaded by its location), so it starts
fast and without the package on its path.

Protocol: JSON lines over TCP on 127.0.0.1 (never pickle). Each request is one JSON object on
one line, answered by one line, in order; a connection may carry many. Requests:

* ``{"op": "submit", "circuits": [{"num_qubits": n, "shots": s, "key": k, "clbits": c}]}``
  answers ``{"ok": true, "job_id": id, "existing": bool}``. ``clbits`` (optional) is the
  bitstring width when it is not ``num_qubits``. A submit whose idempotency keys are exactly
  those of a job that has not failed answers that job's ID (``existing``); otherwise a new job
  runs, and each of its keys that another job holds is taken from that job rather than run
  again. No key is ever executed twice (a key is released only when its circuit or its job
  failed).
* ``{"op": "wait", "job_id": id, "timeout": seconds}`` answers once the job has ended or the
  timeout (at most 60 s) has passed: ``{"ok": true, "status": s}`` where ``s`` is
  ``"QUEUED"``, ``"RUNNING"``, ``"DONE"`` (with ``"outcomes"``, one per circuit:
  ``{"counts": {...}}`` or ``{"error": "permanent" | "transient", "message": m}``) or
  ``"ERROR"`` (the job failed as a whole, with ``"error"``: a message). ``timeout`` 0 polls.
* ``{"op": "stats"}`` answers ``{"ok": true, "stats": {...}}`` (see :meth:`Service.stats`);
  ``{"op": "executions"}`` answers ``{"ok": true, "executions": {key: times executed}}``;
  ``{"op": "ping"}`` answers ``{"ok": true}``.

A request that cannot be answered gets ``{"ok": false, "error": code, "message": m}``, with
code ``"unknown-job"`` or ``"bad-request"``.

Results are deterministic: a circuit's counts depend only on its idempotency key, its width
and its shots (uniform bitstrings drawn from a generator seeded with their SHA-256), so a job
run again after a crash gives what the first run would have. Faults (``failure_rate``: a job
fails as a whole, its keys released) are drawn per job from the service's seed and the job's
number. With a state directory the service writes its jobs and execution counts there after
every change and takes them up again when restarted on it: finished jobs keep their outcomes,
unfinished ones run again (they had executed nothing).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import hashlib
import json
import os
import random
import sys
import threading
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeGuard


def _sampling_by_location() -> Any:
    """The package's ``_sampling`` module, loaded from its file: run as a script, this module
    has no package to import it from (and must not import one)."""
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    spec = importlib.util.spec_from_file_location(
        "_logosq_sampling", os.path.join(here, "_sampling.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


if TYPE_CHECKING or __package__:
    from ._sampling import uniform_counts
else:  # run as a script (``python _mock_qpu.py``)
    uniform_counts = _sampling_by_location().uniform_counts

__all__ = ["LINE_LIMIT", "Service", "counts_for", "main"]

QUEUED, RUNNING, DONE, ERROR = "QUEUED", "RUNNING", "DONE", "ERROR"

LINE_LIMIT = 16 * 1024 * 1024
"""The longest request or reply line, in bytes."""

_MAX_WAIT = 60.0
_MAX_SHOTS = 10_000_000
_STATE_FILE = "mock_qpu_state.json"

Outcome = dict[str, Any]  # {"counts": {...}} or {"error": kind, "message": text}


def counts_for(key: str, width: int, shots: int) -> dict[str, int]:
    """The counts the service gives a circuit: uniform ``width``-bit strings, drawn from a
    generator seeded with the SHA-256 of the key, width and shots (so the same circuit under
    the same key always gets the same counts)."""
    digest = hashlib.sha256(f"{key}\x00{width}\x00{shots}".encode()).digest()
    rng = random.Random(int.from_bytes(digest[:16], "big"))
    counts: dict[str, int] = uniform_counts(rng, width, shots)
    return counts


@dataclasses.dataclass(frozen=True, slots=True)
class _Circuit:
    num_qubits: int | None
    shots: int
    key: str
    clbits: int | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "num_qubits": self.num_qubits,
            "shots": self.shots,
            "key": self.key,
            "clbits": self.clbits,
        }


class _Job:
    """One job at the service.

    Invariants: ``outcomes[i]`` is set for every ``i`` in ``own`` once ``own_done`` is set
    (unless the job failed: ``status == ERROR``); ``replays`` maps the other indices to the
    (job, index) that executes their key; ``finished`` is set iff the status is DONE or ERROR.
    """

    __slots__ = (
        "circuits",
        "error",
        "fail",
        "finished",
        "id",
        "number",
        "outcomes",
        "own",
        "own_done",
        "replays",
        "status",
    )

    def __init__(self, job_id: str, number: int, circuits: list[_Circuit], fail: bool) -> None:
        self.id = job_id
        self.number = number
        self.circuits = circuits
        self.fail = fail
        self.status = QUEUED
        self.error: str | None = None
        self.outcomes: list[Outcome | None] = [None] * len(circuits)
        self.own: list[int] = []
        self.replays: dict[int, tuple[_Job, int]] = {}
        self.own_done = asyncio.Event()
        self.finished = asyncio.Event()

    def keys(self) -> list[str]:
        return [c.key for c in self.circuits]

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "number": self.number,
            "circuits": [c.as_dict() for c in self.circuits],
            "fail": self.fail,
            "status": self.status,
            "error": self.error,
            "outcomes": self.outcomes,
            "own": self.own,
            "replays": {str(i): [job.id, j] for i, (job, j) in self.replays.items()},
        }


class BadRequestError(Exception):
    """A request the service cannot read."""


class UnknownJobError(Exception):
    """A request for a job ID the service does not know."""


class Service:
    """The service's state and its answers to requests; :func:`main` serves it over TCP.

    Args:
        latency: Seconds each job takes: fixed, plus ``per_circuit`` per circuit it executes.
        per_circuit: See ``latency``.
        failure_rate: Probability that a job fails as a whole (drawn per job from ``seed``).
        max_running_jobs: Jobs executed at once; the rest wait, in submission order.
        seed: Seeds the fault draws.
        state_dir: Where to keep the state across restarts (None: in memory only).
    """

    def __init__(
        self,
        *,
        latency: float = 0.0,
        per_circuit: float = 0.0,
        failure_rate: float = 0.0,
        max_running_jobs: int = 1,
        seed: int = 0,
        state_dir: str | None = None,
    ) -> None:
        self._latency = latency
        self._per_circuit = per_circuit
        self._failure_rate = failure_rate
        self._seed = seed
        self._slots = asyncio.Semaphore(max_running_jobs)
        self._state_path = os.path.join(state_dir, _STATE_FILE) if state_dir else None
        # Invariant: _owner[key] is the job that executes key (queued, running, or done with
        # counts for it); a key leaves when its circuit or its whole job failed.
        self._owner: dict[str, _Job] = {}
        # Invariant: _by_keys[keys] is the job submitted with exactly these idempotency keys
        # (none empty), until it fails as a whole.
        self._by_keys: dict[tuple[str, ...], _Job] = {}
        self._jobs: dict[str, _Job] = {}
        self._executions: collections.Counter[str] = collections.Counter()
        self._tasks: set[asyncio.Task[None]] = set()
        self._submits = 0
        self._existing = 0
        self._executed = 0
        self._replayed = 0
        self._failed = 0
        self._running = 0
        if self._state_path is not None:
            self._restore(self._state_path)

    # -- requests ------------------------------------------------------------------------

    async def handle(self, request: object) -> dict[str, Any]:
        """Answer one request (a decoded JSON object)."""
        if not isinstance(request, dict):
            raise BadRequestError("a request is a JSON object")
        op = request.get("op")
        if op == "submit":
            job, existing = self.submit(_circuits(request.get("circuits")))
            return {"ok": True, "job_id": job.id, "existing": existing}
        if op == "wait":
            job = self._job(request.get("job_id"))
            timeout = request.get("timeout", 0.0)
            if not isinstance(timeout, (int, float)) or isinstance(timeout, bool):
                raise BadRequestError(f"timeout must be a number of seconds, got {timeout!r}")
            timeout = min(max(float(timeout), 0.0), _MAX_WAIT)
            if timeout > 0.0 and not job.finished.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(job.finished.wait(), timeout)
            return _describe(job)
        if op == "stats":
            return {"ok": True, "stats": self.stats()}
        if op == "executions":
            return {"ok": True, "executions": dict(self._executions)}
        if op == "ping":
            return {"ok": True}
        raise BadRequestError(f"unknown op {op!r}")

    def submit(self, circuits: list[_Circuit]) -> tuple[_Job, bool]:
        """Take a job (or find the one that holds exactly these keys): (job, existing)."""
        self._submits += 1
        keys = [c.key for c in circuits]
        same = self._by_keys.get(tuple(keys))
        if same is not None:
            self._existing += 1
            return same, True
        number = len(self._jobs) + 1
        fail = self._failure_rate > 0.0 and (
            random.Random(f"{self._seed}:{number}").random() < self._failure_rate
        )
        job = _Job(f"job-{uuid.uuid4().hex[:16]}", number, circuits, fail)
        for i, key in enumerate(keys):
            owner = self._owner.get(key) if key else None
            if owner is None:
                job.own.append(i)
                if key:
                    self._owner[key] = job
            else:
                # The circuit that executes it is the key's first in its owner (this job's,
                # when a job carries the same key twice: it runs once).
                job.replays[i] = (owner, owner.keys().index(key))
        self._jobs[job.id] = job
        if all(keys):
            self._by_keys[tuple(keys)] = job
        self._save()
        self._start(job)
        return job, False

    def stats(self) -> dict[str, int]:
        """What the service has done: ``submits`` (submit requests), ``existing`` (of them,
        answered with a job that already held the keys), ``jobs``, ``executed`` (circuits
        executed), ``keys`` (distinct keys executed), ``duplicate_keys`` (keys executed more
        than once: always 0), ``replayed`` (circuits answered from another job's execution of
        their key), ``failed_jobs``, ``running_jobs`` and ``queued_jobs`` (now)."""
        unfinished = sum(1 for job in self._jobs.values() if not job.finished.is_set())
        return {
            "submits": self._submits,
            "existing": self._existing,
            "jobs": len(self._jobs),
            "executed": self._executed,
            "keys": len(self._executions),
            "duplicate_keys": sum(1 for n in self._executions.values() if n > 1),
            "replayed": self._replayed,
            "failed_jobs": self._failed,
            "running_jobs": self._running,
            "queued_jobs": unfinished - self._running,
        }

    def _job(self, job_id: object) -> _Job:
        if not isinstance(job_id, str):
            raise BadRequestError(f"job_id must be a string, got {job_id!r}")
        job = self._jobs.get(job_id)
        if job is None:
            raise UnknownJobError(f"no job with ID {job_id!r} at this service")
        return job

    # -- running jobs --------------------------------------------------------------------

    def _start(self, job: _Job) -> None:
        task = asyncio.get_running_loop().create_task(self._run(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, job: _Job) -> None:
        async with self._slots:
            job.status = RUNNING
            self._running += 1
            try:
                if job.own:  # a job whose keys all run elsewhere executes nothing itself
                    await asyncio.sleep(self._latency + self._per_circuit * len(job.own))
            finally:
                self._running -= 1
            if job.fail:
                job.status = ERROR
                job.error = "injected transient job failure"
                self._failed += 1
                for i in job.own:
                    self._release(job, job.circuits[i].key)
                if self._by_keys.get(tuple(job.keys())) is job:
                    del self._by_keys[tuple(job.keys())]
            else:
                for i in job.own:
                    job.outcomes[i] = self._execute(job, job.circuits[i])
            job.own_done.set()
        if job.status != ERROR:
            # Outside the execution slot: the job a key waits on may need that slot.
            for i, (owner, index) in job.replays.items():
                await owner.own_done.wait()
                outcome = owner.outcomes[index] if owner.status != ERROR else None
                if outcome is None:
                    outcome = {
                        "error": "transient",
                        "message": f"the job executing key {job.circuits[i].key!r} failed",
                    }
                job.outcomes[i] = outcome
                self._replayed += 1
            job.status = DONE
        self._save()
        job.finished.set()

    def _execute(self, job: _Job, circuit: _Circuit) -> Outcome:
        width = circuit.clbits or circuit.num_qubits
        problem = None
        if width is None or width < 1:
            problem = f"a circuit needs an int num_qubits >= 1, got {circuit.num_qubits!r}"
        elif not 1 <= circuit.shots <= _MAX_SHOTS:
            problem = f"shots must be in [1, {_MAX_SHOTS}], got {circuit.shots}"
        if problem is not None or width is None:
            self._release(job, circuit.key)
            return {"error": "permanent", "message": problem}
        self._executed += 1
        if circuit.key:
            self._executions[circuit.key] += 1
        return {"counts": counts_for(circuit.key, width, circuit.shots)}

    def _release(self, job: _Job, key: str) -> None:
        if key and self._owner.get(key) is job:
            del self._owner[key]

    # -- state across restarts -----------------------------------------------------------

    def _save(self) -> None:
        if self._state_path is None:
            return
        state = {
            "submits": self._submits,
            "existing": self._existing,
            "executed": self._executed,
            "replayed": self._replayed,
            "failed": self._failed,
            "executions": dict(self._executions),
            "jobs": [job.as_dict() for job in self._jobs.values()],
        }
        temporary = f"{self._state_path}.tmp"
        with open(temporary, "w", encoding="utf-8") as file:
            json.dump(state, file)
        os.replace(temporary, self._state_path)

    def _restore(self, path: str) -> None:
        try:
            with open(path, encoding="utf-8") as file:
                state = json.load(file)
        except FileNotFoundError:
            return
        self._submits = state["submits"]
        self._existing = state["existing"]
        self._executed = state["executed"]
        self._replayed = state["replayed"]
        self._failed = state["failed"]
        self._executions.update(state["executions"])
        saved = state["jobs"]
        for entry in saved:
            job = _Job(entry["id"], entry["number"], _circuits(entry["circuits"]), entry["fail"])
            job.own = list(entry["own"])
            if entry["status"] in (DONE, ERROR):
                job.status = entry["status"]
                job.error = entry["error"]
                job.outcomes = list(entry["outcomes"])
                job.own_done.set()
                job.finished.set()
            self._jobs[job.id] = job
        for entry in saved:
            job = self._jobs[entry["id"]]
            for i, (owner_id, index) in entry["replays"].items():
                job.replays[int(i)] = (self._jobs[owner_id], index)
            if job.status == ERROR:
                continue
            if all(job.keys()):
                self._by_keys[tuple(job.keys())] = job
            for i in job.own:
                outcome = job.outcomes[i]
                key = job.circuits[i].key
                if key and (outcome is None or "counts" in outcome):
                    self._owner[key] = job

    def resume(self) -> None:
        """Run again the jobs a restored state left unfinished (on the running loop)."""
        for job in self._jobs.values():
            if not job.finished.is_set():
                self._start(job)


def _circuits(value: object) -> list[_Circuit]:
    if not isinstance(value, list) or not value:
        raise BadRequestError("circuits must be a non-empty list")
    out = []
    for item in value:
        if not isinstance(item, dict):
            raise BadRequestError(f"a circuit is an object, got {item!r}")
        num_qubits, shots = item.get("num_qubits"), item.get("shots")
        key, clbits = item.get("key", ""), item.get("clbits")
        if not _is_int(shots):
            raise BadRequestError(f"shots must be an int, got {shots!r}")
        if not isinstance(key, str):
            raise BadRequestError(f"key must be a string, got {key!r}")
        out.append(
            _Circuit(
                num_qubits if _is_int(num_qubits) else None,
                shots,
                key,
                clbits if _is_int(clbits) and clbits > 0 else None,
            )
        )
    return out


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _describe(job: _Job) -> dict[str, Any]:
    reply: dict[str, Any] = {"ok": True, "job_id": job.id, "status": job.status}
    if job.status == DONE:
        reply["outcomes"] = job.outcomes
    elif job.status == ERROR:
        reply["error"] = job.error
    return reply


async def _serve_connection(
    service: Service, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        while line := await reader.readline():
            try:
                reply = await service.handle(json.loads(line))
            except UnknownJobError as exc:
                reply = {"ok": False, "error": "unknown-job", "message": str(exc)}
            except (BadRequestError, ValueError, KeyError, TypeError) as exc:
                reply = {"ok": False, "error": "bad-request", "message": str(exc)}
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
    except (ConnectionError, ValueError):
        pass  # the client went away, or sent a line past LINE_LIMIT
    finally:
        writer.close()


async def _main(args: argparse.Namespace) -> None:
    service = Service(
        latency=args.latency,
        per_circuit=args.per_circuit,
        failure_rate=args.failure_rate,
        max_running_jobs=args.max_running_jobs,
        seed=args.seed,
        state_dir=args.state_dir,
    )
    service.resume()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    if args.exit_on_stdin_eof:
        # The process that started the service holds our stdin open: when it ends, for
        # whatever reason, the service ends too, and never outlives its owner.
        def watch() -> None:
            with contextlib.suppress(OSError, ValueError):
                sys.stdin.buffer.read()
            loop.call_soon_threadsafe(stop.set)

        threading.Thread(target=watch, name="mock-qpu-owner", daemon=True).start()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _serve_connection(service, reader, writer)

    server = await asyncio.start_server(serve, args.host, args.port, limit=LINE_LIMIT)
    port = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()
    async with server:
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the mock QPU until stopped (or, with ``--exit-on-stdin-eof``, until stdin
    closes); print the port it listens on first."""
    parser = argparse.ArgumentParser(description="A mock QPU service (JSON lines over TCP).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per job")
    parser.add_argument("--per-circuit", type=float, default=0.0, help="seconds per circuit")
    parser.add_argument("--failure-rate", type=float, default=0.0)
    parser.add_argument("--max-running-jobs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--state-dir", default=None)
    parser.add_argument("--exit-on-stdin-eof", action="store_true")
    asyncio.run(_main(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
