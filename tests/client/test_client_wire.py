"""The client's sans-I/O parts: requests out, views and refusals in, the retry policy.

No server is needed: these are the functions the client's I/O calls, tested on their own."""

from __future__ import annotations

import random
import socket
import subprocess
import sys

import pytest

pytest.importorskip("httpx")

from logosq_os_scheduler import (
    AuthenticationError,
    InterruptedByRestartError,
    InvalidConfigError,
    InvalidRequestError,
    InvalidTaskError,
    KeyReusedError,
    MissingExtraError,
    PermissionDeniedError,
    QuotaExceededError,
    ServiceError,
    ServiceUnavailableError,
    Task,
    TaskCancelledError,
    TaskFailedError,
    TaskPriority,
    TaskStatus,
    TaskTimeoutError,
    UnknownTaskError,
)
from logosq_os_scheduler import client as client_pkg
from logosq_os_scheduler.client import (
    BlockingSchedulerClient,
    RemoteTaskResult,
    RetryPolicy,
    SchedulerClient,
    TaskRequest,
)
from logosq_os_scheduler.client._views import view_of
from logosq_os_scheduler.client._wire import error_of_problem, error_of_task, new_key

BELL_QASM2 = """OPENQASM 2.0;
include "qelib1.inc";
qreg q[2];
creg c[2];
h q[0];
cx q[0],q[1];
measure q -> c;
"""

BELL_QASM3 = """// a Bell pair
OPENQASM 3.0;
include "stdgates.inc";
qubit[2] q;
bit[2] c;
h q[0];
cx q[0], q[1];
c = measure q;
"""


def view_json(status: str = "completed", **over: object) -> dict[str, object]:
    data: dict[str, object] = {
        "id": 7,
        "key": "exp/1",
        "name": "bell",
        "user": "user1",
        "kind": "circuit",
        "priority": "high",
        "status": status,
        "submitted_at": 1.0,
        "started_at": 1.5,
        "finished_at": 2.0,
        "backend": "aer",
        "recovery": None,
        "result": {"00": 3, "11": 5},
        "error": None,
    }
    data.update(over)
    return data


# --- requests --------------------------------------------------------------------------------


def test_a_quantum_builder_travels_with_every_setting_the_server_takes() -> None:
    builder = (
        Task.quantum("bell")
        .with_circuit(BELL_QASM2)
        .with_shots(500)
        .with_priority(TaskPriority.HIGH)
        .with_key("exp/1")
        .with_backend("aer")
        .with_timeout(30)
        .with_metadata(run=3)
    )
    request = TaskRequest.of(builder)
    assert request.key == "exp/1"
    assert request.to_json("exp/1") == {
        "kind": "circuit",
        "name": "bell",
        "priority": "high",
        "circuit": {"format": "qasm2", "source": BELL_QASM2},
        "shots": 500,
        "backend": "aer",
        "timeout": 30.0,
        "metadata": {"run": 3},
        "key": "exp/1",
    }


def test_openqasm_3_text_is_sent_as_qasm3_even_after_a_comment() -> None:
    body = TaskRequest.of(Task.quantum("b").with_circuit(BELL_QASM3)).to_json("k")
    assert body["circuit"] == {"format": "qasm3", "source": BELL_QASM3}


def test_a_classical_function_never_travels() -> None:
    with pytest.raises(InvalidTaskError, match="submit_function") as info:
        TaskRequest.of(Task.classical("sq").with_function(pow, 2, 3))
    assert info.value.field == "function"


@pytest.mark.parametrize(
    ("setting", "field"),
    [
        (lambda b: b.with_retries(2), "max_retries"),
        (lambda b: b.with_restartable(), "restartable"),
        (lambda b: b.with_preemptible(False), "preemptible"),
        (lambda b: b.with_qubits(5), "num_qubits"),
    ],
)
def test_settings_a_server_does_not_take_are_refused_by_name(setting: object, field: str) -> None:
    builder = Task.quantum("b").with_circuit(BELL_QASM2)
    with pytest.raises(InvalidTaskError) as info:
        TaskRequest.of(setting(builder))  # type: ignore[operator]
    assert info.value.field == field
    assert "leave it out" in str(info.value)


def test_an_incomplete_builder_is_refused_before_any_request() -> None:
    with pytest.raises(InvalidTaskError, match="with_circuit"):
        TaskRequest.of(Task.quantum("empty"))


