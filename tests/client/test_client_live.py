"""SchedulerClient and BlockingSchedulerClient against a real ``logosq serve`` on loopback.

Every test starts a server process (``make_server``, shared with the service's tests) and
talks to it only through the client: submit, await, cancel, reattach from a new client,
idempotent keys (a lost response included, through a proxy that drops it), and the errors
each refusal maps to.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("msgspec")
pytest.importorskip("qiskit")

from _proxy import DroppingProxy

from _interrupt import INTERRUPT_FROM_ANOTHER_THREAD
from logosq_os_scheduler import (
    AuthenticationError,
    InvalidRequestError,
    InvalidTaskError,
    KeyReusedError,
    PermissionDeniedError,
    QuotaExceededError,
    ServiceError,
    Task,
    TaskCancelledError,
    TaskFailedError,
    TaskPriority,
    TaskStatus,
    TaskTimeoutError,
    UnknownTaskError,
)
from logosq_os_scheduler.client import (
    BlockingSchedulerClient,
    RemoteTaskHandle,
    RetryPolicy,
    SchedulerClient,
    TaskRequest,
)

pytestmark = [pytest.mark.service, pytest.mark.qiskit, pytest.mark.slow]

BELL_QASM2 = """OPENQASM 2.0;
include "qelib1.inc";
qreg q[2];
creg c[2];
h q[0];
cx q[0],q[1];
measure q -> c;
"""

USERS: dict[str, dict[str, object]] = {
    "user1": {"groups": ["lab"], "priority_ceiling": "high"},
    "user2": {"groups": ["lab"]},
}


def runs(path: Path) -> list[str]:
    """The tags ``append_run`` wrote, one per run."""
    return path.read_text().split() if path.exists() else []


async def test_submit_await_and_the_result_of_each_kind(make_server: Any) -> None:
    srv = make_server(users=USERS)
    async with SchedulerClient(srv.url, srv.tokens["user1"]) as client:
        bell = await client.submit(
            Task.quantum("bell")
            .with_circuit(BELL_QASM2)
            .with_shots(200)
            .with_priority(TaskPriority.HIGH)
        )
        square = await client.submit_function("square", 7, key="sq/7")
        assert isinstance(bell, RemoteTaskHandle)
        assert bell.key is not None and bell.key.startswith("lq-")  # a key made for it
        assert square.key == "sq/7" and square.name == "square"
        result = await bell
        assert result.ok and result.status is TaskStatus.COMPLETED
        assert sum(result.counts.values()) == 200
        assert set(result.counts) <= {"00", "01", "10", "11"}
        assert result.priority is TaskPriority.HIGH and result.user == "user1"
        assert result.backend == "sim" and bell.done()
        assert (await square.result(timeout=30)).value == 49
        assert await square.status() is TaskStatus.COMPLETED
        me = await client.me()
        assert (me.user, me.admin, me.priority_ceiling) == ("user1", False, TaskPriority.HIGH)
        backends = await client.backends()
        assert [b.name for b in backends] == ["sim"]
        assert list(backends[0].queued_by_priority) == ["critical", "high", "normal", "low", "idle"]
        listed = await client.tasks()
        assert {v.task_id for v in listed} == {bell.task_id, square.task_id}


async def test_failures_time_outs_and_cancellations_raise_as_locally(
    make_server: Any, tmp_path: Path
) -> None:
    srv = make_server(users=USERS)
    gate = tmp_path / "gate"
    async with SchedulerClient(srv.url, srv.tokens["user1"]) as client:
        failing = await client.submit_function("fail", "boom")
        with pytest.raises(TaskFailedError) as failed:
            await failing
        assert failed.value.task_id == failing.task_id
        assert str(failed.value) == f"task {failing.task_id} ('fail') failed: ValueError: boom"

        blocked = await client.submit_function("wait_for_file", str(gate), key="blocked")
        # Waiting less than the task takes: the handle says so, and the task goes on.
        with pytest.raises(TaskTimeoutError, match=r"did not finish within 0\.2 s"):
            await blocked.result(timeout=0.2)
        assert not blocked.done()
        assert await blocked.status() in (TaskStatus.QUEUED, TaskStatus.RUNNING)
        assert await blocked.cancel() is True
        with pytest.raises(TaskCancelledError, match="was cancelled"):
            await blocked
        assert await blocked.cancel() is False  # it has ended: nothing to cancel
        assert blocked.view.status is TaskStatus.CANCELLED

        late = await client.submit_function("wait_for_file", str(gate), timeout=0.3)
        with pytest.raises(TaskTimeoutError, match="passed its deadline"):
            await late
        gate.touch()


async def test_a_key_submitted_twice_is_one_task(make_server: Any, tmp_path: Path) -> None:
    srv = make_server(users=USERS)
    log = tmp_path / "runs.txt"
    async with SchedulerClient(srv.url, srv.tokens["user1"]) as client:
        first = await client.submit_function("append_run", str(log), "a", key="exp/once")
        again = await client.submit_function("append_run", str(log), "a", key="exp/once")
        assert again.task_id == first.task_id
        assert (await first).value == (await again).value == "a"
        # One builder with a key, submitted twice, is one task too (as locally).
        builder = Task.quantum("b").with_circuit(BELL_QASM2).with_key("exp/bell")
        assert (await client.submit(builder)).task_id == (await client.submit(builder)).task_id
        # Another task under a used key is refused, at once: a 422 is not sent again.
        sent = 0
        request = client._http.request

        async def counting(*args: Any, **kwargs: Any) -> Any:
            nonlocal sent
            sent += 1
            return await request(*args, **kwargs)

        client._http.request = counting  # type: ignore[method-assign]
        with pytest.raises(KeyReusedError) as reused:
            await client.submit_function("append_run", str(log), "z", key="exp/once")
        assert sent == 1
        assert isinstance(reused.value, InvalidTaskError) and reused.value.field == "key"
        assert (reused.value.key, reused.value.task_id) == ("exp/once", first.task_id)
        assert str(reused.value) == (
            f"client key 'exp/once' was already used for a different task (task "
            f"{first.task_id}); send the same task again to get it back, or use a new key"
        )
    # In a batch, the refusal names the task's position in the whole list.
    async with SchedulerClient(srv.url, srv.tokens["user1"], batch_size=2) as client:
        with pytest.raises(KeyReusedError) as reused:
            await client.submit_many(
                [TaskRequest.function("square", i, key=f"n/{i}") for i in range(3)]
                + [TaskRequest.function("append_run", str(log), "z", key="exp/once")]
            )
        assert reused.value.index == 3 and str(reused.value).startswith("tasks[3]: ")
        with pytest.raises(UnknownTaskError):
            await client.task("n/2")  # its batch was refused whole
        # Another user's same key is another task: keys are per user.
    async with SchedulerClient(srv.url, srv.tokens["user2"]) as other:
        theirs = await other.submit_function("append_run", str(log), "b", key="exp/once")
        assert theirs.task_id != first.task_id
        await theirs
    assert runs(log) == ["a", "b"]


async def test_a_lost_response_is_retried_and_the_task_runs_once(
    make_server: Any, tmp_path: Path
) -> None:
    srv = make_server(users=USERS)
    log = tmp_path / "runs.txt"
    policy = RetryPolicy(retries=3, backoff=0.01)
    async with (
        DroppingProxy(srv.port, b"POST /v1/tasks HTTP/1.1") as proxy,
        SchedulerClient(proxy.url, srv.tokens["user1"], retries=policy) as client,
    ):
        # No key given: the client's own key makes the retry find the first task.
        handle = await client.submit_function("append_run", str(log), "once")
        assert proxy.dropped == 1
        assert (await handle).value == "once"
        assert len(await client.tasks()) == 1
    async with (
        DroppingProxy(srv.port, b"POST /v1/tasks/batch", drops=1) as proxy,
        SchedulerClient(proxy.url, srv.tokens["user1"], retries=policy) as client,
    ):
        batch = [TaskRequest.function("append_run", str(log), f"b{i}") for i in range(5)]
        handles = await client.submit_many(batch)
        assert proxy.dropped == 1
        assert [(await h).value for h in handles] == [f"b{i}" for i in range(5)]
    assert sorted(runs(log)) == ["b0", "b1", "b2", "b3", "b4", "once"]


async def test_a_new_client_reattaches_by_key_and_by_id(make_server: Any, tmp_path: Path) -> None:
    srv = make_server(users=USERS)
    gate = tmp_path / "gate"
    async with SchedulerClient(srv.url, srv.tokens["user1"]) as client:
        waiting = await client.submit_function("wait_for_file", str(gate), key="exp/42/point/7")
        task_id = waiting.task_id
    # The first client is gone; a new one (as after a restart of the client process) finds
    # the task by its key, a key holding slashes included, and by its id.
    gate.touch()
    async with SchedulerClient(srv.url, srv.tokens["user1"]) as fresh:
        by_key = await fresh.task("exp/42/point/7")
        by_id = await fresh.task(task_id)
        assert by_key.task_id == by_id.task_id == task_id
        assert (await by_key).value == "opened"
        with pytest.raises(UnknownTaskError):
            await fresh.task("exp/never")
        with pytest.raises(UnknownTaskError):
            await fresh.task(task_id + 1000)
    # Another user cannot see it: a 404, as for a task that does not exist.
    async with SchedulerClient(srv.url, srv.tokens["user2"]) as other:
        with pytest.raises(UnknownTaskError):
            await other.task("exp/42/point/7")
        with pytest.raises(UnknownTaskError):
            await other.task(task_id)
        with pytest.raises(PermissionDeniedError):
            await other.task("exp/42/point/7", user="user1")
    # An admin finds any user's task, by id or by the user's key.
    async with SchedulerClient(srv.url, srv.tokens["root"]) as admin:
        assert (await admin.task(task_id)).view.user == "user1"
        assert (await admin.task("exp/42/point/7", user="user1")).task_id == task_id


async def test_refusals_raise_the_scheduler_error_family(make_server: Any, tmp_path: Path) -> None:
    users = dict(USERS)
    users["capped"] = {"groups": ["lab"], "quotas": {"max_active": 1}}
    srv = make_server(users=users)
    gate = tmp_path / "gate"
    async with SchedulerClient(srv.url, "lq_not-a-token", retries=0) as stranger:
        with pytest.raises(AuthenticationError) as auth:
            await stranger.me()
        assert auth.value.status == 401
    async with SchedulerClient(srv.url, srv.tokens["user1"]) as client:
        with pytest.raises(PermissionDeniedError, match=r"(?i)critical"):
            await client.submit_function("square", 2, priority=TaskPriority.CRITICAL)
        with pytest.raises(InvalidRequestError) as unknown_fn:
            await client.submit_function("rm_rf", "/")
        assert isinstance(unknown_fn.value, InvalidTaskError)
        assert unknown_fn.value.status == 422 and "rm_rf" in str(unknown_fn.value)
        with pytest.raises(InvalidRequestError) as bad_qasm:
            await client.submit(Task.quantum("bad").with_circuit("OPENQASM 2.0;\nqreg q[2];\nh"))
        assert bad_qasm.value.field == "circuit"
        with pytest.raises(PermissionDeniedError):
            await client.tasks(user="user2")
        with pytest.raises(InvalidRequestError) as too_large:
            await client.submit_function("square", "x" * 2_000_000)
        assert (too_large.value.status, too_large.value.field) == (413, "body")
        with pytest.raises(InvalidRequestError) as bad_option:
            await client.submit(
                Task.quantum("b").with_circuit(BELL_QASM2).with_run_options(noise="high")
            )
        assert bad_option.value.status == 422 and "noise" in str(bad_option.value)
        # The server kept serving through all of it.
        assert (await (await client.submit_function("square", 3))).value == 9
    async with SchedulerClient(srv.url, srv.tokens["capped"]) as capped:
        await capped.submit_function("wait_for_file", str(gate))
        with pytest.raises(QuotaExceededError) as quota:
            await capped.submit_function("square", 2)
        assert quota.value.limit == "max_active"
        assert quota.value.retry_after is not None and quota.value.retry_after >= 1
        assert isinstance(quota.value, ServiceError) and quota.value.status == 429
        gate.touch()


async def test_a_batch_submits_in_order_and_refuses_whole(make_server: Any) -> None:
    srv = make_server(users=USERS)
    async with SchedulerClient(srv.url, srv.tokens["user1"], batch_size=7) as client:
        handles = await client.submit_many(
            [TaskRequest.function("square", i, key=f"sq/{i}") for i in range(20)]
            + [Task.quantum("bell").with_circuit(BELL_QASM2).with_shots(50)]
        )
        assert [h.key for h in handles[:20]] == [f"sq/{i}" for i in range(20)]
        values = [(await h).value for h in handles]
        assert values[:20] == [i * i for i in range(20)]
        assert sum(values[20].values()) == 50
        with pytest.raises(InvalidRequestError) as refused:
            await client.submit_many(
                [TaskRequest.function("square", 1), TaskRequest.function("nope")]
            )
        assert (refused.value.index, refused.value.field) == (1, "function")
        assert str(refused.value).startswith("tasks[1]: ")


async def test_batches_follow_the_servers_max_batch(make_server: Any) -> None:
    srv = make_server(users=USERS, server={"max_batch": 10})
    async with SchedulerClient(srv.url, srv.tokens["user1"]) as client:  # batch_size 1000
        handles = await client.submit_many(
            [TaskRequest.function("square", i, key=f"sq/{i}") for i in range(25)]
        )
        assert [h.key for h in handles] == [f"sq/{i}" for i in range(25)]
        assert [(await h).value for h in handles] == [i * i for i in range(25)]
        # The refused oversized batch made nothing: each task exists once.
        assert len(await client.tasks(limit=100)) == 25


async def test_a_waiting_handle_outlasts_a_restart_longer_than_its_retries(
    make_server: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    srv = make_server(users=USERS)
    gate = tmp_path / "gate"
    # No retries at all: one failed request would end a wait that gave up with it.
    brittle = RetryPolicy(retries=0, max_backoff=0.2)
    async with SchedulerClient(srv.url, srv.tokens["user1"], retries=brittle) as client:
        held = await client.submit_function("wait_for_file", str(gate), key="held-restart")
        waiting = asyncio.create_task(held.result(timeout=120))
        await asyncio.to_thread(srv.terminate)
        # The wait has met the missing server (and logged it) before the server is back.
        with caplog.at_level("WARNING", logger="logosq_os_scheduler.client"):
            for _ in range(1500):
                if any("unreachable" in r.getMessage() for r in caplog.records):
                    break
                await asyncio.sleep(0.02)
            else:
                pytest.fail("the waiting handle never found the server gone")
        assert not waiting.done()
        gate.touch()
        await asyncio.to_thread(srv.start)
        # The running task was not restartable: the restart ended it, and the wait says so.
        with pytest.raises(TaskFailedError, match="restartable = true"):
            await waiting


def test_the_blocking_twin(make_server: Any, tmp_path: Path) -> None:
    srv = make_server(users=USERS)
    gate = tmp_path / "gate"
    with BlockingSchedulerClient(srv.url, srv.tokens["user1"]) as client:
        handle = client.submit_function("square", 12, key="sq/12")
        assert handle.result(timeout=30).value == 144
        assert client.task("sq/12").task_id == handle.task_id
        with pytest.raises(KeyReusedError, match="'sq/12' was already used"):
            client.submit_function("square", 13, key="sq/12")
        bell = client.submit(Task.quantum("bell").with_circuit(BELL_QASM2).with_shots(64))
        assert sum(bell.result(timeout=30).counts.values()) == 64
        blocked = client.submit_function("wait_for_file", str(gate))
        with pytest.raises(TaskTimeoutError):
            blocked.result(timeout=0.1)
        assert blocked.cancel() is True
        assert blocked.status() is TaskStatus.CANCELLED
        with pytest.raises(TaskCancelledError):
            blocked.result()
        many = client.submit_many([TaskRequest.function("square", i) for i in range(3)])
        assert [h.result().value for h in many] == [0, 1, 4]
        assert client.me().user == "user1"
        with pytest.raises(UnknownTaskError):
            client.task("missing")
    gate.touch()


async def test_vqe_and_qaoa_by_their_parameters(make_server: Any) -> None:
    from logosq_os_scheduler.workflows import H2_FCI_ELECTRONIC_ENERGY, h2_hamiltonian

    srv = make_server(users=USERS, backends=[{"kind": "aer", "name": "aer"}])
    async with SchedulerClient(srv.url, srv.tokens["user1"]) as client:
        vqe = await client.submit_vqe(
            h2_hamiltonian(), "real_amplitudes", reps=1, maxiter=80, shots=None, seed=3
        )
        qaoa = await client.submit_qaoa(
            {"IZZ": 0.5, "ZIZ": 0.5, "ZZI": 0.5}, reps=1, maxiter=20, shots=512, backend="aer"
        )
        energy = (await vqe.result(timeout=120)).value
        assert energy["energy"] == pytest.approx(H2_FCI_ELECTRONIC_ENERGY, abs=2e-2)
        assert len(energy["parameters"]) == 4 and vqe.view.kind == "vqe"
        done = await qaoa.result(timeout=120)
        cut = done.value
        assert cut["best_bitstring"] in {"001", "010", "100", "011", "101", "110"}
        assert done.backend == "aer"  # where its circuits ran, as for a circuit
        with pytest.raises(InvalidRequestError, match="I, X, Y, Z"):
            await client.submit_vqe([("XQ", 1.0)], "efficient_su2")
        # The hybrid builder a local scheduler takes runs on the server as it is.
        from qiskit.circuit.library import real_amplitudes
        from qiskit.quantum_info import SparsePauliOp

        from logosq_os_scheduler.workflows import COBYLA, VQE, h2_ansatz

        hybrid = await client.submit(
            Task.hybrid("vqe_h2")
            .with_algorithm(VQE(h2_hamiltonian(), h2_ansatz(), initial_point=[0.5], shots=None))
            .with_optimizer(COBYLA(maxiter=40))
            .with_key("h2/exact")
        )
        value = (await hybrid.result(timeout=120)).value
        assert value["energy"] == pytest.approx(H2_FCI_ELECTRONIC_ENERGY, abs=1e-3)
        assert hybrid.key == "h2/exact" and hybrid.view.kind == "vqe"

        # A program that runs again builds its VQE afresh: a new ansatz (new Parameter
        # objects, other QPY bytes) and, without a seed or initial point, a start drawn anew.
        # Sent again under its key it is the same task; with another operator it is not.
        def drawn(maxiter: int = 5, coeff: float = 0.5) -> Any:
            algorithm = VQE(
                SparsePauliOp.from_list([("ZZ", -1.0), ("XI", coeff)]),
                real_amplitudes(2, reps=1),
                shots=None,
            )
            return (
                Task.hybrid("drawn")
                .with_algorithm(algorithm)
                .with_optimizer(COBYLA(maxiter=maxiter))
                .with_key("drawn")
            )

        once = await client.submit(drawn())
        assert (await client.submit(drawn())).task_id == once.task_id
        with pytest.raises(KeyReusedError):
            await client.submit(drawn(coeff=0.6))
        with pytest.raises(KeyReusedError):
            await client.submit(drawn(maxiter=6))
        await once.result(timeout=120)


async def test_handles_wait_through_a_server_kill_and_a_new_client_reattaches(
    make_server: Any, tmp_path: Path
) -> None:
    srv = make_server(users=USERS, server={"workers": 1})
    log = tmp_path / "runs.txt"
    gate = tmp_path / "gate"
    # Enough patience to outlast the restart: each retry waits at most half a second.
    patient = RetryPolicy(retries=200, backoff=0.05, max_backoff=0.5)
    async with (
        SchedulerClient(srv.url, srv.tokens["user1"], retries=patient) as one,
        SchedulerClient(srv.url, srv.tokens["user2"], retries=patient) as two,
    ):
        done = await one.submit_function("append_run", str(log), "before", key="before")
        assert (await done).value == "before"
        held = await one.submit_function("wait_for_file", str(gate), key="held")
        for _ in range(1500):
            if await held.status() is TaskStatus.RUNNING:
                break
            await asyncio.sleep(0.02)
        else:
            pytest.fail("the held task never started")
        # Queued behind the one worker when the server dies.
        queued = [
            await one.submit_function("append_run", str(log), "one", key="q/one"),
            await two.submit_function("append_run", str(log), "two", key="q/two"),
        ]
        waiting = [asyncio.create_task(h.result()) for h in queued]
        # Killed and started again off the loop: meanwhile the handles' long-polls break
        # and their retries find no server until it is back.
        await asyncio.to_thread(srv.kill)
        assert runs(log) == ["before"]
        gate.touch()
        await asyncio.to_thread(srv.start)
        # The handles awaited before the kill get their results once the server is back.
        assert [r.value for r in await asyncio.gather(*waiting)] == ["one", "two"]
        # The running task was not marked restartable: it ends failed, not run twice.
        with pytest.raises(TaskFailedError):
            await held
    # A client started after the restart finds everything by key.
    async with SchedulerClient(srv.url, srv.tokens["user1"]) as fresh:
        assert (await (await fresh.task("before"))).value == "before"
        assert (await (await fresh.task("q/one"))).value == "one"
    assert sorted(runs(log)) == ["before", "one", "two"]


async def test_a_server_that_allows_shorter_long_polls_is_followed(
    make_server: Any, tmp_path: Path
) -> None:
    srv = make_server(users=USERS, server={"max_wait": 5})
    gate = tmp_path / "gate"
    async with SchedulerClient(srv.url, srv.tokens["user1"], poll_wait=30) as client:
        handle = await client.submit_function("wait_for_file", str(gate))
        opener = threading.Timer(0.5, gate.touch)
        opener.start()
        # The server refuses a 30 s wait; the client asks for less until it is accepted.
        assert (await handle.result(timeout=60)).value == "opened"
        opener.join()


CHILD = """
import os, sys
from logosq_os_scheduler.client import BlockingSchedulerClient

