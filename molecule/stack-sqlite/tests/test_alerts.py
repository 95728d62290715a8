"""Alerts that reach a person, on the converged stack: berth-check sends through the host's msmtp
to the tests' relay (molecule/smtp_sink.py, its certificate verified) and posts to a webhook on
this machine (molecule/http_receiver.py). Each problem is made for real, must be told exactly
once by mail and once by webhook, then exactly once more when it is fixed."""

import base64
import email
import email.policy
import json

import pytest

import web_client as web
from conftest import exposure
from http_receiver import Receiver
from smtp_sink import Sink
from stack_tests import ctx, site  # noqa: F401 (fixtures)

APP = "demoapp"
GATEWAY = "10.88.0.1"
HOOK_PORT = 2545   # this scenario's (group_vars/berth/scenario.yml)
CHECK_CONFIG = "/etc/berth/check.json"          # the host's
APP_CONFIG = f"/etc/berth/check.d/{APP}.json"   # the app's: its site and its backup


@pytest.fixture(scope="module")
def alerts(host):
    port = int(host.check_output(f"sed -n 's/^SMTP_PORT=//p' /etc/berth/{APP}/app.env"))
    with Sink(GATEWAY, port, "berth", "test-relay-pass") as sink, Receiver(GATEWAY, HOOK_PORT) as hook:
        put(host, f"/etc/berth/{APP}/smtp-ca.pem", sink.ca_pem)
        with open(web.pebble_root(), encoding="ascii") as root:
            pebble = root.read()
        put(host, f"/etc/berth/{APP}/site-ca.pem", pebble)
        # runs from here on are the test's own; what earlier runs found or queued is forgotten
        assert host.service("berth-check.timer").is_running
        # and a run the timer started before the CA files were in place: a start would only wait for it
        host.run_test("systemctl stop berth-check.timer berth-check.service")
        host.run_test("rm -f /var/lib/berth-check/state.json")
        state = {"sink": sink, "hook": hook, "pebble": pebble, "mails": 0, "posts": 0}
        yield state
        host.run("systemctl start berth-check.timer")


def put(host, path, text):
    host.run_test(f"install -m 0644 /dev/stdin {path} <<'EOF'\n{text}EOF")


def check(host):
    """One run of berth-check, as its timer starts it."""
    result = host.run("systemctl start berth-check.service")
    assert result.rc == 0, host.run("journalctl -u berth-check -n 30 --no-pager").stdout


def told(alerts):
    """(mail subjects, webhook events) since the last call."""
    messages = alerts["sink"].messages[alerts["mails"]:]
    posts = [body for method, path, body in alerts["hook"].requests if method == "POST" and path == "/hook"]
    new_posts = posts[alerts["posts"]:]
    alerts["mails"] += len(messages)
    alerts["posts"] += len(posts) - alerts["posts"]
    for message in messages:
        assert message.rcpt_tos == ["ops@berth.test"]
    subjects = [email.message_from_bytes(m.content, policy=email.policy.default)["Subject"] for m in messages]
    return subjects, [f"{p['event']} {p['problem']}" for p in new_posts]


def expect(host, alerts, event, key):
    check(host)
    subject = f"[berth] {host.backend.hostname}: {'PROBLEM' if event == 'problem' else 'resolved'} {key}"
    assert told(alerts) == ([subject], [f"{event} {key}"])
    check(host)   # a problem still open (or still resolved) is not told again
    assert told(alerts) == ([], [])


def edit_config(host, path, change):
    host.run_test(f"cp -p {path} {path}.orig")
    host.run_test(f"python3 -c 'import json,sys; p=\"{path}\"; c=json.load(open(p)); "
                  f"{change}; json.dump(c, open(p, \"w\"))'")


def restore_config(host, path):
    host.run_test(f"mv {path}.orig {path}")


def test_a_healthy_stack_alerts_nobody_and_pings_its_switch(host, alerts):
    check(host)
    assert told(alerts) == ([], []), host.check_output("berth-check status")
    assert alerts["hook"].paths("/ping/check") == ["/ping/check/start", "/ping/check"]


def test_the_config_is_root_s_alone(host):
    # the host's may hold the webhook's and the ping's URLs; the app's sits beside the other apps'
    for path, mode in ((CHECK_CONFIG, 0o600), ("/etc/berth/check.d", 0o700), (APP_CONFIG, 0o600)):
        f = host.file(path)
        assert (f.user, f.group, f.mode) == ("root", "root", mode), path
    config = json.loads(host.check_output(f"cat {CHECK_CONFIG}"))
    assert config["apps_dir"] == "/etc/berth/check.d" and "health" not in config and "backup" not in config


