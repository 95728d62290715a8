"""berth-check's logic without a host: each problem told once when it starts and once when it
ends, on every channel; a refused delivery kept and tried again; the backup judged by its status
file; each app of the host checked from its own file, its problems keyed by its name; the role's
templates read back by the tool. The scenario stack-sqlite breaks the real things
(tests/test_alerts.py)."""

import importlib.util
import json
import pathlib
import socket
import time

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template
from http_receiver import Receiver

ROOT = pathlib.Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("berth_check", ROOT / "roles" / "monitor" / "files" / "berth-check.py")
bc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bc)


@pytest.fixture(name="receiver")
def webhook_receiver():
    with Receiver("127.0.0.1") as receiver:
        receiver.url = f"http://127.0.0.1:{receiver.port}/hook"
        yield receiver


@pytest.fixture(name="cfg")
def config(tmp_path, receiver):
    sendmail = tmp_path / "sendmail"
    # a stand-in for msmtp's sendmail here (the scenario uses the real one): keeps each message
    sendmail.write_text(f"#!/bin/sh\n[ -e {tmp_path}/refuse ] && {{ echo refused >&2; exit 75; }}\n"
                        f"cat > $(mktemp -p {tmp_path} mail.XXXXXX)\n")
    sendmail.chmod(0o755)
    return {"host": "web1", "state_file": str(tmp_path / "state.json"),
            "mail": {"to": "ops@berth.test", "sendmail": str(sendmail)},
            "webhook": {"url": receiver.url}}


def run(cfg, found, monkeypatch, now=1000.0):
    monkeypatch.setattr(bc, "problems_now", lambda cfg, now: dict(found))
    monkeypatch.setattr(bc.time, "time", lambda: now)
    return bc.run(cfg)


def mails(tmp_path):
    return sorted(p.read_text().split("Subject: ", 1)[1].split("\n", 1)[0] for p in tmp_path.glob("mail.*"))


def test_one_message_when_a_problem_starts_and_one_when_it_ends(cfg, receiver, tmp_path, monkeypatch):
    run(cfg, {}, monkeypatch)
    run(cfg, {"health": "answered 502"}, monkeypatch)
    run(cfg, {"health": "answered 503"}, monkeypatch)   # the same problem, other words: no message
    run(cfg, {"health": "answered 502", "disk:/": "95% full"}, monkeypatch)
    run(cfg, {"disk:/": "95% full"}, monkeypatch, now=1600)
    run(cfg, {"disk:/": "96% full"}, monkeypatch)
    assert mails(tmp_path) == ["[berth] web1: PROBLEM disk:/", "[berth] web1: PROBLEM health",
                               "[berth] web1: resolved health"]
    posts = [body for _, _, body in receiver.requests]
    assert [(p["event"], p["problem"]) for p in posts] == [
        ("problem", "health"), ("problem", "disk:/"), ("resolved", "health")]
    assert "Resolved at" in posts[2]["text"] and "10 minutes" in posts[2]["text"]


def test_a_refused_message_is_kept_and_sent_once_later(cfg, receiver, tmp_path, monkeypatch, capsys):
    (tmp_path / "refuse").touch()
    receiver.status = 500
    run(cfg, {"unit:x.service": "x failed"}, monkeypatch)
    assert mails(tmp_path) == [] and len(receiver.requests) == 1
    out = capsys.readouterr().out
    assert "NOT sent (problem unit:x.service by mail), kept for the next run: sendmail exited 75: refused" in out
    assert "NOT sent (problem unit:x.service by webhook)" in out and "/hook" not in out
    (tmp_path / "refuse").unlink()
    receiver.status = 200
    run(cfg, {"unit:x.service": "x failed"}, monkeypatch)
    run(cfg, {"unit:x.service": "x failed"}, monkeypatch)
    assert mails(tmp_path) == ["[berth] web1: PROBLEM unit:x.service"]
    assert len(receiver.requests) == 2
    assert json.loads(pathlib.Path(cfg["state_file"]).read_text())["outbox"] == []