def test_a_function_request_carries_a_name_and_json_arguments() -> None:
    request = TaskRequest.function(
        "mul", 6, 7, kwargs={"z": 1}, key="m/1", priority="low", timeout=5, name="product"
    )
    assert request.to_json("m/1") == {
        "kind": "function",
        "function": "mul",
        "args": [6, 7],
        "kwargs": {"z": 1},
        "name": "product",
        "priority": "low",
        "timeout": 5.0,
        "key": "m/1",
    }
    with pytest.raises(InvalidTaskError, match="never runs code"):
        TaskRequest.function(pow)  # type: ignore[arg-type]
    with pytest.raises(InvalidTaskError, match="priority"):
        TaskRequest.function("mul", priority="urgent")


def test_keys_are_checked_and_fresh_ones_never_repeat() -> None:
    with pytest.raises(InvalidTaskError, match="key"):
        TaskRequest.function("mul", key="")
    with pytest.raises(InvalidTaskError, match="key"):
        TaskRequest.function("mul").with_key("a\nb")
    keys = {new_key() for _ in range(1000)}
    assert len(keys) == 1000
    assert all(k.startswith("lq-") for k in keys)


def test_vqe_and_qaoa_requests_carry_their_parameters() -> None:
    vqe = TaskRequest.vqe(
        [("ZZ", 0.5), ("XX", -0.25)], "real_amplitudes", reps=2, optimizer="SPSA", maxiter=20
    )
    assert vqe.body["hamiltonian"] == [["ZZ", 0.5], ["XX", -0.25]]
    assert vqe.body["ansatz"] == {"library": "real_amplitudes", "reps": 2}
    assert vqe.body["optimizer"] == {"name": "spsa", "maxiter": 20}
    assert vqe.body["shots"] == 4096  # the server's default, sent: None would mean exact
    assert TaskRequest.vqe([("Z", 1.0)], "efficient_su2", shots=None).body["shots"] is None
    qaoa = TaskRequest.qaoa({"ZI": 1.0, "IZ": -1.0}, reps=2, shots=2000, seed=3)
    assert qaoa.body["hamiltonian"] == [["ZI", 1.0], ["IZ", -1.0]]
    assert (qaoa.body["reps"], qaoa.body["shots"], qaoa.body["seed"]) == (2, 2000, 3)
    with pytest.raises(InvalidTaskError, match="complex"):
        TaskRequest.vqe([("ZZ", 1j)], "efficient_su2")
    with pytest.raises(InvalidTaskError, match="reps"):
        TaskRequest.vqe([("ZZ", 1.0)], BELL_QASM3, reps=2)


@pytest.mark.qiskit
def test_a_qiskit_circuit_travels_as_qpy_and_comes_back_equal() -> None:
    pytest.importorskip("qiskit")
    import base64
    import io

    from qiskit import QuantumCircuit, qpy
    from qiskit.circuit import Parameter
    from qiskit.quantum_info import SparsePauliOp

    qc = QuantumCircuit(2)
    qc.ry(Parameter("theta"), 0)
    qc.cx(0, 1)
    qc.measure_all()
    body = TaskRequest.of(Task.quantum("p").with_circuit(qc)).to_json("k")
    circuit = body["circuit"]
    assert isinstance(circuit, dict) and circuit["format"] == "qpy"
    back = qpy.load(io.BytesIO(base64.b64decode(circuit["source"])))[0]
    assert back == qc
    vqe = TaskRequest.vqe(SparsePauliOp.from_list([("ZZ", 1.0), ("XI", 0.5)]), qc)
    assert vqe.body["hamiltonian"] == [["ZZ", 1.0], ["XI", 0.5]]
    assert vqe.body["ansatz"]["format"] == "qpy"  # type: ignore[index]


# --- answers ---------------------------------------------------------------------------------


def test_a_completed_view_is_a_result_like_a_local_one() -> None:
    view = view_of(view_json())
    assert view.status is TaskStatus.COMPLETED and view.priority is TaskPriority.HIGH
    assert view.done
    result = RemoteTaskResult.of(view)
    assert result.ok and result.counts == {"00": 3, "11": 5}
    assert (result.task_id, result.key, result.backend) == (7, "exp/1", "aer")
    function_result = RemoteTaskResult.of(view_of(view_json(kind="function", result=42)))
    assert function_result.value == 42
    with pytest.raises(InvalidTaskError, match="not a circuit task"):
        _ = function_result.counts


def test_a_backends_queues_are_labelled_by_priority() -> None:
    from logosq_os_scheduler.client._views import backend_of

    names = ["critical", "high", "normal", "low", "idle"]
    view = backend_of({"name": "sim", "queued_by_priority": {"high": 2, "idle": 1}})
    assert view.queued_by_priority == dict(zip(names, [0, 2, 0, 0, 1], strict=True))
    # A server from before the mapping sent a list, critical first.
    older = backend_of({"name": "sim", "queued_by_priority": [1, 0, 3, 0, 0]})
    assert older.queued_by_priority == dict(zip(names, [1, 0, 3, 0, 0], strict=True))


