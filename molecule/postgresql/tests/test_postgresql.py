"""PostgreSQL and its backups, on the host and from a second container."""

import pytest

import backup_checks as checks
from conftest import as_app

ENV = "/etc/berth/demoapp/secrets.env"


def sql(host, statement):
    """As the app: its user, its environment, its DATABASE_URL."""
    return as_app(host, ENV, "demoapp", 'psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -tA', statement)


@pytest.fixture
def outsider(host):
    return host.get_host("podman://postgresql-outsider")


def test_app_connects_with_its_password(host):
    assert sql(host, "SELECT current_user") == "demoapp"


def test_wrong_password_is_refused(host):
    result = host.run("PGPASSWORD=wrong psql -h localhost -U demoapp -d demoapp -tAc 'SELECT 1'")
    assert result.rc != 0
    assert "password authentication failed" in result.stderr


def test_other_roles_cannot_use_the_app_database(host):
    host.run("runuser -u postgres -- psql -c \"CREATE ROLE intruder LOGIN PASSWORD 'intruder-pass'\"")
    result = host.run("PGPASSWORD=intruder-pass psql -h localhost -U intruder -d demoapp -tAc 'SELECT 1'")
    assert result.rc != 0


def test_listens_on_loopback_only(host):
    listening = host.check_output("ss -ltnH 'sport = :5432'")
    addresses = {line.split()[3].rsplit(":", 1)[0] for line in listening.splitlines()}
    assert addresses <= {"127.0.0.1", "[::1]"} and addresses, addresses


def test_not_reachable_from_another_host(outsider, ip):
    assert outsider.run(f"timeout 3 bash -c '</dev/tcp/{ip}/5432'").rc != 0
    # the outsider does reach the host: SSH answers
    assert outsider.run(f"timeout 3 bash -c '</dev/tcp/{ip}/22'").rc == 0


def test_memory_tuned_from_the_setting(host):
    def show(name):
        return host.check_output(f"runuser -u postgres -- psql -tAc 'SHOW {name}'")
    assert show("shared_buffers") == "256MB"
    assert show("effective_cache_size") == "768MB"
    assert show("maintenance_work_mem") == "64MB"
    assert show("password_encryption") == "scram-sha-256"


def test_timer(host):
    checks.check_timer(host)


def test_backup_restore_round_trip(host):
    checks.check_backup_restore_round_trip(host, "postgres", sql)


def test_flipped_bytes_refused_and_flagged(host):
    checks.check_flipped_bytes(host, "postgres", "db.dump")


def test_failure_is_loud(host):
    checks.check_failure_is_loud(host, "systemctl stop postgresql@15-main",
                                 "systemctl start postgresql@15-main")


def test_retention(host):
    checks.check_retention(host, "postgres")
