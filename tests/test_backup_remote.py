"""berth-backup's remote copies against real restic repositories: an rclone REST server on this
machine (rclone serve restic) and a local directory. SFTP and S3: molecule/sqlite."""

import io
import json
import pathlib
import shutil
import socket
import subprocess
import time

import pytest

from test_backup_tool import bb, cfg, cli, rows  # noqa: F401  pylint: disable=unused-import

pytestmark = pytest.mark.skipif(not (shutil.which("restic") and shutil.which("rclone")),
                                reason="needs restic and rclone (scripts/lib.sh installs them)")
PASSWORD = "r" * 40
REST_PASS = "p" * 24


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def template_repo(tmp_path_factory):
    """One repository made once and copied: restic's init spends seconds calibrating its KDF."""
    path = tmp_path_factory.mktemp("template") / "repo"
    subprocess.run(["restic", "--no-cache", "-q", "-r", str(path), "init"], check=True, capture_output=True,
                   env={"RESTIC_PASSWORD": PASSWORD, "PATH": "/usr/bin:/bin"})
    return path


@pytest.fixture
def rest_server(tmp_path, template_repo):
    shutil.copytree(template_repo, tmp_path / "rest" / "app")
    port = free_port()
    proc = subprocess.Popen(["rclone", "serve", "restic", "--addr", f"127.0.0.1:{port}", "--user", "berth",
                             "--pass", REST_PASS, str(tmp_path / "rest")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/app"
    proc.terminate()
    proc.wait()


def write_secrets(path, **values):
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))


@pytest.fixture
def remote_cfg(cfg, tmp_path, rest_server):  # noqa: F811
    secrets = tmp_path / "secrets.env"
    write_secrets(secrets, RESTIC_PASSWORD=PASSWORD, REST_PASS=REST_PASS)
    config = cfg | {"secrets_file": str(secrets), "keep": {"daily": 30}, "check_subset": "100%",
                    "remotes": [{"name": "rest", "type": "rest", "url": rest_server, "user": "berth",
                                 "password_secret": "REST_PASS"}]}
    return save(config)


def save(config):
    pathlib.Path(config["_file"]).write_text(json.dumps(config))
    return config


def with_disk(config, tmp_path, template_repo=None):
    """A second remote: a directory (a copy of the template, or none yet)."""
    if template_repo:
        shutil.copytree(template_repo, tmp_path / "repo")
    return save(config | {"remotes": config["remotes"] + [{"name": "disk", "type": "local",
                                                          "path": str(tmp_path / "repo")}]})


def status(config):
    return json.loads(pathlib.Path(config["status_file"]).read_text())


def restic(config, *args, password=PASSWORD):
    return subprocess.run(["restic", "--no-cache", "-r", config["remotes"][-1]["path"], *args], check=False,
                          capture_output=True, text=True, env={"RESTIC_PASSWORD": password, "PATH": "/usr/bin:/bin"})


def scheduled_run(config):
    """What the unit runs."""
    return [cli(config, step) for step in ("backup", "drill", "prune", "push")]


def test_push_restores_from_each_remote(remote_cfg, tmp_path, capsys):
    remote_cfg = with_disk(remote_cfg, tmp_path)
    assert cli(remote_cfg, "backup") == 0 and cli(remote_cfg, "drill") == 0
    assert cli(remote_cfg, "push") == 1  # no repository at "disk" yet, and none made unasked
    assert cli(remote_cfg, "init") == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1]) == {"disk": "created", "rest": "ok"}
    assert cli(remote_cfg, "push") == 0
    first = status(remote_cfg)["remotes"]
    assert all(r["ok"] and r["snapshot"] for r in first.values()), first
    assert "3 rows in 1 tables restored from the remote copy" in first["rest"]["detail"]
    # an unchanged database adds almost nothing
    assert scheduled_run(remote_cfg) == [0, 0, 0, 0]
    second = status(remote_cfg)["remotes"]
    assert second["disk"]["data_added"] < first["disk"]["data_added"] / 4, (first, second)
    capsys.readouterr()
    assert cli(remote_cfg, "snapshots") == 0
    listing = capsys.readouterr().out
    assert listing.count("drill ok") == 2 + 2, listing  # two local backups, the newest snapshot of each remote
    assert second["rest"]["snapshot"][:8] in listing


def test_fetch_brings_a_lost_backup_back(remote_cfg, capsys):
    scheduled_run(remote_cfg)
    shutil.rmtree(remote_cfg["dir"])
    pathlib.Path(remote_cfg["dir"]).mkdir()
    capsys.readouterr()
    assert cli(remote_cfg, "fetch", "rest", "latest") == 0
    name = capsys.readouterr().out.split()[-1]
    sqlite_file = pathlib.Path(remote_cfg["sqlite_path"])
    sqlite_file.unlink()
    assert cli(remote_cfg, "restore", name) == 0
    assert rows(sqlite_file) == ["a", "b", "c"]


def test_wrong_password_changes_nothing(remote_cfg, tmp_path, template_repo):
    remote_cfg = with_disk(remote_cfg, tmp_path, template_repo)
    scheduled_run(remote_cfg)
    write_secrets(pathlib.Path(remote_cfg["secrets_file"]), RESTIC_PASSWORD="w" * 40, REST_PASS=REST_PASS)
    assert scheduled_run(remote_cfg) == [0, 0, 0, 1]
    assert "wrong password" in status(remote_cfg)["remotes"]["disk"]["detail"]
    assert len(bb.backups(pathlib.Path(remote_cfg["dir"]))) == 2  # the local backup is kept
    assert len(json.loads(restic(remote_cfg, "snapshots", "--json").stdout)) == 1


