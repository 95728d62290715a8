"""`python -m berth_flask.migrate` run as a deploy runs it: a process with only DATABASE_URL set."""

import sqlite3
from pathlib import Path

from demo_support import PG_PASSWORD, free_port, run_migration

from berth_flask.db import Database

APP_DIR = Path(__file__).resolve().parent.parent


def migrate(database_url):
    return run_migration("berth_flask.migrate", database_url, APP_DIR)


def test_migrate_is_idempotent(database_url):
    engine = database_url.split(":")[0]
    for _ in range(2):
        result = migrate(database_url)
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"berth_flask: schema up to date ({engine}: notes)\n"
    Database(database_url).add_note("after two migrations")
    assert migrate(database_url).returncode == 0
    assert [note["text"] for note in Database(database_url).list_notes()] == ["after two migrations"]


def test_migrate_sets_wal_on_sqlite(sqlite_url, tmp_path):
    assert migrate(sqlite_url).returncode == 0
    with sqlite3.connect(tmp_path / "db.sqlite3") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_migrate_needs_database_url():
    result = migrate(None)
    assert result.returncode == 1
    assert result.stderr == "berth_flask: configuration error: DATABASE_URL is missing\n"


def test_migrate_failure_is_one_line_without_password():
    result = migrate(f"postgresql://berth:{PG_PASSWORD}@127.0.0.1:{free_port()}/gone")
    assert result.returncode == 1
    assert result.stderr.startswith("berth_flask: migration failed (postgresql): ")
    assert result.stderr.count("\n") == 1
    assert PG_PASSWORD not in result.stderr + result.stdout
