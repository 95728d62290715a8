"""Two apps on one host (berth_apps), after the scenario's single-app tests: the Flask app under
gthread joins the reference ASGI app, each on its own name with its own certificate, its own
Redis user and keys; one app's rotation, redeploy and maintenance leave the other's processes
alone. Runs last (the module's name): its last tests retire the second app, then purge it. Its
runs act on one app or on tags (-e app, --tags): whole runs of two apps did not fit the suite's
budget (docs/TESTING.md)."""

import json
import os
import ssl
import subprocess

import pytest

import web_client as web
from stack_tests import APP, ROOT, changed_release, ctx, playbook, site, site_yml  # noqa: F401 (fixtures)

OTHER = "flaskapp"


done = {}   # the module's one run that adds the second app


@pytest.fixture
def other_site(site):
    name = f"flask.{site['name']}"
    if "pointed" not in done:
        subprocess.run([os.path.join(ROOT, "scripts", "pebble"), "add-a", name, site["ip"]], check=True)
        done["pointed"] = True
    return dict(site, name=name)


@pytest.fixture
def apps(other_site):
    """The scenario's app as the group's settings describe it, and the Flask app."""
    return [{"berth_app_name": APP},
            {"berth_app_name": OTHER, "berth_domains": [other_site["name"]],
             "app_source_dir": os.path.join(ROOT, "examples", "wsgi-app"),
             "app_callable": "berth_flask.main:app", "app_worker_class": "gthread",
             "app_migrate_command": "python -m berth_flask.migrate"}]


def with_apps(apps, *args):
    return ("-e", json.dumps({"berth_apps": apps}), *args)


@pytest.fixture
def two(host, apps):
    """The second app added in its own turn only (-e app=NAME): the first app's turn is the
    scenario's converge, and a whole run of two apps would cost the suite's budget twice."""
    if "added" not in done:
        code, out = site_yml(host, *with_apps(apps, "-e", f"app={OTHER}"))
        done["added"] = code == 0
        assert code == 0, out[-3000:]
    assert done["added"], "adding the second app failed (above)"


def certificate_names(one):
    return [value for kind, value in web.served_certificate(**one)["subjectAltName"] if kind == "DNS"]


def pids(host, user):
    return sorted(host.check_output(f"pgrep -u {user} || true").split())


def test_each_app_on_its_own_name_with_its_own_certificate(host, site, other_site, two):
    for one in (site, other_site):
        status, _, body = web.get(**one, path="/health/ready")
        assert status == 200, body
        assert certificate_names(one) == [one["name"]]
    assert "--worker-class gthread" in host.check_output(f"systemctl show -p ExecStart --value {OTHER}.service")
    assert "UvicornWorker" in host.check_output(f"systemctl show -p ExecStart --value {APP}.service")
    # each its own database: a note in one is not in the other
    note = "only in the flask app"
    assert web.post_json(**other_site, path="/api/notes", payload={"text": note})[0] == 201, "posted"
    assert note in web.get(**other_site, path="/api/notes")[2].decode()
    assert note not in web.get(**site, path="/api/notes")[2].decode()


def redis_as(host, user, *command):
    """A command as an app's Redis user, its password from its secrets file on stdin."""
    return host.check_output(
        f"sed -n 's/^REDIS_PASSWORD=//p' /etc/berth/{user}/secrets.env | "
        f"redis-cli -s /run/redis-berth/redis-server.sock --user {user} --askpass {' '.join(command)}")


def test_the_second_apps_redis_user_has_its_own_keys(host, two):
    assert redis_as(host, OTHER, "SET", f"{OTHER}:k", "v") == "OK"
    assert redis_as(host, OTHER, "GET", f"{APP}:k").startswith("NOPERM")
    assert redis_as(host, OTHER, "SET", "k", "v").startswith("NOPERM")
    assert host.check_output(f"sed -n 's/^REDIS_KEY_PREFIX=//p' /etc/berth/{OTHER}/app.env") == f"{OTHER}:"


def steady(one):
    return web.RequestLoop(**one, requests=[("GET", "/health/ready", {}, 200), ("GET", "/api/notes", {}, 200)])