def test_rotated_password_rekeys_the_repository(remote_cfg, tmp_path, template_repo):
    remote_cfg = with_disk(remote_cfg | {"remotes": []}, tmp_path, template_repo)
    new = "n" * 40
    write_secrets(pathlib.Path(remote_cfg["secrets_file"]), RESTIC_PASSWORD=new, RESTIC_PASSWORD_PREVIOUS=PASSWORD)
    assert scheduled_run(remote_cfg) == [0, 0, 0, 0]
    assert restic(remote_cfg, "cat", "config", password=new).returncode == 0
    assert "wrong password" in restic(remote_cfg, "cat", "config").stderr


def test_unreachable_remote_fails_and_keeps_the_local_backup(remote_cfg):
    remote_cfg["remotes"][0]["url"] = f"http://127.0.0.1:{free_port()}/app"
    assert scheduled_run(save(remote_cfg)) == [0, 0, 0, 1]
    result = status(remote_cfg)["remotes"]["rest"]
    assert not result["ok"] and "cannot back up to the repository" in result["detail"], result
    assert len(bb.backups(pathlib.Path(remote_cfg["dir"]))) == 1


def test_check_reports_a_corrupted_pack(remote_cfg, tmp_path, template_repo):
    remote_cfg = with_disk(remote_cfg, tmp_path, template_repo)
    scheduled_run(remote_cfg)
    assert cli(remote_cfg, "check") == 0
    packs = [p for p in (tmp_path / "repo" / "data").rglob("*") if p.is_file()]
    pack = max(packs, key=lambda p: p.stat().st_size)
    data = bytearray(pack.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pack.chmod(0o644)
    pack.write_bytes(bytes(data))
    assert cli(remote_cfg, "check") == 1
    checks = status(remote_cfg)["checks"]
    assert checks["rest"]["ok"] and not checks["disk"]["ok"], checks


def test_retention_on_the_remote(remote_cfg, tmp_path, template_repo):
    remote_cfg = with_disk(remote_cfg | {"remotes": [], "keep": {"daily": 1}}, tmp_path, template_repo)
    scheduled_run(remote_cfg)
    scheduled_run(remote_cfg)
    snaps = json.loads(restic(remote_cfg, "snapshots", "--json").stdout)
    assert [s["short_id"] for s in snaps] == [status(remote_cfg)["remotes"]["disk"]["snapshot"]]


def test_the_unit_gets_only_the_secrets_the_remotes_need(remote_cfg, tmp_path, monkeypatch):
    write_secrets(pathlib.Path(remote_cfg["secrets_file"]), RESTIC_PASSWORD=PASSWORD, REST_PASS=REST_PASS,
                  JWT_SECRET="j" * 40)
    runtime = tmp_path / "run"
    runtime.mkdir()
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(runtime))
    assert cli(remote_cfg, "stage-secrets") == 0
    staged = runtime / "secrets.env"
    assert staged.stat().st_mode & 0o777 == 0o600
    assert staged.read_text() == f"RESTIC_PASSWORD={PASSWORD}\nREST_PASS={REST_PASS}\n"
    assert cli(remote_cfg, "backup") == 0 and cli(remote_cfg, "drill") == 0 and cli(remote_cfg, "push") == 0


def test_a_bare_server_recovers_the_secrets_with_the_recovery_password(remote_cfg, tmp_path, monkeypatch, capsys):
    recovery = "recovery-" + "x" * 24
    secrets = pathlib.Path(remote_cfg["secrets_file"])
    write_secrets(secrets, RESTIC_PASSWORD=PASSWORD, REST_PASS=REST_PASS, RECOVERY=recovery, JWT_SECRET="j" * 40)
    runtime = tmp_path / "run"
    runtime.mkdir()
    config = save(remote_cfg | {"recovery_secret": "RECOVERY", "runtime_dir": str(runtime)})
    assert cli(config, "init") == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1]) == {"rest": "ok+recovery key"}
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(runtime))
    assert cli(config, "stage-secrets") == 0
    assert "jjjj" not in (runtime / "secrets.env.enc").read_text()  # sealed for the push
    assert scheduled_run(config) == [0, 0, 0, 0]
    monkeypatch.delenv("RUNTIME_DIRECTORY")

    bare = save(config | {"secrets_file": str(tmp_path / "bare" / "secrets.env")})
    monkeypatch.setattr("sys.stdin", io.StringIO(f"RECOVERY={'w' * 30}\nREST_PASS={REST_PASS}\n"))
    assert cli(bare, "recover-secrets", "rest", "latest") == 1
    assert "wrong password" in capsys.readouterr().out
    assert not (tmp_path / "bare" / "secrets.env").exists()
    monkeypatch.setattr("sys.stdin", io.StringIO(f"RECOVERY={recovery}\nREST_PASS={REST_PASS}\n"))
    assert cli(bare, "recover-secrets", "rest", "latest") == 0
    recovered = tmp_path / "bare" / "secrets.env"
    assert recovered.read_text() == secrets.read_text() and recovered.stat().st_mode & 0o777 == 0o600
    # never over a server's own secrets
    monkeypatch.setattr("sys.stdin", io.StringIO(f"RECOVERY={recovery}\nREST_PASS={REST_PASS}\n"))
    assert cli(bare, "recover-secrets", "rest", "latest") == 1


def test_a_password_in_a_rest_url_is_refused(remote_cfg):
    remote_cfg["remotes"][0]["url"] = remote_cfg["remotes"][0]["url"].replace("://", f"://berth:{REST_PASS}@")
    assert cli(save(remote_cfg), "init") == 1