def test_the_backup_is_judged_by_its_status(tmp_path, monkeypatch):
    status = tmp_path / "status.json"
    cfg = {"backup": {"status_file": str(status), "remotes": ["offsite"], "max_age_hours": 26}}
    monkeypatch.setattr(bc, "is_failed", lambda unit: False)
    # none yet: a problem once the backup has been set up for longer than the age allowed
    now = time.time()
    assert bc.check_backup(cfg, now) == {}
    now += 30 * 3600
    assert bc.check_backup(cfg, now) == {
        "backup": "no backup and restore drill in the 30 hours since the backup was set up",
        "backup-remote:offsite": "no push to offsite and its drill in the 30 hours since the backup was set up"}
    status.write_text(json.dumps({"ok": True, "time": now - 3600, "detail": "3 rows",
                                  "remotes": {"offsite": {"ok": False, "time": now, "detail": "unreachable"}},
                                  "checks": {"offsite": {"ok": True}}}))
    assert bc.check_backup(cfg, now) == {"backup-remote:offsite": "the last push to offsite and its drill FAILED: "
                                                                  "unreachable"}
    status.write_text(json.dumps({"ok": True, "time": now - 30 * 3600, "remotes": {"offsite": {"ok": True, "time": now}}}))
    assert bc.check_backup(cfg, now) == {"backup": "the last backup and restore drill is 30 hours old (over 26)"}
    # a failed unit whose status says nothing new (the dump itself failed) is the backup's problem
    status.write_text(json.dumps({"ok": True, "time": now, "remotes": {"offsite": {"ok": True, "time": now}}}))
    monkeypatch.setattr(bc, "is_failed", lambda unit: True)
    monkeypatch.setattr(bc, "journal_tail", lambda unit: "permission denied")
    cfg["backup"]["unit"] = "berth-backup-app.service"
    assert bc.check_backup(cfg, now) == {"backup": "berth-backup-app.service failed: permission denied"}


def test_disk_thresholds(tmp_path):
    assert bc.check_disks({"disk": {"paths": [str(tmp_path)], "max_percent": 100, "max_inodes_percent": 100}}) == {}
    found = bc.check_disks({"disk": {"paths": [str(tmp_path)], "max_percent": 0, "max_inodes_percent": 0}})
    assert set(found) == {f"disk:{tmp_path}", f"inodes:{tmp_path}"}


def test_a_pending_reboot_names_its_packages(tmp_path):
    flag = tmp_path / "reboot-required"
    assert bc.check_reboot({"reboot_flag": str(flag)}) == {}
    flag.touch()
    (tmp_path / "reboot-required.pkgs").write_text("linux-image-amd64\nlibc6\nlibc6\n")
    assert bc.check_reboot({"reboot_flag": str(flag)}) == {
        "reboot": "a reboot is pending after updates: libc6 linux-image-amd64"}


# --- several apps, one file each -------------------------------------------------------------

@pytest.fixture(name="apps")
def two_apps(cfg, tmp_path, monkeypatch):
    """shop and blog, each with its site and its backup; the host's own checks find nothing."""
    apps_dir = tmp_path / "check.d"
    apps_dir.mkdir()
    cfg["apps_dir"] = str(apps_dir)
    for name in ("shop", "blog"):
        status = tmp_path / name / "backup-status.json"
        status.parent.mkdir()
        status.write_text(json.dumps({"ok": True, "time": 1000.0}))
        (apps_dir / f"{name}.json").write_text(json.dumps({
            "health": {"name": f"{name}.example"},
            "backup": {"status_file": str(status), "unit": f"berth-backup-{name}.service", "max_age_hours": 26},
            "ignore_units": [f"berth-backup-{name}.service"]}))
    down = set()
    # the site through TLS is test_an_apps_site_is_keyed_by_its_name's
    monkeypatch.setattr(bc, "check_health", lambda app: {bc.app_key("health", app): "answered 502"}
                        if app["health"]["name"] in down else {})
    for host_check in ("failed_units", "check_disks", "check_reboot"):
        monkeypatch.setattr(bc, host_check, lambda cfg: {})
    monkeypatch.setattr(bc, "is_failed", lambda unit: False)
    monkeypatch.setattr(bc.time, "time", lambda: 1000.0)
    return {"dir": apps_dir, "down": down}


