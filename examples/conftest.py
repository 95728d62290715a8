"""Real services for the example apps' tests (examples/app, examples/wsgi-app): a throwaway
redis-server and PostgreSQL cluster per session, listening on this machine only (loopback and
unix sockets in temporary directories), and an empty or migrated database of either engine per
test. Each app's conftest.py names its own parts: app_database (its Database class) and
app_logger (its logger's name)."""

import glob
import itertools
import logging
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import psycopg
import pytest
import redis

# The contract's test values and helpers (demo_support) serve both apps' tests.
sys.path.insert(0, str(Path(__file__).resolve().parent / "app" / "tests"))

from demo_support import PG_PASSWORD, PG_USER, REDIS_PASSWORD, free_port, wait_for


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    binary = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/bin:/usr/sbin")
    if not binary:
        pytest.skip("redis-server is not installed (Debian package redis-server)")
    workdir = tmp_path_factory.mktemp("redis")
    port, sock = free_port(), workdir / "redis.sock"
    with open(workdir / "redis.log", "wb") as log:
        proc = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(port), "--unixsocket", str(sock),
             "--unixsocketperm", "700", "--save", "", "--appendonly", "no",
             "--requirepass", REDIS_PASSWORD, "--dir", str(workdir)],
            stdout=log, stderr=subprocess.STDOUT)
    server = SimpleNamespace(
        tcp_url=f"redis://default:{REDIS_PASSWORD}@127.0.0.1:{port}/0",
        unix_url=f"unix://default:{REDIS_PASSWORD}@{sock}?db=0",
    )
    try:
        wait_for(lambda: redis.from_url(server.unix_url).ping(), "redis-server")
        yield server
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def postgres_bindir() -> Path | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda path: int(Path(path).parent.parent.name))
    return Path(candidates[-1]).parent if candidates else None


def unprivileged_user():
    """PostgreSQL refuses to run as root: as root, run it as the `postgres` (or `nobody`) user."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    pytest.skip("running as root and neither a postgres nor a nobody user exists")


@pytest.fixture(scope="session")
def postgres_server():
    bindir = postgres_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries are not installed (Debian package postgresql)")
    user = unprivileged_user()
    # Not under pytest's tmp dir: that is private to root, and the server runs as another user.
    base = Path(tempfile.mkdtemp(prefix="berth-pg-"))
    (base / "pwfile").write_text(PG_PASSWORD + "\n")
    if user:
        for path in (base, base / "pwfile"):
            os.chown(path, user.pw_uid, user.pw_gid)
    as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []} if user else {}
    port = free_port()

    def run(*args):
        subprocess.run([str(arg) for arg in args], cwd=base, check=True, capture_output=True,
                       env={"PATH": "/usr/bin:/bin", "LANG": "C"}, **as_user)

    # Durability is worth nothing here; speed is.
    options = (f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={base}"
               " -c fsync=off -c synchronous_commit=off -c full_page_writes=off")
    started = False
    try:
        run(bindir / "initdb", "-D", base / "data", "-U", PG_USER, "--pwfile", base / "pwfile",
            "--auth=scram-sha-256", "--locale=C", "-E", "UTF8", "--no-sync")
        run(bindir / "pg_ctl", "start", "-w", "-t", "30", "-D", base / "data",
            "-l", base / "server.log", "-o", options)
        started = True
        server = SimpleNamespace(host="127.0.0.1", port=port, socket_dir=str(base),
                                 databases=itertools.count(1))
        server.url = lambda db, unix=False: (
            f"postgresql://{PG_USER}:{PG_PASSWORD}@/{db}?host={base}&port={port}" if unix
            else f"postgresql://{PG_USER}:{PG_PASSWORD}@127.0.0.1:{port}/{db}")
        yield server
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"PostgreSQL test cluster failed: {exc.stderr.decode()}") from exc
    finally:
        if started:
            run(bindir / "pg_ctl", "stop", "-m", "immediate", "-D", base / "data")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgresql_url(postgres_server):
    """A fresh, empty database; the unix-socket URL form, as berth configures it by default."""
    name = f"test_{next(postgres_server.databases)}"
    with psycopg.connect(postgres_server.url("postgres"), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return postgres_server.url(name, unix=True)


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'db.sqlite3'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request):
    """Each test that uses it runs once per engine, against an empty (not migrated) database."""
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def migrated_url(database_url, app_database):
    app_database(database_url).migrate()
    return database_url


@pytest.fixture
def app_log(app_logger):
    """The messages the app logs during the test."""
    records = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logging.getLogger(app_logger).addHandler(handler)
    yield records
    logging.getLogger(app_logger).removeHandler(handler)
