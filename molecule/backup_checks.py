"""The backup role's behaviour, shared by the postgresql and sqlite scenarios.

Each scenario gives `sql(host, statement)`, which runs SQL as the app would, with the
DATABASE_URL from the app's environment, and returns the output.
"""

import json

from conftest import ansible_playbook, exposure

UNIT = "berth-backup-demoapp"
CONFIG = "/etc/berth/demoapp-backup.json"
STATUS = "/var/lib/berth/demoapp/backup-status.json"
SHARED = "/srv/demoapp/shared"


def tool(host, run_as, *args):
    return host.run(f"runuser -u {run_as} -- /usr/local/sbin/berth-backup -c {CONFIG} {' '.join(args)}")


def backups(host, run_as):
    return tool(host, run_as, "list").stdout.split()


def run_unit(host):
    return host.run(f"systemctl start {UNIT}.service")


def check_timer(host):
    timer = host.service(f"{UNIT}.timer")
    assert timer.is_enabled and timer.is_running


def check_sandbox(host):
    # the units read the database and the secrets: each at most 3.0 (the round trip, the
    # drill and the failures below prove they still work in it)
    levels = {unit: exposure(host, unit) for unit in
              (f"{UNIT}.service", f"{UNIT}-check.service", f"{UNIT}-alert.service")}
    print(levels)
    assert all(level <= 3.0 for level in levels.values()), levels
    # and systemd read every line of them as written (an include once glued two lines together)
    for unit in (f"{UNIT}.service", f"{UNIT}-check.service"):
        props = dict(line.split("=", 1) for line in host.check_output(
            f"systemctl show {unit} -p Nice -p RestrictAddressFamilies").splitlines())
        assert props["Nice"] == "10", (unit, props)
        assert set(props["RestrictAddressFamilies"].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}, (unit, props)
    assert host.check_output(f"systemctl show {UNIT}-check.service -p CacheDirectory") == f"CacheDirectory={UNIT}"


def check_backup_restore_round_trip(host, run_as, sql):
    sql(host, "CREATE TABLE IF NOT EXISTS drill_notes (text text)")
    sql(host, "INSERT INTO drill_notes (text) VALUES ('keep me')")
    assert run_unit(host).rc == 0
    status = json.loads(host.file(STATUS).content_string)
    newest = backups(host, run_as)[-1]
    assert status["ok"] is True and status["backup"] == newest, status
    sql(host, "DELETE FROM drill_notes WHERE text = 'keep me'")
    assert "keep me" not in sql(host, "SELECT text FROM drill_notes")
    code, out = ansible_playbook("../../playbooks/restore.yml", "-e", f"backup={newest}")
    assert code == 0, out[-3000:]
    assert "keep me" in sql(host, "SELECT text FROM drill_notes")
    # the restore kept a safety backup of what it replaced
    assert len(backups(host, run_as)) >= 2


def check_flipped_bytes(host, run_as, dump_name):
    assert run_unit(host).rc == 0
    newest = backups(host, run_as)[-1]
    dump = f"/var/backups/berth/demoapp/{newest}/{dump_name}"
    size = int(host.check_output(f"stat -c %s {dump}"))
    host.check_output(
        f"printf '\\xff\\x00\\xff' | dd of={dump} bs=1 seek={size // 2} conv=notrunc status=none")
    code, out = ansible_playbook("../../playbooks/restore.yml", "-e", f"backup={newest}")
    assert code != 0
    assert "checksum mismatch" in out
    drill = tool(host, run_as, "drill")
    assert drill.rc != 0
    status = json.loads(host.file(STATUS).content_string)
    assert status["ok"] is False and status["backup"] == newest and "checksum" in status["detail"]
    host.check_output(f"rm -r /var/backups/berth/demoapp/{newest}")


