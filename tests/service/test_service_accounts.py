"""The config and the accounts, as plain objects on a manual clock (no server, no extras)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from logosq_os_scheduler import (
    AuthenticationError,
    InvalidConfigError,
    InvalidTaskError,
    ManualClock,
    PermissionDeniedError,
    QuotaExceededError,
    TaskPriority,
)
from logosq_os_scheduler.service import Accounts, hash_token, load_config, new_token, parse_config
from logosq_os_scheduler.service._accounts import DAY, share_weights


def _config(**users: dict[str, Any]) -> dict[str, Any]:
    return {
        "server": {"journal": "j.db"},
        "groups": {"lab": {"weight": 2.0, "quotas": {"max_active": 3, "shots_per_day": 1500}}},
        "users": {
            name: {"token_sha256": hash_token(f"token-{name}"), **table}
            for name, table in users.items()
        },
    }


def _accounts(clock: ManualClock, **users: dict[str, Any]) -> Accounts:
    return Accounts(parse_config(_config(**users)), clock)


def test_tokens_are_checked_against_their_hashes() -> None:
    accounts = _accounts(ManualClock(), user_a={}, user_b={})
    assert accounts.authenticate("token-user_a").name == "user_a"
    assert accounts.authenticate("token-user_b").name == "user_b"
    with pytest.raises(AuthenticationError, match="needs an API token"):
        accounts.authenticate(None)
    with pytest.raises(AuthenticationError, match="not one this server knows"):
        accounts.authenticate("token-user_c")
    token, digest = new_token()
    assert token.startswith("lq_") and len(token) > 40 and digest == hash_token(token)


def test_priority_ceiling() -> None:
    accounts = _accounts(
        ManualClock(), user_a={}, user_b={"priority_ceiling": "low"}, root={"admin": True}
    )
    user_a, user_b, root = (
        accounts.authenticate(f"token-{n}") for n in ("user_a", "user_b", "root")
    )
    accounts.check_priority(user_a, TaskPriority.HIGH)
    with pytest.raises(PermissionDeniedError, match="only an admin may submit CRITICAL"):
        accounts.check_priority(user_a, TaskPriority.CRITICAL)
    with pytest.raises(
        PermissionDeniedError, match="at most priority low, this task asks for normal"
    ):
        accounts.check_priority(user_b, TaskPriority.NORMAL)
    accounts.check_priority(root, TaskPriority.CRITICAL)


def test_max_active_counts_user_and_group() -> None:
    accounts = _accounts(
        ManualClock(),
        user_a={"groups": ["lab"], "quotas": {"max_active": 2}},
        user_b={"groups": ["lab"]},
    )
    user_a, user_b = accounts.authenticate("token-user_a"), accounts.authenticate("token-user_b")
    accounts.check_quotas(user_a, 2, 0)
    for _ in range(2):
        accounts.active_changed("user_a", +1)
    with pytest.raises(QuotaExceededError) as info:
        accounts.check_quotas(user_a, 1, 0)
    assert info.value.limit == "max_active" and info.value.scope == "user 'user_a'"
    accounts.check_quotas(user_b, 1, 0)
    accounts.active_changed("user_b", +1)
    with pytest.raises(QuotaExceededError) as info:
        accounts.check_quotas(user_b, 1, 0)
    assert info.value.limit == "max_active" and info.value.scope == "group 'lab'"
    accounts.active_changed("user_a", -1)
    accounts.check_quotas(user_b, 1, 0)
    assert accounts.usage("lab", group=True).active == 2


def test_shots_per_day_is_a_sliding_window_on_the_clock() -> None:
    clock = ManualClock()
    accounts = _accounts(clock, user_a={"quotas": {"shots_per_day": 1000}})
    user_a = accounts.authenticate("token-user_a")
    accounts.check_quotas(user_a, 1, 600)
    accounts.charge(user_a, 600)
    clock.advance(3600)
    accounts.check_quotas(user_a, 1, 300)
    accounts.charge(user_a, 300)
    with pytest.raises(QuotaExceededError) as info:
        accounts.check_quotas(user_a, 1, 200)
    # The first 600 leave the window a day after they came: 23 hours from now.
    assert info.value.limit == "shots_per_day"
    assert info.value.retry_after == pytest.approx(DAY - 3600)
    clock.advance(DAY - 3600)
    accounts.check_quotas(user_a, 1, 200)
    accounts.charge(user_a, 200)
    assert accounts.usage("user_a").shots_today == 500
    with pytest.raises(InvalidTaskError, match="more than the 1000 a day"):
        accounts.check_quotas(user_a, 1, 1001)


def test_group_shots_are_shared() -> None:
    clock = ManualClock()
    accounts = _accounts(clock, user_a={"groups": ["lab"]}, user_b={"groups": ["lab"]})
    user_a, user_b = accounts.authenticate("token-user_a"), accounts.authenticate("token-user_b")
    accounts.check_quotas(user_a, 1, 1000)
    accounts.charge(user_a, 1000)
    with pytest.raises(QuotaExceededError) as info:
        accounts.check_quotas(user_b, 1, 600)
    assert info.value.scope == "group 'lab'"
    accounts.check_quotas(user_b, 1, 500)


def test_fair_share_weights() -> None:
    config = parse_config(
        _config(user_a={"groups": ["lab"]}, user_b={"groups": ["lab"], "weight": 3.0}, user_c={})
    )
    # lab's weight 2 is shared by its two members, each times their own weight.
    assert share_weights(config) == {"user_a": 1.0, "user_b": 3.0, "user_c": 1.0}


@pytest.mark.parametrize(
    ("change", "key", "message"),
    [
        ({"server": {"port": 70000}}, "server.port", "between 0 and 65535"),
        ({"server": {"colour": 1}}, "server.colour", "unknown key"),
        ({"server": {"log_format": "xml"}}, "server.log_format", "'text' or 'json'"),
        ({"server": {"durability": "fast"}}, "server.durability", "'off', 'process' or 'power'"),
        ({"server": {"max_queue_depth": 0}}, "server.max_queue_depth", "integer >= 1"),
        (
            {"users": {"user_a": {"token_sha256": "abc"}}},
            "users.user_a.token_sha256",
            "64 lower-case hex",
        ),
        ({"users": {"user_a": {"groups": ["nope"]}}}, "users.user_a.groups", "no group 'nope'"),
        (
            {"users": {"user_a": {"priority_ceiling": "critical"}}},
            "users.user_a.priority_ceiling",
            "only an admin",
        ),
        (
            {"users": {"user_a": {"quotas": {"max_active": 0}}}},
            "users.user_a.quotas.max_active",
            "positive integer",
        ),
        ({"users": {"a b": {}}}, "users.a b", "a name is"),
        ({"functions": {"f": "not a ref"}}, "functions.f", "module:function"),
        ({"backends": [{"kind": "cloud"}]}, "backends[0].kind", "mock, aer, fake"),
        ({"backends": [{"kind": "fake"}]}, "backends[0].device", "FakeBrisbane"),
        ({"groups": {"lab": {"weight": 0}}}, "groups.lab.weight", "must be > 0"),
    ],
)
def test_config_errors_name_the_key(change: dict[str, Any], key: str, message: str) -> None:
    data = _config(user_a={})
    for section, value in change.items():
        if isinstance(value, dict) and isinstance(data.get(section), dict):
            for name, table in value.items():
                current = data[section].get(name)
                if isinstance(current, dict) and isinstance(table, dict):
                    current.update(table)
                else:
                    data[section][name] = table
        else:
            data[section] = value
    with pytest.raises(InvalidConfigError) as info:
        parse_config(data)
    assert f"invalid scheduler setting {key!r}" in str(info.value)
    assert message in str(info.value)


def test_two_users_with_one_token_are_refused() -> None:
    data = _config(user_a={}, user_b={})
    data["users"]["user_b"]["token_sha256"] = data["users"]["user_a"]["token_sha256"]
    with pytest.raises(InvalidConfigError, match=r"the same as users\.user_a's"):
        parse_config(data)


def test_load_config_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "server.toml"
    path.write_text(
        '[server]\nport = 9000\njournal = "j.db"\nlog_format = "json"\n'
        '[[backends]]\nkind = "mock"\nname = "sim"\nnum_qubits = 5\n'
        '[functions]\nsq = "math:sqrt"\nrun = { ref = "os:getpid", restartable = true }\n'
        f'[users.user_a]\ntoken_sha256 = "{hash_token("t")}"\nadmin = true\n'
    )
    config = load_config(path)
    assert config.server.port == 9000 and config.server.log_format == "json"
    assert config.backends[0].options == {"num_qubits": 5}
    assert config.functions["run"].restartable and not config.functions["sq"].restartable
    assert config.users["user_a"].priority_ceiling is TaskPriority.CRITICAL
    assert config.resolve_functions()["sq"](9.0) == 3.0
    assert config.replace(port=9001).server.port == 9001
    path.write_text("[server\n")
    with pytest.raises(InvalidConfigError, match="not valid TOML"):
        load_config(path)
    with pytest.raises(InvalidConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    bad = parse_config({"functions": {"f": "no_such_module_here:f"}})
    with pytest.raises(InvalidConfigError, match=r"functions\.f.*cannot import"):
        bad.resolve_functions()


def test_logosq_token_prints_a_token_and_its_config_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from logosq_os_scheduler.cli import EXIT_OK, main

    assert main(["token"]) == EXIT_OK
    out = capsys.readouterr()
    token, line = out.out.splitlines()
    assert token.startswith("lq_")
    assert line == f'token_sha256 = "{hash_token(token)}"'
    assert "shown only now" in out.err
    # The line is what a config takes.
    config = parse_config({"users": {"a": {"token_sha256": line.split('"')[1]}}})
    assert Accounts(config, ManualClock()).authenticate(token).name == "a"


def test_logosq_serve_with_a_bad_config_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("starlette")
    pytest.importorskip("uvicorn")
    pytest.importorskip("msgspec")
    from logosq_os_scheduler.cli import EXIT_USAGE, main

    assert main(["serve", "--config", str(tmp_path / "missing.toml")]) == EXIT_USAGE
    assert "cannot read" in capsys.readouterr().err
    path = tmp_path / "server.toml"
    path.write_text("[server]\nport = 8765\n")
    assert main(["serve", "--config", str(path)]) == EXIT_USAGE
    assert "the server runs on a durable journal" in capsys.readouterr().err
    assert main(["serve", "--config", str(path), "--port", "99999"]) == EXIT_USAGE
    assert "server.port" in capsys.readouterr().err
    path.write_text(
        f'[server]\njournal = "{tmp_path / "j.db"}"\n'
        '[[backends]]\nkind = "mock"\nname = "sim"\nwarp_speed = 9\n'
    )
    assert main(["serve", "--config", str(path)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "backends.sim" in err and "warp_speed" in err
    assert not (tmp_path / "j.db").exists()  # refused before the journal was opened