client = BlockingSchedulerClient(sys.argv[1], sys.argv[2])
handle = client.submit_function("wait_for_file", sys.argv[3], key="child/1")
print(handle.task_id, flush=True)
os._exit(0)  # gone without closing anything, as a killed client process is
"""


async def _child_client(script: str, *args: str) -> asyncio.subprocess.Process:
    """A client program in a process of its own, on this test's import path."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)),
    )


async def test_a_client_process_that_died_is_replaced_by_one_that_reattaches(
    make_server: Any, tmp_path: Path
) -> None:
    srv = make_server(users=USERS)
    gate = tmp_path / "gate"
    child = await _child_client(CHILD, srv.url, srv.tokens["user1"], str(gate))
    out, _ = await child.communicate()
    assert child.returncode == 0
    task_id = int(out.decode().strip())
    gate.touch()
    async with SchedulerClient(srv.url, srv.tokens["user1"]) as client:
        handle = await client.task("child/1")
        assert handle.task_id == task_id
        assert (await handle).value == "opened"


# Ctrl-C that the kernel hands to another thread than the main one (see _interrupt): the main
# thread, blocked in a blocking call on the client's loop, must still see it; without the
# sliced wait it waits until the task ends.
INTERRUPTED_CHILD = (
    INTERRUPT_FROM_ANOTHER_THREAD
    + """
import os
from logosq_os_scheduler.client import BlockingSchedulerClient

client = BlockingSchedulerClient(sys.argv[1], sys.argv[2])
handle = client.submit_function("wait_for_file", sys.argv[3])
threading.Thread(target=interrupt_from_here, daemon=True).start()
try:
    handle.result()
except KeyboardInterrupt:
    print("interrupted", flush=True)
    os._exit(130)
"""
)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
async def test_ctrl_c_on_another_thread_interrupts_a_blocking_clients_wait(
    make_server: Any, tmp_path: Path
) -> None:
    srv = make_server(users=USERS)
    child = await _child_client(
        INTERRUPTED_CHILD, srv.url, srv.tokens["user1"], str(tmp_path / "never-opened")
    )
    try:
        out, err = await asyncio.wait_for(child.communicate(), 60)
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    assert child.returncode == 130, err.decode()
    assert out.decode().split() == ["interrupted"]


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A key and a certificate for 127.0.0.1 that is its own CA."""
    pytest.importorskip("cryptography")
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_file, cert_file = directory / "key.pem", directory / "cert.pem"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_file, cert_file


async def test_tls_with_the_servers_own_ca(make_server: Any, tmp_path: Path) -> None:
    key_file, cert_file = self_signed(tmp_path)
    srv = make_server(users=USERS, start=False)
    srv.args = ("--ssl-keyfile", str(key_file), "--ssl-certfile", str(cert_file))
    srv.scheme = "https"
    await asyncio.to_thread(srv.start)
    assert srv.url.startswith("https://")
    trusted = ssl.create_default_context(cafile=str(cert_file))
    async with SchedulerClient(srv.url, srv.tokens["user1"], verify=trusted) as client:
        assert (await (await client.submit_function("square", 6))).value == 36
    # Without the CA the certificate does not verify: said at once, not retried.
    async with SchedulerClient(srv.url, srv.tokens["user1"]) as untrusting:
        with pytest.raises(ServiceError, match="CERTIFICATE_VERIFY_FAILED") as refused:
            await untrusting.me()
        assert type(refused.value) is ServiceError and "cafile" in str(refused.value)