def check_failure_is_loud(host, break_cmd, repair_cmd):
    host.check_output(break_cmd)
    try:
        assert run_unit(host).rc != 0
        assert f"{UNIT}.service" in host.check_output("systemctl --failed --no-legend --plain")
        check_alert(host)
    finally:
        host.check_output(repair_cmd)
        host.run(f"systemctl reset-failed {UNIT}.service")
    assert run_unit(host).rc == 0


def check_alert(host, unit=f"{UNIT}.service"):
    # OnFailure= starts the alert after the failure: it may not have run yet (up to 30 s).
    alert = host.check_output(
        f"for i in $(seq 60); do journalctl -u {UNIT}-alert.service -o cat --no-pager"
        f" | grep -qF 'ALERT: {unit} failed' && break; sleep 0.5; done;"
        f" journalctl -u {UNIT}-alert.service -o cat --no-pager")
    assert f"ALERT: {unit} failed" in alert


def check_retention(host, run_as):
    assert run_unit(host).rc == 0
    assert run_unit(host).rc == 0
    names = backups(host, run_as)
    assert len(names) >= 3
    old = names[:-1]
    for name in old:
        host.check_output(f"touch -d '40 days ago' /var/backups/berth/demoapp/{name}")
    assert run_unit(host).rc == 0
    left = backups(host, run_as)
    assert not set(old) & set(left), left
    assert names[-1] in left


def status(host):
    return json.loads(host.file(STATUS).content_string)


def check_remote_round_trip(host, sql, remotes, secret_values):
    """Pushed to each remote and restored from there by the drill; then, with the host's own
    backups gone, a remote snapshot brings a deleted row back; the listing shows both sides."""
    sql(host, "CREATE TABLE IF NOT EXISTS remote_notes (text text)")
    sql(host, "INSERT INTO remote_notes (text) VALUES ('offsite')")
    # an upload of the app's, which only it may read
    host.check_output(f"install -d -o demoapp -g demoapp -m 0750 {SHARED} {SHARED}/uploads"
                      f" && runuser -u demoapp -- sh -c 'echo uploaded > {SHARED}/uploads/photo.txt'")
    assert run_unit(host).rc == 0
    pushed = status(host)["remotes"]
    for name in remotes:
        assert pushed[name]["ok"] and "1 files restored from the remote copy" in pushed[name]["detail"], pushed
    host.check_output("find /var/backups/berth/demoapp -mindepth 1 -delete")
    sql(host, "DELETE FROM remote_notes")
    host.check_output(f"rm {SHARED}/uploads/photo.txt && runuser -u demoapp -- touch {SHARED}/later.txt")
    code, out = ansible_playbook("../../playbooks/restore.yml", "-e", "snapshot=latest", "-e", f"remote={remotes[-1]}")
    assert code == 0, out[-3000:]
    assert sql(host, "SELECT text FROM remote_notes") == "offsite"
    assert host.check_output(f"runuser -u demoapp -- cat {SHARED}/uploads/photo.txt") == "uploaded"
    assert not host.file(f"{SHARED}/later.txt").exists
    code, out = ansible_playbook("../../playbooks/backups.yml")
    assert code == 0, out[-3000:]
    for name in remotes:
        assert f"remote {name} " in out and pushed[name]["snapshot"][:8] in out
    assert not [value for value in secret_values if value in out]


def check_remote_check_unit(host, remotes):
    assert host.run(f"systemctl start {UNIT}-check.service").rc == 0
    checks = status(host)["checks"]
    assert all(checks[name]["ok"] for name in remotes), checks


def check_remote_failure(host, run_as, remote, words, break_it, repair_it):
    """A push that fails fails the unit loudly, says why in the status; the host's new backup is
    kept, and the next run after the repair pushes again."""
    before = len(backups(host, run_as))
    break_it()
    try:
        assert run_unit(host).rc != 0
        result = status(host)["remotes"][remote]
        assert not result["ok"] and words in result["detail"], result
        check_alert(host)
    finally:
        repair_it()
        host.run(f"systemctl reset-failed {UNIT}.service")
    assert len(backups(host, run_as)) == before + 1
    assert run_unit(host).rc == 0
