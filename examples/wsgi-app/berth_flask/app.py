"""The Flask application. create_app() takes its settings as an argument so tests can build one
per database; berth_flask.main builds the one gunicorn serves from the environment."""

import logging
import sys
import time

import jwt
import redis
from flask import Flask, jsonify, request
from werkzeug.exceptions import BadRequest, HTTPException

from berth_flask.config import Settings, redact
from berth_flask.db import Database

TOKEN_TTL = 3600
MAX_BODY = 64 * 1024
MAX_TEXT = 10_000
REDIS_TIMEOUT = 2  # seconds; see db.TIMEOUT

log = logging.getLogger("berth_flask")


def setup_logging(level: str) -> None:
    # Our own handler: gunicorn configures its loggers, and journald adds the timestamps.
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
        log.propagate = False
    log.setLevel(level)


def error(status: int, message: str, headers: dict | None = None):
    return jsonify(error=message), status, headers or {}


def json_object() -> dict:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    return body


def create_app(settings: Settings) -> Flask:
    setup_logging(settings.log_level)
    db = Database(settings.database_url)
    # One pool per worker process (the app is built after gunicorn forks), shared by its threads.
    cache = redis.from_url(settings.redis_url, socket_timeout=REDIS_TIMEOUT,
                           socket_connect_timeout=REDIS_TIMEOUT)
    secrets = settings.secret_values()
    keys = [("current", settings.jwt_secret)]
    if settings.jwt_secret_previous:
        keys.append(("previous", settings.jwt_secret_previous))

    app = Flask(__name__, static_folder=None)
    app.secret_key = settings.secret_key
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY

    def probe(name: str, check) -> str:
        try:
            check()
            return "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready"; reason to the log
            reason = redact(f"{type(exc).__name__}: {exc}", secrets)
            log.warning("ready: %s check failed: %s", name, " ".join(reason.split()))
            # Only the class name reaches the client: driver messages may name hosts and users.
            return type(exc).__name__

    @app.get("/health/live")
    def live():
        return {"status": "ok", "release": settings.release}

    @app.get("/health/ready")
    def ready():
        checks = {"database": probe("database", db.ping), "redis": probe("redis", cache.ping)}
        failed = [name for name, result in checks.items() if result != "ok"]
        body = {"status": "unavailable" if failed else "ok", "release": settings.release,
                "failed": failed, "checks": checks}
        return body, 503 if failed else 200

    @app.get("/api/version")
    def version():
        return {"release": settings.release}

    @app.post("/api/token")
    def issue_token():
        sub = json_object().get("sub")
        if not isinstance(sub, str) or not sub.strip() or len(sub) > 200:
            return error(400, "sub must be a non-empty string of at most 200 characters")
        now = int(time.time())
        claims = {"sub": sub, "iat": now, "exp": now + TOKEN_TTL}
        return {"token": jwt.encode(claims, settings.jwt_secret, algorithm="HS256")}

    def verify(token: str) -> tuple[str, dict]:
        # During a rotation tokens signed with the previous secret stay valid until they expire;
        # only a bad signature moves on to the next key, an expired or malformed token does not.
        for name, key in keys:
            try:
                return name, jwt.decode(token, key, algorithms=["HS256"], options={"require": ["exp", "sub"]})
            except jwt.InvalidSignatureError:
                continue
        raise jwt.InvalidSignatureError("no key matches")

    @app.get("/api/me")
    def me():
        challenge = {"WWW-Authenticate": "Bearer"}
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return error(401, "missing bearer token", challenge)
        try:
            key, claims = verify(token.strip())
        except jwt.InvalidTokenError as exc:
            return error(401, f"invalid token: {type(exc).__name__}", challenge)
        return {"sub": claims["sub"], "key": key}

    @app.post("/api/notes")
    def add_note():
        text = json_object().get("text")
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
            return error(400, f"text must be a non-empty string of at most {MAX_TEXT} characters")
        return db.add_note(text), 201

    @app.get("/api/notes")
    def list_notes():
        return jsonify(db.list_notes())

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return error(exc.code, exc.description)

    log.info("release %s starting (database: %s)", settings.release, db.engine)
    return app
