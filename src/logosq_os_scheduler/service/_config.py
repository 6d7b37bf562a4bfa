"""The server's settings: one TOML file read into frozen dataclasses.

Every value is checked here, once, when the file is read; a bad one raises
:class:`InvalidConfigError` naming its key as written in the file (``users.user_a.quotas``),
the value and what would be accepted. Nothing later re-checks the settings.

::

    [server]            where and how to serve (ServerSettings)
    [[backends]]        what the scheduler runs circuits on (BackendSettings)
    [functions]         the only classical work the server runs, by name (FunctionSettings)
    [groups.NAME]       weights and quotas shared by the members (GroupSettings)
    [users.NAME]        token hash, groups, ceiling, quotas (UserSettings)
"""

from __future__ import annotations

import dataclasses
import importlib
import re
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from .._errors import InvalidConfigError
from .._task import TaskPriority

__all__ = [
    "BackendSettings",
    "FunctionSettings",
    "GroupSettings",
    "Quotas",
    "ServiceConfig",
    "ServerSettings",
    "UserSettings",
    "load_config",
    "parse_config",
]

# User and group names appear in task keys and URLs: plain words only.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_FUNCTION_REF = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_PRIORITIES = {p.name.lower(): p for p in TaskPriority}
_BACKEND_KINDS = ("mock", "aer", "fake")


@dataclasses.dataclass(frozen=True, slots=True)
class Quotas:
    """Limits on one user's (or one group's) work; None is no limit.

    Attributes:
        max_running: Tasks running at once (enforced by fair share in the scheduler core).
        max_active: Tasks queued or running at once; a submit past it gets a 429.
        shots_per_day: Circuit shots accepted in any 24 hours; past it, a 429 whose
            Retry-After says when enough of the window has freed.
    """

    max_running: int | None = None
    max_active: int | None = None
    shots_per_day: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class GroupSettings:
    """A group of users: a fair-share weight (shared by its members) and quotas on all of
    their work together."""

    name: str
    weight: float = 1.0
    quotas: Quotas = Quotas()


@dataclasses.dataclass(frozen=True, slots=True)
class UserSettings:
    """One user of the server.

    Attributes:
        name: The user's name (tasks are tagged with it).
        token_sha256: SHA-256 hex of the user's API token (``logosq token`` makes both).
        groups: The groups the user belongs to.
        weight: The user's fair-share weight.
        admin: Whether the user sees every user's tasks, may submit CRITICAL and reads metrics.
        priority_ceiling: The most urgent priority the user may submit.
        quotas: The user's own limits.
    """

    name: str
    token_sha256: str
    groups: tuple[str, ...] = ()
    weight: float = 1.0
    admin: bool = False
    priority_ceiling: TaskPriority = TaskPriority.HIGH
    quotas: Quotas = Quotas()


