#!/usr/bin/python3
"""berth-backup: take, check, prune and restore the app's database backups.

    berth-backup [-c CONFIG] backup      dump now, then prune (what the timer runs)
    berth-backup [-c CONFIG] drill       restore the newest backup into a scratch copy and check it
    berth-backup [-c CONFIG] verify NAME check a backup's checksums
    berth-backup [-c CONFIG] restore NAME  replace the live database with a backup (app stopped)
    berth-backup [-c CONFIG] list
    berth-backup [-c CONFIG] alert UNIT  log a failed unit and, when SMTP is set, mail the admin

Each backup is a directory NAME/ holding the dump, manifest.json (row counts per table, taken
in the same snapshot as the dump) and SHA256SUMS; it is built as .NAME.tmp and renamed, so a
directory without a leading dot is always complete. The drill's result goes to a status file
for monitoring. Stdlib only, plus psycopg2 (python3-psycopg2) for PostgreSQL.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import os
import shutil
import smtplib
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_CONFIG = "/etc/berth/backup.json"
SUMS = "SHA256SUMS"
MANIFEST = "manifest.json"


class BackupError(Exception):
    pass


def log(message: str) -> None:
    print(f"berth-backup: {message}", flush=True)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def backups(root: Path) -> list[Path]:
    """Complete backups, oldest first (names sort by time)."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def verify(path: Path) -> None:
    sums = path / SUMS
    if not sums.is_file():
        raise BackupError(f"{path.name}: no {SUMS}")
    listed = set()
    for line in sums.read_text().splitlines():
        expected, name = line.split(None, 1)
        name = name.lstrip("*")
        listed.add(name)
        if not (path / name).is_file() or sha256(path / name) != expected:
            raise BackupError(f"{path.name}: checksum mismatch for {name}")
    if MANIFEST not in listed:
        raise BackupError(f"{path.name}: manifest not covered by {SUMS}")


def manifest(path: Path) -> dict:
    return json.loads((path / MANIFEST).read_text())


# --- engines -------------------------------------------------------------------------------

class Sqlite:
    dump_name = "db.sqlite3"

    def __init__(self, cfg: dict):
        self.path = Path(cfg["sqlite_path"])

    @staticmethod
    def counts(conn: sqlite3.Connection) -> dict[str, int]:
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        return {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}

    def dump(self, tmp: Path) -> dict[str, int]:
        # The online backup API copies a consistent snapshot while the app keeps writing.
        src = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        dst = sqlite3.connect(tmp / self.dump_name)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE")
            return self.counts(dst)
        finally:
            dst.close()
            src.close()

    def check_copy(self, backup: Path, scratch: Path) -> dict[str, int]:
        copy = scratch / "drill.sqlite3"
        shutil.copyfile(backup / self.dump_name, copy)
        conn = sqlite3.connect(copy)
        try:
            result = conn.execute("PRAGMA integrity_check").fetchone()[0]
            if result != "ok":
                raise BackupError(f"integrity_check: {result}")
            return self.counts(conn)
        finally:
            conn.close()

    def restore(self, backup: Path, owner: str) -> None:
        tmp = self.path.with_name(f".{self.path.name}.restore")
        shutil.copyfile(backup / self.dump_name, tmp)
        shutil.chown(tmp, owner, owner)
        os.chmod(tmp, 0o640)
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{self.path}{suffix}")
        os.rename(tmp, self.path)
        conn = sqlite3.connect(self.path)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.close()
        for suffix in ("-wal", "-shm"):
            if os.path.exists(f"{self.path}{suffix}"):
                shutil.chown(f"{self.path}{suffix}", owner, owner)


