#!/usr/bin/python3
"""berth-backup: take, check, prune and restore the app's database backups.

    berth-backup [-c CONFIG] backup      dump now
    berth-backup [-c CONFIG] drill       restore the newest backup into a scratch copy and check it
    berth-backup [-c CONFIG] prune       remove old backups (never the newest one that passed its drill)
    berth-backup [-c CONFIG] push        copy the newest checked backup to each remote, restore it
                                         from there into a scratch copy and check it, then forget
                                         the remote's old snapshots by policy
    berth-backup [-c CONFIG] init        create the remote repositories that do not exist yet
    berth-backup [-c CONFIG] check       restic check of each remote, reading a subset of its data
    berth-backup [-c CONFIG] fetch REMOTE SNAPSHOT|latest  bring a remote snapshot back as a local backup
    berth-backup [-c CONFIG] verify NAME check a backup's checksums
    berth-backup [-c CONFIG] restore NAME  replace the live database with a backup (app stopped)
    berth-backup [-c CONFIG] restore-files NAME  replace the app's files with a backup's (root)
    berth-backup [-c CONFIG] stage-files   tar the app's files for the next backup (root, the unit's first step)
    berth-backup [-c CONFIG] stage-secrets copy what the remotes need for the unit's user (root)
    berth-backup [-c CONFIG] recover-secrets REMOTE SNAPSHOT|latest  on a bare server: the secrets
                                         file from a remote, with the recovery password and the
                                         remote's credentials on stdin (NAME=value lines)
    berth-backup [-c CONFIG] list        local backups (names only)
    berth-backup [-c CONFIG] snapshots   local backups and remote snapshots with their drill results
    berth-backup [-c CONFIG] alert UNIT  log a failed unit, ping the dead man's switch's /fail (root)
    berth-backup [-c CONFIG] ping start|success  ping the dead man's switch, if one is set (root)

Each backup is a directory NAME/ holding the dump, manifest.json (row counts per table, taken
in the same snapshot as the dump) and SHA256SUMS; it is built as .NAME.tmp and renamed, so a
directory without a leading dot is always complete. The drill's result goes to a status file
for monitoring, and drill.json into the backup it checked. Remote copies: berth_restic.py, beside
this file. Stdlib only, plus psycopg2 (python3-psycopg2) for PostgreSQL and restic for remotes.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
import berth_files  # noqa: E402  pylint: disable=wrong-import-position
import berth_restic  # noqa: E402  pylint: disable=wrong-import-position

DEFAULT_CONFIG = "/etc/berth/backup.json"
SUMS = "SHA256SUMS"
MANIFEST = "manifest.json"
DRILL = "drill.json"
# Room kept free beyond what a backup or drill is estimated to need.
SPACE_MARGIN = 1.2


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


def drill_result(path: Path) -> dict:
    try:
        return json.loads((path / DRILL).read_text())
    except (OSError, ValueError):
        return {}


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def files_size(cfg: dict) -> int:
    path = Path(cfg.get("files_dir") or "/nonexistent")
    with contextlib.suppress(OSError):
        return dir_size(path)
    return 0


def need_space(where: Path, needed: int, what: str) -> None:
    """Fail before starting what would fill the disk half-way."""
    free = shutil.disk_usage(where).free
    if needed * SPACE_MARGIN > free:
        raise BackupError(f"{what} needs about {needed * SPACE_MARGIN / 2**20:.0f} MiB in {where}, only"
                          f" {free / 2**20:.0f} MiB are free: free some space first")


# --- engines -------------------------------------------------------------------------------

class Sqlite:
    dump_name = "db.sqlite3"

    def __init__(self, cfg: dict):
        self.path = Path(cfg["sqlite_path"])

    def live_size(self) -> int:
        return sum(os.path.getsize(f"{self.path}{s}") for s in ("", "-wal") if os.path.exists(f"{self.path}{s}"))

    def scratch_need(self, backup: Path, scratch: Path) -> tuple[Path, int]:
        return scratch, (backup / self.dump_name).stat().st_size

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

    def _one(self, query: str, *params):
        conn = self._connect(self.db)
        try:
            cur = conn.cursor()
            cur.execute(query, params)
            return cur.fetchone()[0]
        finally:
            conn.close()

    def live_size(self) -> int:
        return int(self._one("SELECT pg_database_size(%s)", self.db))

    def scratch_need(self, backup: Path, scratch: Path) -> tuple[Path, int]:
        del backup, scratch  # the drill's copy is a database beside the live one
        return Path(self._one("SHOW data_directory")), self.live_size()

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
    existing = backups(root)
    need_space(root, dir_size(existing[-1]) if existing else engine.live_size() + files_size(cfg), "the backup")
    name = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    tmp = root / f".{name}.tmp"
    tmp.mkdir(mode=0o700)
    try:
        files = berth_files.seal(cfg, tmp)
        counts = engine.dump(tmp)
        meta = {"name": name, "engine": cfg["engine"], "created": time.time(), "counts": counts}
        if files is not None:
            meta["files"] = files
        (tmp / MANIFEST).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
        names = sorted(p.name for p in tmp.iterdir())
        (tmp / SUMS).write_text("".join(f"{sha256(tmp / f)}  {f}\n" for f in names))
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
    """Remove backups older than retention_days and beyond retention_count. Never removed: the
    newest backup and the newest one that passed its drill."""
    now = time.time() if now is None else now
    existing = backups(Path(cfg["dir"]))
    passed = [p.name for p in existing if drill_result(p).get("ok")]
    protected = set(passed[-1:]) | {p.name for p in existing[-1:]}
    keep_count = int(cfg.get("retention_count", 0)) or len(existing)
    max_age = float(cfg.get("retention_days", 30)) * 86400
    removed = []
    for index, path in enumerate(reversed(existing)):  # newest first
        too_old = now - path.stat().st_mtime > max_age
        if path.name not in protected and (too_old or index >= keep_count):
            shutil.rmtree(path)
            removed.append(path.name)
    for name in removed:
        log(f"pruned {name}")
    return removed


def check_backup(backup: Path, engine) -> str:
    """Verify a backup, restore it into a scratch copy and compare its row counts to the manifest."""
    verify(backup)
    expected = manifest(backup)["counts"]
    with tempfile.TemporaryDirectory(prefix="berth-drill-") as scratch:
        where, needed = engine.scratch_need(backup, Path(scratch))
        need_space(where, needed, "the drill")
        got = engine.check_copy(backup, Path(scratch))
    if got != expected:
        diff = sorted(t for t in set(got) | set(expected) if got.get(t) != expected.get(t))
        raise BackupError(f"row counts differ from the manifest in {', '.join(diff)}")
    files = berth_files.check(backup, manifest(backup).get("files"))
    return f"{sum(got.values())} rows in {len(got)} tables{files} restored"


FAILURES = (BackupError, berth_restic.RemoteError, berth_files.FilesError, tarfile.TarError, subprocess.CalledProcessError, sqlite3.Error, OSError, ValueError)


def drill(cfg: dict, engine) -> dict:
    existing = backups(Path(cfg["dir"]))
    status = {"time": time.time(), "backup": existing[-1].name if existing else None}
    try:
        if not existing:
            raise BackupError("no backup to check")
        status.update(ok=True, detail=check_backup(existing[-1], engine))
    except FAILURES as err:
        status.update(ok=False, detail=str(err))
    if existing:
        with contextlib.suppress(OSError):
            (existing[-1] / DRILL).write_text(json.dumps(status, sort_keys=True) + "\n")
    update_status(cfg, **status)
    log(f"drill {'ok' if status['ok'] else 'FAILED'}: {status['backup']}: {status['detail']}")
    return status


def update_status(cfg: dict, **fields) -> None:
    path = Path(cfg["status_file"])
    status = {}
    with contextlib.suppress(OSError, ValueError):
        status = json.loads(path.read_text())
    for key, value in fields.items():
        status[key] = status.get(key, {}) | value if key in ("remotes", "checks") else value
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(status, sort_keys=True) + "\n")
    os.chmod(tmp, 0o644)
    os.rename(tmp, path)


# --- remotes -------------------------------------------------------------------------------

def push(cfg: dict, engine) -> bool:
    remotes = berth_restic.remotes(cfg)
    if not remotes:
        return True
    passed = [p for p in backups(Path(cfg["dir"])) if drill_result(p).get("ok")]
    if not passed:
        raise BackupError("no backup has passed its drill: nothing to push")
    backup, host, results = passed[-1], cfg["owner"], {}
    for remote in remotes:
        result = {"time": time.time(), "backup": backup.name, "snapshot": None}
        try:
            started = time.monotonic()
            result.update(remote.push(backup, host))
            result["push_seconds"] = round(time.monotonic() - started, 2)
            with tempfile.TemporaryDirectory(prefix="berth-remote-drill-") as scratch:
                need_space(Path(scratch), dir_size(backup), "the remote drill")
                restored = remote.restore(result["snapshot"], Path(scratch))
                if manifest(restored)["name"] != backup.name:
                    raise BackupError(f"snapshot {result['snapshot']} holds another backup")
                detail = check_backup(restored, engine)
            result["drill_seconds"] = round(time.monotonic() - started - result["push_seconds"], 2)
            remote.forget(host, cfg.get("keep") or {"daily": 30})
            result.update(ok=True, detail=f"{detail} from the remote copy")
        except FAILURES as err:
            result.update(ok=False, detail=str(err))
        results[remote.name] = result
        log(f"remote {remote.name} {'ok' if result['ok'] else 'FAILED'}: {backup.name}"
            f" -> {result['snapshot']}: {result['detail']}")
    update_status(cfg, remotes=results)
    return all(r["ok"] for r in results.values())


def check_remotes(cfg: dict) -> bool:
    results = {}
    for remote in berth_restic.remotes(cfg):
        result = {"time": time.time()}
        try:
            remote.open()
            remote.check(cfg.get("check_subset", ""))
            result.update(ok=True, detail="restic check passed")
        except FAILURES as err:
            result.update(ok=False, detail=str(err))
        results[remote.name] = result
        log(f"check {remote.name} {'ok' if result['ok'] else 'FAILED'}: {result['detail']}")
    update_status(cfg, checks=results)
    return all(r["ok"] for r in results.values())


def init_remotes(cfg: dict) -> dict[str, str]:
    done = {}
    for remote in berth_restic.remotes(cfg):
        done[remote.name] = remote.open(init=True) + ("+recovery key" if remote.add_recovery_key() else "")
    print(json.dumps(done, sort_keys=True))
    return done


def fetch(cfg: dict, remote_name: str, snapshot: str) -> Path:
    """A remote snapshot back into the backup directory, checked, as the backup it was."""
    [remote] = berth_restic.remotes(cfg, remote_name)
    remote.open()
    if snapshot == "latest":
        found = remote.snapshots(cfg["owner"])
        if not found:
            raise BackupError(f"{remote_name}: no snapshot")
        snapshot = found[-1]["id"]
    root = Path(cfg["dir"])
    scratch = Path(tempfile.mkdtemp(prefix=".fetch-", suffix=".tmp", dir=root))
    try:
        restored = remote.restore(snapshot, scratch)
        verify(restored)
        final = root / manifest(restored)["name"]
        if final.exists():
            verify(final)
        else:
            for path in [restored, *restored.rglob("*")]:
                shutil.chown(path, cfg.get("run_as", cfg["owner"]), cfg.get("run_as", cfg["owner"]))
            os.rename(restored, final)
            fsync_dir(root)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    log(f"fetched {snapshot} from {remote_name} as {final.name}")
    print(final.name)
    return final


def snapshots(cfg: dict) -> None:
    status = {}
    with contextlib.suppress(OSError, ValueError):
        status = json.loads(Path(cfg["status_file"]).read_text())
    print(f"local ({cfg['dir']}):")
    for path in backups(Path(cfg["dir"])):
        result = drill_result(path)
        state = "-" if not result else "drill ok" if result.get("ok") else "drill FAILED"
        print(f"  {path.name}  {state}  {result.get('detail', '')}")
    for remote in berth_restic.remotes(cfg):
        last = status.get("remotes", {}).get(remote.name, {})
        print(f"remote {remote.name} ({remote.spec['type']}):")
        try:
            remote.open()
            found = remote.snapshots(cfg["owner"])
        except berth_restic.RemoteError as err:
            print(f"  unavailable: {err}")
            continue
        for snap in found:
            mark = ""
            if last.get("snapshot") and snap["id"].startswith(last["snapshot"]):
                mark = f"drill {'ok' if last.get('ok') else 'FAILED'}  {last.get('detail', '')}"
            print(f"  {snap['short_id']}  {snap['time'][:19]}  {snap['backup']}  {mark}")


def alert(cfg: dict, unit: str) -> None:
    """OnFailure= of the backup's units: loud in the journal and a failure ping; berth-check (also
    started by OnFailure=) tells the people, once."""
    status = {}
    with contextlib.suppress(OSError, ValueError):
        status = json.loads(Path(cfg["status_file"]).read_text())
    log(f"ALERT: {unit} failed; last drill: {status.get('detail', 'none')}; see journalctl -u {unit}")
    ping(cfg, "fail")


def ping(cfg: dict, event: str) -> None:
    """The dead man's switch (healthchecks.io style): URL/start, URL on success, URL/fail. The URL
    is in a root-only file (it may hold a token); a ping that fails never fails the backup."""
    try:
        url = Path(cfg.get("ping_file") or "/nonexistent").read_text().strip()
    except OSError:
        return
    url = url.rstrip("/") + {"start": "/start", "success": "", "fail": "/fail"}[event]
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers={"User-Agent": "berth-backup"}),
                                    timeout=15) as answer:
            answer.read(1024)
    except (OSError, ValueError) as err:
        log(f"ping {event} not received ({urllib.parse.urlsplit(url).hostname}): {getattr(err, 'reason', err)}")


def find(cfg: dict, name: str) -> Path:
    path = Path(cfg["dir"]) / name
    if "/" in name or name.startswith(".") or not path.is_dir():
        raise BackupError(f"no backup named {name!r}")
    return path


def restore_named(cfg: dict, engine, name: str) -> None:
    path = find(cfg, name)
    verify(path)
    engine.restore(path, cfg["owner"])
    log(f"restored {name}")


def stage_files(cfg: dict) -> None:
    Path(cfg["dir"]).mkdir(mode=0o700, parents=True, exist_ok=True)
    need_space(Path(cfg["dir"]), files_size(cfg), "the app's files")
    berth_files.stage(cfg)


def restore_files(cfg: dict, name: str) -> None:
    path = find(cfg, name)
    verify(path)
    berth_files.restore(cfg, path)
    log(f"restored the files of {name}")


def verify_named(cfg: dict, name: str) -> None:
    verify(find(cfg, name))
    log(f"{name}: checksums ok")


def list_local(cfg: dict) -> None:
    for path in backups(Path(cfg["dir"])):
        print(path.name)


# Each command: its arguments, and what it runs (False: exit 1).
COMMANDS = {
    "backup": ([], lambda cfg, engine: take(cfg, engine)),
    "drill": ([], lambda cfg, engine: drill(cfg, engine)["ok"]),
    "prune": ([], lambda cfg, engine: prune(cfg)),
    "push": ([], push),
    "init": ([], lambda cfg, engine: init_remotes(cfg)),
    "check": ([], lambda cfg, engine: check_remotes(cfg)),
    "stage-secrets": ([], lambda cfg, engine: berth_restic.stage(cfg)),
    "stage-files": ([], lambda cfg, engine: stage_files(cfg)),
    "recover-secrets": (["remote", "snapshot"], lambda cfg, engine, remote, snapshot: log(
        f"secrets recovered from {remote}, snapshot "
        f"{berth_restic.recover_secrets(cfg, remote, snapshot, berth_restic.parse_env(sys.stdin.read()))}")),
    "restore-files": (["backup"], lambda cfg, engine, name: restore_files(cfg, name)),
    "fetch": (["remote", "snapshot"], lambda cfg, engine, remote, snapshot: fetch(cfg, remote, snapshot)),
    "verify": (["backup"], lambda cfg, engine, name: verify_named(cfg, name)),
    "restore": (["backup"], restore_named),
    "list": ([], lambda cfg, engine: list_local(cfg)),
    "snapshots": ([], lambda cfg, engine: snapshots(cfg)),
    "alert": (["unit"], lambda cfg, engine, unit: alert(cfg, unit)),
    "ping": (["event"], lambda cfg, engine, event: ping(cfg, event) if event in ("start", "success") else False),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="berth-backup")
    parser.add_argument("-c", "--config", default=DEFAULT_CONFIG)
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument("args", nargs="*")
    args = parser.parse_args(argv)
    wanted, run = COMMANDS[args.command]
    if len(args.args) != len(wanted):
        parser.error(f"{args.command} takes: {' '.join(wanted).upper() or 'no arguments'}")
    cfg = json.loads(Path(args.config).read_text())
    engine = ENGINES[cfg["engine"]](cfg)
    try:
        return 1 if run(cfg, engine, *args.args) is False else 0
    except FAILURES as err:
        log(f"error: {err}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
