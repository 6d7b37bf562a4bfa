"""The three ASGI frameworks issue #23 lets us choose from, each with the same two endpoints,
for `bench_service.py` to measure under uvicorn (``uvicorn --factory service_apps:<name>``):

- ``GET /hello``: the bare hello-world endpoint (plain text ``Hello, world!``);
- ``POST /echo``: a small JSON body decoded and validated into a typed object, answered with a
  small JSON object (the shape of a task submit, without the scheduler).

Starlette decodes and encodes with msgspec (what ``logosq serve`` does), FastAPI with its usual
pydantic model body, Litestar with a msgspec Struct body (its native way). Each factory imports
only its own framework, so a peer that is not installed fails only its own rows.
"""

from typing import Any

# No ``from __future__ import annotations`` here: FastAPI and Litestar read the handlers'
# annotations, which name classes local to their factory.

__all__ = ["ECHO_BODY", "FACTORIES", "fastapi_app", "litestar_app", "starlette_app"]

ECHO_BODY = b'{"name":"bell","shots":1,"priority":"normal","metadata":{"run":1}}'
HELLO = "Hello, world!"


def starlette_app() -> Any:
    import msgspec
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route

    class Echo(msgspec.Struct, forbid_unknown_fields=True):
        name: str
        shots: int = 1024
        priority: str = "normal"
        metadata: dict[str, int | float | str | bool] = {}

    decoder = msgspec.json.Decoder(Echo)
    encoder = msgspec.json.Encoder()
    counter = iter(range(1, 1 << 62))

    async def hello(request: Request) -> Response:
        return PlainTextResponse(HELLO)

    async def echo(request: Request) -> Response:
        try:
            body = decoder.decode(await request.body())
        except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
            return Response(encoder.encode({"detail": str(exc)}), status_code=422)
        out = {"id": next(counter), "name": body.name, "shots": body.shots, "status": "queued"}
        return Response(encoder.encode(out), status_code=201, media_type="application/json")

    return Starlette(routes=[Route("/hello", hello), Route("/echo", echo, methods=["POST"])])


def fastapi_app() -> Any:
    from fastapi import FastAPI
    from fastapi.responses import PlainTextResponse
    from pydantic import BaseModel, ConfigDict

    class Echo(BaseModel):
        model_config = ConfigDict(extra="forbid")
        name: str
        shots: int = 1024
        priority: str = "normal"
        metadata: dict[str, int | float | str | bool] = {}

    class View(BaseModel):
        id: int
        name: str
        shots: int
        status: str

    app = FastAPI()
    counter = iter(range(1, 1 << 62))

    @app.get("/hello", response_class=PlainTextResponse)
    async def hello() -> str:
        return HELLO

    @app.post("/echo", status_code=201)
    async def echo(body: Echo) -> View:
        return View(id=next(counter), name=body.name, shots=body.shots, status="queued")

    return app


def litestar_app() -> Any:
    import msgspec
    from litestar import Litestar, MediaType, get, post

    class Echo(msgspec.Struct, forbid_unknown_fields=True):
        name: str
        shots: int = 1024
        priority: str = "normal"
        metadata: dict[str, int | float | str | bool] = {}

    class View(msgspec.Struct):
        id: int
        name: str
        shots: int
        status: str

    counter = iter(range(1, 1 << 62))

    @get("/hello", media_type=MediaType.TEXT)
    async def hello() -> str:
        return HELLO

    @post("/echo")
    async def echo(data: Echo) -> View:
        return View(id=next(counter), name=data.name, shots=data.shots, status="queued")

    return Litestar(route_handlers=[hello, echo], openapi_config=None)


# framework label -> (factory name, the distribution whose version the table shows)
FACTORIES: dict[str, tuple[str, str]] = {
    "Starlette (msgspec body)": ("starlette_app", "starlette"),
    "FastAPI (pydantic model body)": ("fastapi_app", "fastapi"),
    "Litestar (msgspec Struct body)": ("litestar_app", "litestar"),
}