class Postgres:
    dump_name = "db.dump"

    def __init__(self, cfg: dict):
        self.db = cfg["postgresql_database"]

    def _connect(self, db: str):
        import psycopg2  # pylint: disable=import-outside-toplevel
        return psycopg2.connect(dbname=db)  # peer auth over the unix socket, as postgres

    @staticmethod
    def counts(conn) -> dict[str, int]:
        cur = conn.cursor()
        cur.execute("""SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables
                       WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1""")
        tables = [r[0] for r in cur.fetchall()]
        result = {}
        for table in tables:
            cur.execute(f"SELECT count(*) FROM {table}")
            result[table] = cur.fetchone()[0]
        return result

    def dump(self, tmp: Path) -> dict[str, int]:
        conn = self._connect(self.db)
        try:
            conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
            cur = conn.cursor()
            # The counts and pg_dump share one snapshot: the manifest is exactly what was dumped.
            cur.execute("SELECT pg_export_snapshot()")
            snapshot = cur.fetchone()[0]
            counts = self.counts(conn)
            subprocess.run(["pg_dump", "-Fc", f"--snapshot={snapshot}", "-f", str(tmp / self.dump_name),
                            self.db], check=True)
            conn.rollback()
        finally:
            conn.close()
        with open(tmp / "globals.sql", "wb") as out:
            subprocess.run(["pg_dumpall", "--globals-only"], stdout=out, check=True)
        return counts

    def check_copy(self, backup: Path, scratch: Path) -> dict[str, int]:
        name = f"berth_drill_{self.db}"
        # a drill interrupted earlier may have left its scratch database behind
        subprocess.run(["dropdb", "--if-exists", name], check=True, stderr=subprocess.DEVNULL)
        subprocess.run(["createdb", name], check=True)
        try:
            subprocess.run(["pg_restore", "--no-owner", "--exit-on-error", "-d", name,
                            str(backup / self.dump_name)], check=True, capture_output=True, text=True)
            conn = self._connect(name)
            try:
                return self.counts(conn)
            finally:
                conn.close()
        except subprocess.CalledProcessError as err:
            raise BackupError(f"pg_restore failed: {err.stderr.strip()[-300:]}") from None
        finally:
            subprocess.run(["dropdb", "--if-exists", name], check=False)

    def restore(self, backup: Path, owner: str) -> None:
        del owner  # the dump carries the objects' owners
        subprocess.run(["pg_restore", "--clean", "--if-exists", "--single-transaction",
                        "--exit-on-error", "-d", self.db, str(backup / self.dump_name)], check=True)


ENGINES = {"sqlite": Sqlite, "postgresql": Postgres}


# --- commands ------------------------------------------------------------------------------

def take(cfg: dict, engine) -> Path:
    root = Path(cfg["dir"])
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    name = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    tmp = root / f".{name}.tmp"
    tmp.mkdir(mode=0o700)
    try:
        counts = engine.dump(tmp)
        meta = {"name": name, "engine": cfg["engine"], "created": time.time(), "counts": counts}
        (tmp / MANIFEST).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
        files = sorted(p.name for p in tmp.iterdir())
        (tmp / SUMS).write_text("".join(f"{sha256(tmp / f)}  {f}\n" for f in files))
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        fsync_dir(tmp)
        final = root / name
        os.rename(tmp, final)
        fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"backup {name} written ({sum(counts.values())} rows in {len(counts)} tables)")
    return final


def prune(cfg: dict, now: float | None = None) -> list[str]:
    """Remove backups older than retention_days and beyond retention_count; the newest stays."""
    now = time.time() if now is None else now
    existing = backups(Path(cfg["dir"]))
    keep_count = int(cfg.get("retention_count", 0)) or len(existing)
    max_age = float(cfg.get("retention_days", 30)) * 86400
    removed = []
    for index, path in enumerate(reversed(existing)):  # newest first
        too_old = now - path.stat().st_mtime > max_age
        if index > 0 and (too_old or index >= keep_count):
            shutil.rmtree(path)
            removed.append(path.name)
    for name in removed:
        log(f"pruned {name}")
    return removed