def check(cfg, receiver, tmp_path):
    """One run: (the mails' subjects, the webhook's events) it sent."""
    for path in tmp_path.glob("mail.*"):
        path.rename(path.with_name("told." + path.name))
    posted = len(receiver.requests)
    bc.run(cfg)
    return mails(tmp_path), [f"{body['event']} {body['problem']}" for _, _, body in receiver.requests[posted:]]


def test_each_app_s_problem_is_told_once_by_its_name(cfg, apps, receiver, tmp_path):
    assert check(cfg, receiver, tmp_path) == ([], [])
    apps["down"].add("shop.example")
    assert check(cfg, receiver, tmp_path) == (["[berth] web1: PROBLEM health:shop"], ["problem health:shop"])
    assert check(cfg, receiver, tmp_path) == ([], [])
    state = json.loads(pathlib.Path(cfg["state_file"]).read_text())
    assert list(state["problems"]) == ["health:shop"], "blog is healthy"
    # the runbook's section is the kind of problem, whichever app has it
    assert "section health\n" in receiver.requests[-1][2]["text"]
    apps["down"].clear()
    assert check(cfg, receiver, tmp_path) == (["[berth] web1: resolved health:shop"], ["resolved health:shop"])


def test_each_app_s_backup_is_judged_by_its_own_status(cfg, apps, tmp_path):
    (tmp_path / "blog" / "backup-status.json").write_text(json.dumps(
        {"ok": False, "time": 1000.0, "detail": "disk full"}))
    assert bc.problems_now(cfg, 1000.0) == {"backup:blog": "the last backup and restore drill FAILED: disk full"}
    (tmp_path / "blog" / "backup-status.json").write_text(json.dumps(
        {"ok": True, "time": 1000.0, "remotes": {"offsite": {"ok": False, "detail": "unreachable"}},
         "checks": {"offsite": {"ok": False, "detail": "pack damaged"}}}))
    app = json.loads((apps["dir"] / "blog.json").read_text())
    app["backup"]["remotes"] = ["offsite"]
    (apps["dir"] / "blog.json").write_text(json.dumps(app))
    assert set(bc.problems_now(cfg, 1000.0)) == {"backup-remote:blog:offsite", "backup-check:blog:offsite"}
    assert {bc.app_of(key) for key in bc.problems_now(cfg, 1000.0)} == {"blog"}


def test_failed_units_ignore_every_app_s_backup_units(cfg, apps, monkeypatch):
    cfg["ignore_units"] = ["systemd-modules-load.service"]
    seen = []
    monkeypatch.setattr(bc, "failed_units", lambda cfg: seen.append(cfg["ignore_units"]) or {})
    bc.problems_now(cfg, 1000.0)
    assert seen == [["systemd-modules-load.service", "berth-backup-blog.service", "berth-backup-shop.service"]]


def test_a_broken_app_file_is_a_problem_and_holds_that_app_s_problems(cfg, apps, receiver, tmp_path):
    apps["down"].update({"shop.example", "blog.example"})
    check(cfg, receiver, tmp_path)
    (apps["dir"] / "blog.json").write_text('{"health": ')
    (apps["dir"] / "shop.json").write_text('{"health": []}')
    # not checked, its problem not told resolved: the file's problem is told instead
    assert check(cfg, receiver, tmp_path) == (
        ["[berth] web1: PROBLEM config:blog.json", "[berth] web1: PROBLEM config:shop.json"],
        ["problem config:blog.json", "problem config:shop.json"])
    problems = json.loads(pathlib.Path(cfg["state_file"]).read_text())["problems"]
    assert set(problems) == {"health:blog", "health:shop", "config:blog.json", "config:shop.json"}
    assert problems["config:blog.json"]["detail"].startswith(f"{apps['dir']}/blog.json: JSONDecodeError: ")
    assert "config:shop.json" in problems and '"health" is not a JSON object' in problems["config:shop.json"]["detail"]
    # the file mended, its app checked again
    (apps["dir"] / "blog.json").write_text(json.dumps({"health": {"name": "blog.example"}}))
    apps["down"].clear()
    assert check(cfg, receiver, tmp_path) == (
        ["[berth] web1: resolved config:blog.json", "[berth] web1: resolved health:blog"],
        ["resolved config:blog.json", "resolved health:blog"])


