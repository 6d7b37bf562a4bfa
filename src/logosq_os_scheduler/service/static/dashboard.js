// The logosq dashboard: a plain ES module, no framework and no build step.
//
// Everything it shows comes from the server's public JSON API, the one the Python client uses:
// GET /v1/me (who the token belongs to), /v1/stats, /v1/backends and /v1/tasks for the first
// picture, then the server-sent events of /v1/events (`stats` every second, `task` on each
// status change) keep it live. The token lives in sessionStorage (this tab only) and goes out
// as `Authorization: Bearer` on fetch and as `?token=` on the EventSource, which cannot set
// headers. Text from the server (task names, keys, user names) is only ever set as
// textContent, never parsed as HTML.

const PRIORITIES = ["critical", "high", "normal", "low", "idle"];
const TOKEN_KEY = "logosq.dashboard.token";
const MAX_TASK_ROWS = 50;
const MAX_KEPT_TASKS = 2000;
const RENDER_DELAY_MS = 100;
const TIMELINE_SECONDS = 120;
const SPARKLINE_SECONDS = 300;
const RECONNECT_MAX_MS = 10_000;
const SVG_NS = "http://www.w3.org/2000/svg";
const TERMINAL = new Set(["completed", "failed", "cancelled", "timed_out"]);

/** A refusal from the API, carrying its RFC 9457 problem body when it had one. */
class ApiError extends Error {
  constructor(status, problem) {
    const detail = problem && (problem.detail || problem.title);
    super(detail ? `${detail} (HTTP ${status})` : `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

const state = {
  token: null,
  me: null,
  events: null,
  everOpen: false,
  reconnectDelay: 500,
  reconnectTimer: null,
  renderPending: false,
  // Task views by id, newest first when rendered; the table shows MAX_TASK_ROWS of them.
  tasks: new Map(),
  // Backend names in the server's order, for the timeline's lanes.
  backendNames: [],
  // (time in seconds, tasks/s) from each stats update, oldest first.
  throughput: [],
  // Server clock minus this browser's clock, in seconds: task timestamps are on the server's
  // clock. From stats.now when the server sends it; estimated from event arrivals otherwise.
  clockOffset: null,
  clockFromServer: false,
};

const $ = (id) => document.getElementById(id);

function browserNow() {
  return Date.now() / 1000;
}

function serverNow() {
  return browserNow() + (state.clockOffset ?? 0);
}

// ---------------------------------------------------------------------------------------------
// The API

async function api(path) {
  let response;
  try {
    response = await fetch(path, {
      headers: { Authorization: `Bearer ${state.token}`, Accept: "application/json" },
    });
  } catch (exc) {
    throw new Error(`the server could not be reached (${exc.message})`);
  }
  if (!response.ok) {
    let problem = null;
    try {
      problem = await response.json();
    } catch {
      // A refusal without a JSON body: the status alone says it.
    }
    throw new ApiError(response.status, problem);
  }
  return response.json();
}

// ---------------------------------------------------------------------------------------------
// Small DOM helpers: every value is set as text.

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function row(cells, attrs = {}) {
  const tr = document.createElement("tr");
  for (const [name, value] of Object.entries(attrs)) tr.dataset[name] = value;
  cells.forEach((cell, i) => {
    // The first cell names the row (a row header); a node is put inside a cell as it is.
    const td = document.createElement(i === 0 ? "th" : "td");
    if (i === 0) td.scope = "row";
    if (cell instanceof Node) td.append(cell);
    else td.textContent = cell === null || cell === undefined ? "–" : String(cell);
    tr.append(td);
  });
  return tr;
}

function showEmpty(id, empty) {
  $(id).hidden = !empty;
}

function formatWeight(weight) {
  return typeof weight === "number" ? String(Number(weight.toFixed(3))) : null;
}

function formatRate(perSecond) {
  if (!Number.isFinite(perSecond)) return "–";
  return `${perSecond >= 100 ? perSecond.toFixed(0) : perSecond.toFixed(1)} tasks/s`;
}

// ---------------------------------------------------------------------------------------------
// Rendering

function renderStats(stats) {
  if (typeof stats.now === "number") {
    state.clockOffset = stats.now - browserNow();
    state.clockFromServer = true;
  }
  // Waiting tasks by priority name ({"critical": 0, "high": 2, ...}), in PRIORITIES' order.
  const byName = stats.queued_by_priority ?? {};
  const queued = PRIORITIES.map((priority) => byName[priority] ?? 0);
  const totalQueued = queued.reduce((a, b) => a + b, 0);
  $("total-running").textContent = stats.running;
  $("total-queued").textContent = totalQueued;
  $("total-completed").textContent = stats.completed;
  $("total-failed").textContent = stats.failed;
  $("total-cancelled").textContent = stats.cancelled ?? "–";
  $("total-timed-out").textContent = stats.timed_out ?? "–";
  $("throughput").textContent = formatRate(stats.throughput_per_s);

  const most = Math.max(1, ...queued);
  $("queues-body").replaceChildren(
    ...PRIORITIES.map((priority, i) => {
      const bar = el("div", null, `bar priority-${priority}`);
      bar.style.width = `${(100 * queued[i]) / most}%`;
      return row([priority.toUpperCase(), queued[i], bar], { priority });
    }),
  );
  showEmpty("queues-empty", totalQueued === 0);

  const users = stats.users ?? [];
  $("users-body").replaceChildren(
    ...users.map((u) =>
      row(
        [
          u.user,
          u.running,
          u.queued,
          u.completed,
          u.failed,
          u.cancelled,
          u.timed_out,
          formatWeight(u.weight),
        ],
        { user: u.user },
      ),
    ),
  );
  showEmpty("users-empty", users.length === 0);

  if (Array.isArray(stats.backends)) renderBackends(stats.backends);

  const now = browserNow();
  state.throughput.push([now, stats.throughput_per_s]);
  while (state.throughput.length && state.throughput[0][0] < now - SPARKLINE_SECONDS) {
    state.throughput.shift();
  }
  renderSparkline();
}

function renderBackends(backends) {
  state.backendNames = backends.map((b) => b.name);
  $("backends-body").replaceChildren(
    ...backends.map((b) => {
      const breaker = el("span", b.breaker.replace("_", "-"), `breaker breaker-${b.breaker}`);
      const rotation = el("span", b.in_rotation ? "yes" : "no", b.in_rotation ? "yes" : "no");
      return row(
        [b.name, b.kind, b.num_qubits, `${b.busy} / ${b.capacity}`, b.queued, breaker, rotation],
        { backend: b.name, breaker: b.breaker },
      );
    }),
  );
  showEmpty("backends-empty", backends.length === 0);
}

function renderTasks() {
  const newest = [...state.tasks.values()].sort((a, b) => b.id - a.id).slice(0, MAX_TASK_ROWS);
  $("tasks-body").replaceChildren(
    ...newest.map((t) =>
      row(
        [
          t.id,
          t.key,
          t.user,
          t.name,
          t.priority.toUpperCase(),
          el("span", t.status.replace("_", " "), `status status-${t.status}`),
          t.backend,
        ],
        { taskId: String(t.id), status: t.status },
      ),
    ),
  );
  showEmpty("tasks-empty", newest.length === 0);
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

// Quantum work runs on a backend; classical work (no backend) on the server's workers.
const CLASSICAL_LANE = "classical workers";

function laneOf(task) {
  return task.backend ?? CLASSICAL_LANE;
}

function renderTimeline() {
  const root = $("timeline-svg");
  const width = Math.max(320, root.clientWidth || 800);
  const laneHeight = 22;
  const labelWidth = 120;
  const now = serverNow();
  const from = now - TIMELINE_SECONDS;
  const lanes = [...state.backendNames];
  const runs = [];
  for (const t of state.tasks.values()) {
    if (t.started_at == null) continue;
    const end = t.finished_at ?? (TERMINAL.has(t.status) ? t.started_at : now);
    if (end < from) continue;
    const lane = laneOf(t);
    if (!lanes.includes(lane)) lanes.push(lane);
    runs.push([t, lane, Math.max(t.started_at, from), Math.min(end, now)]);
  }
  const height = Math.max(1, lanes.length) * laneHeight + 20;
  root.setAttribute("viewBox", `0 0 ${width} ${height}`);
  root.setAttribute("height", height);
  const x = (time) => labelWidth + ((time - from) / TIMELINE_SECONDS) * (width - labelWidth - 8);
  const children = [];
  lanes.forEach((name, i) => {
    children.push(
      svg("rect", { x: 0, y: i * laneHeight, width, height: laneHeight - 2, class: "lane" }),
    );
    children.push(svg("text", { x: 4, y: i * laneHeight + 15, class: "lane-label" }, name));
  });
  for (const [t, lane, start, end] of runs) {
    // Failed and timed-out runs alike; a cancelled one is muted (nothing went wrong).
    const status = !TERMINAL.has(t.status)
      ? "running"
      : t.status === "completed" || t.status === "cancelled"
        ? t.status
        : "failed";
    const run = svg("rect", {
      x: x(start),
      y: lanes.indexOf(lane) * laneHeight + 3,
      width: Math.max(2, x(end) - x(start)),
      height: laneHeight - 8,
      class: `run ${status}`,
    });
    run.append(svg("title", {}, `#${t.id} ${t.key ?? t.name} (${t.user}): ${t.status}`));
    children.push(run);
  }
  const axisY = lanes.length * laneHeight + 14;
  for (const [offset, label] of [
    [TIMELINE_SECONDS, "−2 min"],
    [60, "−1 min"],
    [0, "now"],
  ]) {
    const anchor = offset === 0 ? "end" : offset === TIMELINE_SECONDS ? "start" : "middle";
    children.push(
      svg("text", { x: x(now - offset), y: axisY, class: "axis", "text-anchor": anchor }, label),
    );
  }
  if (lanes.length === 0) {
    children.push(svg("text", { x: labelWidth, y: 15, class: "axis" }, "No backends to show."));
  } else if (runs.length === 0) {
    children.push(
      svg(
        "text",
        { x: labelWidth + 8, y: 15, class: "axis" },
        "No task has run in the last two minutes.",
      ),
    );
  }
  root.replaceChildren(...children);
}

function renderSparkline() {
  const root = $("sparkline");
  const width = Math.max(320, root.clientWidth || 800);
  const height = 60;
  root.setAttribute("viewBox", `0 0 ${width} ${height}`);
  root.setAttribute("height", height);
  const now = browserNow();
  const samples = state.throughput;
  // The window grows from one minute to five as the page watches: no history is kept on the
  // server, and an empty four minutes would squeeze the line into a corner.
  const since = samples.length ? now - samples[0][0] : 0;
  const span = Math.min(SPARKLINE_SECONDS, Math.max(60, Math.ceil(since / 60) * 60));
  const top = Math.max(1, ...samples.map(([, v]) => v));
  const x = (t) => ((t - (now - span)) / span) * width;
  const y = (v) => height - 4 - (v / top) * (height - 20);
  const label = `throughput, last ${span / 60} min (peak ${formatRate(top)})`;
  const children = [svg("text", { x: 4, y: 12, class: "axis" }, label)];
  if (samples.length >= 2) {
    const points = samples.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    const first = x(samples[0][0]).toFixed(1);
    const last = x(samples[samples.length - 1][0]).toFixed(1);
    children.push(
      svg("polygon", {
        points: `${first},${height} ${points} ${last},${height}`,
        class: "spark-area",
      }),
    );
    children.push(svg("polyline", { points, class: "spark-line" }));
  }
  root.replaceChildren(...children);
}

function noteTask(task) {
  // Without the server's clock, a status change seen live dates the server's "now": keep the
  // largest (timestamp - arrival) seen, which never runs ahead of the server.
  if (!state.clockFromServer) {
    const stamp = task.finished_at ?? task.started_at ?? task.submitted_at;
    if (typeof stamp === "number") {
      const offset = stamp - browserNow();
      if (state.clockOffset === null || offset > state.clockOffset) state.clockOffset = offset;
    }
  }
  state.tasks.set(task.id, task);
}

// Forget what neither the table nor the timeline shows any more, and past MAX_KEPT_TASKS the
// oldest too: a busy server sends thousands of task events a second.
function pruneTasks() {
  if (state.tasks.size <= MAX_KEPT_TASKS) return;
  const horizon = serverNow() - TIMELINE_SECONDS;
  const ids = [...state.tasks.keys()].sort((a, b) => b - a);
  ids.slice(MAX_KEPT_TASKS).forEach((id) => state.tasks.delete(id));
  for (const id of ids.slice(MAX_TASK_ROWS, MAX_KEPT_TASKS)) {
    const t = state.tasks.get(id);
    if (TERMINAL.has(t.status) && (t.finished_at ?? 0) < horizon) state.tasks.delete(id);
  }
}

// Task events are drawn together, at most every RENDER_DELAY_MS, not one redraw each.
function scheduleRender() {
  if (state.renderPending) return;
  state.renderPending = true;
  setTimeout(() => {
    state.renderPending = false;
    if (!state.token) return;
    pruneTasks();
    renderTasks();
    renderTimeline();
  }, RENDER_DELAY_MS);
}

// ---------------------------------------------------------------------------------------------
// Connection

function setConnection(kind, text) {
  const badge = $("connection");
  badge.dataset.state = kind;
  badge.textContent = text ?? kind;
}

function showError(message) {
  const box = $("error");
  box.textContent = message ?? "";
  box.hidden = !message;
}

async function loadSnapshot() {
  const [stats, backends, listing] = await Promise.all([
    api("/v1/stats"),
    api("/v1/backends"),
    api(`/v1/tasks?limit=${MAX_TASK_ROWS}`),
  ]);
  renderBackends(backends);
  renderStats(stats);
  for (const task of listing.tasks) noteTask(task);
  renderTasks();
  renderTimeline();
}

function connect() {
  clearTimeout(state.reconnectTimer);
  if (state.events) state.events.close();
  const events = new EventSource(`/v1/events?token=${encodeURIComponent(state.token)}`);
  state.events = events;
  events.onopen = () => {
    if (state.events !== events) return;
    setConnection("live");
    showError(null);
    state.reconnectDelay = 500;
    // After a break, events were missed: take a fresh picture.
    if (state.everOpen) loadSnapshot().catch((exc) => showError(`Refresh failed: ${exc.message}`));
    state.everOpen = true;
  };
  events.addEventListener("stats", (event) => renderStats(JSON.parse(event.data)));
  events.addEventListener("task", (event) => {
    noteTask(JSON.parse(event.data));
    scheduleRender();
  });
  events.onerror = () => {
    setConnection("reconnecting", "reconnecting…");
    if (events.readyState !== EventSource.CLOSED) return; // the browser retries by itself
    // The browser gave up (the server refused the stream or is gone): ask why, then retry.
    events.close();
    api("/v1/me").then(
      () => scheduleReconnect(),
      (exc) => {
        if (exc instanceof ApiError && exc.status === 401) {
          signOut(`The server no longer accepts this token: ${exc.message}`);
        } else {
          scheduleReconnect();
        }
      },
    );
  };
}

function scheduleReconnect() {
  if (!state.token) return;
  state.reconnectTimer = setTimeout(connect, state.reconnectDelay);
  state.reconnectDelay = Math.min(RECONNECT_MAX_MS, state.reconnectDelay * 2);
}

// ---------------------------------------------------------------------------------------------
// Signing in and out

async function signIn(token) {
  state.token = token;
  setConnection("connecting", "connecting…");
  let me;
  try {
    me = await api("/v1/me");
  } catch (exc) {
    state.token = null;
    setConnection("signed-out", "signed out");
    const refused = exc instanceof ApiError && exc.status === 401;
    // A refused token is forgotten; one the server could not be asked about is kept, so a
    // reload once the server is back signs the tab in again.
    if (refused) sessionStorage.removeItem(TOKEN_KEY);
    const why = refused
      ? `The server refused this token: ${exc.message}`
      : `Could not sign in: ${exc.message}`;
    $("login-error").textContent = why;
    $("login-error").hidden = false;
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  state.me = me;
  $("login-error").hidden = true;
  $("login").hidden = true;
  $("dashboard").hidden = false;
  $("sign-out").hidden = false;
  $("whoami").hidden = false;
  $("whoami").textContent = me.admin ? `${me.user} · admin` : me.user;
  $("users-title").textContent = me.admin ? "Users" : "Your work";
  try {
    await loadSnapshot();
  } catch (exc) {
    showError(`Could not load the dashboard: ${exc.message}`);
  }
  if (state.token !== token) return; // signed out while the first picture loaded
  connect();
}

function signOut(message) {
  clearTimeout(state.reconnectTimer);
  if (state.events) state.events.close();
  Object.assign(state, { token: null, me: null, events: null, everOpen: false });
  state.tasks.clear();
  state.throughput = [];
  sessionStorage.removeItem(TOKEN_KEY);
  setConnection("signed-out", "signed out");
  $("dashboard").hidden = true;
  $("sign-out").hidden = true;
  $("whoami").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message ?? "";
  $("login-error").hidden = !message;
  $("token").value = "";
}

function start() {
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token").value.trim();
    if (token) signIn(token);
  });
  $("sign-out").addEventListener("click", () => signOut());
  // The timeline scrolls with time even when nothing happens.
  setInterval(() => {
    if (state.token) renderTimeline();
  }, 1000);
  window.addEventListener("resize", () => {
    if (state.token) {
      renderTimeline();
      renderSparkline();
    }
  });
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) signIn(saved);
}

start();
