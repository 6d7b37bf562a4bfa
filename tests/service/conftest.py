"""A real ``logosq serve`` process per test, on loopback, with two users and an admin."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _service_helpers import Configure, Server, _toml, free_port

from logosq_os_scheduler.service import new_token


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Configure]:
    """Writes a config (users user_a and user_b in group lab, admin root; a mock backend; the
    test functions registered) and starts its server. Keyword arguments change it:
    ``server={...}``, ``users={"user_a": {...}}`` (merged), ``groups``, ``backends``."""
    servers: list[Server] = []

    def make(
        *,
        server: dict[str, object] | None = None,
        users: dict[str, dict[str, object]] | None = None,
        groups: dict[str, dict[str, object]] | None = None,
        backends: list[dict[str, object]] | None = None,
        start: bool = True,
    ) -> Server:
        tokens: dict[str, str] = {}
        user_tables: dict[str, dict[str, object]] = {
            "user_a": {"groups": ["lab"]},
            "user_b": {"groups": ["lab"]},
            "root": {"admin": True},
        }
        for name, extra in (users or {}).items():
            user_tables.setdefault(name, {}).update(extra)
        lines = ["[server]"]
        settings: dict[str, object] = {
            "host": "127.0.0.1",
            "port": free_port(),
            "journal": str(tmp_path / "journal.db"),
            "workers": 2,
        }
        settings.update(server or {})
        lines += [f"{k} = {_toml(v)}" for k, v in settings.items()]
        for backend in (
            backends if backends is not None else [{"kind": "mock", "name": "sim", "seed": 7}]
        ):
            lines.append("\n[[backends]]")
            lines += [f"{k} = {_toml(v)}" for k, v in backend.items()]
        lines.append("\n[functions]")
        lines.append('square = "_service_tasks:square"')
        lines.append('append_run = "_service_tasks:append_run"')
        lines.append('wait_for_file = "_service_tasks:wait_for_file"')
        lines.append('fail = "_service_tasks:fail"')
        lines.append('append_run_again = {ref = "_service_tasks:append_run", restartable = true}')
        for name, table in (groups or {"lab": {"weight": 1.0}}).items():
            lines.append(f"\n[groups.{name}]")
            lines += [f"{k} = {_toml(v)}" for k, v in table.items()]
        for name, table in user_tables.items():
            token, digest = new_token()
            tokens[name] = token
            lines.append(f"\n[users.{name}]")
            lines.append(f'token_sha256 = "{digest}"')
            lines += [f"{k} = {_toml(v)}" for k, v in table.items()]
        config = tmp_path / f"server{len(servers)}.toml"
        config.write_text("\n".join(lines) + "\n")
        srv = Server(
            config,
            Path(str(settings["journal"])),
            int(str(settings["port"])),
            tokens,
            tmp_path / "server.log",
        )
        servers.append(srv)
        if start:
            srv.start()
        return srv

    yield make
    for srv in servers:
        srv.kill()
