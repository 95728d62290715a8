"""Rotation of the app's Redis password on every Redis host, in order: the rotation (both
passwords accepted), a re-run within the overlap, the end of the overlap (only the new one).
Each step is one playbook run for all hosts; the tests then check each host."""

import os

import testinfra

from conftest import ansible_playbook, host_spec, recap_changed
from redis_host import REDIS_HOSTS, admin_password, app, main_pid, secrets, seen_values

outputs = []


def redis_hosts():
    return [testinfra.get_host(host_spec(name)) for name in REDIS_HOSTS]


def converge(*args):
    code, out = ansible_playbook("converge.yml", *args)
    outputs.append(out)
    assert code == 0, out[-3000:]
    return out


def test_rotation_accepts_both_passwords_without_a_restart():
    hosts = redis_hosts()
    before = {h.backend.hostname: (secrets(h)["REDIS_PASSWORD"], main_pid(h)) for h in hosts}
    # The roles a rotation involves (tags: base would only add time).
    converge("--tags", "secrets,redis", "-e", "rotate_secrets=REDIS_PASSWORD")
    for h in hosts:
        name, (old, pid) = h.backend.hostname, before[h.backend.hostname]
        values = secrets(h)
        new = values["REDIS_PASSWORD"]
        assert new != old and values["REDIS_PASSWORD_PREVIOUS"] == old, name
        assert app(h, "SET", "berth:rotation", "new", password=new) == "OK", name
        assert app(h, "GET", "berth:rotation", password=old) == "new", name
        assert app(h, "GET", "berth:rotation", password=old, tcp=True) == "new", name
        assert values["REDIS_URL"].startswith(f"unix://demoapp:{new}@"), name
        assert main_pid(h) == pid, f"{name}: ACL LOAD, not a restart"


def test_rerun_during_the_overlap_changes_nothing():
    out = converge("--tags", "secrets,redis")
    assert recap_changed(out) == 0
    for h in redis_hosts():
        assert "REDIS_PASSWORD_PREVIOUS" in secrets(h), h.backend.hostname


def test_after_the_overlap_only_the_new_password_works():
    hosts = redis_hosts()
    before = {h.backend.hostname: (secrets(h)["REDIS_PASSWORD_PREVIOUS"], main_pid(h)) for h in hosts}
    # Only the secrets role's tasks: the old password goes through the secrets' fan-out
    # (playbooks/secrets-apply.yml), which runs the redis role's rotate. -vvv --diff: the most any run shows,
    # searched for passwords by the last test.
    converge("--tags", "secrets", "-e", "secrets_overlap=0", "-vvv", "--diff")
    for h in hosts:
        name, (old, pid) = h.backend.hostname, before[h.backend.hostname]
        assert "REDIS_PASSWORD_PREVIOUS" not in secrets(h), name
        assert app(h, "GET", "berth:rotation") == "new", name
        assert app(h, "GET", "berth:rotation", tcp=True) == "new", name
        assert "WRONGPASS" in app(h, "GET", "berth:rotation", password=old), name
        assert "WRONGPASS" in app(h, "GET", "berth:rotation", password=old, tcp=True), name
        assert main_pid(h) == pid, f"{name}: ACL LOAD, not a restart"


def test_no_password_appears_in_any_output(ephemeral_dir):
    for h in redis_hosts():
        secrets(h)
        admin_password(h)
    with open(os.path.join(ephemeral_dir, "ansible.log"), encoding="utf-8") as fh:
        logged = fh.read()
    assert "PLAY RECAP" in logged, "Molecule's runs (converge, idempotence) were logged"
    # per host: the old and the new app password, and the admin password
    assert len(outputs) == 3 and len(seen_values) >= 3 * len(redis_hosts())
    for value in seen_values:
        for text in outputs + [logged]:
            assert value not in text, "a password was printed"
