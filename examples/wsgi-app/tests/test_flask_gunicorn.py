"""The real server, as berth runs it: gunicorn with a WSGI worker class on the socket systemd
holds (LISTEN_FDS), with the app role's gunicorn.conf.py; and restarts under a steady load."""

import json
from pathlib import Path

import pytest
from demo_support import RELEASE, app_env
from gunicorn_support import (UnixHTTPConnection, gunicorn_config, listening_socket, restarts_under_load, serve,
                              stderr_of_failed_start, stop, wait_until_serving)

from berth_flask.db import Database

APP_DIR = Path(__file__).resolve().parent.parent
WORKER_ARGS = {"gthread": ["--worker-class", "gthread", "--threads", "4"], "sync": ["--worker-class", "sync"]}


def gunicorn(listener, environ, tmp_path, worker="gthread", *extra):
    return serve(listener, APP_DIR, environ, "berth_flask.main:app", *WORKER_ARGS[worker],
                 "--config", str(gunicorn_config(tmp_path / "gunicorn.conf.py")),
                 "--workers", "2", "--graceful-timeout", "10", *extra)


def get(sock_path, path, method="GET", body=None):
    conn = UnixHTTPConnection(sock_path, 10)
    try:
        conn.request(method, path, body=body and json.dumps(body), headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_gunicorn_gthread_serves_on_the_held_socket(redis_server, sqlite_url, tmp_path):
    Database(sqlite_url).migrate()
    sock_path = tmp_path / "app.sock"
    with listening_socket(sock_path) as listener:
        proc = gunicorn(listener, app_env(sqlite_url, redis_server.unix_url), tmp_path)
        try:
            wait_until_serving(sock_path)
            assert get(sock_path, "/health/live") == (200, {"status": "ok", "release": RELEASE})
            assert get(sock_path, "/health/ready")[0] == 200
            assert get(sock_path, "/api/notes", "POST", {"text": "via gunicorn"})[0] == 201
        finally:
            stderr = stop(proc)
    assert proc.returncode == 0, stderr
    assert "Using worker: gthread" in stderr
    assert f"berth_flask: release {RELEASE} starting (database: sqlite)" in stderr
    # gunicorn took systemd's socket: it neither bound nor removed the path
    assert sock_path.exists()


def test_gunicorn_stops_on_bad_configuration(redis_server, sqlite_url, tmp_path):
    short = "too-short-jwt-secret"
    with listening_socket(tmp_path / "app.sock") as listener:
        proc = gunicorn(listener, app_env(sqlite_url, redis_server.unix_url, JWT_SECRET=short), tmp_path)
        stderr = stderr_of_failed_start(proc)
    lines = [line for line in stderr.splitlines() if "berth_flask" in line]
    # one line from each worker that failed to boot
    assert set(lines) == {"berth_flask: configuration error: JWT_SECRET is too short (min 32 characters)"}
    assert short not in stderr


@pytest.mark.parametrize("worker", ["gthread", "sync"])
def test_restarts_under_load_fail_no_request(redis_server, sqlite_url, tmp_path, worker):
    """berth's promise for a new release or rotated secrets: a restart fails no request. gunicorn's
    WSGI workers keep it with no drain of berth's (roles/app's gunicorn.conf.py.j2 says why)."""
    Database(sqlite_url).migrate()
    sock_path = tmp_path / "app.sock"
    with listening_socket(sock_path) as listener:
        def start(release):
            environ = app_env(sqlite_url, redis_server.unix_url, APP_RELEASE=release)
            return gunicorn(listener, environ, tmp_path, worker)

        load = restarts_under_load(sock_path, start)
    assert load.failures == []