def test_one_apps_rotation_and_redeploy_leave_the_other_alone(host, site, other_site, apps, ephemeral_dir, two):
    source = changed_release(ephemeral_dir, "two-apps", "two apps")
    release = json.loads(web.get(**site, path="/api/version")[2])["release"]
    others = pids(host, OTHER)
    main_pid = host.check_output(f"systemctl show -p MainPID --value {APP}.service")
    with steady(site) as mine, steady(other_site) as theirs:
        code, out = site_yml(host, *with_apps(apps, "--tags", "secrets", "-e", f"app={APP}",
                                              "-e", "rotate_secrets=REDIS_PASSWORD,JWT_SECRET"))
        assert code == 0, out[-3000:]
        code, out = playbook("deploy.yml", host, *with_apps(apps, "-e", f"app={APP}",
                                                            "-e", f"app_source_dir={source}"))
        assert code == 0, out[-3000:]
    assert mine.count >= 20 and mine.failed == [], mine.failed[:10]
    assert theirs.count >= 20 and theirs.failed == [], theirs.failed[:10]
    assert json.loads(web.get(**site, path="/api/version")[2])["release"] != release
    assert host.check_output(f"systemctl show -p MainPID --value {APP}.service") != main_pid
    assert pids(host, OTHER) == others
    # the rotation's new ACL file kept the other app's user, and gave this one its own prefix
    assert redis_as(host, OTHER, "PING") == "PONG"
    assert redis_as(host, APP, "GET", f"{OTHER}:k").startswith("NOPERM")


def test_maintenance_of_one_app(host, site, other_site, apps, two):
    code, out = playbook("maintenance.yml", host, *with_apps(apps, "-e", "state=on", "-e", f"app={OTHER}"))
    assert code == 0, out[-3000:]
    try:
        status, headers, _ = web.get(**other_site, path="/api/notes")
        assert status == 503 and headers.get("Retry-After")
        assert web.get(**site, path="/api/notes")[0] == 200
    finally:
        code, out = playbook("maintenance.yml", host, *with_apps(apps, "-e", "state=off", "-e", f"app={OTHER}"))
    assert code == 0, out[-3000:]
    assert web.get(**other_site, path="/api/notes")[0] == 200


def test_an_app_taken_out_of_the_list_is_retired_its_data_kept(host, site, other_site, two):
    # the scenario's settings: berth_apps [], its one app; site.yml's retirement and the Redis
    # turn that drops the user (the rest of a whole run is the scenario's own converge)
    code, out = playbook("provision.yml", host, "--tags", "redis,retire")
    assert code == 0, out[-3000:]
    assert f"Retired {OTHER}:" in out and f"berth_purge_apps: [{OTHER}]" in out
    units = host.run(f"systemctl list-units --all --plain --no-legend '{OTHER}.*' '{OTHER}-*' "
                     f"'berth-backup-{OTHER}*'").stdout
    assert units.strip() == "", units
    assert pids(host, OTHER) == []
    # its name is no longer served: the catch-all refuses the handshake
    with pytest.raises(ssl.SSLError):
        web.served_certificate(**other_site)
    assert web.get(**site, path="/health/ready")[0] == 200
    for gone in (f"/etc/letsencrypt/renewal/{OTHER}.conf", f"/etc/berth/tls/{OTHER}",
                 f"/etc/berth/check.d/{OTHER}.json"):
        assert not host.file(gone).exists, gone
    assert host.run(f"sed -n 's/^REDIS_PASSWORD=//p' /etc/berth/{OTHER}/secrets.env | redis-cli -s "
                    f"/run/redis-berth/redis-server.sock --user {OTHER} --askpass PING").stdout.strip() != "PONG"
    for kept in (f"/srv/{OTHER}/data/{OTHER}.sqlite3", f"/etc/berth/{OTHER}/secrets.env",
                 f"/var/backups/berth/{OTHER}"):
        assert host.file(kept).exists, kept
    assert host.user(OTHER).exists


def test_a_retired_app_purged(host, site):
    code, out = playbook("provision.yml", host, "--tags", "purge", "-e", json.dumps({"berth_purge_apps": [OTHER]}))
    assert code == 0, out[-3000:]
    assert f"Purged {OTHER}:" in out, out[-3000:]
    for gone in (f"/srv/{OTHER}", f"/etc/berth/{OTHER}", f"/var/backups/berth/{OTHER}", f"/var/lib/berth/{OTHER}"):
        assert not host.file(gone).exists, gone
    assert not host.user(OTHER).exists and not host.group(OTHER).exists
    assert host.file(f"/srv/{APP}/data/{APP}.sqlite3").exists
    assert web.get(**site, path="/health/ready")[0] == 200
