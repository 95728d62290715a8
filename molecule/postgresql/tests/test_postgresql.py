"""PostgreSQL as a database host and its backups, on the host and from this machine."""

import json
import os
import re
import subprocess
import urllib.parse

import pytest

import backup_checks as checks
from conftest import ansible_playbook, as_app, exposure, host_spec, recap_changed
from stack_tests import SEALED, me, put_sealed, sealed, token
from test_balancer import balanced_site
from test_balancer import load as balanced_load

# the database server (test_web_server.py: its web server)
testinfra_hosts = [host_spec("postgresql-debian12")]
WEB = "postgresql-web"
ENV = "/etc/berth/demoapp/secrets.env"
CERT = "/etc/ssl/berth-postgresql/server.crt"


def sql(host, statement):
    """As the app: its user, its environment, its DATABASE_URL."""
    return as_app(host, ENV, "demoapp", 'psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -tA', statement)


def database_url(host):
    env = host.file(ENV).content_string.splitlines()
    return next(line.split("=", 1)[1] for line in env if line.startswith("DATABASE_URL="))


def connect(host, url, statement):
    return host.run(f"psql '{url}' -v ON_ERROR_STOP=1 -qtAc '{statement}'")


def test_app_connects_with_its_password(host):
    # it logs in as the login role of its password and acts as the owner role
    session_user, current_user = sql(host, "SELECT session_user, current_user").split("|")
    assert re.fullmatch("demoapp_[0-9a-f]{8}", session_user), session_user
    assert current_user == "demoapp"


def test_wrong_password_is_refused(host):
    login = sql(host, "SELECT session_user")
    for user in (login, "demoapp"):
        result = host.run(f"PGPASSWORD=wrong psql -h localhost -U {user} -d demoapp -tAc 'SELECT 1'")
        assert result.rc != 0
        assert "password authentication failed" in result.stderr


def test_other_roles_cannot_use_the_app_database(host):
    host.run("runuser -u postgres -- psql -c \"CREATE ROLE intruder LOGIN PASSWORD 'intruder-pass'\"")
    result = host.run("PGPASSWORD=intruder-pass psql -h localhost -U intruder -d demoapp -tAc 'SELECT 1'")
    assert result.rc != 0


def test_listens_on_loopback_and_its_address(host, ip):
    listening = host.check_output("ss -ltnH 'sport = :5432'")
    addresses = {line.split()[3].rsplit(":", 1)[0] for line in listening.splitlines()}
    assert {"127.0.0.1", ip} <= addresses <= {"127.0.0.1", "[::1]", ip}, addresses


# --- a database host: this machine (10.88.0.1) stands in for a web server, its remote client ---

def remote(host, ip, root, sslmode="verify-full"):
    """Log in from this machine as the app does, to ip, with root as the pinned certificate."""
    url = urllib.parse.urlsplit(database_url(host))
    env = dict(os.environ, PGPASSWORD=urllib.parse.unquote(url.password), PGCONNECT_TIMEOUT="5")
    conninfo = (f"host={ip} port=5432 dbname={url.path[1:]} user={url.username} "
                f"sslmode={sslmode} sslrootcert={root}")
    return subprocess.run(["psql", conninfo, "-c", r"\conninfo"],
                          env=env, capture_output=True, text=True, check=False)


@pytest.fixture
def pinned(host, tmp_path):
    """The server's certificate, as a web server keeps it."""
    path = tmp_path / "server.crt"
    path.write_text(host.file(CERT).content_string)
    return path


def test_a_listed_client_logs_in_over_verified_tls(host, ip, pinned):
    result = remote(host, ip, pinned)
    assert result.returncode == 0 and "SSL connection (protocol: TLSv1.3" in result.stdout, result.stderr


def test_a_listed_client_is_refused_without_tls(host, ip, pinned):
    result = remote(host, ip, pinned, sslmode="disable")
    assert result.returncode != 0
    assert "no pg_hba.conf entry" in result.stderr and "no encryption" in result.stderr, result.stderr


def test_a_client_does_not_trust_another_server(host, ip):
    # the system's CAs, not the pinned certificate: whoever holds the address is not believed
    result = remote(host, ip, "/etc/ssl/certs/ca-certificates.crt")
    assert result.returncode != 0 and "certificate verify failed" in result.stderr, result.stderr


def test_an_address_not_listed_is_refused(host, ip):
    # the host itself, from its own address rather than from loopback
    url = urllib.parse.urlsplit(database_url(host))
    result = host.run(f"PGPASSWORD='{urllib.parse.unquote(url.password)}' psql "
                      f"'host={ip} dbname=demoapp user={url.username} sslmode=require' -tAc 'SELECT 1'")
    assert result.rc != 0 and "no pg_hba.conf entry" in result.stderr, result.stderr


def test_certificate_made_anew_before_it_expires(host, ip, pinned):
    # 4000 days of renewal margin: the certificate in place (3650 days) is due
    code, out = ansible_playbook("converge.yml", "--tags", "database",
                                 "-e", "postgresql_tls_days=5000", "-e", "postgresql_tls_renew_days=4000")
    assert code == 0 and recap_changed(out) >= 1, out[-3000:]
    assert host.file(CERT).content_string != pinned.read_text()
    # the server presents the new one at once (a reload); a client pinning the old one refuses it
    assert "certificate verify failed" in remote(host, ip, pinned).stderr
    pinned.write_text(host.file(CERT).content_string)
    assert remote(host, ip, pinned).returncode == 0


