"""The simulator: each policy's decisions on hand-built clouds, every job ending once,
determinism, the route index against decide_route, traces, and the ``logosq simulate`` CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from logosq_os_scheduler import InvalidConfigError, NoRouteError, Task, TaskPriority
from logosq_os_scheduler.cli import main
from logosq_os_scheduler.core._capabilities import (
    BackendCapabilities,
    CircuitRequirements,
    JobCost,
)
from logosq_os_scheduler.core._routing import decide_route
from logosq_os_scheduler.simulate import (
    DEFAULT_POLICIES,
    POLICIES,
    Cloud,
    DeviceType,
    Job,
    SimulatedDevice,
    Workload,
    generate_workload,
    make_cloud,
    read_trace,
    run_policy,
    simulate,
    simulation_config,
    workload_for,
    write_trace,
)
from logosq_os_scheduler.simulate._engine import _drive, _Ours, _Shape

_TYPE = DeviceType("t", 1.0, 30, False, 1, 5, 1.0, 0.0, 0.01, 0.01, 0.0)


def device(
    name: str,
    *,
    qubits: int = 30,
    slots: int = 1,
    per_job: int = 5,
    fixed: float = 1.0,
    failure: float = 0.0,
    outage: tuple[float, float] | None = None,
    kind: int = 0,
) -> SimulatedDevice:
    caps = BackendCapabilities(
        name,
        qubits,
        max_concurrent_jobs=slots,
        max_circuits_per_job=per_job,
        error_rate=0.01,
        cost=JobCost(fixed=fixed, per_circuit=0.0, per_shot=0.0),
    )
    return SimulatedDevice(name, kind, caps, 0.01, 0.01, 1.0, failure, 0.0, outage)


def cloud(*devices: SimulatedDevice) -> Cloud:
    kinds = max(d.kind for d in devices) + 1
    return Cloud(tuple(devices), (_TYPE,) * kinds, "hand-built")


def jobs(*specs: tuple[float, TaskPriority], qubits: int = 2, user: str = "u") -> Workload:
    return Workload(tuple(Job(t, user, p, qubits, 1, 100) for t, p in specs), "hand-built")


N = TaskPriority.NORMAL
H = TaskPriority.HIGH


def start_order(outcome: Any) -> list[int]:
    return sorted(range(len(outcome.start)), key=lambda k: (outcome.start[k], k))


# -- each policy's decisions ------------------------------------------------------------------


def test_fcfs_runs_in_arrival_order_whatever_the_priority() -> None:
    work = jobs((0.0, N), (0.1, N), (0.2, H), (0.3, TaskPriority.CRITICAL))
    out = run_policy("fcfs", cloud(device("a")), work)
    assert start_order(out) == [0, 1, 2, 3]
    assert out.jobs_sent == 4  # one circuit a job
    assert all(out.completed)


def test_least_busy_sends_each_arrival_to_the_device_with_the_fewest_jobs() -> None:
    work = jobs(*((0.0, N) for _ in range(6)))
    # b has two slots: its jobs per slot count half.
    out = run_policy("least-busy", cloud(device("a"), device("b", slots=2)), work)
    # a:0 b:0 -> a (name); a:1 b:0 -> b; a:1 b:.5 -> b; a:1 b:1 -> a; a:2 b:1 -> b; -> b
    assert out.device == [0, 1, 1, 0, 1, 1]


def test_ours_runs_high_before_normal_waiting_longer() -> None:
    # One device, one circuit a job, no batch window in the way: a NORMAL job holds the
    # device, two more NORMAL wait, then a HIGH arrives: it runs next.
    work = jobs((0.0, N), (0.1, N), (0.2, N), (0.3, H))
    out = run_policy("logosq", cloud(device("a", per_job=1)), work)
    assert start_order(out) == [0, 3, 1, 2]
    assert all(out.completed)


def test_ours_batches_up_to_the_circuits_a_job_carries() -> None:
    work = jobs(*((0.0, N) for _ in range(12)))
    out = run_policy("logosq", cloud(device("a", per_job=5)), work)
    # 5 at once; 5 wait for the slot; the last 2 wait for the slot too.
    assert out.jobs_sent == 3
    assert len(set(out.start)) == 3
    assert all(out.completed)
    # The fcfs baseline sends a job per circuit.
    assert run_policy("fcfs", cloud(device("a", per_job=5)), work).jobs_sent == 12


def test_ours_holds_a_partial_batch_for_the_window_then_sends_it() -> None:
    work = jobs((0.0, N), (0.4, N))
    out = run_policy("logosq", cloud(device("a", per_job=5)), work)
    assert out.jobs_sent == 1
    assert out.start == [1.0, 1.0]  # simulation_config's batch window is one second


def test_ours_takes_a_device_that_is_down_out_of_rotation_and_probes_it_back() -> None:
    # "a" is faster, so routing prefers it, but it is down for the first minute: the first
    # job sent there fails as unavailable, its breaker opens at once and the work goes to
    # "b"; the probe five minutes later (simulation_config's cool-down) finds "a" up, and
    # later arrivals run there again.
    down = device("a", per_job=1, fixed=0.5, outage=(0.0, 60.0))
    early = [(float(t), N) for t in range(10)]
    late = [(400.0 + t, N) for t in range(5)]
    out = run_policy("logosq", cloud(down, device("b", per_job=1)), jobs(*early, *late))
    assert all(out.completed)
    assert out.retries == 1
    assert out.device[:10] == [1] * 10
    assert out.device[10:] == [0] * 5


def test_a_job_no_device_can_run_fails_in_every_policy() -> None:
    work = Workload((Job(0.0, "u", N, 2, 1, 100), Job(0.1, "u", N, 99, 1, 100)), "")
    for policy in POLICIES:
        out = run_policy(policy, cloud(device("a")), work)
        assert out.completed == [True, False], policy
        assert out.finish[1] == 0.1, policy


# -- whole runs ---------------------------------------------------------------------------------


def test_every_job_ends_exactly_once_in_every_policy() -> None:
    sim_cloud = make_cloud(30, outage_share=0.3, horizon=600.0, seed=3)
    work = workload_for(sim_cloud, tasks=3_000, load=1.5, seed=3)
    report = simulate(workload=work, cloud=sim_cloud, seed=3, policies=POLICIES)
    assert [p.policy for p in report.policies] == list(POLICIES)
    for policy in POLICIES:
        out = run_policy(policy, sim_cloud, work, seed=3)
        for k, j in enumerate(work.jobs):
            assert not math.isnan(out.finish[k]), (policy, k)
            assert out.finish[k] >= j.arrival
            if out.completed[k]:
                assert j.arrival <= out.start[k] <= out.finish[k]
                assert out.device[k] >= 0
        p = report.get(policy)
        assert p.completed + p.failed == len(work)
        assert p.completed == sum(out.completed)
        assert 0.0 < p.utilisation <= 1.0
        assert 0.0 < p.fairness <= 1.0


def test_the_same_seed_gives_the_same_report() -> None:
    def figures() -> dict[str, Any]:
        data = simulate(tasks=1_500, backends=15, load=2.0, seed=7).as_dict()
        for p in data["policies"]:
            del p["wall_seconds"], p["tasks_per_second"]
        return data

    assert figures() == figures()


def test_under_heavy_load_ours_finishes_jobs_sooner_than_both_baselines() -> None:
    report = simulate(tasks=5_000, backends=40, load=2.0, seed=1)
    ours = report.get("logosq")
    for base in ("fcfs", "least-busy"):
        assert ours.jct_mean < report.get(base).jct_mean
        assert report.improvements(base)["jct_mean"] < 0
    table = report.table()
    assert "| job completion time mean |" in table
    assert "logosq against fcfs: job completion time -" in table


def test_the_route_index_picks_what_decide_route_picks() -> None:
    # At every arrival of a run with failures and outages, the index's choice equals
    # decide_route's over views of every device.
    sim_cloud = make_cloud(25, outage_share=0.5, horizon=300.0, seed=11)
    work = workload_for(sim_cloud, tasks=1_500, load=2.0, seed=11)
    engine = _Ours(sim_cloud, work, 11, simulation_config())
    names = [d.name for d in sim_cloud.devices]
    checked = 0
    submit = engine.submit

    def checking_submit(k: int, now: float) -> None:
        nonlocal checked
        j = work.jobs[k]
        task = Task.quantum("probe").with_circuit(_Shape(j.qubits)).with_shots(j.shots).build()
        req = CircuitRequirements(j.qubits, requires_all_to_all=j.all_to_all)
        views = [engine.index.view(i, now) for i in range(len(engine.states))]
        try:
            expected = names.index(decide_route(task, req, (), views).backend)
        except NoRouteError:
            with pytest.raises(NoRouteError):
                engine.index.best(req, j.shots, now)
        else:
            assert engine.index.best(req, j.shots, now) == expected
            checked += 1
        submit(k, now)

    _drive(engine.events, work.jobs, checking_submit, engine.on_event)
    assert checked > 1_000
    assert engine.out.retries > 0  # failures and outages were part of it
    assert sum(engine.out.completed) + engine.out.completed.count(False) == len(work)


# -- inputs ---------------------------------------------------------------------------------------


def test_a_trace_round_trips(tmp_path: Path) -> None:
    work = generate_workload(200, rate=5.0, users=4, seed=2)
    path = tmp_path / "w.csv"
    write_trace(work, path)
    assert read_trace(path).jobs == work.jobs


def test_a_minimal_trace_gets_defaults(tmp_path: Path) -> None:
    path = tmp_path / "w.csv"
    path.write_text("arrival,qubits,shots\n2.5,3,100\n1.0,5,200\n")
    got = read_trace(path).jobs
    assert got == (
        Job(1.0, "user0", N, 5, 5, 200),
        Job(2.5, "user0", N, 3, 3, 100),
    )


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("arrival,qubits\n1,2\n", "the header lacks shots"),
        (
            "arrival,qubits,shots,priority\n1,2,100,URGENT\n",
            "line 2, field 'priority': one of CRITICAL, HIGH, NORMAL, LOW, IDLE, got 'URGENT'",
        ),
        ("arrival,qubits,shots\n1,two,100\n", "line 2, field 'qubits': an integer, got 'two'"),
        ("arrival,qubits,shots\nsoon,2,100\n", "line 2, field 'arrival': a number, got 'soon'"),
        ("arrival,qubits,shots\n1,2\n", "line 2, field 'shots': an integer, got None"),
        ("arrival,qubits,shots\n1,2,100\n1,2,-5\n", "line 3: qubits and shots must be positive"),
        ("arrival,qubits,shots\n", "holds no jobs"),
    ],
)
def test_a_bad_trace_is_refused_naming_the_line(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(InvalidConfigError, match=fragment):
        read_trace(path)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"policies": ["fifo"]}, "unknown \\['fifo'\\]"),
        ({"policies": []}, "choose from"),
        ({"load": 0}, "load"),
        ({"tasks": 0}, "tasks"),
        ({"backends": -1}, "backends"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidConfigError, match=fragment):
        simulate(**{"tasks": 10, "backends": 2, **kwargs})


# -- the command ----------------------------------------------------------------------------------


def test_the_command_prints_the_comparison_and_writes_json_and_a_trace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json, out_trace = tmp_path / "r.json", tmp_path / "w.csv"
    argv = ["simulate", "--tasks", "800", "--backends", "8", "--load", "1.5", "--seed", "4"]
    code = main([*argv, "--json", str(out_json), "--save-trace", str(out_trace)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| | fcfs | least-busy | logosq |" in printed
    data = json.loads(out_json.read_text())
    assert [p["policy"] for p in data["policies"]] == list(DEFAULT_POLICIES)
    assert sum(p["completed"] + p["failed"] for p in data["policies"]) == 3 * 800
    assert set(data["improvements_of_logosq"]) == {"fcfs", "least-busy"}
    # The saved trace replays to the same figures.
    assert (
        main(
            [
                "simulate",
                "--trace",
                str(out_trace),
                "--backends",
                "8",
                "--seed",
                "4",
                "--json",
                str(tmp_path / "again.json"),
            ]
        )
        == 0
    )
    again = json.loads((tmp_path / "again.json").read_text())
    for a, b in zip(data["policies"], again["policies"], strict=True):
        assert a["jct_mean"] == b["jct_mean"]


def test_the_command_refuses_bad_input_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["simulate", "--tasks", "10", "--policies", "fcfs,fifo"]) == 2
    assert "unknown ['fifo']" in capsys.readouterr().err
    assert main(["simulate", "--trace", str(tmp_path / "missing.csv")]) == 2
    assert "cannot read the trace" in capsys.readouterr().err
    assert main(["simulate", "--load", "-1"]) == 2
    assert "expected a positive number" in capsys.readouterr().err


@pytest.mark.observability
def test_the_plot_is_drawn(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    report = simulate(tasks=500, backends=6, seed=1)
    path = report.plot(tmp_path / "sim.png")
    assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fair_share_shields_the_other_users_from_a_flooding_one() -> None:
    """Under a saturating load where one user sends 40% of the jobs, fair share slows the
    flooding user and speeds everyone else up (equal weights)."""
    sim_cloud = make_cloud(10, seed=0)
    work = workload_for(sim_cloud, tasks=6_000, load=6.0, seed=0)
    report = simulate(workload=work, cloud=sim_cloud, policies=("logosq", "logosq-fair"))
    plain, fair = report.policies
    assert (plain.policy, fair.policy) == ("logosq", "logosq-fair")

    def others(p: Any) -> float:
        rest = [v for user, v in p.slowdown_by_user.items() if user != "user0"]
        return sum(rest) / len(rest)

    assert others(fair) < 0.95 * others(plain)
    assert fair.slowdown_by_user["user0"] > plain.slowdown_by_user["user0"]
