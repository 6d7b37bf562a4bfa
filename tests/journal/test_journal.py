"""The durable journal: records, recovery after kill -9, client keys, and every refusal."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import _journal_tasks as tasks
from logosq_os_scheduler import (
    Durability,
    InterruptedByRestartError,
    InvalidConfigError,
    InvalidTaskError,
    JournalError,
    KeyReusedError,
    QuantumScheduler,
    SchedulerConfig,
    Task,
    TaskStatus,
    UnknownTaskError,
)
from logosq_os_scheduler.journal import Journal

# The crash tests' child and workload live in tests/, where benchmarks/bench_durable.py runs
# them too.
HERE = Path(__file__).parent.parent
CHILD = HERE / "_journal_child.py"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
    return env


def _square(i: int) -> int:
    return i * i


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


# -- recording and finding tasks again -----------------------------------------------------


async def test_results_and_keys_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "runs" / "sched.db"  # its directory is created
    async with QuantumScheduler(2, journal=path) as scheduler:
        first = await scheduler.submit(
            Task.classical("square").with_function(tasks.square, 7).with_key("exp42/point17")
        )
        assert (await first).value == 49
        # The same task again under its key: the first task's handle, nothing new runs.
        again = await scheduler.submit(
            Task.classical("square").with_function(tasks.square, 7).with_key("exp42/point17")
        )
        assert again.task_id == first.task_id
        # Another task under the same key is refused: nothing is made.
        with pytest.raises(KeyReusedError, match=r"'exp42/point17' was already used") as info:
            await scheduler.submit(
                Task.classical("square").with_function(tasks.square, 8).with_key("exp42/point17")
            )
        assert (info.value.key, info.value.task_id, info.value.field) == (
            "exp42/point17",
            first.task_id,
            "key",
        )
        many = [
            scheduler.submit_nowait(Task.classical(f"s{i}").with_function(tasks.square, i))
            for i in range(300)
        ]
        await scheduler.persisted()
        await scheduler.join()
        assert scheduler.metrics().submitted == 301
    async with QuantumScheduler(2, journal=path) as scheduler:
        by_key = scheduler.task("exp42/point17")
        assert by_key.task_id == first.task_id and by_key.done()
        assert (await by_key).value == 49
        assert (await scheduler.task(many[123].task_id)).value == 123 * 123
        # A key known from before the restart is still an idempotent submit, and still
        # refuses another task (compared with the spec in the file).
        again = await scheduler.submit(
            Task.classical("square").with_function(tasks.square, 7).with_key("exp42/point17")
        )
        assert again.task_id == first.task_id
        with pytest.raises(KeyReusedError, match=rf"\(task {first.task_id}\)"):
            await scheduler.submit(
                Task.classical("square").with_function(tasks.square, 9).with_key("exp42/point17")
            )
        # New tasks never take an id the journal holds.
        new = await scheduler.submit(Task.classical("n").with_function(tasks.square, 3))
        assert new.task_id > max(h.task_id for h in many)
        with pytest.raises(UnknownTaskError, match="no task with key 'nope'"):
            scheduler.task("nope")
        with pytest.raises(InvalidTaskError):
            scheduler.task(True)  # type: ignore[arg-type]
    statuses = rows(path, "SELECT status, count(*) FROM tasks GROUP BY status")
    assert statuses == [("completed", 302)]


async def test_a_finished_task_read_back_keeps_its_times(tmp_path: Path) -> None:
    path = tmp_path / "times.db"
    async with QuantumScheduler(1, journal=path) as scheduler:
        done = await scheduler.submit(
            Task.classical("square").with_function(tasks.square, 4).with_key("t/1")
        )
        ran = await done
    async with QuantumScheduler(1, journal=path) as scheduler:
        reads = [await scheduler.task("t/1") for _ in range(3)]
    times = {(r.submitted_at, r.started_at, r.finished_at) for r in reads}
    assert len(times) == 1  # read after read, the same times (they used to move)
    (submitted, started, finished) = times.pop()
    assert started is not None and submitted <= started <= finished
    # The same durations as the run itself, to the journal's precision.
    assert finished - submitted == pytest.approx(ran.finished_at - ran.submitted_at, abs=1e-3)


async def test_whose_task_it_is_survives_a_restart(tmp_path: Path) -> None:
    from logosq_os_scheduler.journal._codec import decode_spec, encode_spec

    path = tmp_path / "j.db"
    async with QuantumScheduler(1, journal=path) as scheduler:
        mine = await scheduler.submit(
            Task.classical("sq").with_function(tasks.square, 4).with_user("user_a").with_key("a1")
        )
        keyless = await scheduler.submit(
            Task.classical("sq").with_function(tasks.square, 5).with_user("user_b")
        )
        assert (mine.user, mine.key, keyless.user, keyless.key) == ("user_a", "a1", "user_b", None)
        await scheduler.join()
    async with QuantumScheduler(1, journal=path) as scheduler:
        # Finished tasks read back from the file know their user ...
        assert scheduler.task("a1").user == "user_a"
        assert scheduler.task(keyless.task_id).user == "user_b"
    assert rows(path, "SELECT user FROM tasks ORDER BY id") == [("user_a",), ("user_b",)]
    # ... and so does an unfinished one rebuilt from its spec at recovery.
    task = Task.classical("sq").with_function(tasks.square, 6).with_user("user_c").build()
    again = decode_spec(encode_spec(task), task.task_id, task.name, task.task_type, task.priority)
    assert again.user == "user_c"


def test_a_journal_of_schema_1_gains_the_user_column(tmp_path: Path) -> None:
    from logosq_os_scheduler import BlockingScheduler

    path = tmp_path / "old.db"
    with BlockingScheduler(1, journal=path) as scheduler:
        scheduler.submit(Task.classical("sq").with_function(tasks.square, 3).with_key("k")).result()
    with sqlite3.connect(path) as conn:  # make it the file version 1 wrote
        conn.execute("DROP VIEW tasks")
        conn.execute("ALTER TABLE submits DROP COLUMN user")
        conn.execute("PRAGMA user_version=1")
    with BlockingScheduler(1, journal=path) as scheduler:
        old = scheduler.task("k")
        assert (old.result().value, old.user) == (9, None)
        new = scheduler.submit(
            Task.classical("sq").with_function(tasks.square, 2).with_user("user_a")
        )
        assert new.result().value == 4 and scheduler.task(new.task_id).user == "user_a"
    assert rows(path, "PRAGMA user_version") == [(2,)]


async def test_failures_are_recorded_with_their_error(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    async with QuantumScheduler(1, journal=path) as scheduler:
        h = await scheduler.submit(Task.classical("div").with_function(divmod, 1, 0))
        with pytest.raises(Exception, match="ZeroDivisionError"):
            await h
    async with QuantumScheduler(1, journal=path) as scheduler:
        again = scheduler.task(h.task_id)
        assert again.status is TaskStatus.FAILED
        with pytest.raises(Exception, match="ZeroDivisionError") as info:
            await again
        assert isinstance(info.value.__cause__, ZeroDivisionError)


def test_task_errors_are_stored_as_themselves() -> None:
    from logosq_os_scheduler.journal._codec import decode_error, encode_error

    err = InterruptedByRestartError(7, "task 7 was running when its scheduler stopped")
    back = decode_error(encode_error(err))
    assert type(back) is InterruptedByRestartError
    assert back.task_id == 7 and str(back) == str(err)


def test_every_scheduler_error_is_stored_as_itself_with_its_fields() -> None:
    """A failed task read back from the journal (as the service reads an ended one) keeps
    its error's class and fields: errors whose __init__ takes more than a message came back
    as RuntimeError("PermanentBackendError: ...")."""
    import logosq_os_scheduler as lq
    from logosq_os_scheduler.journal._codec import decode_error, encode_error

    errors: list[lq.SchedulerError] = [
        lq.PermanentBackendError("aer", "the circuit measures nothing"),
        lq.TransientBackendError("qpu", "busy"),
        lq.BackendUnavailableError("qpu", "down"),
        lq.SimulationTooCostlyError(
            "aer",
            seconds=90.0,
            memory_bytes=1 << 30,
            budget_seconds=60.0,
            budget_bytes=None,
            estimate="24 qubits",
            over="the 60 s budget",
            ways_out=("fewer shots",),
        ),
        lq.NoRouteError("5 qubits", {"small": "has 3 qubits, circuit needs 5"}),
        lq.InvalidTaskError("shots", "must be >= 1", where="Task.with_shots"),
        lq.KeyReusedError("k", 3, index=2),
        lq.QueueFullError(5, 5, batch=2),
        lq.JournalError("/tmp/j.db", "disk full"),
        lq.TaskTimeoutError(4, "task 4 timed out"),
    ]
    for err in errors:
        back = decode_error(encode_error(err))
        assert type(back) is type(err) and str(back) == str(err)
        assert back.__dict__ == err.__dict__, type(err).__name__


@given(
    st.dictionaries(
        st.text(max_size=12),
        st.one_of(st.integers(min_value=-(1 << 70), max_value=1 << 70), st.booleans(), st.floats()),
        max_size=8,
    )
)
def test_a_dict_result_is_stored_in_the_canonical_form_and_read_back(
    value: dict[str, Any],
) -> None:
    """Counts take a fast path in encode_result: its text is the general encoder's, whatever
    the keys (non-ASCII included) and values (bools, floats and big ints take the walk)."""
    from logosq_os_scheduler.journal._codec import RESULT_CANONICAL, decode_result, encode_result
    from logosq_os_scheduler.security._encoding import canonical_text, encode_value

    kind, data = encode_result(value)
    assert kind == RESULT_CANONICAL and data is not None
    assert data.decode() == canonical_text(encode_value(value, strict=True))
    back = decode_result(kind, data)
    assert isinstance(back, dict) and sorted(back) == sorted(value)  # stored in key order
    assert all(type(back[k]) is type(v) for k, v in value.items())


async def test_keys_without_a_journal_are_idempotent_in_memory() -> None:
    async with QuantumScheduler(1) as scheduler:
        a = await scheduler.submit(Task.classical("a").with_function(_square, 2).with_key("k"))
        b = await scheduler.submit(Task.classical("a").with_function(_square, 2).with_key("k"))
        assert a.task_id == b.task_id and (await b).value == 4
        for other in (
            Task.classical("b").with_function(_square, 2),  # another name
            Task.classical("a").with_function(_square, 3),  # other arguments
            Task.classical("a").with_function(_square, 2).with_priority("high"),
            Task.classical("a").with_function(_square, 2).with_timeout(5),
        ):
            with pytest.raises(KeyReusedError, match="'k' was already used for a different"):
                scheduler.submit_nowait(other.with_key("k"))
        assert scheduler.metrics().submitted == 1
        assert scheduler.task("k").task_id == a.task_id
        with pytest.raises(UnknownTaskError, match="only tasks submitted with with_key"):
            scheduler.task(a.task_id)
        assert scheduler.journal_path is None


async def test_a_key_names_its_task_live_and_read_back_and_the_check_says_why(
    tmp_path: Path,
) -> None:
    """The check compares what the task is, not the objects it was built from: a running task
    (whose spec is in the file or still buffered), an ended one read from the file, and
    find_submitted, which checks without submitting."""
    async with QuantumScheduler(1, journal=tmp_path / "j.db") as scheduler:
        running = scheduler.submit_nowait(
            Task.classical("block").with_function(tasks.block, 0.2).with_key("slow")
        )
        again = Task.classical("block").with_function(tasks.block, 0.2).with_key("slow")
        handle = scheduler.find_submitted(again)  # its spec is still buffered
        assert handle is not None and handle.task_id == running.task_id
        await scheduler.persisted()
        assert scheduler.submit_nowait(again).task_id == running.task_id  # from the file
        with pytest.raises(KeyReusedError):
            scheduler.find_submitted(
                Task.classical("block").with_function(tasks.block, 0.3).with_key("slow")
            )
        assert scheduler.find_submitted(Task.classical("n").with_function(tasks.square, 1)) is None
        assert (
            scheduler.find_submitted(
                Task.classical("n").with_function(tasks.square, 1).with_key("new")
            )
            is None
        )
        await running
        await scheduler.persisted()
        assert scheduler.submit_nowait(again).task_id == running.task_id  # ended, in the file


async def test_submit_many_names_the_task_whose_key_names_another(tmp_path: Path) -> None:
    async with QuantumScheduler(1, journal=tmp_path / "j.db") as scheduler:
        first = await scheduler.submit(
            Task.classical("a").with_function(tasks.square, 2).with_key("k")
        )
        with pytest.raises(KeyReusedError, match=r"^tasks\[1\]: client key 'k'") as info:
            await scheduler.submit_many(
                [
                    Task.classical("b").with_function(tasks.square, 3).with_key("before"),
                    Task.classical("a").with_function(tasks.square, 4).with_key("k"),
                ]
            )
        assert (info.value.index, info.value.task_id) == (1, first.task_id)
        # The task before it stays submitted, and its key finds it.
        assert (await scheduler.task("before")).value == 9


@pytest.mark.qiskit
async def test_rebuilt_circuits_and_algorithms_are_the_same_task(tmp_path: Path) -> None:
    """What a program builds afresh when it runs again (a circuit's generated name, an
    ansatz's new parameters) does not make another task of the same submit."""
    pytest.importorskip("qiskit")
    from qiskit import QuantumCircuit
    from qiskit.circuit.library import real_amplitudes
    from qiskit.quantum_info import SparsePauliOp

    from logosq_os_scheduler import MockBackend
    from logosq_os_scheduler.workflows import COBYLA, VQE, h2_hamiltonian

    def bell(shots: int = 100) -> Any:
        qc = QuantumCircuit(2)  # named circuit-<n>, a new n each time
        qc.h(0)
        qc.cx(0, 1)
        qc.measure_all()
        return Task.quantum("bell").with_circuit(qc).with_shots(shots).with_key("bell")

    def vqe(initial: float = 0.1) -> Any:
        algorithm = VQE(h2_hamiltonian(), real_amplitudes(2, reps=1), initial_point=[initial] * 4)
        return (
            Task.hybrid("vqe")
            .with_algorithm(algorithm)
            .with_optimizer(COBYLA(maxiter=10))
            .with_key("vqe")
        )

    def drawn(maxiter: int = 10, shift: float = 0.0) -> Any:
        """A VQE whose start is drawn at random (no seed, no initial point): a new start, a
        new ansatz, each time it is built; the same task all the same."""
        hamiltonian = SparsePauliOp.from_list([("ZZ", -1.0 + shift), ("XI", 0.5)])
        return (
            Task.hybrid("drawn")
            .with_algorithm(VQE(hamiltonian, real_amplitudes(2, reps=1)))
            .with_optimizer(COBYLA(maxiter=maxiter))
            .with_key("drawn")
        )

    async with QuantumScheduler(1, journal=tmp_path / "j.db") as scheduler:
        await scheduler.register_backend("mock", MockBackend("mock", num_qubits=4))
        builders = (bell, vqe, drawn)
        first = [scheduler.submit_nowait(b()) for b in builders]
        await scheduler.persisted()
        assert [scheduler.submit_nowait(b()).task_id for b in builders] == [
            h.task_id for h in first
        ]
        with pytest.raises(KeyReusedError, match="'bell'"):
            scheduler.submit_nowait(bell(shots=200))
        # What the algorithm is, not its class: another operator or iteration budget.
        with pytest.raises(KeyReusedError, match="'vqe'"):
            scheduler.submit_nowait(vqe(initial=0.2))
        with pytest.raises(KeyReusedError, match="'drawn'"):
            scheduler.submit_nowait(drawn(shift=0.5))
        with pytest.raises(KeyReusedError, match="'drawn'"):
            scheduler.submit_nowait(drawn(maxiter=11))
        for handle in first:
            await handle
    async with QuantumScheduler(1, journal=tmp_path / "j.db") as scheduler:
        assert [scheduler.submit_nowait(b()).task_id for b in builders] == [
            h.task_id for h in first
        ]
        with pytest.raises(KeyReusedError, match="'drawn'"):
            scheduler.submit_nowait(drawn(shift=0.5))


@pytest.mark.qiskit
def test_hybrid_specs_compare_by_identity_and_else_by_class() -> None:
    """A hybrid spec is the same task as another by its algorithm's identity (cost, layers,
    start if given, optimiser, shots, seed); an algorithm from a journal written before
    identities, by class. A VQE's ansatz counts by its gates and parameter names: built again
    it has new Parameter objects; one OpenQASM 3 cannot write (a custom gate) compares too."""
    pytest.importorskip("qiskit")
    from qiskit.circuit import Gate, Parameter, QuantumCircuit
    from qiskit.circuit.library import real_amplitudes
    from qiskit.quantum_info import SparsePauliOp

    from logosq_os_scheduler.journal._codec import encode_spec, same_spec
    from logosq_os_scheduler.workflows import QAOA, VQE, maxcut_hamiltonian

    def spec(algorithm: Any, *, old: bool = False) -> bytes:
        if old:
            del algorithm.initial_point_given  # as a journal written before it existed holds it
        builder = Task.hybrid("q").with_algorithm(algorithm)
        return encode_spec(builder.with_user("u").with_key("u/k").build())

    def qaoa(reps: int = 1, *, old: bool = False) -> bytes:
        return spec(QAOA(maxcut_hamiltonian([(0, 1), (1, 2)]), reps=reps), old=old)

    assert same_spec(qaoa(), qaoa()) and not same_spec(qaoa(), qaoa(reps=2))
    assert same_spec(qaoa(old=True), qaoa(reps=2))  # by class: nothing else says

    def custom() -> QuantumCircuit:
        qc = QuantumCircuit(2)
        qc.append(Gate("mine", 1, [Parameter("a")]), [0])  # no OpenQASM 3 for this gate
        qc.ry(Parameter("b"), 1)
        return qc

    def vqe(ansatz: QuantumCircuit) -> bytes:
        start = [0.1] * ansatz.num_parameters
        return spec(VQE(SparsePauliOp.from_list([("ZZ", 1.0)]), ansatz, initial_point=start))

    rebuilt = vqe(real_amplitudes(2, reps=1)), vqe(real_amplitudes(2, reps=1))
    assert rebuilt[0] != rebuilt[1] and same_spec(*rebuilt)  # other Parameter ids, same task
    assert not same_spec(rebuilt[0], vqe(real_amplitudes(2, reps=2)))  # another ansatz
    assert same_spec(vqe(custom()), vqe(custom()))


async def test_what_cannot_be_recovered_is_refused_at_submit(tmp_path: Path) -> None:
    def nested() -> int:
        return 1

    async with QuantumScheduler(1, journal=tmp_path / "j.db") as scheduler:
        with pytest.raises(InvalidTaskError, match=r"is a lambda.*top level of a module"):
            scheduler.submit_nowait(Task.classical("l").with_function(lambda: 1))
        with pytest.raises(InvalidTaskError, match="defined inside another function"):
            scheduler.submit_nowait(Task.classical("n").with_function(nested))
        with pytest.raises(InvalidTaskError, match=r"'args'.*cannot be written to the journal"):
            scheduler.submit_nowait(
                Task.classical("a").with_function(tasks.square, threading.Lock())  # type: ignore[arg-type]
            )
        # Nothing refused was written, and the scheduler still works.
        ok = await scheduler.submit(Task.classical("ok").with_function(tasks.square, 2))
        assert (await ok).value == 4
        assert scheduler.metrics().submitted == 1


async def test_a_workflows_steps_are_not_journaled_one_by_one(tmp_path: Path) -> None:
    from logosq_os_scheduler import HybridWorkflow, WorkflowStep

    path = tmp_path / "j.db"
    wf = (
        HybridWorkflow("chain")
        .add_step(WorkflowStep.classical("init", lambda: 10, once=True))
        .add_step(WorkflowStep.classical("double", lambda x: 2 * x))
        .with_iterations(3)
    )
    async with QuantumScheduler(1, journal=path) as scheduler:
        result = await scheduler.run_workflow(wf)
        assert result.value == 80
        plain = await scheduler.submit(Task.classical("s").with_function(tasks.square, 2))
        await plain
    # Closures are fine as steps, and only the plain task was written.
    assert rows(path, "SELECT name FROM tasks") == [("s",)]


# -- recovery after kill -9 ----------------------------------------------------------------


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), *args],
        stdout=subprocess.PIPE,
        text=True,
        env=_env(),
        start_new_session=True,
    )


