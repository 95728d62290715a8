"""roles/backup/files/berth-backup.py against real SQLite files (PostgreSQL: molecule/postgresql)."""

import grp
import importlib.util
import json
import os
import pathlib
import pwd
import shutil
import sqlite3
import stat
import tarfile
import time

import pytest
from http_receiver import Receiver

TOOL = pathlib.Path(__file__).resolve().parent.parent / "roles/backup/files/berth-backup.py"
spec = importlib.util.spec_from_file_location("berth_backup", TOOL)
bb = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bb)


@pytest.fixture
def cfg(tmp_path):
    db = tmp_path / "app.sqlite3"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
    conn.executemany("INSERT INTO notes (text) VALUES (?)", [("a",), ("b",), ("c",)])
    conn.commit()
    conn.close()
    config = {"engine": "sqlite", "sqlite_path": str(db), "dir": str(tmp_path / "backups"),
              "status_file": str(tmp_path / "status.json"), "owner": "root",
              "retention_days": 30, "retention_count": 0}
    path = tmp_path / "backup.json"
    path.write_text(json.dumps(config))
    return config | {"_file": str(path)}


def cli(cfg, *args):
    return bb.main(["-c", cfg["_file"], *args])


def rows(path):
    conn = sqlite3.connect(path)
    try:
        return [r[0] for r in conn.execute("SELECT text FROM notes ORDER BY id")]
    finally:
        conn.close()


def test_backup_is_complete_and_checked(cfg):
    assert cli(cfg, "backup") == 0
    [backup] = bb.backups(pathlib.Path(cfg["dir"]))
    assert bb.manifest(backup)["counts"] == {"notes": 3}
    bb.verify(backup)
    assert not [p for p in pathlib.Path(cfg["dir"]).iterdir() if p.name.startswith(".")]
    assert cli(cfg, "drill") == 0
    status = json.loads(pathlib.Path(cfg["status_file"]).read_text())
    assert status["ok"] and status["backup"] == backup.name


def test_flipped_byte_is_refused_and_flagged(cfg):
    cli(cfg, "backup")
    [backup] = bb.backups(pathlib.Path(cfg["dir"]))
    dump = backup / "db.sqlite3"
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dump.write_bytes(bytes(data))
    with pytest.raises(bb.BackupError, match="checksum mismatch"):
        bb.verify(backup)
    assert cli(cfg, "restore", backup.name) == 1
    assert cli(cfg, "drill") == 1
    status = json.loads(pathlib.Path(cfg["status_file"]).read_text())
    assert status["ok"] is False and "checksum" in status["detail"]


def test_restore_brings_deleted_rows_back(cfg):
    cli(cfg, "backup")
    [backup] = bb.backups(pathlib.Path(cfg["dir"]))
    conn = sqlite3.connect(cfg["sqlite_path"])
    conn.execute("DELETE FROM notes")
    conn.commit()
    conn.close()
    assert rows(cfg["sqlite_path"]) == []
    assert cli(cfg, "restore", backup.name) == 0
    assert rows(cfg["sqlite_path"]) == ["a", "b", "c"]


def test_unknown_backup_names(cfg):
    for name in ("nope", "../etc", ".hidden"):
        assert cli(cfg, "restore", name) == 1


def test_retention_by_age_and_count(cfg):
    for _ in range(4):
        cli(cfg, "backup")
    existing = bb.backups(pathlib.Path(cfg["dir"]))
    old = time.time() - 40 * 86400
    for path in existing[:2]:
        os.utime(path, (old, old))
    assert bb.prune(cfg) == [p.name for p in reversed(existing[:2])]
    assert bb.prune(cfg | {"retention_count": 1}) == [existing[2].name]
    # the newest survives even when it is older than the limit
    os.utime(existing[3], (old, old))
    assert bb.prune(cfg) == []
    assert bb.backups(pathlib.Path(cfg["dir"])) == [existing[3]]


def test_drill_without_backup_fails(cfg):
    assert cli(cfg, "drill") == 1


@pytest.fixture
def files_cfg(cfg, tmp_path):
    shared = tmp_path / "shared"
    (shared / "uploads").mkdir(parents=True)
    (shared / "uploads" / "a.txt").write_text("first upload\n")
    (shared / "b.bin").write_bytes(bytes(range(256)))
    config = cfg | {"files_dir": str(shared), "owner": pwd.getpwuid(os.getuid()).pw_name}
    pathlib.Path(cfg["_file"]).write_text(json.dumps(config))
    return config


def test_files_are_backed_up_checked_and_restored(files_cfg):
    assert cli(files_cfg, "stage-files") == 0 and cli(files_cfg, "backup") == 0
    [backup] = bb.backups(pathlib.Path(files_cfg["dir"]))
    assert bb.manifest(backup)["files"] == {"files": 2, "bytes": 13 + 256}
    assert cli(files_cfg, "drill") == 0
    assert "2 files" in json.loads(pathlib.Path(files_cfg["status_file"]).read_text())["detail"]
    shared = pathlib.Path(files_cfg["files_dir"])
    (shared / "uploads" / "a.txt").write_text("overwritten\n")
    (shared / "later.txt").write_text("after the backup\n")
    assert cli(files_cfg, "restore-files", backup.name) == 0
    assert (shared / "uploads" / "a.txt").read_text() == "first upload\n"
    assert not (shared / "later.txt").exists()
    # without a staged tar, the backup reads the files itself (here it may)
    assert cli(files_cfg, "backup") == 0
    assert bb.manifest(bb.backups(pathlib.Path(files_cfg["dir"]))[-1])["files"]["files"] == 2