def test_a_view_of_another_shape_is_a_service_error() -> None:
    with pytest.raises(ServiceError, match="not a task view"):
        view_of({"id": 1, "status": "finished"})
    with pytest.raises(ServiceError, match="not a task view"):
        view_of(["not", "a", "dict"])


def test_ends_without_a_value_raise_what_a_local_handle_raises() -> None:
    failed = view_of(
        view_json("failed", result=None, error={"type": "ValueError", "message": "boom"})
    )
    err = error_of_task(failed)
    assert type(err) is TaskFailedError and err.task_id == 7
    assert str(err) == "task 7 ('bell') failed: ValueError: boom"
    interrupted = view_of(
        view_json(
            "failed",
            error={"type": "InterruptedByRestartError", "message": "task 7 was running"},
        )
    )
    assert type(error_of_task(interrupted)) is InterruptedByRestartError
    assert type(error_of_task(view_of(view_json("timed_out")))) is TaskTimeoutError
    cancelled = error_of_task(view_of(view_json("cancelled")))
    assert type(cancelled) is TaskCancelledError
    assert str(cancelled) == "task 7 ('bell') was cancelled"


def test_refusals_map_to_the_scheduler_error_family() -> None:
    auth = error_of_problem(401, {"detail": "unknown API token", "error": "AuthenticationError"})
    assert type(auth) is AuthenticationError and auth.status == 401
    assert "unknown API token" in str(auth)
    denied = error_of_problem(403, {"detail": "priority CRITICAL is above your ceiling HIGH"})
    assert type(denied) is PermissionDeniedError
    assert str(denied) == "priority CRITICAL is above your ceiling HIGH"
    missing = error_of_problem(404, {"detail": "no task"}, ref="exp/9")
    assert type(missing) is UnknownTaskError and missing.ref == "exp/9"
    quota = error_of_problem(
        429,
        {"detail": "user1 has 5 active tasks", "limit": "max_active", "scope": "user user1"},
        retry_after="3",
    )
    assert type(quota) is QuotaExceededError
    assert (quota.limit, quota.scope, quota.retry_after) == ("max_active", "user user1", 3.0)
    invalid = error_of_problem(
        422, {"detail": "invalid task field 'circuit': line 3", "field": "circuit", "index": 4}
    )
    assert type(invalid) is InvalidRequestError and isinstance(invalid, InvalidTaskError)
    assert (invalid.field, invalid.index, str(invalid)) == (
        "circuit",
        4,
        "invalid task field 'circuit': line 3",
    )
    reused = error_of_problem(
        422,
        {
            "detail": "tasks[2]: client key 'k1' was already used for a different task (task 7)",
            "error": "KeyReusedError",
            "field": "key",
            "key": "k1",
            "task_id": 7,
            "index": 2,
        },
    )
    assert type(reused) is KeyReusedError and isinstance(reused, InvalidTaskError)
    assert (reused.key, reused.task_id, reused.index, reused.field) == ("k1", 7, 2, "key")
    assert str(reused).startswith("tasks[2]: client key 'k1' was already used")
    too_large = error_of_problem(413, {"detail": "body over 1048576 bytes"})
    assert type(too_large) is InvalidRequestError and too_large.status == 413
    other = error_of_problem(409, {"detail": "task 3 has ended"})
    assert type(other) is ServiceError and other.body == {"detail": "task 3 has ended"}


# --- retries and settings --------------------------------------------------------------------


def test_the_retry_policy_backs_off_within_its_bounds_and_then_stops() -> None:
    policy = RetryPolicy(retries=4, backoff=0.5, max_backoff=2.0)
    rng = random.Random(1)
    for attempt, bound in enumerate([0.5, 1.0, 2.0, 2.0]):
        delays = [policy.delay(attempt, rng=rng) for _ in range(200)]
        assert all(d is not None and 0.0 <= d <= bound for d in delays)
        assert max(d for d in delays if d is not None) > bound * 0.9
    assert policy.delay(4) is None
    assert policy.delay(0, retry_after=1.5) == 1.5
    assert policy.delay(0, retry_after=60.0) == 2.0
    assert RetryPolicy(retries=0).delay(0) is None
    with pytest.raises(InvalidConfigError, match="retries"):
        RetryPolicy(retries=-1)


