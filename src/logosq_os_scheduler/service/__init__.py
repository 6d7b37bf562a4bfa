"""``logosq serve``: the scheduler as a shared service over HTTP (needs the ``service`` extra).

One long-running scheduler on a durable journal, served by uvicorn with a Starlette app:
users with hashed API tokens, quotas, fair share, isolation between users, live events.
See docs/service.md for running it and the API, and the contract it implements.

::

    from logosq_os_scheduler.service import create_app, load_config

    app = create_app(load_config("server.toml"))   # an ASGI app, for any ASGI server

The config, the accounts and tokens need only the standard library (``logosq token`` runs
anywhere); :func:`create_app` and :func:`serve` import Starlette, uvicorn and msgspec when
first used.
"""

from typing import TYPE_CHECKING

from ._accounts import Accounts, Usage, hash_token
from ._config import (
    BackendSettings,
    FunctionSettings,
    GroupSettings,
    Quotas,
    ServerSettings,
    ServiceConfig,
    UserSettings,
    load_config,
    parse_config,
)
from ._token import new_token

if TYPE_CHECKING:
    from ._app import create_app
    from ._server import serve

__all__ = [
    "Accounts",
    "BackendSettings",
    "FunctionSettings",
    "GroupSettings",
    "Quotas",
    "ServerSettings",
    "ServiceConfig",
    "Usage",
    "UserSettings",
    "create_app",
    "hash_token",
    "load_config",
    "new_token",
    "parse_config",
    "serve",
]


def __getattr__(name: str) -> object:
    # The HTTP half imports Starlette, uvicorn and msgspec: load it only when asked for.
    if name == "create_app":
        from ._app import create_app

        return create_app
    if name == "serve":
        from ._server import serve

        return serve
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
