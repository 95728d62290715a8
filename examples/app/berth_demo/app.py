"""The demo application. create_app() takes its settings as an argument so tests can build one per
database; berth_demo.main builds the one gunicorn serves from the environment."""

import logging
import re
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path

import jwt
import redis
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from berth_demo.config import Settings, redact
from berth_demo.db import Database
from berth_demo.sealed import InvalidToken, Sealer

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
TOKEN_TTL = 3600
MAX_BODY = 64 * 1024
MAX_TEXT = 10_000
SEALED_NAME = re.compile(r"[a-z0-9_-]{1,64}")
REDIS_TIMEOUT = 2  # seconds; see db.TIMEOUT

log = logging.getLogger("berth_demo")


def setup_logging(level: str) -> None:
    # Our own handler: gunicorn and uvicorn configure theirs, and journald adds the timestamps.
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
        log.propagate = False
    log.setLevel(level)


def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def read_json_object(request: Request) -> dict:
    try:
        body = await request.json()
    except ValueError:
        raise HTTPException(400, "body must be JSON") from None
    if not isinstance(body, dict):
        raise HTTPException(400, "body must be a JSON object")
    return body


def create_app(settings: Settings, static_dir: Path = STATIC_DIR) -> Starlette:
    setup_logging(settings.log_level)
    db = Database(settings.database_url)
    cache = redis.from_url(
        settings.redis_url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT
    )
    secrets = settings.secret_values()
    keys = [("current", settings.jwt_secret)]
    if settings.jwt_secret_previous:
        keys.append(("previous", settings.jwt_secret_previous))
    sealer = Sealer(settings.encryption_key, settings.encryption_key_previous) if settings.encryption_key else None

    def probe(name: str, check) -> str:
        try:
            check()
            return "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready"; reason to the log
            reason = redact(f"{type(exc).__name__}: {exc}", secrets)
            log.warning("ready: %s check failed: %s", name, " ".join(reason.split()))
            # Only the class name reaches the client: driver messages may name hosts and users.
            return type(exc).__name__

    async def live(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "release": settings.release})

    async def ready(request: Request) -> JSONResponse:
        checks = {
            "database": await run_in_threadpool(probe, "database", db.ping),
            "redis": await run_in_threadpool(probe, "redis", cache.ping),
        }
        failed = [name for name, result in checks.items() if result != "ok"]
        body = {"status": "unavailable" if failed else "ok", "release": settings.release,
                "failed": failed, "checks": checks}
        return JSONResponse(body, status_code=503 if failed else 200)

    async def version(request: Request) -> JSONResponse:
        return JSONResponse({"release": settings.release})

    async def issue_token(request: Request) -> JSONResponse:
        sub = (await read_json_object(request)).get("sub")
        if not isinstance(sub, str) or not sub.strip() or len(sub) > 200:
            return error(400, "sub must be a non-empty string of at most 200 characters")
        now = int(time.time())
        claims = {"sub": sub, "iat": now, "exp": now + TOKEN_TTL}
        return JSONResponse({"token": jwt.encode(claims, settings.jwt_secret, algorithm="HS256")})

    def verify(token: str) -> tuple[str, dict]:
        # During a rotation tokens signed with the previous secret stay valid until they expire;
        # only a bad signature moves on to the next key, an expired or malformed token does not.
        for name, key in keys:
            try:
                claims = jwt.decode(token, key, algorithms=["HS256"],
                                    options={"require": ["exp", "sub"]})
                return name, claims
            except jwt.InvalidSignatureError:
                continue
        raise jwt.InvalidSignatureError("no key matches")

    async def me(request: Request) -> JSONResponse:
        challenge = {"WWW-Authenticate": "Bearer"}
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return error(401, "missing bearer token", challenge)
        try:
            key, claims = verify(token.strip())
        except jwt.InvalidTokenError as exc:
            return error(401, f"invalid token: {type(exc).__name__}", challenge)
        return JSONResponse({"sub": claims["sub"], "key": key})

    async def add_note(request: Request) -> JSONResponse:
        text = (await read_json_object(request)).get("text")
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
            return error(400, f"text must be a non-empty string of at most {MAX_TEXT} characters")
        return JSONResponse(await run_in_threadpool(db.add_note, text), status_code=201)

    async def list_notes(request: Request) -> JSONResponse:
        return JSONResponse(await run_in_threadpool(db.list_notes))

    def sealed_name(request: Request) -> str:
        if sealer is None:
            raise HTTPException(503, "no ENCRYPTION_KEY")
        name = request.path_params["name"]
        if not SEALED_NAME.fullmatch(name):
            raise HTTPException(400, "name must be 1 to 64 of a-z, 0-9, _ and -")
        return name

    async def put_sealed(request: Request) -> JSONResponse:
        name = sealed_name(request)
        value = (await read_json_object(request)).get("value")
        if not isinstance(value, str) or len(value) > MAX_TEXT:
            return error(400, f"value must be a string of at most {MAX_TEXT} characters")
        await run_in_threadpool(db.put_sealed, name, sealer.seal(value))
        return JSONResponse({"name": name}, status_code=201)

    async def get_sealed(request: Request) -> JSONResponse:
        name = sealed_name(request)
        token = await run_in_threadpool(db.get_sealed, name)
        if token is None:
            return error(404, "no such value")
        try:
            value, key = sealer.open(token)
        except InvalidToken:
            # sealed with a key this app no longer has (retired before its data was re-encrypted)
            return error(500, "no key opens this value")
        return JSONResponse({"name": name, "value": value, "key": key})

    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                if message.get("text") is not None:
                    await websocket.send_text(message["text"])
                elif message.get("bytes") is not None:
                    await websocket.send_bytes(message["bytes"])
        except WebSocketDisconnect:
            return

    async def index(request: Request) -> FileResponse:
        return FileResponse(static_dir / "index.html")

    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return error(exc.status_code, exc.detail, exc.headers)

    @asynccontextmanager
    async def lifespan(app: Starlette):
        log.info("release %s starting (database: %s)", settings.release, db.engine)
        if sealer is not None and sealer.previous is not None:
            try:
                count = await run_in_threadpool(db.reseal, sealer)
                log.info("sealed values re-encrypted with the current ENCRYPTION_KEY: %d", count)
            except Exception as exc:  # noqa: BLE001 - the app serves; the next start tries again
                log.warning("re-encryption failed: %s", redact(f"{type(exc).__name__}: {exc}", secrets))
        yield
        cache.close()

    routes = [
        Route("/", index),
        Route("/health/live", live),
        Route("/health/ready", ready),
        Route("/api/version", version),
        Route("/api/token", issue_token, methods=["POST"]),
        Route("/api/me", me),
        Route("/api/notes", add_note, methods=["POST"]),
        Route("/api/notes", list_notes, methods=["GET"]),
        Route("/api/sealed/{name}", put_sealed, methods=["PUT"]),
        Route("/api/sealed/{name}", get_sealed, methods=["GET"]),
        WebSocketRoute("/ws/echo", echo),
        # nginx serves /static/ itself in production; this keeps the app whole without it.
        Mount("/static", StaticFiles(directory=static_dir, check_dir=False), name="static"),
    ]
    return Starlette(routes=routes, lifespan=lifespan, max_body_size=MAX_BODY,
                     exception_handlers={HTTPException: http_error})
