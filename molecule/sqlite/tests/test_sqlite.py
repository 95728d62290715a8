"""SQLite and its backups, also over SFTP; then berth_database=external through the real provision
playbook (last: it changes the app's DATABASE_URL)."""

import pytest

import backup_checks as checks
from conftest import ansible_playbook, as_app, host_spec

DB = "/srv/demoapp/data/demoapp.sqlite3"
ENV = "/etc/berth/demoapp/secrets.env"


def sql(host, statement):
    """As the app: its user, and the file its DATABASE_URL names."""
    return as_app(host, ENV, "demoapp", 'sqlite3 "${DATABASE_URL#sqlite:///}"', statement)


def test_files_belong_to_the_app(host):
    d = host.file("/srv/demoapp/data")
    assert (d.user, d.group, d.mode) == ("demoapp", "demoapp", 0o750)
    f = host.file(DB)
    assert (f.user, f.group, f.mode) == ("demoapp", "demoapp", 0o640)


def test_wal_mode(host):
    assert host.check_output(f"runuser -u demoapp -- sqlite3 {DB} 'PRAGMA journal_mode'") == "wal"


def test_timer(host):
    checks.check_timer(host)


def test_sandbox(host):
    checks.check_sandbox(host)


def test_backup_restore_round_trip(host):
    checks.check_backup_restore_round_trip(host, "demoapp", sql)


def test_flipped_bytes_refused_and_flagged(host):
    checks.check_flipped_bytes(host, "demoapp", "db.sqlite3")


def test_failure_is_loud(host):
    checks.check_failure_is_loud(host, f"chmod 000 {DB}", f"chmod 640 {DB}")


def test_retention(host):
    checks.check_retention(host, "demoapp")


@pytest.fixture
def target(host):
    return host.get_host(host_spec("sqlite-backup-target"))


def test_remote_round_trip(host):
    checks.check_remote_round_trip(host, sql, ["sftp"], [])
    checks.check_remote_check_unit(host, ["sftp"])


def test_unreachable_remote_is_loud(host):
    route = "unreachable 10.88.0.152/32"
    checks.check_remote_failure(host, "demoapp", "sftp", "cannot back up",
                                lambda: host.check_output(f"ip route add {route}"),
                                lambda: host.check_output(f"ip route del {route}"))


def test_full_remote_is_loud(host, target):
    repos = "/srv/restic/repos"
    checks.check_remote_failure(
        host, "demoapp", "sftp", "cannot back up",
        lambda: target.check_output(f"fallocate -l $(( $(df --output=avail -B1 {repos} | tail -1) - 8192 ))"
                                    f" {repos}/filler"),
        lambda: target.check_output(f"rm -f {repos}/filler"))


def test_external_database_installs_no_server(host):
    url = "postgresql://shop:s3cret-pass@db.example.net:5432/shop?sslmode=require"
    code, out = ansible_playbook(
        "../../playbooks/provision.yml", "--tags", "secrets,database",
        "-e", "berth_app_name=demoapp", "-e", "berth_database=external",
        "-e", f"berth_external_database_url={url}",
        # what group_vars/all.yml derives for external; this scenario's group_vars set sqlite's
        "-e", '{"secrets_derived": {}}')
    assert code == 0, out[-3000:]
    assert url not in out
    got = as_app(host, ENV, "demoapp", 'echo "$DATABASE_URL"', "")
    assert got == url
    assert not host.package("postgresql").is_installed
    assert not host.exists("postgres")
