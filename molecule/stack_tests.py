"""The full-stack checks, shared by the stack-* scenarios (each tests/test_stack.py imports them):
site.yml's result as its users see it, through nginx with TLS verified against Pebble's root
only, and as an outsider sees the host's ports. In file order: the converged stack, the
backup/restore round trip, the test e-mail. The work under load (a redeploy, a rotation of every
secret): molecule/postgresql, through its load balancer."""

import json
import os
import shutil
import uuid

import pytest

import web_client as web
from conftest import ansible_playbook, container_ip, host_spec, reaches_a_listener
from smtp_sink import Sink

APP = "demoapp"
SCENARIO = os.environ.get("MOLECULE_SCENARIO_NAME", "")
ROOT = os.environ.get("MOLECULE_PROJECT_DIRECTORY", ".")

state = {}   # what earlier tests learned (tokens), for later ones


@pytest.fixture(scope="module")
def ctx():
    return web.pebble_context()


@pytest.fixture
def site(host, ctx):
    # each host's name (stack_vars.yml: berth_domains), pointed at it by prepare.yml
    return {"ip": container_ip(host.backend.hostname), "context": ctx, "name": f"{host.backend.hostname}.berth.test"}


def playbook(name, host, *args):
    """A playbook of berth's, as the operator runs it, for this test's host only."""
    return ansible_playbook(os.path.join(ROOT, "playbooks", name), "--limit", host.backend.hostname, *args)


def site_yml(host, *args):
    return ansible_playbook(os.path.join(ROOT, "site.yml"), "--limit", host.backend.hostname, *args)


def changed_release(ephemeral_dir, name, marker):
    """A copy of the reference app with its index page changed: a new release to deploy."""
    source = os.path.join(ephemeral_dir, name)
    shutil.rmtree(source, ignore_errors=True)
    shutil.copytree(os.path.join(ROOT, "examples", "app"), source,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    with open(os.path.join(source, "static", "index.html"), "a", encoding="utf-8") as fh:
        fh.write(f"<!-- {marker} -->\n")
    return source


def me(site, token):
    return web.get(**site, path="/api/me", headers={"Authorization": f"Bearer {token}"})


def token(site, sub):
    status, body = web.post_json(**site, path="/api/token", payload={"sub": sub})
    assert status == 200, body
    return body["token"]


# A value the app encrypts at rest with ENCRYPTION_KEY (examples/app: berth_demo/sealed.py).
SEALED = "card", {"value": "4111 1111 1111 1111"}


def sealed(site):
    status, _, body = web.get(**site, path=f"/api/sealed/{SEALED[0]}")
    return status, json.loads(body)


def put_sealed(site):
    status, _, _ = web.get(**site, path=f"/api/sealed/{SEALED[0]}", method="PUT",
                           headers={"Content-Type": "application/json"}, body=json.dumps(SEALED[1]))
    return status


# --- the converged stack -------------------------------------------------------------------

def test_ready_over_verified_tls(site):
    status, _, body = web.get(**site, path="/health/ready")
    assert status == 200, body
    assert json.loads(body)["status"] == "ok"
    cert = web.served_certificate(site["ip"], site["context"], site["name"])
    assert "Pebble" in dict(x[0] for x in cert["issuer"])["commonName"]


def test_http_redirects_to_https(site):
    status, headers, _ = web.plain_http(site["ip"], "/health/ready", site["name"])
    assert (status, headers["Location"]) == (301, f"https://{site['name']}/health/ready")


def test_wss_echo(site):
    with web.websocket(site["ip"], site["context"], site["name"]) as ws:
        ws.send("through the whole stack")
        assert ws.recv(timeout=10) == "through the whole stack"


def test_token_issued_and_verified(site):
    state["old_token"] = token(site, "before-rotation")
    status, _, body = me(site, state["old_token"])
    assert status == 200, body
    assert json.loads(body) == {"sub": "before-rotation", "key": "current"}
    assert me(site, state["old_token"] + "x")[0] == 401


@pytest.mark.parametrize("port", [22, 80, 443])
def test_open_to_an_outsider(host, site, port):
    outsider = host.get_host(host_spec(f"{SCENARIO}-outsider"))
    assert outsider.run(f"timeout 5 bash -c '</dev/tcp/{site['ip']}/{port}'").rc == 0


def test_redis_on_its_socket_only(host):
    # the app's REDIS_URL is the socket; the readiness check above went through it
    assert host.socket(f"unix:///run/redis-berth/redis-server.sock").is_listening
    assert not host.socket("tcp://127.0.0.1:6379").is_listening
    assert not host.socket("tcp://::1:6379").is_listening


@pytest.mark.parametrize("port", [5432, 6379, 8000, 8080, 25, 3306, 9100])
def test_closed_to_an_outsider(host, site, port):
    assert not reaches_a_listener(host, site["ip"], port, host.get_host(host_spec(f"{SCENARIO}-outsider")))


# --- data: backup, restore -------------------------------------------------------------------

def notes(site):
    status, _, body = web.get(**site, path="/api/notes")
    assert status == 200, body
    return [note["text"] for note in json.loads(body)]


def test_notes_survive_backup_and_restore(host, site):
    # texts of this run's own: a re-run of verify finds the notes of earlier runs
    kept, later = f"kept {uuid.uuid4()}", f"after the backup {uuid.uuid4()}"
    assert web.post_json(**site, path="/api/notes", payload={"text": kept})[0] == 201
    code, out = playbook("backup.yml", host)
    assert code == 0, out[-3000:]
    name = next(line.split("Newest backup: ", 1)[1].strip().strip("'\"")
                for line in out.splitlines() if "Newest backup: " in line)
    assert web.post_json(**site, path="/api/notes", payload={"text": later})[0] == 201
    with web.RequestLoop(site["ip"], site["context"], site["name"], [("GET", "/api/notes", {}, 200)]) as loop:
        code, out = playbook("restore.yml", host, "-e", f"backup={name}")
    assert code == 0, out[-3000:]
    texts = notes(site)
    assert kept in texts and later not in texts, texts
    # While the database was replaced, the app was down with its socket: nginx answered 503 and
    # no request started the app again; every other request was served.
    unavailable = [failure for failure in loop.failed if ": 503 " in failure]
    assert unavailable and unavailable == loop.failed, loop.failed[:10]


# --- e-mail ------------------------------------------------------------------------------------

def test_smtp_test_playbook_sends_as_the_app(host):
    # the scenario's own port (its group_vars), as the host has it: digits, written unquoted
    port = int(host.check_output(f"sed -n 's/^SMTP_PORT=//p' /etc/berth/{APP}/app.env"))
    with Sink("10.88.0.1", port, "berth", "test-relay-pass") as sink:
        host.run(f"install -m 0644 /dev/stdin /etc/berth/{APP}/smtp-ca.pem <<'EOF'\n{sink.ca_pem}EOF")
        code, out = playbook("smtp-test.yml", host, "-e", "smtp_test_to=ops@berth.test")
    assert code == 0, out[-3000:]
    assert f"sent to ops@berth.test through 10.88.0.1:{port} (starttls, logged in as berth)" in out
    assert sink.logins == [True]
    assert [m.rcpt_tos for m in sink.messages] == [["ops@berth.test"]]