@dataclasses.dataclass(frozen=True, slots=True)
class BackendSettings:
    """A backend the scheduler registers at start.

    Attributes:
        kind: ``mock`` (the package's MockBackend, no Qiskit needed), ``aer`` (Qiskit Aer)
            or ``fake`` (an offline IBM device model, named by ``device``).
        name: The name tasks route to (``"backend"`` in a request).
        options: The rest of the table: for ``mock``, MockBackend's keyword arguments
            (num_qubits, latency, seed, ...); for ``fake``, ``device = "FakeBrisbane"``.
    """

    kind: Literal["mock", "aer", "fake"]
    name: str
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class FunctionSettings:
    """A classical function clients may run by name.

    Attributes:
        name: The name a request gives (``"function": "square"``).
        ref: ``module:qualified.name``, imported when the server starts.
        restartable: Whether a run interrupted by a crash may run again after a restart.
    """

    name: str
    ref: str
    restartable: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class ServerSettings:
    """Where and how the server listens, and the bounds it puts on requests.

    Attributes:
        host: Address to listen on.
        port: TCP port.
        journal: The durable journal's file (the server always runs on one).
        max_body_bytes: Largest request body; a larger one gets a 413 while it is read.
        max_batch: Most tasks in one batch request.
        max_qubits: Widest circuit accepted.
        max_shots: Most shots one circuit may ask for.
        max_wait: Longest long-poll ``wait=`` in seconds.
        workers: Classical worker slots of the scheduler.
        log_format: ``"text"`` or ``"json"`` (one JSON object a line).
        shutdown_grace: Seconds a SIGTERM waits for running tasks before leaving them in
            the journal for the next start.
        durability: What an acknowledged submit survives: ``"process"`` (a crash or kill
            of the server), ``"power"`` (a power loss too) or ``"off"``
            (:class:`~logosq_os_scheduler.Durability`).
        max_queue_depth: Most tasks waiting in the scheduler at once, over all users (past
            it a submit gets a 429); None for no bound beyond the users' quotas.
    """

    host: str = "127.0.0.1"
    port: int = 8765
    journal: str | None = None
    max_body_bytes: int = 1_048_576
    max_batch: int = 1000
    max_qubits: int = 32
    max_shots: int = 1_000_000
    max_wait: float = 60.0
    workers: int = 4
    log_format: Literal["text", "json"] = "text"
    shutdown_grace: float = 0.0
    durability: Literal["off", "process", "power"] = "process"
    max_queue_depth: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class ServiceConfig:
    """Everything ``logosq serve`` reads from its config file."""

    server: ServerSettings = ServerSettings()
    backends: tuple[BackendSettings, ...] = ()
    functions: Mapping[str, FunctionSettings] = dataclasses.field(default_factory=dict)
    groups: Mapping[str, GroupSettings] = dataclasses.field(default_factory=dict)
    users: Mapping[str, UserSettings] = dataclasses.field(default_factory=dict)

    def replace(self, **server: Any) -> ServiceConfig:
        """A copy with some ``[server]`` settings changed (command-line flags), re-checked."""
        merged = {**dataclasses.asdict(self.server), **server}
        return dataclasses.replace(self, server=_server(merged))

    def resolve_functions(self) -> dict[str, Callable[..., Any]]:
        """Import every registered function.

        Raises:
            InvalidConfigError: If one cannot be imported or is not callable.
        """
        out: dict[str, Callable[..., Any]] = {}
        for name, fn in self.functions.items():
            module_name, _, qualname = fn.ref.partition(":")
            key = f"functions.{name}"
            try:
                target: Any = importlib.import_module(module_name)
                for part in qualname.split("."):
                    target = getattr(target, part)
            except (ImportError, AttributeError) as exc:
                raise InvalidConfigError(
                    key, f"cannot import {fn.ref!r} ({type(exc).__name__}: {exc})"
                ) from exc
            if not callable(target):
                raise InvalidConfigError(key, f"{fn.ref!r} is not callable")
            out[name] = target
        return out


