"""The HTTP and WebSocket API, through Starlette's TestClient against real Redis and databases."""

import time

import jwt
import pytest
from berth_demo.db import Database
from demo_support import (JWT_SECRET, JWT_SECRET_OLD, PG_PASSWORD, REDIS_PASSWORD, RELEASE, assert_no_secrets,
                          free_port)


def test_live_needs_no_services(make_client, tmp_path):
    client = make_client(f"sqlite:///{tmp_path}/missing.sqlite3", "redis://127.0.0.1:1/0")
    response = client.get("/health/live")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "release": RELEASE}


def test_version(make_client, sqlite_url):
    client = make_client(sqlite_url, APP_RELEASE=None)
    assert client.get("/api/version").json() == {"release": "dev"}


@pytest.mark.parametrize("redis_form", ["unix_url", "tcp_url"])
def test_ready(make_client, migrated_url, redis_server, redis_form):
    response = make_client(migrated_url, getattr(redis_server, redis_form)).get("/health/ready")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["failed"] == []
    assert body["checks"] == {"database": "ok", "redis": "ok"}


def test_ready_names_redis_when_it_is_down(make_client, migrated_url, app_log):
    down = f"redis://default:{REDIS_PASSWORD}@127.0.0.1:{free_port()}/0"
    response = make_client(migrated_url, down).get("/health/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable" and body["failed"] == ["redis"]
    assert body["checks"]["database"] == "ok"
    assert any("redis check failed" in line for line in app_log)
    assert_no_secrets(response.text, *app_log)


@pytest.mark.parametrize("url", [
    f"postgresql://berth:{PG_PASSWORD}@127.0.0.1:{{port}}/gone",
    "sqlite:///{tmp}/never-migrated.sqlite3",
])
def test_ready_names_database_when_it_is_down(make_client, tmp_path, app_log, url):
    url = url.format(port=free_port(), tmp=tmp_path)
    response = make_client(url).get("/health/ready")
    assert response.status_code == 503
    assert response.json()["failed"] == ["database"]
    assert any("database check failed" in line for line in app_log)
    assert_no_secrets(response.text, *app_log)


def test_ready_names_both(make_client, tmp_path):
    client = make_client(f"sqlite:///{tmp_path}/none.sqlite3", f"redis://127.0.0.1:{free_port()}/0")
    assert client.get("/health/ready").json()["failed"] == ["database", "redis"]


def test_websocket_echo(make_client, sqlite_url):
    with make_client(sqlite_url).websocket_connect("/ws/echo") as ws:
        for text in ("hello", "héllo wörld", ""):
            ws.send_text(text)
            assert ws.receive_text() == text
        ws.send_bytes(b"\x00\x01binary")
        assert ws.receive_bytes() == b"\x00\x01binary"


def issue(client, sub="alice"):
    response = client.post("/api/token", json={"sub": sub})
    assert response.status_code == 200
    return response.json()["token"]


def me(client, token):
    return client.get("/api/me", headers={"Authorization": f"Bearer {token}"})


def test_token_and_me(make_client, sqlite_url):
    client = make_client(sqlite_url)
    token = issue(client)
    claims = jwt.decode(token, JWT_SECRET, algorithms=["HS256"])
    assert claims["sub"] == "alice"
    assert 3590 <= claims["exp"] - time.time() <= 3600
    response = me(client, token)
    assert response.status_code == 200
    assert response.json() == {"sub": "alice", "key": "current"}


def test_rotation_previous_secret(make_client, sqlite_url):
    old_token = issue(make_client(sqlite_url, JWT_SECRET=JWT_SECRET_OLD))
    rotated = make_client(sqlite_url, JWT_SECRET_PREVIOUS=JWT_SECRET_OLD)
    response = me(rotated, old_token)
    assert response.status_code == 200
    assert response.json() == {"sub": "alice", "key": "previous"}
    assert me(rotated, issue(rotated)).json()["key"] == "current"
    # Once the overlap ends (JWT_SECRET_PREVIOUS unset), the old token is refused.
    response = me(make_client(sqlite_url), old_token)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "error" in response.json()


def test_me_refuses_bad_tokens(make_client, sqlite_url):
    client = make_client(sqlite_url, JWT_SECRET_PREVIOUS=JWT_SECRET_OLD)
    expired = jwt.encode({"sub": "alice", "exp": int(time.time()) - 10}, JWT_SECRET, "HS256")
    no_exp = jwt.encode({"sub": "alice"}, JWT_SECRET, "HS256")
    forged = jwt.encode({"sub": "alice", "exp": int(time.time()) + 60}, "f" * 40, "HS256")
    for token in (expired, no_exp, forged, "not-a-jwt"):
        assert me(client, token).status_code == 401, token
    assert client.get("/api/me").status_code == 401
    assert client.get("/api/me", headers={"Authorization": "Basic abc"}).status_code == 401


@pytest.mark.parametrize("body", [{}, {"sub": ""}, {"sub": 5}, ["alice"]])
def test_token_rejects_bad_bodies(make_client, sqlite_url, body):
    response = make_client(sqlite_url).post("/api/token", json=body)
    assert response.status_code == 400
    assert "error" in response.json()


def test_token_rejects_non_json(make_client, sqlite_url):
    response = make_client(sqlite_url).post("/api/token", content=b"sub=alice")
    assert response.status_code == 400


def test_notes(client):
    assert client.get("/api/notes").json() == []
    first = client.post("/api/notes", json={"text": "first"})
    assert first.status_code == 201
    assert first.json() == {"id": first.json()["id"], "text": "first"}
    second = client.post("/api/notes", json={"text": "zweite Notiz ✓"}).json()
    response = client.get("/api/notes")
    assert response.status_code == 200
    assert response.json() == [second, first.json()]


def test_notes_are_shared_between_app_instances(make_client, migrated_url):
    # What two gunicorn workers do: separate processes, one database.
    make_client(migrated_url).post("/api/notes", json={"text": "from worker 1"})
    assert make_client(migrated_url).get("/api/notes").json()[0]["text"] == "from worker 1"


@pytest.mark.parametrize("body", [{}, {"text": ""}, {"text": None}, {"text": "x" * 10_001}])
def test_notes_reject_bad_bodies(client, body):
    assert client.post("/api/notes", json=body).status_code == 400


def test_large_bodies_are_refused(make_client, sqlite_url):
    response = make_client(sqlite_url).post("/api/token", content=b"x" * 100_000)
    assert response.status_code == 413


def test_static_files_and_index(make_client, sqlite_url):
    client = make_client(sqlite_url)
    index = client.get("/")
    assert index.status_code == 200 and "berth demo" in index.text
    assert "/static/style.css" in index.text
    css = client.get("/static/style.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")


def test_unknown_path_is_json_404(make_client, sqlite_url):
    response = make_client(sqlite_url).get("/nope")
    assert response.status_code == 404
    assert response.json() == {"error": "Not Found"}


KEY_OLD, KEY_NEW = "o" * 43, "n" * 43


def test_sealed_values_survive_a_key_rotation_and_its_retirement(make_client, migrated_url):
    old = make_client(migrated_url, ENCRYPTION_KEY=KEY_OLD)
    assert old.put("/api/sealed/card", json={"value": "4111 1111"}).status_code == 201
    assert old.get("/api/sealed/card").json() == {"name": "card", "value": "4111 1111", "key": "current"}
    token = Database(migrated_url).get_sealed("card")
    assert "4111" not in token
    # rotated (berth keeps the old key as ENCRYPTION_KEY_PREVIOUS): the app re-encrypts at start-up
    rotated = make_client(migrated_url, ENCRYPTION_KEY=KEY_NEW, ENCRYPTION_KEY_PREVIOUS=KEY_OLD)
    assert rotated.get("/api/sealed/card").json() == {"name": "card", "value": "4111 1111", "key": "current"}
    assert Database(migrated_url).get_sealed("card") != token
    # retired: the new key alone reads it
    retired = make_client(migrated_url, ENCRYPTION_KEY=KEY_NEW)
    assert retired.get("/api/sealed/card").json()["value"] == "4111 1111"
    # a value of a key retired before its re-encryption is lost: the app says so
    Database(migrated_url).put_sealed("lost", token)
    assert retired.get("/api/sealed/lost").status_code == 500


def test_sealed_values_need_a_key_and_a_name(make_client, migrated_url):
    assert make_client(migrated_url).get("/api/sealed/card").status_code == 503
    client = make_client(migrated_url, ENCRYPTION_KEY=KEY_OLD)
    assert client.get("/api/sealed/no-such").status_code == 404
    assert client.put("/api/sealed/Bad%20Name", json={"value": "x"}).status_code == 400
    assert client.put("/api/sealed/card", json={"value": 3}).status_code == 400
