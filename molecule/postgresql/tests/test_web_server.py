"""The web server of the scenario (inventory group berth_web), whose database server is another
host: it keeps that host's secrets and reaches its PostgreSQL and Redis over TLS only, verifying
their pinned certificates, with the URLs the app gets."""

import json
import re

import pytest

from conftest import as_app, host_spec, reaches_a_listener

testinfra_hosts = [host_spec("postgresql-web")]
DB, DB_IP = "postgresql-debian12", "10.88.0.121"
SECRETS = "/etc/berth/demoapp/secrets.env"
APP_ENV = "/etc/berth/demoapp/app-secrets.env"
DERIVED = {"DATABASE_URL", "REDIS_URL"}


def values(host):
    """The secrets file's values as systemd gives them to a unit."""
    names = [line.split("=", 1)[0] for line in host.file(SECRETS).content_string.splitlines()
             if "=" in line and not line.startswith("#")]
    script = "; ".join(f'printf "%s\\n" "${name}"' for name in names)
    return dict(zip(names, as_app(host, SECRETS, "root", script, "").split("\n")))


def as_the_app(host, script, stdin=""):
    return as_app(host, APP_ENV, "demoapp", script, stdin)


def test_keeps_the_database_servers_secrets(host):
    mine, theirs = values(host), values(host.get_host(host_spec(DB)))
    assert {n: v for n, v in mine.items() if n not in DERIVED} == \
        {n: v for n, v in theirs.items() if n not in DERIVED}
    assert mine["DATABASE_URL"].endswith(
        f"@{DB_IP}:5432/demoapp?sslmode=verify-full&sslrootcert=/etc/berth/demoapp/postgresql-server.crt")
    assert mine["REDIS_URL"].startswith("rediss://demoapp:")
    assert mine["REDIS_URL"].endswith(f"@{DB_IP}:6379/0?ssl_ca_certs=/etc/berth/demoapp/redis-server.crt")


def test_the_app_reaches_postgresql_over_verified_tls(host):
    out = as_the_app(host, 'psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -tA', "\\conninfo\nSELECT current_user;\n")
    assert "SSL connection (protocol: TLSv1.3" in out and out.splitlines()[-1] == "demoapp", out


# As a client library reads REDIS_URL: the address, the ACL user and password, the pinned
# certificate (redis-cli takes no rediss:// URL on Debian 12). RESP by hand: stdlib only.
REDIS_PING = """
import os, socket, ssl, urllib.parse as u
url = u.urlsplit(os.environ["REDIS_URL"])
context = ssl.create_default_context(cafile=dict(u.parse_qsl(url.query))["ssl_ca_certs"])
with socket.create_connection((url.hostname, url.port), 5) as raw:
    with context.wrap_socket(raw, server_hostname=url.hostname) as tls:
        def call(*words):
            tls.sendall(("*%d\\r\\n" % len(words) + "".join(
                "$%d\\r\\n%s\\r\\n" % (len(w.encode()), w) for w in words)).encode())
            return tls.recv(256).decode().strip()
        print(url.scheme, tls.version(), call("AUTH", u.unquote(url.username), u.unquote(url.password)), call("PING"))
"""


def test_the_app_reaches_redis_over_verified_tls(host):
    assert as_the_app(host, "python3 -", REDIS_PING) == "rediss TLSv1.3 +OK +PONG"


def test_without_tls_both_refuse(host):
    postgresql = host.run(f"PGCONNECT_TIMEOUT=5 psql 'host={DB_IP} dbname=demoapp user=demoapp sslmode=disable' "
                          "-tAc 'SELECT 1'")
    assert postgresql.rc != 0 and "no encryption" in postgresql.stderr, postgresql.stderr
    # no reply of Redis at all (a plain listener would answer NOAUTH before any password)
    redis = host.run(f"timeout 5 redis-cli -h {DB_IP} -p 6379 PING")
    assert not re.search("PONG|NOAUTH|ERR", redis.stdout + redis.stderr), redis.stdout + redis.stderr


def ready(host):
    out = host.check_output("curl -sS --max-time 10 --unix-socket /run/demoapp/demoapp.sock "
                            "-w '\\n%{http_code}' http://localhost/health/ready")
    body, status = out.rsplit("\n", 1)
    return int(status), json.loads(body)


def test_the_app_is_ready_with_both(host):
    # its own drivers: psycopg (libpq) with the URL's sslmode and root, redis-py with rediss://
    status, body = ready(host)
    assert status == 200 and body["checks"] == {"database": "ok", "redis": "ok"}, body


def test_the_restores_stopped_the_app_and_started_it_again(host):
    # test_postgresql.py restored on the database server (backup_checks): each restore.yml
    # stopped the socket here, then started it; the app answers again
    # systemd's "unit stopped" message, whatever its wording
    stops = host.check_output("journalctl -q -o cat UNIT=demoapp.socket "
                              "MESSAGE_ID=9d1aaa27d60140bd96365438aad20286 | wc -l")
    assert int(stops) >= 3, stops
    assert ready(host)[0] == 200


@pytest.mark.parametrize("port", [80, 443])
def test_the_database_server_keeps_the_web_ports_closed(host, port):
    # it serves no web (firewall_web false there); this web server stands in for anyone
    assert not reaches_a_listener(host.get_host(host_spec(DB)), DB_IP, port, host)
