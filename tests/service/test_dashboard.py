"""The dashboard in a real browser against a real server: what a person would see.

A ``logosq serve`` process on loopback with an admin and two users; work is submitted over
HTTP as any client would; headless Chromium (Debian's ``chromium``, driven by Playwright) opens
``GET /``, signs in with a token, and the test reads the page as a person reads it: the rows
and the numbers in them. Every wait is Playwright's ``expect`` with a time-out, never a sleep.

Set ``LOGOSQ_DASHBOARD_SCREENSHOT=docs/dashboard.png`` to also run a busier workload and
write the README's screenshot of it.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _service_helpers import BELL_QASM2, NEEDS_SERVICE, Configure, Server, circuit, function

pytestmark = [pytest.mark.browser, *NEEDS_SERVICE]

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the browser extra (playwright) is not installed"
)
expect = sync_api.expect
# A live server on a loaded machine: give each expectation more than Playwright's 5 s.
expect.set_options(timeout=15_000)

PRIORITIES = ("CRITICAL", "HIGH", "NORMAL", "LOW", "IDLE")
# A user's row: the name, then running, waiting, completed and failed (then cancelled, timed
# out and the weight).
COUNTS = "td:nth-child(-n+5)"
# The users of the test server besides its admin, root (no person's name on the page).
USERS = {"lab-a": {"groups": ["lab"]}, "lab-b": {"groups": ["lab"]}}
BACKENDS = [
    {"kind": "mock", "name": "sim-fast", "num_qubits": 16, "seed": 7},
    {"kind": "mock", "name": "sim-wide", "num_qubits": 32, "seed": 8},
]


def _chromium() -> str | None:
    """The system's Chromium: Playwright cannot download its own browsers here."""
    for candidate in (
        os.environ.get("LOGOSQ_CHROMIUM"),
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
        "/usr/bin/chromium",
    ):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


class Work:
    """Tasks that run until the test lets them finish, submitted as a client would."""

    def __init__(self, server: Server, gates: Path) -> None:
        self.server = server
        self.gates = gates
        # The gate file of each held task, by its key (a key may hold any character).
        self.held: dict[str, Path] = {}

    def call(self, method: str, path: str, user: str, body: Any = None) -> Any:
        with self.server.client(user) as client:
            response = client.request(method, path, json=body)
        response.raise_for_status()
        return response.json()

    def hold(self, user: str, key: str, priority: str, name: str = "hold") -> dict[str, Any]:
        """Submit, as ``user``, a task that runs until :meth:`open` lets it finish."""
        gate = self.gates / f"gate-{len(self.held)}"
        body = function("wait_for_file", str(gate))
        body.update(key=key, name=name, priority=priority)
        task: dict[str, Any] = self.call("POST", "/v1/tasks", user, body)
        self.held[key] = gate
        return task

    def open(self, key: str) -> None:
        self.held[key].touch()

    def open_all(self) -> None:
        for gate in self.held.values():
            gate.touch()

    def wait_status(self, user: str, task_id: int, status: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            task = self.call("GET", f"/v1/tasks/{task_id}", user)
            if task["status"] == status:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"task {task_id} is {task['status']}, not {status}")
            time.sleep(0.02)


@pytest.fixture
def server(make_server: Configure) -> Server:
    return make_server(users=USERS, backends=BACKENDS)


@pytest.fixture
def work(server: Server, tmp_path: Path) -> Iterator[Work]:
    gates = tmp_path / "gates"
    gates.mkdir()
    held = Work(server, gates)
    try:
        yield held
    finally:
        held.open_all()  # no worker is left waiting on a gate


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = _chromium()
    if executable is None:
        pytest.skip(
            "no Chromium executable: install Debian's chromium package (apt-get install "
            "chromium) or set LOGOSQ_CHROMIUM to one"
        )
    with sync_api.sync_playwright() as playwright:
        # --no-sandbox: the tests run as root in CI, where Chromium's sandbox refuses to start.
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    # A fresh context a test: its own sessionStorage, so no token carries over.
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    context.set_default_timeout(15_000)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    # A refusal by the page's Content-Security-Policy is a bug of the page, not of the test.
    opened.on(
        "console",
        lambda message: errors.append(message.text) if "Refused to" in message.text else None,
    )
    try:
        yield opened
    finally:
        context.close()
    assert not errors, f"the page raised: {errors}"


