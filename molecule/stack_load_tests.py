"""The full stack under load (stack-postgresql, whose rotation covers the database password too):
a redeploy, a rotation of the database and Redis passwords, the JWT key and the encryption key
(site.yml --tags secrets), then the overlap ended at once and the encryption key retired
(rotate-secrets.yml --tags secrets), each under a steady request stream over HTTPS that must see
no failed request. That a whole site.yml after all this changes nothing is Molecule's idempotence
step, which stack-postgresql runs after verify. Runs after stack_tests.py's checks, which issue
the token used here."""

import json
import os

import web_client as web
from stack_tests import APP, changed_release, me, playbook, site_yml, state, token

def load(site, bearer):
    auth = {"Authorization": f"Bearer {bearer}"}
    return web.RequestLoop(site["ip"], site["context"], site["name"], [
        ("GET", "/health/ready", {}, 200),
        ("GET", "/api/me", auth, 200),
        ("GET", "/api/notes", {}, 200),
    ])


def test_redeploy_under_load(host, site, ephemeral_dir):
    source = changed_release(ephemeral_dir, "second", "second release")
    # a static file changed and the same size: its validators must change all the same
    css = os.path.join(source, "static", "style.css")
    with open(css, encoding="utf-8") as fh:
        text = fh.read()
    with open(css, "w", encoding="utf-8") as fh:
        fh.write(text.replace("#1d2430", "#1d2431", 1))
    before = json.loads(web.get(**site, path="/api/version")[2])["release"]
    etag = web.get(**site, path="/static/style.css")[1]["ETag"]
    with load(site, state["old_token"]) as loop:
        code, out = playbook("deploy.yml", host, "-e", f"app_source_dir={source}")
    assert code == 0, out[-3000:]
    assert json.loads(web.get(**site, path="/api/version")[2])["release"] != before
    _, headers, body = web.get(**site, path="/static/style.css")
    assert b"#1d2431" in body and headers["ETag"] != etag, headers
    assert loop.count >= 50 and loop.failed == [], loop.failed[:10]
    # Back to the scenario's own source, a known release (switched to without a build): the
    # whole site.yml of Molecule's idempotence step, after these tests, must find it live.
    code, out = playbook("deploy.yml", host)
    assert code == 0, out[-3000:]
    assert json.loads(web.get(**site, path="/api/version")[2])["release"] == before


ROTATED = ("DATABASE_PASSWORD", "REDIS_PASSWORD", "JWT_SECRET", "ENCRYPTION_KEY")
SEALED = "card", {"value": "4111 1111 1111 1111"}


def sealed(site):
    status, _, body = web.get(**site, path=f"/api/sealed/{SEALED[0]}")
    return status, json.loads(body)


def put_sealed(site):
    status, _, _ = web.get(**site, path=f"/api/sealed/{SEALED[0]}", method="PUT",
                           headers={"Content-Type": "application/json"}, body=json.dumps(SEALED[1]))
    return status


def test_rotation_by_a_secrets_only_run_under_load(host, site):
    # site.yml limited to the secrets: the fan-out (playbooks/secrets-apply.yml) gives
    # PostgreSQL and Redis the new passwords, then restarts the app onto them
    # a value the app encrypts at rest with ENCRYPTION_KEY (examples/app: berth_demo/sealed.py)
    assert put_sealed(site) == 201
    before = host.file(f"/etc/berth/{APP}/secrets.env").content_string
    pid = host.check_output(f"systemctl show -p MainPID --value {APP}.service")
    with load(site, state["old_token"]) as loop:
        code, out = site_yml(host, "--tags", "secrets", "-e", "rotate_secrets=" + ",".join(ROTATED))
    assert code == 0, out[-3000:]
    assert loop.count >= 50 and loop.failed == [], loop.failed[:10]
    after = host.file(f"/etc/berth/{APP}/secrets.env").content_string
    for name in ROTATED:
        assert f"{name}_PREVIOUS=" in after and f"{name}_PREVIOUS=" not in before, name
    assert "SECRET_KEY_PREVIOUS=" not in after
    assert host.check_output(f"systemctl show -p MainPID --value {APP}.service") != pid
    # the old token verifies with the previous key; a new one is signed with the new key
    assert json.loads(me(site, state["old_token"])[2])["key"] == "previous"
    state["new_token"] = token(site, "after-rotation")
    assert json.loads(me(site, state["new_token"])[2])["key"] == "current"
    assert login_roles(host) == 2
    # the app re-encrypted it with the new key when it restarted
    assert sealed(site) == (200, {"name": SEALED[0], **SEALED[1], "key": "current"})


def login_roles(host):
    """The app's PostgreSQL login roles: one per live password."""
    return int(host.check_output(
        f"runuser -u postgres -- psql -tAc \"SELECT count(*) FROM pg_roles WHERE rolname ~ '^{APP}_[0-9a-f]{{8}}$'\""))


# The overlap ended at once (rotate-secrets.yml, limited to the secrets): the fan-out still
# drops the old login role and Redis password, and restarts the app onto the values that remain.
def test_end_of_overlap_under_load(host, site):
    assert login_roles(host) == 2
    pid = host.check_output(f"systemctl show -p MainPID --value {APP}.service")
    with load(site, state["new_token"]) as loop:
        code, out = playbook("rotate-secrets.yml", host, "--tags", "secrets", "-e", "retire_secrets=" + ",".join(ROTATED))
    assert code == 0, out[-3000:]
    assert loop.count >= 50 and loop.failed == [], loop.failed[:10]
    assert "_PREVIOUS=" not in host.file(f"/etc/berth/{APP}/secrets.env").content_string
    assert host.check_output(f"systemctl show -p MainPID --value {APP}.service") != pid
    assert login_roles(host) == 1
    assert me(site, state["old_token"])[0] == 401
    assert me(site, state["new_token"])[0] == 200
    assert web.get(**site, path="/health/ready")[0] == 200
    # ENCRYPTION_KEY_PREVIOUS retired: the value reads with the new key alone
    assert sealed(site) == (200, {"name": SEALED[0], **SEALED[1], "key": "current"})