def load_config(path: str | Path) -> ServiceConfig:
    """Read and check the TOML file at ``path``.

    Raises:
        InvalidConfigError: If it cannot be read, is not TOML, or a setting is invalid.
    """
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise InvalidConfigError("config", f"cannot read {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise InvalidConfigError("config", f"{path} is not valid TOML: {exc}") from exc
    return parse_config(data)


def parse_config(data: Mapping[str, Any]) -> ServiceConfig:
    """Check a parsed TOML document and build the config.

    Raises:
        InvalidConfigError: Naming the first invalid key.
    """
    _only(data, "", {"server", "backends", "functions", "groups", "users"})
    server = _server(_table(data, "server"))
    backends = _backends(data.get("backends", []))
    functions = _functions(_table(data, "functions"))
    groups = {
        name: _group(name, _table(raw, f"groups.{name}", whole=True))
        for name, raw in _named(data, "groups").items()
    }
    users = {
        name: _user(name, _table(raw, f"users.{name}", whole=True), groups)
        for name, raw in _named(data, "users").items()
    }
    hashes: dict[str, str] = {}
    for user in users.values():
        other = hashes.setdefault(user.token_sha256, user.name)
        if other != user.name:
            raise InvalidConfigError(
                f"users.{user.name}.token_sha256",
                f"is the same as users.{other}'s: give each user a token of their own "
                "(logosq token)",
            )
    return ServiceConfig(server, backends, functions, groups, users)


# -- sections -------------------------------------------------------------------------------------


def _server(raw: Mapping[str, Any]) -> ServerSettings:
    fields = {f.name for f in dataclasses.fields(ServerSettings)}
    _only(raw, "server", fields)
    d = ServerSettings()
    host = _str(raw, "server.host", "host", d.host)
    port = _int(raw, "server.port", "port", d.port, low=0, high=65535)
    journal = raw.get("journal")
    if journal is not None and (not isinstance(journal, str) or not journal):
        raise InvalidConfigError("server.journal", f"must be a file path, got {journal!r}")
    log_format = _str(raw, "server.log_format", "log_format", d.log_format)
    if log_format not in ("text", "json"):
        raise InvalidConfigError(
            "server.log_format", f"must be 'text' or 'json', got {log_format!r}"
        )
    return ServerSettings(
        host=host,
        port=port,
        journal=journal,
        max_body_bytes=_int(raw, "server.max_body_bytes", "max_body_bytes", d.max_body_bytes),
        max_batch=_int(raw, "server.max_batch", "max_batch", d.max_batch),
        max_qubits=_int(raw, "server.max_qubits", "max_qubits", d.max_qubits),
        max_shots=_int(raw, "server.max_shots", "max_shots", d.max_shots),
        max_wait=_float(raw, "server.max_wait", "max_wait", d.max_wait, low=0.0),
        workers=_int(raw, "server.workers", "workers", d.workers),
        log_format="json" if log_format == "json" else "text",
        shutdown_grace=_float(raw, "server.shutdown_grace", "shutdown_grace", 0.0, low=0.0),
        durability=_durability(raw.get("durability", d.durability)),
        max_queue_depth=(
            None
            if raw.get("max_queue_depth") is None
            else _int(raw, "server.max_queue_depth", "max_queue_depth", 1)
        ),
    )


def _durability(value: object) -> Literal["off", "process", "power"]:
    if value == "off":
        return "off"
    if value == "process":
        return "process"
    if value == "power":
        return "power"
    raise InvalidConfigError(
        "server.durability", f"must be 'off', 'process' or 'power', got {value!r}"
    )


def _backends(raw: object) -> tuple[BackendSettings, ...]:
    if not isinstance(raw, list):
        raise InvalidConfigError("backends", "must be an array of tables ([[backends]])")
    out: list[BackendSettings] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        key = f"backends[{i}]"
        if not isinstance(item, dict):
            raise InvalidConfigError(key, f"must be a table, got {item!r}")
        kind = item.get("kind")
        if kind not in _BACKEND_KINDS:
            raise InvalidConfigError(
                f"{key}.kind", f"must be one of {', '.join(_BACKEND_KINDS)}, got {kind!r}"
            )
        name = _str(item, f"{key}.name", "name", str(kind))
        if not name:
            raise InvalidConfigError(f"{key}.name", "must not be empty")
        if name in seen:
            raise InvalidConfigError(f"{key}.name", f"{name!r} is used by an earlier backend")
        seen.add(name)
        options = {k: v for k, v in item.items() if k not in ("kind", "name")}
        if kind == "fake" and not isinstance(options.get("device"), str):
            raise InvalidConfigError(
                f"{key}.device", "a fake backend names its device model, e.g. 'FakeBrisbane'"
            )
        if kind == "aer" and options:
            raise InvalidConfigError(
                f"{key}.{next(iter(options))}", "an aer backend takes only kind and name"
            )
        out.append(
            BackendSettings(
                "mock" if kind == "mock" else "aer" if kind == "aer" else "fake", name, options
            )
        )
    return tuple(out)


def _functions(raw: Mapping[str, Any]) -> dict[str, FunctionSettings]:
    out: dict[str, FunctionSettings] = {}
    for name, value in raw.items():
        key = f"functions.{name}"
        restartable = False
        if isinstance(value, dict):
            _only(value, key, {"ref", "restartable"})
            restartable = _bool(value, f"{key}.restartable", "restartable", False)
            value = value.get("ref")
        if not isinstance(value, str) or not _FUNCTION_REF.match(value):
            raise InvalidConfigError(
                key,
                f"must be 'module:function' (or a table with ref and restartable), got {value!r}",
            )
        out[name] = FunctionSettings(name, value, restartable)
    return out


def _group(name: str, raw: Mapping[str, Any]) -> GroupSettings:
    key = f"groups.{name}"
    _check_name(key, name)
    _only(raw, key, {"weight", "quotas"})
    return GroupSettings(
        name=name,
        weight=_float(raw, f"{key}.weight", "weight", 1.0, low=0.0, strict_low=True),
        quotas=_quotas(_table(raw, f"{key}.quotas", field="quotas"), f"{key}.quotas"),
    )


def _user(name: str, raw: Mapping[str, Any], groups: Mapping[str, GroupSettings]) -> UserSettings:
    key = f"users.{name}"
    _check_name(key, name)
    _only(raw, key, {"token_sha256", "groups", "weight", "admin", "priority_ceiling", "quotas"})
    token = raw.get("token_sha256")
    if not isinstance(token, str) or not _SHA256.match(token):
        raise InvalidConfigError(
            f"{key}.token_sha256",
            "must be the 64 lower-case hex digits of the token's SHA-256 "
            f"(logosq token prints the line), got {token!r}",
        )
    member_of = raw.get("groups", [])
    if not isinstance(member_of, list) or not all(isinstance(g, str) for g in member_of):
        raise InvalidConfigError(f"{key}.groups", f"must be a list of names, got {member_of!r}")
    for group in member_of:
        if group not in groups:
            known = ", ".join(sorted(groups)) or "none are defined"
            raise InvalidConfigError(
                f"{key}.groups", f"no group {group!r} ([groups.{group}]); known: {known}"
            )
    admin = _bool(raw, f"{key}.admin", "admin", False)
    ceiling_name = _str(raw, f"{key}.priority_ceiling", "priority_ceiling", "high")
    ceiling = _PRIORITIES.get(ceiling_name.lower())
    if ceiling is None:
        raise InvalidConfigError(
            f"{key}.priority_ceiling",
            f"must be one of {', '.join(_PRIORITIES)}, got {ceiling_name!r}",
        )
    if ceiling is TaskPriority.CRITICAL and not admin:
        raise InvalidConfigError(
            f"{key}.priority_ceiling", "only an admin may submit CRITICAL (set admin = true)"
        )
    if admin and "priority_ceiling" not in raw:
        ceiling = TaskPriority.CRITICAL
    return UserSettings(
        name=name,
        token_sha256=token,
        groups=tuple(member_of),
        weight=_float(raw, f"{key}.weight", "weight", 1.0, low=0.0, strict_low=True),
        admin=admin,
        priority_ceiling=ceiling,
        quotas=_quotas(_table(raw, f"{key}.quotas", field="quotas"), f"{key}.quotas"),
    )


def _quotas(raw: Mapping[str, Any], key: str) -> Quotas:
    _only(raw, key, {"max_running", "max_active", "shots_per_day"})
    values: dict[str, int | None] = {}
    for field in ("max_running", "max_active", "shots_per_day"):
        value = raw.get(field)
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or value < 1
        ):
            raise InvalidConfigError(f"{key}.{field}", f"must be a positive integer, got {value!r}")
        values[field] = value
    return Quotas(**values)