def test_the_app_stopped(host, alerts):
    host.run_test(f"systemctl stop {APP}.socket {APP}.service")
    try:
        expect(host, alerts, "problem", f"health:{APP}")
    finally:
        host.run_test(f"systemctl start {APP}.socket {APP}.service")
    expect(host, alerts, "resolved", f"health:{APP}")


def test_a_failed_unit(host, alerts):
    host.run_test("systemd-run --quiet --unit=berth-test-broken --property=Type=oneshot /bin/false")
    try:
        expect(host, alerts, "problem", "unit:berth-test-broken.service")
    finally:
        host.run("systemctl reset-failed berth-test-broken.service")
    expect(host, alerts, "resolved", "unit:berth-test-broken.service")


@pytest.mark.parametrize("path,change,key", [
    # a disk threshold under the current use: the host's
    (CHECK_CONFIG, 'c["disk"]["max_percent"] = 1', "disk:/"),
    # Pebble's certificates last years: a threshold above that makes this one "near its end"
    (APP_CONFIG, 'c["health"]["cert_warn_days"] = 100000', f"certificate:{APP}"),
])
def test_a_threshold_crossed(host, alerts, path, change, key):
    edit_config(host, path, change)
    try:
        expect(host, alerts, "problem", key)
    finally:
        restore_config(host, path)
    expect(host, alerts, "resolved", key)


def test_a_failed_backup(host, alerts):
    backups = f"/var/backups/berth/{APP}"
    host.run_test(f"chmod 0000 {backups}")
    try:
        assert host.run(f"systemctl start berth-backup-{APP}.service").rc != 0
        # OnFailure= started berth-check already; this run finds the problem told
        expect(host, alerts, "problem", f"backup:{APP}")
    finally:
        host.run_test(f"chmod 0700 {backups}")
    assert host.run(f"systemctl start berth-backup-{APP}.service").rc == 0
    expect(host, alerts, "resolved", f"backup:{APP}")
    # the backup's dead man's switch: the failed run, then the good one
    assert alerts["hook"].paths("/ping/backup") == ["/ping/backup/start", "/ping/backup/fail",
                                                   "/ping/backup/start", "/ping/backup"]


def test_a_relay_with_an_unknown_ca_gets_no_mail(host, alerts):
    # Pebble's root is no CA of the relay's: msmtp refuses the relay before logging in
    put(host, f"/etc/berth/{APP}/smtp-ca.pem", alerts["pebble"])
    host.run_test("touch /run/reboot-required")
    logins = len(alerts["sink"].logins)
    try:
        check(host)
        assert told(alerts) == ([], ["problem reboot"])
        assert len(alerts["sink"].logins) == logins   # the password never went out
        log = host.check_output("journalctl -u berth-check -n 20 --no-pager -o cat")
        assert "NOT sent (problem reboot by mail), kept for the next run" in log
        assert "certificate" in log.lower()
    finally:
        put(host, f"/etc/berth/{APP}/smtp-ca.pem", alerts["sink"].ca_pem)
        host.run("rm -f /run/reboot-required")
    check(host)
    # the kept alert, once, then the recovery
    assert told(alerts) == ([f"[berth] {host.backend.hostname}: PROBLEM reboot",
                             f"[berth] {host.backend.hostname}: resolved reboot"], ["resolved reboot"])
    assert alerts["sink"].logins[logins:] == [True, True]


def test_roots_mail_goes_to_the_alert_address(host, alerts):
    host.run_test("printf 'Subject: cron says hello\\n\\nfrom cron\\n' | /usr/sbin/sendmail root")
    assert told(alerts) == (["cron says hello"], [])
    # unattended-upgrades mails root, so its failures reach the same address
    assert 'Unattended-Upgrade::Mail "root";' in host.check_output("apt-config dump Unattended-Upgrade::Mail")
    # msmtp sends and listens nowhere: its SMTP server is masked
    assert host.check_output("systemctl is-enabled msmtpd.service || true") == "masked"
    assert not host.socket("tcp://0.0.0.0:25").is_listening
    assert not host.socket("tcp://127.0.0.1:25").is_listening


def test_the_node_exporter_only_behind_basic_auth(host, site):
    password = host.check_output(f"sed -n 's/^BASIC_AUTH_PASSWORD=//p' /etc/berth/{APP}/secrets.env")
    assert web.get(**site, path="/metrics/node")[0] == 401
    status, _, body = web.get(**site, path="/metrics/node", headers={"Authorization": basic("admin", password)})
    assert status == 200 and b"node_filesystem_avail_bytes" in body
    assert host.socket("tcp://127.0.0.1:9100").is_listening
    assert not host.socket("tcp://0.0.0.0:9100").is_listening


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_the_check_runs_sandboxed(host):
    # the runs above (mail through msmtp, the webhook, the journal) worked in it
    level = exposure(host, "berth-check.service")
    print(f"berth-check.service: exposure {level}")
    assert level <= 3.0
