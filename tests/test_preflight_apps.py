"""The preflight's check of what the apps of a host share (playbooks/tasks/checks.yml): each app's
own domain names, and none of the host's own settings in an entry. Its conditions and message
evaluated by Ansible's templar over the contract, as a play sees them, with no host."""

import pathlib

import pytest
from ansible.template import Templar, trust_as_template

from test_contract import LOADER, ROOT, render

CHECKS = LOADER.load_from_file(str(ROOT / "playbooks" / "tasks" / "checks.yml"), trusted_as_template=True)
TASK = next(task for task in CHECKS if task["name"] == "Check the apps")
CHECK = next(check for check in TASK["berth.stack.checks"]["checks"]
             if check["msg"].startswith("berth_apps: every app needs domain names"))


def check(settings):
    v = render(settings)
    variables = {name: v(name) for name in ("berth_apps", "berth_app_list", "berth_domains",
                                            "berth_host_settings_pattern", "berth_layout_shared")}
    variables.update(TASK["vars"])
    templar = Templar(loader=LOADER, variables=variables)
    passed = all(templar.template(trust_as_template("{{ %s }}" % that)) for that in CHECK["that"])
    return passed, templar.template(CHECK["msg"])


SITE = {"berth_app_name": "site", "berth_domains": ["site.example"]}


@pytest.mark.parametrize("apps", [[], [SITE], [SITE, {"berth_app_name": "admin", "berth_domains": ["admin.example"]}],
                                  # an app's own settings: its database, its Redis keys, its site's limits
                                  [SITE, {"berth_app_name": "b", "berth_domains": ["b.example"], "berth_database": "postgresql",
                                          "redis_app_keys": ["*"], "nginx_limit_conn_per_client": 5,
                                          "monitor_health_path": "/up"}]])
def test_apps_apart_pass(apps):
    assert check({"berth_apps": apps})[0]


def test_a_domain_of_two_apps_is_refused():
    passed, message = check({"berth_apps": [SITE, {"berth_app_name": "admin",
                                                   "berth_domains": ["admin.example", "site.example"]}]})
    assert not passed and "named more than once: site.example" in message


def test_an_app_without_its_own_domains_is_refused():
    # the group's berth_domains for both
    passed, message = check({"berth_apps": [{"berth_app_name": "a"}, {"berth_app_name": "b"}]})
    assert not passed and "named more than once: app.example.com" in message


@pytest.mark.parametrize("name", ["redis_maxmemory", "base_timezone", "firewall_allowed_tcp_ports", "berth_smtp_host",
                                  "berth_alert_email", "nginx_trusted_proxies", "postgresql_max_connections",
                                  "monitor_disk_paths", "berth_purge_apps"])
def test_the_hosts_own_settings_are_refused_in_an_entry(name):
    passed, message = check({"berth_apps": [SITE, {"berth_app_name": "b", "berth_domains": ["b.example"], name: 1}]})
    assert not passed and f"(set in an entry: {name})" in message


def test_the_shared_paths_are_refused_in_an_entry():
    entry = {"berth_app_name": "b", "berth_domains": ["b.example"],
             "berth_layout_overrides": {"redis_socket_dir": "/run/b-redis", "home": "/opt/b", "acme_webroot": "/b"}}
    passed, message = check({"berth_apps": [SITE, entry]})
    assert not passed
    assert "(set in an entry: berth_layout_overrides.acme_webroot, berth_layout_overrides.redis_socket_dir)" in message
    # an app's own paths may move
    entry["berth_layout_overrides"] = {"home": "/opt/b", "settings_dir": "/etc/b"}
    assert check({"berth_apps": [SITE, entry]})[0]
