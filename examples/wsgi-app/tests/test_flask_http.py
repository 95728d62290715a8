"""The HTTP API through Flask's test client, against a real redis-server and both databases."""

import time

import jwt
import pytest
from demo_support import (JWT_SECRET, JWT_SECRET_OLD, PG_PASSWORD, REDIS_PASSWORD, RELEASE, assert_no_secrets,
                          free_port)

from berth_flask.db import Database


def test_live_needs_no_services(make_client, tmp_path):
    client = make_client(f"sqlite:///{tmp_path}/missing.sqlite3", "redis://127.0.0.1:1/0")
    response = client.get("/health/live")
    assert (response.status_code, response.json) == (200, {"status": "ok", "release": RELEASE})
    assert client.get("/api/version").json == {"release": RELEASE}


@pytest.mark.parametrize("redis_form", ["unix_url", "tcp_url"])
def test_ready(make_client, migrated_url, redis_server, redis_form):
    response = make_client(migrated_url, getattr(redis_server, redis_form)).get("/health/ready")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "release": RELEASE, "failed": [],
                             "checks": {"database": "ok", "redis": "ok"}}


def test_ready_names_redis_when_it_is_down(make_client, sqlite_url, app_log):
    Database(sqlite_url).migrate()
    down = f"redis://default:{REDIS_PASSWORD}@127.0.0.1:{free_port()}/0"
    response = make_client(sqlite_url, down).get("/health/ready")
    assert response.status_code == 503
    assert response.json["failed"] == ["redis"] and response.json["checks"]["database"] == "ok"
    assert any("redis check failed" in line for line in app_log)
    assert_no_secrets(response.text, *app_log)


@pytest.mark.parametrize("url", [f"postgresql://berth:{PG_PASSWORD}@127.0.0.1:{{port}}/gone",
                                 "sqlite:///{tmp}/never-migrated.sqlite3"])
def test_ready_names_database_when_it_is_down(make_client, tmp_path, app_log, url):
    response = make_client(url.format(port=free_port(), tmp=tmp_path)).get("/health/ready")
    assert response.status_code == 503
    assert response.json["status"] == "unavailable" and response.json["failed"] == ["database"]
    assert any("database check failed" in line for line in app_log)
    assert_no_secrets(response.text, *app_log)


def test_notes(client):
    assert client.get("/api/notes").json == []
    first = client.post("/api/notes", json={"text": "first"})
    assert first.status_code == 201 and first.json["text"] == "first"
    client.post("/api/notes", json={"text": "second"})
    assert [note["text"] for note in client.get("/api/notes").json] == ["second", "first"]


@pytest.mark.parametrize("body, status", [
    ({"text": ""}, 400), ({"text": 5}, 400), ({"text": "x" * 10_001}, 400), ([1], 400),
    ({"text": "y" * 70_000}, 413),
])
def test_bad_notes_are_refused_in_json(client, body, status):
    response = client.post("/api/notes", json=body)
    assert response.status_code == status
    assert set(response.json) == {"error"}


def test_errors_are_json(client):
    response = client.get("/nowhere")
    assert response.status_code == 404 and set(response.json) == {"error"}
    assert client.post("/api/notes", data="not json", content_type="application/json").status_code == 400


def token(client):
    return client.post("/api/token", json={"sub": "alice"}).json["token"]


def test_token_round_trip(client):
    response = client.get("/api/me", headers={"Authorization": f"Bearer {token(client)}"})
    assert response.json == {"sub": "alice", "key": "current"}


def test_previous_secret_still_verifies(make_client, migrated_url):
    old = token(make_client(migrated_url, JWT_SECRET=JWT_SECRET_OLD))
    rotated = make_client(migrated_url, JWT_SECRET_PREVIOUS=JWT_SECRET_OLD)
    response = rotated.get("/api/me", headers={"Authorization": f"Bearer {old}"})
    assert response.json == {"sub": "alice", "key": "previous"}
    # without the previous secret, the same token is refused
    response = make_client(migrated_url).get("/api/me", headers={"Authorization": f"Bearer {old}"})
    assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("header", ["", "Bearer", "Basic abc", "Bearer not-a-token"])
def test_bad_credentials(client, header):
    response = client.get("/api/me", headers={"Authorization": header} if header else {})
    assert response.status_code == 401


def test_expired_token_is_refused(client):
    expired = jwt.encode({"sub": "alice", "exp": int(time.time()) - 10}, JWT_SECRET, algorithm="HS256")
    response = client.get("/api/me", headers={"Authorization": f"Bearer {expired}"})
    assert response.json == {"error": "invalid token: ExpiredSignatureError"}