def _held_work(work: Work) -> None:
    """Two users' work on a server with two workers: one task each runs, four wait.

    The running ones are submitted (and seen running) first, so the others must wait.
    """
    first = [work.hold("lab-a", "a-run", "high"), work.hold("lab-b", "b-run", "normal")]
    for user, task in zip(("lab-a", "lab-b"), first, strict=True):
        work.wait_status(user, task["id"], "running")
    work.hold("lab-a", "a-wait-normal", "normal")
    work.hold("lab-a", "a-wait-low", "low")
    work.hold("lab-b", "b-wait-high", "high")
    work.hold("lab-b", "b-wait-idle", "idle")


def _sign_in(page: Any, server: Server, user: str) -> None:
    page.goto(server.url + "/")
    page.get_by_label("API token").fill(server.tokens[user])
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#connection")).to_have_text("live")


def _tile(page: Any, label: str) -> Any:
    return page.locator(".tile", has=page.get_by_text(label, exact=True)).locator(".value")


def _row(page: Any, section: str, header: str) -> Any:
    """The row of a table in ``section`` whose row header reads ``header``."""
    return page.locator(f"#{section} tbody tr").filter(
        has=page.get_by_role("rowheader", name=header, exact=True)
    )


def _task_row(page: Any, key: str) -> Any:
    return page.locator("#tasks tbody tr").filter(
        has=page.get_by_role("cell", name=key, exact=True)
    )


def _expect_queues(page: Any, counts: dict[str, int]) -> None:
    for priority in PRIORITIES:
        cells = _row(page, "queues", priority).locator("td")
        expect(cells.first).to_have_text(str(counts.get(priority, 0)))