def drill(cfg: dict, engine) -> dict:
    existing = backups(Path(cfg["dir"]))
    status = {"time": time.time(), "backup": existing[-1].name if existing else None}
    try:
        if not existing:
            raise BackupError("no backup to check")
        newest = existing[-1]
        verify(newest)
        expected = manifest(newest)["counts"]
        with tempfile.TemporaryDirectory(prefix="berth-drill-") as scratch:
            got = engine.check_copy(newest, Path(scratch))
        if got != expected:
            diff = sorted(t for t in set(got) | set(expected) if got.get(t) != expected.get(t))
            raise BackupError(f"row counts differ from the manifest in {', '.join(diff)}")
        status.update(ok=True, detail=f"{sum(got.values())} rows in {len(got)} tables restored")
    except (BackupError, subprocess.CalledProcessError, sqlite3.Error, OSError, ValueError) as err:
        status.update(ok=False, detail=str(err))
    write_status(cfg, status)
    log(f"drill {'ok' if status['ok'] else 'FAILED'}: {status['backup']}: {status['detail']}")
    return status


def write_status(cfg: dict, status: dict) -> None:
    path = Path(cfg["status_file"])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(status, sort_keys=True) + "\n")
    os.chmod(tmp, 0o644)
    os.rename(tmp, path)


def alert(cfg: dict, unit: str) -> None:
    """OnFailure= of the backup unit: loud in the journal, and by mail when SMTP is set (the
    password comes from the unit's EnvironmentFile, never from this config)."""
    status = {}
    with contextlib.suppress(OSError, ValueError):
        status = json.loads(Path(cfg["status_file"]).read_text())
    text = (f"{unit} failed on {socket.getfqdn()}.\nLast drill: {json.dumps(status, sort_keys=True)}\n"
            f"See: journalctl -u {unit}\n")
    log(f"ALERT: {unit} failed; last drill: {status.get('detail', 'none')}")
    smtp = cfg.get("smtp") or {}
    if not (smtp.get("host") and smtp.get("to")):
        return
    from email.message import EmailMessage  # pylint: disable=import-outside-toplevel
    msg = EmailMessage()
    msg["Subject"] = f"[berth] backup failed on {socket.getfqdn()}"
    msg["From"] = smtp.get("from") or smtp["to"]
    msg["To"] = smtp["to"]
    msg.set_content(text)
    port = int(smtp.get("port", 587))
    client = smtplib.SMTP_SSL if port == 465 else smtplib.SMTP
    with client(smtp["host"], port, timeout=30) as server:
        if port == 587:
            server.starttls()
        if smtp.get("user"):
            server.login(smtp["user"], os.environ.get("SMTP_PASS", ""))
        server.send_message(msg)
    log(f"alert mailed to {smtp['to']}")


def find(cfg: dict, name: str) -> Path:
    path = Path(cfg["dir"]) / name
    if "/" in name or name.startswith(".") or not path.is_dir():
        raise BackupError(f"no backup named {name!r}")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="berth-backup")
    parser.add_argument("-c", "--config", default=DEFAULT_CONFIG)
    parser.add_argument("command", choices=["backup", "drill", "verify", "restore", "list", "prune", "alert"])
    parser.add_argument("name", nargs="?")
    args = parser.parse_args(argv)
    cfg = json.loads(Path(args.config).read_text())
    engine = ENGINES[cfg["engine"]](cfg)
    try:
        if args.command == "backup":
            take(cfg, engine)
            prune(cfg)
        elif args.command == "drill":
            return 0 if drill(cfg, engine)["ok"] else 1
        elif args.command == "alert":
            alert(cfg, args.name or "berth-backup")
        elif args.command == "prune":
            prune(cfg)
        elif args.command == "list":
            for path in backups(Path(cfg["dir"])):
                print(path.name)
        elif args.command in ("verify", "restore"):
            if not args.name:
                raise BackupError(f"{args.command} needs a backup name (berth-backup list)")
            path = find(cfg, args.name)
            verify(path)
            if args.command == "restore":
                engine.restore(path, cfg["owner"])
                log(f"restored {args.name}")
            else:
                log(f"{args.name}: checksums ok")
    except (BackupError, subprocess.CalledProcessError, sqlite3.Error, smtplib.SMTPException, OSError) as err:
        log(f"error: {err}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
