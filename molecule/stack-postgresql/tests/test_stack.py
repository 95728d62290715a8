"""The full stack with PostgreSQL: the shared checks, then the loss of the server and its
recovery onto a new one, which Molecule's idempotence step converges again (changed=0). The work
under load (a redeploy, a rotation of every secret) is molecule/postgresql's, through its load
balancer."""

import os
import time
import uuid

import web_client as web
from conftest import ansible_playbook, replace_instance
from stack_tests import *  # noqa: F401,F403 (pytest collects the imported tests)
from stack_tests import APP, ROOT, SEALED, me, notes, playbook, put_sealed, sealed, token

# The new server: the stack image (Debian 12 with berth's packages unpacked, nothing configured)
# keeps the suite in its budget; BERTH_RECOVERY_IMAGE=localhost/berth-debian12 recovers onto a
# bare one, for the RTO in the README.
RECOVERY_IMAGE = os.environ.get("BERTH_RECOVERY_IMAGE", "localhost/berth-debian12-stack")
SECRET_VALUES = ["berth-s3-test", "berth-recovery-test-password", "test-relay-pass"]


def test_postgresql_listens_on_loopback_only(host):
    # no remote clients (a database host of its own: molecule/postgresql)
    listening = host.check_output("ss -ltnH 'sport = :5432'")
    addresses = {line.split()[3].rsplit(":", 1)[0] for line in listening.splitlines()}
    assert addresses <= {"127.0.0.1", "[::1]"} and addresses, addresses


def test_lost_server_recovered_onto_a_new_one(host, site):
    name = host.backend.hostname
    note, upload = f"before the loss {uuid.uuid4()}", f"uploaded {uuid.uuid4()}\n"
    assert web.post_json(**site, path="/api/notes", payload={"text": note})[0] == 201
    host.check_output(f"runuser -u demoapp -- sh -c 'cat > /srv/demoapp/shared/media/lost.txt' <<'EOF'\n{upload}EOF")
    assert web.get(**site, path="/media/lost.txt")[::2] == (200, upload.encode())
    issued = token(site, "before-the-loss")
    assert put_sealed(site) == 201
    code, out = playbook("backup.yml", host)   # the push to the remote is part of it
    assert code == 0, out[-3000:]

    replace_instance(name, RECOVERY_IMAGE)
    started = time.monotonic()
    code, out = ansible_playbook(os.path.join(ROOT, "playbooks", "recover.yml"), "--limit", name,
                                 "-e", "remote=s3", "-e", "snapshot=latest")
    assert code == 0, out[-3000:]
    status, _, body = web.get(**site, path="/health/ready")
    print(f"recovered onto {RECOVERY_IMAGE}: serving {time.monotonic() - started:.0f} s after the playbook started")
    assert status == 200, body
    # neither the provided secrets nor the generated ones that came back from the snapshot
    env = host.file(f"/etc/berth/{APP}/secrets.env").content_string
    generated = [line.split("=", 1)[1].strip("'\"") for line in env.splitlines()
                 if "=" in line and not line.startswith("#")]
    leaked = [value for value in SECRET_VALUES + [v for v in generated if len(v) >= 16] if value in out]
    assert not leaked, f"{len(leaked)} secret values in the recovery's output"
    assert note in notes(site)
    assert web.get(**site, path="/media/lost.txt")[::2] == (200, upload.encode())
    status, _, body = me(site, issued)   # a token from before the loss: the same keys came back
    assert status == 200, body
    assert sealed(site) == (200, {"name": SEALED[0], **SEALED[1], "key": "current"})