def test_a_wrong_token_shows_why_and_nothing_else(server: Server, page: Any) -> None:
    page.goto(server.url + "/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("API token").fill("lq_not-a-token-of-this-server")
    page.get_by_role("button", name="Sign in").click()
    alert = page.locator("#login-error")
    expect(alert).to_be_visible()
    expect(alert).to_contain_text("refused this token")
    expect(alert).to_contain_text("401")
    expect(page.locator("#dashboard")).to_be_hidden()
    expect(page.locator("#connection")).to_have_text("signed out")
    # The refused token is not kept: a reload asks again.
    page.reload()
    expect(page.get_by_label("API token")).to_be_visible()
    expect(page.locator("#dashboard")).to_be_hidden()


def test_an_idle_server_says_so_and_the_tab_keeps_its_sign_in(server: Server, page: Any) -> None:
    _sign_in(page, server, "root")
    expect(page.get_by_text("No task is waiting.")).to_be_visible()
    expect(page.get_by_text("No work submitted yet.")).to_be_visible()
    expect(page.get_by_text("No tasks yet.")).to_be_visible()
    expect(page.get_by_text("No task has run in the last two minutes.")).to_be_visible()
    expect(page.locator("#backends tbody tr")).to_have_count(2)
    # A reload keeps the tab signed in; signing out forgets the token.
    page.reload()
    expect(page.locator("#connection")).to_have_text("live")
    expect(page.locator("#whoami")).to_have_text("root · admin")
    page.get_by_role("button", name="Sign out").click()
    expect(page.locator("#connection")).to_have_text("signed out")
    expect(page.get_by_label("API token")).to_be_visible()
    expect(page.locator("#dashboard")).to_be_hidden()
    assert page.evaluate("() => sessionStorage.length") == 0
    page.reload()
    expect(page.get_by_label("API token")).to_be_visible()


def test_a_user_sees_their_own_work_only(server: Server, work: Work, page: Any) -> None:
    _held_work(work)
    _sign_in(page, server, "lab-b")
    expect(page.locator("#whoami")).to_have_text("lab-b")
    expect(page.get_by_role("heading", name="Your work")).to_be_visible()
    expect(page.locator("#users tbody tr")).to_have_count(1)
    expect(_row(page, "users", "lab-b").locator(COUNTS)).to_have_text(["1", "2", "0", "0"])
    expect(_task_row(page, "b-run")).to_contain_text("running")
    expect(_task_row(page, "b-wait-idle")).to_contain_text("queued")
    expect(page.locator("#tasks tbody tr")).to_have_count(3)
    expect(_task_row(page, "a-run")).to_have_count(0)
    # A cancelled task counts as cancelled, in the user's row and in the totals alike.
    waiting = work.call("GET", "/v1/tasks/key/b-wait-idle", "lab-b")
    work.call("POST", f"/v1/tasks/{waiting['id']}/cancel", "lab-b")
    expect(_task_row(page, "b-wait-idle")).to_contain_text("cancelled")
    cells = _row(page, "users", "lab-b").locator("td")
    expect(cells).to_have_text(["1", "1", "0", "0", "1", "0", re.compile(r"^[\d.]+$")])
    for label, count in (("Cancelled", "1"), ("Failed", "0"), ("Timed out", "0")):
        expect(_tile(page, label)).to_have_text(count)


def test_the_admin_sees_every_queue_user_backend_and_task_live(
    server: Server, work: Work, page: Any
) -> None:
    _held_work(work)
    _sign_in(page, server, "root")
    expect(page.locator("#whoami")).to_have_text("root · admin")

    # Totals and the queues by priority: exactly the four tasks that wait.
    expect(_tile(page, "Running")).to_have_text("2")
    expect(_tile(page, "Waiting")).to_have_text("4")
    expect(_tile(page, "Completed")).to_have_text("0")
    expect(_tile(page, "Throughput")).to_have_text(re.compile(r"^\d+(\.\d)? tasks/s$"))
    _expect_queues(page, {"HIGH": 1, "NORMAL": 1, "LOW": 1, "IDLE": 1})
    expect(page.get_by_text("No task is waiting.")).to_be_hidden()

    # Each user's running and waiting work.
    expect(page.get_by_role("heading", name="Users")).to_be_visible()
    expect(_row(page, "users", "lab-a").locator(COUNTS)).to_have_text(["1", "2", "0", "0"])
    expect(_row(page, "users", "lab-b").locator(COUNTS)).to_have_text(["1", "2", "0", "0"])
    # The fair-share weight is the server's (the group's weight split among its members).
    weights = {u["user"]: u["weight"] for u in work.call("GET", "/v1/stats", "root")["users"]}
    expect(_row(page, "users", "lab-a").locator("td").nth(6)).to_have_text(f"{weights['lab-a']:g}")

    # The backends, each with its state.
    for name in ("sim-fast", "sim-wide"):
        cells = _row(page, "backends", name).locator("td")
        expect(cells.nth(0)).to_have_text(re.compile("mock", re.IGNORECASE))
        expect(cells.nth(2)).to_have_text(re.compile(r"^0 / \d+$"))
        expect(cells.nth(4)).to_have_text("closed")
        expect(cells.nth(5)).to_have_text("yes")

    # The recent tasks, by key.
    expect(page.locator("#tasks tbody tr")).to_have_count(6)
    for key, user, priority in (("a-run", "lab-a", "HIGH"), ("b-wait-idle", "lab-b", "IDLE")):
        row = _task_row(page, key)
        expect(row).to_contain_text(user)
        expect(row).to_contain_text(priority)
    expect(_task_row(page, "a-run")).to_contain_text("running")
    expect(_task_row(page, "a-wait-low")).to_contain_text("queued")

    # A task ends: the page follows without a reload.
    work.open("a-run")
    expect(_task_row(page, "a-run")).to_contain_text("completed")
    expect(_tile(page, "Completed")).to_have_text("1")
    expect(_tile(page, "Waiting")).to_have_text("3")
    expect(_row(page, "users", "lab-a").locator("td").nth(2)).to_have_text("1")
    expect(page.locator("#timeline-svg rect.run.completed")).to_have_count(1)

    # Everything ends: the queues are empty and say so.
    work.open_all()
    expect(_tile(page, "Completed")).to_have_text("6")
    expect(_tile(page, "Running")).to_have_text("0")
    _expect_queues(page, {})
    expect(page.get_by_text("No task is waiting.")).to_be_visible()
    expect(page.locator("#timeline-svg rect.run.completed")).to_have_count(6)


def test_the_page_says_when_it_lost_the_server_and_catches_up_after_a_restart(
    server: Server, work: Work, page: Any
) -> None:
    task = work.hold("lab-a", "interrupted", "normal")
    work.wait_status("lab-a", task["id"], "running")
    _sign_in(page, server, "lab-a")
    expect(_task_row(page, "interrupted")).to_contain_text("running")

    server.kill()  # SIGKILL: no goodbye on the event stream
    expect(page.locator("#connection")).to_have_text("reconnecting…")

    server.start()  # the same port and journal
    expect(page.locator("#connection")).to_have_text("live")
    # The journal failed the run the kill interrupted; the page shows it without a reload.
    expect(_task_row(page, "interrupted")).to_contain_text("failed")
    expect(_tile(page, "Running")).to_have_text("0")
    expect(page.locator("#timeline-svg rect.run.failed")).to_have_count(1)


def test_text_from_users_is_shown_as_text(server: Server, work: Work, page: Any) -> None:
    name = '<img src="x" onerror="document.title = 0">'
    work.hold("lab-a", "<b>key</b>", "low", name=name)
    _sign_in(page, server, "root")
    row = _task_row(page, "<b>key</b>")
    expect(row).to_contain_text(name)
    expect(page.locator("#tasks img, #tasks b")).to_have_count(0)
    expect(page).to_have_title("logosq scheduler")


def test_the_page_keeps_up_with_a_burst_of_work(server: Server, work: Work, page: Any) -> None:
    _sign_in(page, server, "root")
    expect(_tile(page, "Completed")).to_have_text("0")
    for batch in range(10):
        tasks = [circuit(key=f"burst-{batch}-{i}", shots=100) for i in range(200)]
        work.call("POST", "/v1/tasks/batch", "lab-a", {"tasks": tasks})
    expect(_tile(page, "Completed")).to_have_text("2000", timeout=60_000)
    expect(_row(page, "users", "lab-a").locator(COUNTS)).to_have_text(["0", "0", "2000", "0"])
    expect(page.locator("#tasks tbody tr")).to_have_count(50)
    expect(_task_row(page, "burst-9-199")).to_contain_text("completed")
    expect(page.locator("#connection")).to_have_text("live")


@pytest.mark.skipif(
    not os.environ.get("LOGOSQ_DASHBOARD_SCREENSHOT"),
    reason="writes the README's screenshot: set LOGOSQ_DASHBOARD_SCREENSHOT=docs/dashboard.png",
)
def test_screenshot_of_a_busy_run(make_server: Configure, tmp_path: Path, page: Any) -> None:
    """Two users submit circuits at every priority for half a minute, faster than the two
    backends run them, while the page watches; the screenshot is what it shows at the end,
    once the admin's CRITICAL task waits (a real run: nothing on it is made up)."""
    target = Path(os.environ["LOGOSQ_DASHBOARD_SCREENSHOT"]).resolve()
    backends = [
        {**BACKENDS[0], "latency": 0.3},
        {**BACKENDS[1], "latency": 0.6},
    ]
    server = make_server(users=USERS, backends=backends)
    gates = tmp_path / "gates"
    gates.mkdir()
    work = Work(server, gates)
    try:
        work.hold("lab-a", "calibrate", "high", name="calibrate")
        work.hold("lab-b", "sweep", "normal", name="sweep")
        _sign_in(page, server, "root")
        # The users' ceiling is HIGH; only the admin's work below is CRITICAL.
        priorities = ("high", "normal", "normal", "low", "idle")
        for burst in range(30):
            for user in ("lab-a", "lab-b"):
                tasks = [
                    circuit(
                        BELL_QASM2,
                        name=f"bell-{burst}-{i}",
                        key=f"bell-{burst}-{i}",
                        priority=priorities[(burst + i) % len(priorities)],
                        shots=1000,
                        backend="sim-fast" if (burst + i) % 3 else "sim-wide",
                    )
                    for i in range(6 if user == "lab-a" else 4)
                ]
                work.call("POST", "/v1/tasks/batch", user, {"tasks": tasks})
            page.wait_for_timeout(1000)  # the workload's pace, not a wait for the page
        # Classical work that waits for the two busy workers, at every priority.
        for user, key, priority in (
            ("lab-a", "fit-1", "high"),
            ("lab-a", "fit-2", "normal"),
            ("lab-a", "report", "low"),
            ("lab-b", "sweep-2", "normal"),
            ("lab-b", "sweep-3", "normal"),
            ("lab-b", "archive", "idle"),
            ("root", "nightly-check", "critical"),
        ):
            work.hold(user, key, priority, name=key)
        _expect_queues(page, {"CRITICAL": 1, "HIGH": 1, "NORMAL": 3, "LOW": 1, "IDLE": 1})
        target.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(target), full_page=True)
    finally:
        work.open_all()


def test_the_page_is_served_with_a_policy_that_keeps_it_to_its_server(server: Server) -> None:
    with server.client(None) as client:
        page = client.get("/")
        script = client.get("/static/dashboard.js")
        missing = client.get("/static/nothing.js")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "connect-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert script.headers["content-type"].startswith("text/javascript")
    assert script.headers["x-content-type-options"] == "nosniff"
    assert missing.status_code == 404