def _kill_when_ready(*argv: str) -> None:
    """Run the child with ``argv``, wait for its "ready" line, then SIGKILL it."""
    child = _start(*argv)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    child.stdout.close()


async def test_queued_tasks_return_in_priority_order_after_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    _kill_when_ready("hold", str(path))
    tasks.ORDER.clear()
    scheduler = QuantumScheduler(1, journal=path)
    heard: list[tuple[str, TaskStatus, TaskStatus]] = []
    scheduler.add_listener(lambda t, old, new, now: heard.append((t.name, old, new)))
    async with scheduler:
        blocker = scheduler.task("blocker")
        await scheduler.join()
        # It was running when the scheduler died and is not marked restartable.
        assert blocker.status is TaskStatus.FAILED
        # The recovery ended it outside the core; the listeners heard it all the same.
        assert ("blocker", TaskStatus.PENDING, TaskStatus.FAILED) in heard
        assert scheduler.metrics().failed == 0  # counted by the scheduler that admitted it
        with pytest.raises(InterruptedByRestartError, match="with_restartable"):
            await blocker
        critical = await scheduler.task("critical-1")
        assert critical.recovery is None  # it ran once, as if there had been no restart
    assert tasks.ORDER == ["critical-1", "high-1", "high-2", "normal-1", "normal-2", "low-1"]
    assert rows(path, "SELECT count(*) FROM tasks WHERE status='completed'") == [(6,)]


