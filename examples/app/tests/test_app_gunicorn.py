"""The real server, as berth runs it: gunicorn with uvicorn_worker.UvicornWorker on a unix socket."""

import subprocess
import sys

import httpx2 as httpx
from demo_support import APP_DIR, RELEASE, app_env, wait_for
from gunicorn_support import (gunicorn_config, listening_socket, restarts_under_load, serve, stderr_of_failed_start,
                              stop)
from websockets.sync.client import unix_connect

from berth_demo.db import Database


def gunicorn(environ, sock, *extra):
    command = [sys.executable, "-m", "gunicorn", "berth_demo.main:app",
               "-k", "uvicorn_worker.UvicornWorker", "--bind", f"unix:{sock}",
               # gunicorn >= 25.1 otherwise opens a control socket under $HOME or $XDG_RUNTIME_DIR
               "--no-control-socket", "--graceful-timeout", "5", *extra]
    return subprocess.Popen(command, cwd=APP_DIR, env=environ, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_gunicorn_serves_over_unix_socket(redis_server, sqlite_url, tmp_path):
    Database(sqlite_url).migrate()
    sock = tmp_path / "app.sock"
    proc = gunicorn(app_env(sqlite_url, redis_server.unix_url), sock, "--workers", "2")
    try:
        wait_for(lambda: proc.poll() is not None or sock.exists(), "gunicorn's socket", 60)
        assert proc.poll() is None, "gunicorn exited early"
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)),
                          base_url="http://berth-demo") as client:
            wait_for(lambda: client.get("/health/live").status_code == 200, "a worker", 60)
            assert client.get("/health/live").json() == {"status": "ok", "release": RELEASE}
            assert client.get("/health/ready").status_code == 200
        # uvicorn only upgrades WebSockets when a WebSocket library is installed.
        with unix_connect(str(sock), "ws://berth-demo/ws/echo") as ws:
            ws.send("over gunicorn")
            assert ws.recv(timeout=10) == "over gunicorn"
    finally:
        stderr = stop(proc)
    assert proc.returncode == 0, stderr
    assert "berth_demo: release " + RELEASE + " starting (database: sqlite)" in stderr


def test_gunicorn_stops_on_bad_configuration(redis_server, sqlite_url, tmp_path):
    short = "too-short-jwt-secret"
    proc = gunicorn(app_env(sqlite_url, redis_server.unix_url, JWT_SECRET=short),
                    tmp_path / "app.sock", "--workers", "1")
    stderr = stderr_of_failed_start(proc)
    lines = [line for line in stderr.splitlines() if "berth_demo" in line]
    assert lines == ["berth_demo: configuration error: JWT_SECRET is too short (min 32 characters)"]
    assert short not in stderr


def test_restarts_under_load_fail_no_request(redis_server, sqlite_url, tmp_path):
    """The role's drain (gunicorn.conf.py) under uvicorn's worker: a restart fails no request."""
    Database(sqlite_url).migrate()
    sock_path = tmp_path / "app.sock"
    config = gunicorn_config(tmp_path / "gunicorn.conf.py")
    with listening_socket(sock_path) as listener:
        def start(release):
            environ = app_env(sqlite_url, redis_server.unix_url, APP_RELEASE=release)
            return serve(listener, APP_DIR, environ, "berth_demo.main:app", "--worker-class",
                         "uvicorn_worker.UvicornWorker", "--config", str(config), "--workers", "2",
                         "--graceful-timeout", "10")

        load = restarts_under_load(sock_path, start)
    assert load.failures == []