@pytest.mark.skipif(os.geteuid() != 0, reason="gives files to other groups")
def test_restored_files_keep_only_the_allowed_groups(files_cfg):
    # media the web server reads (its group, setgid directory), a file of another group, a
    # set-uid file: after the restore the first keeps its group, the others are the app's
    shared = pathlib.Path(files_cfg["files_dir"])
    media = shared / "media"
    media.mkdir()
    (media / "photo.jpg").write_bytes(b"jpeg")
    (shared / "other.txt").write_text("x")
    (shared / "tool").write_text("#!/bin/sh\n")
    for path, group, mode in [(media, "daemon", 0o2750), (media / "photo.jpg", "daemon", 0o640),
                              (shared / "other.txt", "adm", 0o640), (shared / "tool", "root", 0o4755)]:
        os.chown(path, -1, grp.getgrnam(group).gr_gid)
        os.chmod(path, mode)
    shared.chmod(0o751)   # as the app role makes it when nginx serves a part
    config = files_cfg | {"files_groups": ["daemon"]}
    pathlib.Path(files_cfg["_file"]).write_text(json.dumps(config))
    assert cli(config, "stage-files") == 0 and cli(config, "backup") == 0
    [backup] = bb.backups(pathlib.Path(config["dir"]))
    assert cli(config, "restore-files", backup.name) == 0
    app_group = grp.getgrgid(pwd.getpwnam(config["owner"]).pw_gid).gr_name

    def owner(path):
        st = path.stat()
        return grp.getgrgid(st.st_gid).gr_name, stat.S_IMODE(st.st_mode)

    assert stat.S_IMODE(shared.stat().st_mode) == 0o751
    assert owner(media) == ("daemon", 0o2750)
    assert owner(media / "photo.jpg") == ("daemon", 0o640)
    assert owner(shared / "other.txt") == (app_group, 0o640)
    assert owner(shared / "tool") == (app_group, 0o755)


def test_a_tar_that_escapes_its_tree_is_refused(files_cfg, tmp_path):
    cli(files_cfg, "backup")
    [backup] = bb.backups(pathlib.Path(files_cfg["dir"]))
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        (tmp_path / "x").write_text("x")
        tar.add(tmp_path / "x", arcname="../escaped")
    shutil.copyfile(evil, backup / "files.tar")
    with pytest.raises(bb.berth_files.FilesError, match="not a file or directory inside the tree"):
        bb.berth_files.restore(files_cfg, backup)
    assert not (tmp_path / "escaped").exists()


def test_a_backup_or_drill_that_would_not_fit_fails_before_it_starts(cfg, monkeypatch, capsys):
    assert cli(cfg, "backup") == 0
    full = shutil.disk_usage(cfg["dir"])._replace(free=1024)
    monkeypatch.setattr(bb.shutil, "disk_usage", lambda path: full)
    assert cli(cfg, "backup") == 1
    assert "needs about" in capsys.readouterr().out
    assert len(bb.backups(pathlib.Path(cfg["dir"]))) == 1
    assert not [p for p in pathlib.Path(cfg["dir"]).iterdir() if p.name.startswith(".")]
    assert cli(cfg, "drill") == 1
    assert "needs about" in json.loads(pathlib.Path(cfg["status_file"]).read_text())["detail"]


def test_prune_keeps_the_newest_backup_that_passed_its_drill(cfg):
    assert cli(cfg, "backup") == 0 and cli(cfg, "drill") == 0
    passed = bb.backups(pathlib.Path(cfg["dir"]))[-1]
    assert cli(cfg, "backup") == 0
    newest = bb.backups(pathlib.Path(cfg["dir"]))[-1]
    (newest / bb.DRILL).write_text(json.dumps({"ok": False}))
    assert bb.prune(cfg | {"retention_count": 1}) == []
    assert bb.backups(pathlib.Path(cfg["dir"])) == [passed, newest]


def test_the_dead_mans_switch_gets_start_success_and_fail(cfg, tmp_path, capsys):
    with Receiver("127.0.0.1") as receiver:
        ping_file = tmp_path / "ping"
        ping_file.write_text(f"http://127.0.0.1:{receiver.port}/uuid-1\n")
        cfg = {**cfg, "ping_file": str(ping_file)}
        pathlib.Path(cfg["_file"]).write_text(json.dumps(cfg))
        assert cli(cfg, "ping", "start") == 0 and cli(cfg, "ping", "success") == 0
        bb.alert(cfg, "berth-backup.service")
        assert cli(cfg, "ping", "bogus") == 1
    seen = receiver.paths("/")
    assert seen == ["/uuid-1/start", "/uuid-1", "/uuid-1/fail"]
    # a receiver that is gone: logged, and the backup goes on
    assert cli(cfg, "ping", "start") == 0
    assert "ping start not received (127.0.0.1)" in capsys.readouterr().out