# -- helpers --------------------------------------------------------------------------------------


def _only(raw: Mapping[str, Any], where: str, allowed: set[str]) -> None:
    for name in raw:
        if name not in allowed:
            key = f"{where}.{name}" if where else name
            raise InvalidConfigError(
                key, f"unknown key; expected one of {', '.join(sorted(allowed))}"
            )


def _table(
    raw: Mapping[str, Any], key: str, *, whole: bool = False, field: str | None = None
) -> Mapping[str, Any]:
    value: object = raw if whole else raw.get(field or key, {})
    if not isinstance(value, dict):
        raise InvalidConfigError(key, f"must be a table, got {value!r}")
    return value


def _named(raw: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise InvalidConfigError(key, f"must be a table of [{key}.NAME] tables")
    return value


def _check_name(key: str, name: str) -> None:
    if not _NAME.match(name):
        raise InvalidConfigError(
            key, "a name is 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"
        )


def _str(raw: Mapping[str, Any], key: str, field: str, default: str) -> str:
    value = raw.get(field, default)
    if not isinstance(value, str):
        raise InvalidConfigError(key, f"must be a string, got {value!r}")
    return value


def _bool(raw: Mapping[str, Any], key: str, field: str, default: bool) -> bool:
    value = raw.get(field, default)
    if not isinstance(value, bool):
        raise InvalidConfigError(key, f"must be true or false, got {value!r}")
    return value


def _int(
    raw: Mapping[str, Any],
    key: str,
    field: str,
    default: int,
    *,
    low: int = 1,
    high: int | None = None,
) -> int:
    value = raw.get(field, default)
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or value < low
        or (high is not None and value > high)
    ):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise InvalidConfigError(key, f"must be an integer {bound}, got {value!r}")
    return value


def _float(
    raw: Mapping[str, Any],
    key: str,
    field: str,
    default: float,
    *,
    low: float,
    strict_low: bool = False,
) -> float:
    value = raw.get(field, default)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise InvalidConfigError(key, f"must be a number, got {value!r}")
    if value < low or (strict_low and value == low):
        raise InvalidConfigError(key, f"must be {'>' if strict_low else '>='} {low}, got {value!r}")
    return float(value)