def test_memory_tuned_from_the_setting(host):
    def show(name):
        return host.check_output(f"runuser -u postgres -- psql -tAc 'SHOW {name}'")
    assert show("shared_buffers") == "256MB"
    assert show("effective_cache_size") == "768MB"
    assert show("maintenance_work_mem") == "64MB"
    assert show("password_encryption") == "scram-sha-256"


def test_timer(host):
    checks.check_timer(host)


def test_sandbox(host):
    checks.check_sandbox(host)
    # the server itself, which every test here uses
    unit = f"postgresql@{host.check_output('ls /etc/postgresql')}-main.service"
    level = exposure(host, unit)
    print(f"{unit}: exposure {level}")
    assert level <= 5.0


def test_backup_restore_round_trip(host):
    checks.check_backup_restore_round_trip(host, "postgres", sql)


def test_flipped_bytes_refused_and_flagged(host):
    checks.check_flipped_bytes(host, "postgres", "db.dump")


def test_failure_is_loud(host):
    checks.check_failure_is_loud(host, "systemctl stop postgresql@15-main",
                                 "systemctl start postgresql@15-main")


def test_retention(host):
    checks.check_retention(host, "postgres")


def test_remote_round_trip(host):
    checks.check_remote_round_trip(host, sql, ["rest", "s3"], ["berth-rest-test", "berth-s3-test"])
    checks.check_remote_check_unit(host, ["rest", "s3"])


def web_sql(host, statement):
    """As the app on the web server, with the URL it has there."""
    return sql(host.get_host(host_spec(WEB)), statement)


ROTATED = ("SECRET_KEY", "JWT_SECRET", "COOKIE_SECRET", "ENCRYPTION_KEY", "DATABASE_PASSWORD", "REDIS_PASSWORD",
           "BASIC_AUTH_PASSWORD")


def previous(host):
    return [line.split("_PREVIOUS=", 1)[0] for line in host.file(ENV).content_string.splitlines()
            if "_PREVIOUS=" in line]


# Every generated secret (all, and ENCRYPTION_KEY, which is rotated only when named; not the
# backup repository's password) rotated by a secrets-only run, then the overlap ended, each under
# a steady load through the balancer that must see no failed request; running processes keep
# their connections, the web servers take the new values in the same run.
def test_a_rotation_of_every_secret_under_load(host):
    site = balanced_site()
    old_url = database_url(host)
    sql(host, "CREATE TABLE IF NOT EXISTS rotation_probe (n int)")
    web_login = web_sql(host, "SELECT session_user")
    # a value the app encrypts at rest with ENCRYPTION_KEY, and a token signed with JWT_SECRET
    assert put_sealed(site) == 201
    old_token = token(site, "before-rotation")
    with balanced_load(site, [("GET", "/api/me", {"Authorization": f"Bearer {old_token}"}, 200)]) as loop:
        code, out = ansible_playbook("converge.yml", "--tags", "secrets", "-e", "rotate_secrets=all,ENCRYPTION_KEY")
    assert code == 0, out[-3000:]
    assert loop.count >= 50 and loop.failed == [], loop.failed[:10]
    assert set(ROTATED) <= set(previous(host)) and "RESTIC_PASSWORD" not in previous(host), previous(host)
    new_url = database_url(host)
    assert new_url != old_url
    # during the overlap both passwords log in, each as its own role, both acting as the owner
    for url in (old_url, new_url):
        result = connect(host, url, "INSERT INTO rotation_probe VALUES (1); SELECT current_user")
        assert result.rc == 0, result.stderr
        assert result.stdout.strip() == "demoapp"
    assert connect(host, new_url, "CREATE TABLE rotation_new (n int)").rc == 0
    owner = sql(host, "SELECT tableowner FROM pg_tables WHERE tablename = 'rotation_new'")
    assert owner == "demoapp"
    # the web server took the new password in the same run, and logs in with it
    assert web_sql(host, "SELECT session_user") == sql(host, "SELECT session_user") != web_login
    # the old token verifies with the previous key on either web server, a new one with the new
    # key; the apps re-encrypted the value with the new key when they restarted
    for _ in range(2):
        assert json.loads(me(site, old_token)[2])["key"] == "previous"
    new_token = token(site, "after-rotation")
    assert json.loads(me(site, new_token)[2])["key"] == "current"
    assert sealed(site) == (200, {"name": SEALED[0], **SEALED[1], "key": "current"})

    # the overlap ends: the old password no longer logs in, the new one does
    with balanced_load(site, [("GET", "/api/me", {"Authorization": f"Bearer {new_token}"}, 200)]) as loop:
        code, out = ansible_playbook("converge.yml", "--tags", "secrets",
                                     "-e", "retire_secrets=" + ",".join(previous(host)))
    assert code == 0, out[-3000:]
    assert loop.count >= 50 and loop.failed == [], loop.failed[:10]
    assert "_PREVIOUS=" not in host.file(ENV).content_string
    assert connect(host, old_url, "SELECT 1").rc != 0
    assert connect(host, new_url, "SELECT count(*) FROM rotation_probe").stdout.strip() == "2"
    logins = host.check_output("runuser -u postgres -- psql -tAc "
                               "\"SELECT count(*) FROM pg_roles WHERE rolname ~ '^demoapp_'\"")
    assert logins == "1"
    assert web_sql(host, "SELECT count(*) FROM rotation_probe") == "2"
    for _ in range(2):
        assert me(site, old_token)[0] == 401 and me(site, new_token)[0] == 200
    assert sealed(site) == (200, {"name": SEALED[0], **SEALED[1], "key": "current"})
    code, out = ansible_playbook("converge.yml", "--tags", "secrets,database")
    assert code == 0 and recap_changed(out) == 0, out[-3000:]