def test_a_removed_app_s_problems_are_resolved(cfg, apps, receiver, tmp_path):
    apps["down"].update({"shop.example", "blog.example"})
    check(cfg, receiver, tmp_path)
    (apps["dir"] / "shop.json").unlink()
    assert check(cfg, receiver, tmp_path) == (["[berth] web1: resolved health:shop"], ["resolved health:shop"])
    assert check(cfg, receiver, tmp_path) == ([], [])
    assert list(json.loads(pathlib.Path(cfg["state_file"]).read_text())["problems"]) == ["health:blog"]


def test_an_older_config_is_one_app_with_the_old_keys(tmp_path, monkeypatch):
    """check.json as the role wrote it for one app, until the role's next run rewrites it."""
    status = tmp_path / "backup-status.json"
    status.write_text(json.dumps({"ok": False, "time": 1000.0, "detail": "disk full",
                                  "remotes": {"offsite": {"ok": False, "time": 1000.0}}}))
    cfg = {"health": {"name": ""}, "backup": {"status_file": str(status), "remotes": ["offsite"]},
           "ignore_units": ["berth-backup-app.service"]}
    for host_check in ("failed_units", "check_disks", "check_reboot"):
        monkeypatch.setattr(bc, host_check, lambda cfg: {})
    assert set(bc.problems_now(cfg, 1000.0)) == {"backup", "backup-remote:offsite"}
    assert bc.app_of("backup") == bc.app_of("backup-remote:offsite") == ""
    assert bc.app_of("unit:berth-backup-app.service") is None and bc.app_of("disk:/") is None


def test_an_app_s_site_is_keyed_by_its_name():
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    found = bc.check_health({"name": "shop", "health": {"name": "shop.example", "port": port}})
    assert list(found) == ["health:shop"] and "ConnectionRefusedError" in found["health:shop"]


def test_the_role_s_files_are_what_the_tool_reads(tmp_path):
    """check.json and check.d/APP.json as the monitor role writes them for an app of berth's (the
    contract above the role's defaults, as a play sees them)."""
    loader = DataLoader()
    variables = {}
    for part in ("roles/monitor/defaults/main.yml", "group_vars/all.yml"):
        variables.update(loader.load_from_file(str(ROOT / part), trusted_as_template=True))
    variables.update({"berth_app_name": "shop", "berth_domains": ["shop.example", "www.shop.example"],
                      "monitor_ignore_units": ["systemd-modules-load.service"], "inventory_hostname": "web1",
                      "berth_alert_webhook_url": "https://hooks.example/T0KEN"})
    variables.update(loader.load_from_file(str(ROOT / "group_vars" / "berth.yml"), trusted_as_template=True))
    templar = Templar(loader=loader, variables=variables)

    def render(template):
        text = (ROOT / "roles" / "monitor" / "templates" / "etc" / "berth" / template).read_text()
        out = templar.template(trust_as_template(text))
        return json.loads(out) if isinstance(out, str) else out

    cfg = render("check.json.j2")
    assert cfg["apps_dir"] == "/etc/berth/check.d" == templar.template(trust_as_template("{{ berth_check_dir }}"))
    assert "health" not in cfg and "backup" not in cfg, "nothing of one app's in the host's file"
    assert cfg["ignore_units"] == ["systemd-modules-load.service"]
    assert cfg["webhook"] == {"url": "https://hooks.example/T0KEN"} and cfg["host"] == "web1"
    apps_dir = tmp_path / "check.d"
    apps_dir.mkdir()
    name = templar.template(trust_as_template("{{ monitor_app_name }}.json"))
    (apps_dir / name).write_text(json.dumps(render("check.d/APP.json.j2")))
    apps, problems = bc.load_apps({**cfg, "apps_dir": str(apps_dir)})
    assert problems == {} and [app["name"] for app in apps] == ["shop"]
    assert apps[0]["health"] == {"name": "shop.example", "path": "/health/ready", "ca_file": "",
                                 "cert_warn_days": 14}
    assert apps[0]["backup"] == {"status_file": "/var/lib/berth/shop/backup-status.json",
                                 "unit": "berth-backup-shop.service", "remotes": [], "max_age_hours": 26}
    assert apps[0]["ignore_units"] == ["berth-backup-shop.service", "berth-backup-shop-check.service"]