def test_client_settings_are_checked_by_name() -> None:
    with pytest.raises(InvalidConfigError, match="url"):
        SchedulerClient("localhost:8765", "t")
    with pytest.raises(InvalidConfigError, match="token"):
        SchedulerClient("http://127.0.0.1:1", "")
    with pytest.raises(InvalidConfigError, match="poll_wait"):
        SchedulerClient("http://127.0.0.1:1", "t", poll_wait=61)
    with pytest.raises(InvalidConfigError, match="batch_size"):
        BlockingSchedulerClient("http://127.0.0.1:1", "t", batch_size=0)


async def test_an_unreachable_server_is_service_unavailable_after_the_retries() -> None:
    # A port nothing listens on: every attempt is refused at once.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    policy = RetryPolicy(retries=2, backoff=0.0)
    async with SchedulerClient(f"http://127.0.0.1:{port}", "t", retries=policy) as client:
        with pytest.raises(ServiceUnavailableError, match="all 3 attempts") as info:
            await client.submit_function("mul", 2, 3)
        assert info.value.status is None
        assert "ConnectError" in str(info.value)


def test_the_client_package_lists_its_public_names() -> None:
    assert sorted(client_pkg.__all__) == sorted(
        n for n in dir(client_pkg) if not n.startswith("_") and n[0].isupper()
    )
    try:
        import qiskit  # noqa: F401
    except ImportError:
        has_qiskit = False
    else:
        has_qiskit = True
    for name in client_pkg.__all__:
        if name in ("RemoteSampler", "RemoteEstimator") and not has_qiskit:
            with pytest.raises(MissingExtraError, match=r"qiskit extra") as missing:
                getattr(client_pkg, name)
            assert missing.value.extra == "qiskit"
        else:
            assert getattr(client_pkg, name).__name__ == name


def test_without_httpx_the_client_names_its_extra_and_the_package_still_imports() -> None:
    code = (
        "import sys\n"
        "sys.modules['httpx'] = None\n"  # what an uninstalled package looks like to import
        "import logosq_os_scheduler, logosq_os_scheduler.client as c\n"
        "assert 'httpx' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
        "try:\n"
        "    c.SchedulerClient\n"
        "except logosq_os_scheduler.MissingExtraError as e:\n"
        "    print(e.extra, e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("client ")
    assert "pip install 'logosq-os-scheduler[client]'" in out.stdout


@pytest.mark.qiskit
def test_a_hybrid_vqe_or_qaoa_builder_travels_by_its_parameters() -> None:
    pytest.importorskip("qiskit")
    pytest.importorskip("scipy")
    from qiskit.quantum_info import SparsePauliOp

    from logosq_os_scheduler.workflows import COBYLA, QAOA, SPSA, VQE, h2_ansatz, h2_hamiltonian

    builder = (
        Task.hybrid("vqe_h2")
        .with_algorithm(VQE(h2_hamiltonian(), h2_ansatz(), initial_point=[0.5], shots=None))
        .with_optimizer(SPSA(maxiter=30))
        .with_backend("aer")
        .with_key("h2/1")
    )
    request = TaskRequest.of(builder)
    body = request.to_json("h2/1")
    assert (body["kind"], body["name"], body["key"], body["backend"]) == (
        "vqe",
        "vqe_h2",
        "h2/1",
        "aer",
    )
    assert body["optimizer"] == {"name": "spsa", "maxiter": 30}
    assert body["initial_point"] == [0.5] and body["shots"] is None
    assert body["ansatz"]["format"] == "qpy"  # type: ignore[index]
    cost = SparsePauliOp.from_list([("ZZI", 1.0), ("IZZ", 1.0)])
    qaoa = TaskRequest.of(Task.hybrid("cut").with_algorithm(QAOA(cost, reps=2))).to_json("k")
    assert (qaoa["kind"], qaoa["reps"], qaoa["optimizer"]) == (
        "qaoa",
        2,
        {"name": "cobyla", "maxiter": 200},  # what QAOA uses locally when given none
    )
    with pytest.raises(InvalidTaskError, match="only maxiter travels") as tuned:
        TaskRequest.of(
            Task.hybrid("v")
            .with_algorithm(VQE(h2_hamiltonian(), h2_ansatz()))
            .with_optimizer(COBYLA(maxiter=10, rhobeg=0.1))
        )
    assert tuned.value.field == "optimizer"
    with pytest.raises(InvalidTaskError, match="callback"):
        TaskRequest.of(
            Task.hybrid("v").with_algorithm(
                VQE(h2_hamiltonian(), h2_ansatz(), callback=lambda *a: None)
            )
        )
    with pytest.raises(InvalidTaskError, match="no code"):
        TaskRequest.of(Task.hybrid("f").with_function(sum, [1, 2]))