def _acks(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _kill_after_acks(child: subprocess.Popen[str], acks: Path, more: int) -> bool:
    """SIGKILL ``child`` once ``more`` new submits were acknowledged; False if it finished
    first."""
    target = _acks(acks) + more
    deadline = time.monotonic() + 60
    while child.poll() is None:
        if _acks(acks) >= target:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            return True
        if time.monotonic() > deadline:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            raise AssertionError("the child made no progress for 60 s")
        time.sleep(0.002)
    return False


async def test_recovered_quantum_tasks_wait_for_their_backend(tmp_path: Path) -> None:
    from logosq_os_scheduler import MockBackend, SchedulerClosedError

    path = tmp_path / "j.db"
    _kill_when_ready("quantum", str(path))
    async with QuantumScheduler(1, journal=path) as scheduler:
        handles = [scheduler.task(f"q{i}") for i in range(3)]
        # No backend "qpu" yet: they wait, unfinished, and can be cancelled meanwhile.
        assert [h.status for h in handles] == [TaskStatus.PENDING] * 3
        assert handles[2].cancel() and handles[2].status is TaskStatus.CANCELLED
        await scheduler.join()  # nothing it runs is unfinished
        await scheduler.register_backend("qpu", MockBackend("qpu", seed=1))
        results = [await h for h in handles[:2]]
        assert all(sum(r.counts.values()) == 1024 for r in results)
        # They were in a job (one batch) when the scheduler died: they ran again, and say so.
        assert [r.recovery for r in results] == ["rerun", "rerun"]
    assert rows(path, "SELECT key, status FROM tasks ORDER BY key") == [
        ("q0", "completed"),
        ("q1", "completed"),
        ("q2", "cancelled"),
    ]
    # A task still waiting when its scheduler closes stays in the journal; its waiter hears.
    _kill_when_ready("quantum", str(tmp_path / "k.db"))
    scheduler = QuantumScheduler(1, journal=tmp_path / "k.db")
    async with scheduler:
        waiting = asyncio.ensure_future(_await_handle(scheduler.task("q0")))
        await asyncio.sleep(0)
    with pytest.raises(SchedulerClosedError, match="stays in the journal"):
        await waiting
    assert rows(tmp_path / "k.db", "SELECT count(*) FROM tasks WHERE status='running'") == [(3,)]


async def test_a_job_the_backend_acknowledged_is_reattached_by_id_never_sent_again(
    tmp_path: Path,
) -> None:
    from logosq_os_scheduler import MockQPUService, RemoteMockBackend

    path = tmp_path / "j.db"
    with MockQPUService(latency=2.0, max_running_jobs=1) as service:
        host, port = service.address
        child = _start("remote", str(path), host, str(port))
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "submitted"
        # Kill it once the backend has acknowledged the job and the ID is on disk.
        deadline = time.monotonic() + 60
        while not rows(path, "SELECT job_id FROM jobs WHERE job_id IS NOT NULL"):
            assert time.monotonic() < deadline, "no job ID was written"
            await asyncio.sleep(0.01)
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        child.stdout.close()
        assert service.stats()["submits"] == 1
        async with QuantumScheduler(1, journal=path) as scheduler:
            await scheduler.register_backend("qpu", RemoteMockBackend(service.address, name="qpu"))
            results = [await scheduler.task(f"r{i}") for i in range(4)]
        stats = service.stats()
    assert [r.recovery for r in results] == ["reattached"] * 4
    assert all(sum(r.counts.values()) == 100 for r in results)
    # The service's own counts: one submit, each circuit executed once, nothing sent again.
    assert stats["submits"] == 1 and stats["executed"] == 4 and stats["duplicate_keys"] == 0
    assert rows(path, "SELECT count(*) FROM jobs") == [(0,)]
    assert rows(path, "SELECT count(*) FROM tasks WHERE status='completed'") == [(4,)]


async def _await_handle(handle: Any) -> Any:
    return await handle


@pytest.mark.slow
def test_every_acknowledged_task_ends_exactly_once_across_kills(tmp_path: Path) -> None:
    """Kill -9 the scheduler at random points of its work (after a random number of
    acknowledged submits, with tasks running and commits under way), restart it each time;
    at the end every task whose submit returned ended once, with the value an uninterrupted
    run gives."""
    path = tmp_path / "j.db"
    acks = tmp_path / "acks"
    n = 600
    rng = random.Random(20261206)
    kills = 0
    for _ in range(20):
        child = _start("crash", str(path), str(acks), str(n))
        killed = _kill_after_acks(child, acks, rng.randint(1, 25))
        assert child.stdout is not None
        child.stdout.close()
        if not killed:
            break
        kills += 1
    final = _start("crash", str(path), str(acks), str(n))
    out, _err = final.communicate(timeout=120)
    assert final.returncode == 0 and "done" in out
    assert kills == 20
    acked = {int(line) for line in acks.read_text().split()}
    assert acked == set(range(n))  # the last run acknowledged what earlier ones had not
    found = rows(path, "SELECT key, status, result FROM tasks")
    by_key = {key: (status, result) for key, status, result in found}
    assert len(found) == len(by_key) == n  # one row per key: nothing submitted twice
    for i in range(n):
        status, result = by_key[f"t{i}"]
        assert status == "completed", (i, status)
        assert result == str(i * i).encode()


def _kill_at_saved_state(
    child: subprocess.Popen[str], path: Path, reached: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """SIGKILL ``child`` once the state its task saved in the journal is ``reached``."""
    import pickle

    deadline = time.monotonic() + 120
    try:
        while child.poll() is None and time.monotonic() < deadline:
            if path.exists():
                try:
                    found = rows(path, "SELECT state FROM checkpoints")
                except sqlite3.OperationalError:  # the schema is being made
                    found = []
                if found:
                    state: dict[str, Any] = pickle.loads(found[0][0])
                    if reached(state):
                        os.killpg(child.pid, signal.SIGKILL)
                        return state
            time.sleep(0.005)
        raise AssertionError("the task ended (or hung) before it could be killed")
    finally:
        child.wait()
        assert child.stdout is not None
        child.stdout.close()


def test_a_workflow_task_goes_on_from_its_last_iteration_after_kill_9(tmp_path: Path) -> None:
    import json

    import _journal_child

    path = tmp_path / "j.db"
    state = _kill_at_saved_state(_start("workflow", str(path)), path, lambda s: s["next"] >= 5)
    again = _start("workflow", str(path))
    out, _err = again.communicate(timeout=120)
    resumed = json.loads(out)
    assert resumed["recovery"] == "resumed"

    async def reference() -> Any:
        async with QuantumScheduler(2) as scheduler:
            return (await (await scheduler.submit(_journal_child.workflow_task()))).value

    expected = asyncio.run(reference())
    assert resumed["value"] == expected.value
    assert resumed["outputs"] == [r.output for r in expected.history]
    assert state["next"] >= 5 and len(resumed["outputs"]) == 40


@pytest.mark.qiskit
async def test_a_vqe_resumes_from_its_last_iteration_after_kill_9(tmp_path: Path) -> None:
    """Kill -9 the scheduler in the middle of a VQE; the restarted one goes on from the last
    iteration it saved, and (exact estimation, deterministic Adam) ends exactly where an
    uninterrupted run ends."""
    pytest.importorskip("qiskit")
    import json

    import _journal_child

    path = tmp_path / "j.db"
    _kill_at_saved_state(_start("vqe", str(path)), path, lambda s: s["optimizer"]["t"] >= 10)
    again = _start("vqe", str(path))
    out, _err = again.communicate(timeout=300)
    resumed = json.loads(out)
    assert resumed["recovery"] == "resumed"
    # The uninterrupted run, here, without a journal.
    async with QuantumScheduler(2) as scheduler:
        reference = _journal_child.vqe_summary(
            await (await scheduler.submit(_journal_child.vqe_task()))
        )
    assert resumed["energy"] == reference["energy"]
    assert resumed["parameters"] == reference["parameters"]
    assert resumed["history"] == reference["history"]
    assert resumed["iterations"] == reference["iterations"]
    assert resumed["evaluations"] == reference["evaluations"]
    assert rows(path, "SELECT count(*) FROM checkpoints") == [(0,)]  # gone once it ended


@pytest.mark.slow
@pytest.mark.qiskit
async def test_a_mixed_workload_survives_twenty_kills(tmp_path: Path) -> None:
    """Issue #22's crash test: classical tasks with keys, quantum tasks on the mock QPU
    service (latency, transient job failures), and a VQE; the scheduler is killed with
    SIGKILL at 20 random points of its work and restarted each time. At the end: every
    acknowledged task ended exactly once, with the value an uninterrupted run gives; no
    circuit was executed twice by the service; the VQE's energy is the uninterrupted run's."""

    import _journal_child
    from logosq_os_scheduler import MockQPUService
    from logosq_os_scheduler.backends._mock_qpu import counts_for

    path = tmp_path / "j.db"
    acks = tmp_path / "acks"
    n = 450
    rng = random.Random(22)
    with MockQPUService(latency=(0.01, 0.002), failure_rate=0.05, max_running_jobs=2) as qpu:
        host, port = qpu.address
        argv = ("mixed", str(path), str(acks), host, str(port), str(n))
        kills = 0
        while kills < 20:
            child = _start(*argv)
            killed = _kill_after_acks(child, acks, rng.randint(1, 20))
            assert child.stdout is not None
            child.stdout.close()
            if not killed:
                break
            kills += 1
        final = _start(*argv)
        out, _err = final.communicate(timeout=300)
        assert final.returncode == 0 and "done" in out
        stats = qpu.stats()
        executions = qpu.executions()
    assert kills == 20
    acked = set(acks.read_text().split())
    found = rows(path, "SELECT id, key, status, result, result_kind FROM tasks")
    by_key = {key: (tid, status, result, kind) for tid, key, status, result, kind in found}
    assert len(found) == len(by_key) == n + 1  # one row per key: nothing submitted twice
    assert acked == set(by_key)
    assert all(status == "completed" for _t, status, _r, _k in by_key.values())
    uid = rows(path, "SELECT value FROM meta WHERE key='uid'")[0][0]
    from logosq_os_scheduler.journal._codec import decode_result

    for i in range(n):
        if i % 3 == 2:
            tid, _s, result, kind = by_key[f"q{i}"]
            assert decode_result(kind, result) == counts_for(f"{uid}-{tid}", 3, 64)
        else:
            assert by_key[f"c{i}"][2] == str(i * i).encode()
    # The service executed every circuit once, however often the scheduler died.
    assert stats["duplicate_keys"] == 0
    assert set(executions.values()) == {1} and len(executions) == n // 3
    # The VQE, resumed after every kill, ends where an uninterrupted run ends.
    async with QuantumScheduler(2) as scheduler:
        reference = await (await scheduler.submit(_journal_child.vqe_task()))
    vqe = decode_result(by_key["vqe"][3], by_key["vqe"][2])
    assert vqe.energy == reference.value.energy
    assert vqe.parameters == reference.value.parameters


# -- settings and refusals -----------------------------------------------------------------


def test_journal_settings_are_checked() -> None:
    assert SchedulerConfig(journal="x.db").durability is Durability.PROCESS
    assert SchedulerConfig(durability="power").durability is Durability.POWER
    with pytest.raises(InvalidConfigError, match="durability"):
        SchedulerConfig(durability="sometimes")
    with pytest.raises(InvalidConfigError, match="journal"):
        SchedulerConfig(journal="")
    with pytest.raises(InvalidConfigError, match="journal_retention"):
        SchedulerConfig(journal_retention=-1)


def test_a_file_that_is_not_a_journal_is_refused_and_kept(tmp_path: Path) -> None:
    text = tmp_path / "notes.db"
    text.write_text("not a database at all, but somebody's notes " * 100)
    with pytest.raises(JournalError, match=r"notes\.db: is not a logosq journal"):
        QuantumScheduler(journal=text)
    assert text.read_text().startswith("not a database")
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t(x)")
    with pytest.raises(JournalError, match="an SQLite database but not a logosq journal"):
        QuantumScheduler(journal=other)


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    Journal(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version=99")
    with pytest.raises(JournalError, match=r"newer logosq-os-scheduler.*schema 99.*upgrade"):
        QuantumScheduler(journal=path)


def test_a_second_scheduler_on_the_same_journal_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    first = QuantumScheduler(journal=path)
    with pytest.raises(JournalError, match=f"in use by another scheduler \\(process {os.getpid()}"):
        QuantumScheduler(journal=path)
    asyncio.run(first.aclose())
    QuantumScheduler(journal=path)  # free again once the first closed


def test_an_unwritable_path_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(JournalError, match="cannot create its directory"):
        QuantumScheduler(journal=blocker / "sub" / "j.db")
    with pytest.raises(JournalError, match="is a directory"):
        QuantumScheduler(journal=tmp_path)


def test_a_corrupted_journal_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    journal = Journal(path)
    journal._conn.executemany(
        "INSERT INTO submits(id, name, type, priority, submitted, status) VALUES (?,?,?,?,?,?)",
        [(i, "t" * 200, "classical", 2, 0.0, "queued") for i in range(1, 2000)],
    )
    journal._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    journal.close()
    data = bytearray(path.read_bytes())
    for offset in range(8192, len(data), 4096):  # scribble over every page but the first two
        data[offset : offset + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))
    with pytest.raises(JournalError, match=r"is corrupted.*recover"):
        scheduler = QuantumScheduler(journal=path)
        asyncio.run(scheduler.aclose())


async def test_a_full_disk_stops_durable_submits_and_loses_nothing_acknowledged(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.db"
    scheduler = QuantumScheduler(1, journal=path)
    async with scheduler:
        acked = [
            await scheduler.submit(Task.classical(f"a{i}").with_function(tasks.square, i))
            for i in range(5)
        ]
        await scheduler.join()
        await scheduler.persisted()
        journal = scheduler._journal
        assert journal is not None
        pages = journal._conn.execute("PRAGMA page_count").fetchone()[0]
        journal._conn.execute(f"PRAGMA max_page_count={pages}")  # the disk is now full
        with pytest.raises(JournalError, match="database or disk is full"):
            for i in range(2000):
                await scheduler.submit(
                    Task.classical(f"b{i}")
                    .with_function(tasks.square, i)
                    .with_metadata(pad="x" * 500)
                )
        with pytest.raises(JournalError, match=r"full.*acknowledged before is safe"):
            scheduler.submit_nowait(Task.classical("c").with_function(tasks.square, 1))
        journal._conn.execute("PRAGMA max_page_count=1073741823")  # space again
        await scheduler.join()
    # The acknowledged tasks are there, with their results.
    async with QuantumScheduler(1, journal=path) as again:
        for h in acked:
            assert (await again.task(h.task_id)).value == (await h).value


# -- the blocking twin and the command line ------------------------------------------------


def test_the_blocking_scheduler_finds_tasks_by_key_after_a_restart(tmp_path: Path) -> None:
    from logosq_os_scheduler import BlockingScheduler

    path = tmp_path / "j.db"
    with BlockingScheduler(1, journal=path) as scheduler:
        h = scheduler.submit(Task.classical("s").with_function(tasks.square, 6).with_key("six"))
        assert h.result(10).value == 36
        scheduler.persisted(10)
    with BlockingScheduler(1, journal=path) as scheduler:
        assert scheduler.task("six").result(10).value == 36
        with pytest.raises(UnknownTaskError):
            scheduler.task(12345)
    with pytest.raises(JournalError):
        BlockingScheduler(journal=tmp_path)  # a directory: refused before any thread starts


def test_logosq_jobs_lists_shows_and_compacts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from logosq_os_scheduler.cli import main

    path = tmp_path / "j.db"

    async def fill() -> int:
        async with QuantumScheduler(1, journal=path) as scheduler:
            await scheduler.submit(
                Task.classical("sq").with_function(tasks.square, 5).with_key("exp42/point17")
            )
            failing = await scheduler.submit(Task.classical("div").with_function(divmod, 1, 0))
            return failing.task_id

    failing = asyncio.run(fill())
    assert main(["jobs", "--journal", str(path)]) == 0
    out = capsys.readouterr().out
    assert "exp42/point17" in out and "completed" in out and "failed" in out
    assert "2 tasks in" in out and "1 completed, 1 failed" in out
    assert main(["jobs", "show", "exp42/point17", "--journal", str(path)]) == 0
    out = capsys.readouterr().out
    assert "result  25" in out and "status  completed" in out
    assert main(["jobs", "--journal", str(path), "show", str(failing)]) == 0
    assert "error  ZeroDivisionError" in capsys.readouterr().out
    assert main(["jobs", "--journal", str(path), "--status", "failed"]) == 0
    assert "exp42/point17" not in capsys.readouterr().out
    # Refusals: exit 2 and a message naming the problem.
    assert main(["jobs", "show", "999999", "--journal", str(path)]) == 2
    assert "has no task with id 999999" in capsys.readouterr().err
    assert main(["jobs"]) == 2
    assert "needs --journal" in capsys.readouterr().err
    assert main(["jobs", "--journal", str(tmp_path / "missing.db")]) == 2
    assert "no such journal" in capsys.readouterr().err
    assert main(["jobs", "gc", "--older-than", "soon", "--journal", str(path)]) == 2
    assert "expected a duration" in capsys.readouterr().err
    # A running scheduler holds the journal: it is still read (WAL readers take no lock).
    held = QuantumScheduler(1, journal=path)
    try:
        assert main(["jobs", "--journal", str(path)]) == 0
        assert "exp42/point17" in capsys.readouterr().out
    finally:
        asyncio.run(held.aclose())
    # Nothing ended 7 days ago; everything ended more than 0 s ago.
    assert main(["jobs", "gc", "--older-than", "7d", "--journal", str(path)]) == 0
    assert "deleted 0 tasks" in capsys.readouterr().out
    assert main(["jobs", "gc", "--older-than", "0s", "--journal", str(path)]) == 0
    assert "deleted 2 tasks" in capsys.readouterr().out


def test_logosq_demo_runs_on_a_journal(tmp_path: Path) -> None:
    pytest.importorskip("rich")
    from logosq_os_scheduler.cli import main

    path = tmp_path / "demo.db"
    code = main(
        ["demo", "--quick", "--no-trace", "--no-timeline", "--no-progress", "--journal", str(path)]
    )
    assert code == 0
    statuses = dict(rows(path, "SELECT status, count(*) FROM tasks GROUP BY status"))
    assert statuses["completed"] > 100
    assert set(statuses) <= {"completed", "failed", "timed_out", "cancelled"}  # all ended
    assert main(["demo", "--quick", "--no-trace", "--no-timeline", "--journal", str(tmp_path)]) == 2


def _started(scheduler: QuantumScheduler, name: str) -> asyncio.Event:
    """An event set when the task called ``name`` starts running."""
    from logosq_os_scheduler.observability._listeners import add_listener

    event = asyncio.Event()

    def listener(task: Any, old: TaskStatus, new: TaskStatus, now: float) -> None:
        if task.name == name and new is TaskStatus.RUNNING:
            event.set()

    add_listener(scheduler, listener)
    return event


async def test_aclose_can_leave_unfinished_tasks_in_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    async with QuantumScheduler(1, journal=path) as scheduler:
        started = _started(scheduler, "running")
        done = await scheduler.submit(Task.classical("done").with_function(tasks.square, 3))
        await done
        running = await scheduler.submit(
            Task.classical("running").with_function(tasks.block, 0.3).with_key("running")
        )
        queued = [
            await scheduler.submit(
                Task.classical(f"q{i}").with_function(tasks.square, i).with_key(f"q{i}")
            )
            for i in range(3)
        ]
        await started.wait()
        # The running task gets its time to finish; the queued ones are not run.
        await scheduler.aclose(timeout=10, leave_in_journal=True)
        assert [h.status for h in queued] == [TaskStatus.CANCELLED] * 3
        assert running.status is TaskStatus.COMPLETED
    statuses = dict(rows(path, "SELECT name, status FROM tasks"))
    assert statuses == {
        "done": "completed",
        "running": "completed",
        "q0": "queued",
        "q1": "queued",
        "q2": "queued",
    }
    async with QuantumScheduler(1, journal=path) as again:
        values = [(await again.task(f"q{i}")).value for i in range(3)]
    assert values == [0, 1, 4]


async def test_leave_in_journal_leaves_running_tasks_past_the_timeout(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    scheduler = QuantumScheduler(1, journal=path)
    async with scheduler:
        started = _started(scheduler, "slow")
        running = await scheduler.submit(
            Task.classical("slow").with_function(tasks.block, 5.0).with_restartable()
        )
        await started.wait()
        assert running.status is TaskStatus.RUNNING
        await scheduler.aclose(timeout=0, leave_in_journal=True)
    # Its first attempt is counted in the file, as the live task counts it.
    assert rows(path, "SELECT name, status, attempts FROM tasks") == [("slow", "running", 1)]


async def test_a_start_written_with_the_end_is_kept(tmp_path: Path) -> None:
    """A task whose row went to the file before it started, and that started and ended (or
    started and went back to its queue, then ended) before the next commit: the file keeps
    its start time. The end used to drop the buffered update that carried it, so the task
    read back from the file had no start (the view's started_at was null)."""
    from logosq_os_scheduler.journal._codec import encode_spec

    loop = asyncio.get_running_loop()
    journal = Journal(tmp_path / "j.db")
    journal.bind(loop, loop.time)
    try:
        ran, requeued = (
            Task.classical(name).with_function(tasks.square, 3).build()
            for name in ("ran", "requeued")
        )
        for task in (ran, requeued):
            journal.submitted(task, encode_spec(task), 1.0)
        await journal.persisted()  # the rows are in the file, without a start
        journal.listener(ran, TaskStatus.QUEUED, TaskStatus.RUNNING, 2.0)
        ran.value = 9
        journal.listener(ran, TaskStatus.RUNNING, TaskStatus.COMPLETED, 3.0)
        journal.listener(requeued, TaskStatus.QUEUED, TaskStatus.RUNNING, 2.5)
        journal.listener(requeued, TaskStatus.RUNNING, TaskStatus.QUEUED, 2.75)
        journal.listener(requeued, TaskStatus.QUEUED, TaskStatus.CANCELLED, 3.5)
        await journal.persisted()
        for task, started in ((ran, 2.0), (requeued, 2.5)):
            row = journal.row(task.task_id)
            assert row is not None and row.status in (TaskStatus.COMPLETED, TaskStatus.CANCELLED)
            assert row.started == pytest.approx(journal.wall(started))
            assert journal.ended_task(row).started_at == pytest.approx(started)
    finally:
        journal.close()
