"""Bad settings are refused before anything on a host changes.

One site.yml run against a fresh host (the scenario's outsider, never converged), reached under
one inventory name per case, each name with one wrong setting as a user would write it in
group_vars: every case must fail with a message that names the setting, and the host's files must
be the same after. `--tags nginx`: the checks run whatever the tags select. A second run on the
same host gives Ansible a login password on the command line, as -k does."""

import json
import os
import subprocess

import yaml

from conftest import SSH_DIR, container_ip, host_spec, ssh

OUTSIDER = "stack-sqlite-outsider"
ROOT = os.environ.get("MOLECULE_PROJECT_DIRECTORY", ".")
LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"

# name: (settings, words the refusal must hold)
CASES = {
    "database-misspelt": ({"berth_database": "postgres"}, ["berth_database"]),
    "domain-not-a-name": ({"berth_domains": ["not a domain!"]}, ["berth_domains"]),
    "domains-empty": ({"berth_domains": []}, ["berth_domains"]),
    "app-name-root": ({"berth_app_name": "root"}, ["berth_app_name", "'root'"]),
    "app-name-system-account": ({"berth_app_name": "daemon"}, ["berth_app_name", "an existing account"]),
    "app-name-uppercase": ({"berth_app_name": "MyApp"}, ["berth_app_name"]),
    "overlap-negative": ({"secrets_overlap": -1}, ["secrets_overlap"]),
    "app-source-missing": ({"app_source_dir": "/nonexistent/app"}, ["app_source_dir", "/nonexistent/app"]),
    "example-names-public-ca": ({"berth_acme_email": "admin@example.com", "berth_domains": ["app.example.com"],
                                 "berth_acme_directory": LETS_ENCRYPT}, ["berth_acme_email", "example.com"]),
    "postgresql-connections": ({"berth_database": "postgresql", "postgresql_max_connections": 5},
                               ["postgresql_max_connections"]),
    "postgresql-client-a-name": ({"berth_database": "postgresql", "postgresql_listen_addresses": ["10.0.0.5"],
                                  "postgresql_remote_clients": ["web1.example.net"]},
                                 ["postgresql_remote_clients", "web1.example.net"]),
    "redis-clients-plain-port": ({"redis_remote_clients": ["10.0.0.11"], "redis_listen_addresses": ["10.0.0.5"],
                                  "redis_port": 6379}, ["redis_port", "plain TCP"]),
    "postgresql-listen-elsewhere": ({"berth_database": "postgresql", "postgresql_listen_addresses": ["192.0.2.1"],
                                     "postgresql_remote_clients": ["10.0.0.11"]},
                                    ["postgresql_listen_addresses", "192.0.2.1", "this host has"]),
    "postgresql-clients-unreachable": ({"berth_database": "postgresql", "postgresql_remote_clients": ["10.0.0.11"]},
                                       ["postgresql_listen_addresses"]),
    "root-login-off-as-root": ({"base_ssh_permit_root_login": "no"}, ["base_ssh_permit_root_login"]),
    "max-auth-tries-zero": ({"base_ssh_max_auth_tries": 0}, ["base_ssh_max_auth_tries"]),
    "external-without-url": ({"berth_database": "external"}, ["berth_external_database_url"]),
    "smtp-port-out-of-range": ({"berth_smtp_port": 70000}, ["berth_smtp_port"]),
    "smtp-security-unknown": ({"berth_smtp_security": "ssl"}, ["berth_smtp_security"]),
    "alerts-without-relay": ({"berth_smtp_host": ""}, ["berth_alert_email", "berth_smtp_host"]),
    "webhook-not-a-url": ({"berth_alert_webhook_url": "hooks.berth.test/x"}, ["berth_alert_webhook_url"]),
    "workers-zero": ({"app_gunicorn_workers": 0}, ["app_gunicorn_workers"]),
    "workers-wrong-type": ({"app_gunicorn_workers": "many"}, ["app_gunicorn_workers"]),
    "keep-one-release": ({"app_keep_releases": 1}, ["app_keep_releases"]),
    "log-level-unknown": ({"app_log_level": "LOUD"}, ["app_log_level"]),
    "env-name-lowercase": ({"berth_app_environment": {"debug": "1"}}, ["berth_app_environment"]),
    "redis-memory-unit": ({"redis_maxmemory": "lots"}, ["redis_maxmemory"]),
    "web-port-out-of-range": ({"firewall_web_ports": [80, 70000]}, ["firewall_web_ports"]),
    "ssh-port-not-the-connected-one": ({"firewall_ssh_port": 2222}, ["firewall_ssh_port"]),
    "rotate-unknown-secret": ({"rotate_secrets": "NO_SUCH_SECRET"}, ["NO_SUCH_SECRET"]),
    "provided-secret-without-value": ({"stack_extra_secrets": [{"name": "API_KEY", "source": "provided"}]},
                                      ["API_KEY"]),
    "remote-unknown-type": ({"backup_remotes": [{"name": "offsite", "type": "ftp"}]}, ["backup_remotes"]),
    "retention-zero": ({"backup_retention_days": 0}, ["backup_retention_days"]),
    "disk-too-small": ({"base_min_free_mb": 100_000_000}, ["base_min_free_mb"]),
    "reboot-time": ({"base_unattended_reboot_time": "25:00"}, ["base_unattended_reboot_time"]),
    "media-outside-shared": ({"berth_shared_public": {"/media/": "../etc"}}, ["berth_shared_public"]),
    "body-size-unit": ({"nginx_client_max_body_size": "ten megs"}, ["client_max_body_size"]),
    "layout-unknown-path": ({"berth_layout_overrides": {"sockets": "/run/x"}}, ["berth_layout_overrides"]),
    "layout-relative-path": ({"berth_layout_overrides": {"home": "srv/app"}}, ["berth_layout_overrides"]),
    "setting-misspelt": ({"berth_domians": ["app.berth.test"]}, ["berth_domians", "berth_domains"]),
    "role-setting-misspelt": ({"nginx_client_max_bodysize": "20m"}, ["nginx_client_max_body_size"]),
    # Ansible's key still logs in; the password would be refused by the hardened sshd next time
    "password-login-hardened": ({"ansible_ssh_password": "a-password"}, ["base_ssh_hardening", "password"]),
}
# A password given on the command line (-k, --connection-password-file): one more run, with it.
PASSWORD_CLI = "password-on-command-line"

# What changes on a running Debian host by itself (systemd's timer stamps, its random seed).
VOLATILE = ("/var/lib/systemd/",)


def files(host):
    out = host.check_output("find /etc /srv /var/lib /usr/local -xdev -type f -print0 2>/dev/null"
                            " | sort -z | xargs -0 sha256sum")
    return {line.split("  ", 1)[1]: line.split("  ", 1)[0] for line in out.splitlines()
            if not line.split("  ", 1)[1].startswith(VOLATILE)}


def refusals(output):
    """Each host's failure messages in a run with the json callback."""
    found = {}
    for play in json.loads(output[output.index("{"):])["plays"]:
        for task in play["tasks"]:
            for name, result in task["hosts"].items():
                if result.get("failed") or result.get("unreachable"):
                    # a loop's message is each failed item's
                    items = [item for item in result.get("results", []) if item.get("failed")] or [result]
                    found.setdefault(name, []).extend(str(item.get("msg", item)) for item in items)
    return found


def site_run(inventory_hosts, path, *args):
    """site.yml --tags nginx against the outsider under the given inventory names: it must fail;
    each name's failure messages."""
    inventory = {"berth": {"children": {"bad_settings": {
        "vars": {"ansible_host": container_ip(OUTSIDER), "ansible_user": "root",
                 "ansible_ssh_private_key_file": f"{SSH_DIR}/id_ed25519",
                 "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"},
        "hosts": inventory_hosts}}}}
    with open(path, "w", encoding="utf-8") as fh:
        yaml.safe_dump(inventory, fh)
    env = {**os.environ, "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json", "ANSIBLE_FORKS": "10"}
    result = subprocess.run(["ansible-playbook", "-i", os.path.dirname(os.environ["MOLECULE_INVENTORY_FILE"]),
                             "-i", path, "--limit", "bad_settings", "--tags", "nginx", *args,
                             os.path.join(ROOT, "site.yml")],
                            capture_output=True, text=True, check=False, env=env, timeout=900,
                            cwd=os.environ["MOLECULE_SCENARIO_DIRECTORY"])
    assert result.returncode != 0, result.stdout[-2000:]
    return refusals(result.stdout)


def test_bad_settings_refused_before_any_change(host, ephemeral_dir):
    outsider = host.get_host(host_spec(OUTSIDER))
    before = files(outsider)
    password_file = os.path.join(ephemeral_dir, "connection-password")
    with open(password_file, "w", encoding="utf-8") as fh:
        fh.write("a-password\n")
    # one after the other: together they would open more connections at once than sshd's
    # MaxStartups lets in unauthenticated (10), and it would drop some
    found = site_run({name: settings for name, (settings, _) in CASES.items()},
                     os.path.join(ephemeral_dir, "bad-settings.yml"))
    found.update(site_run({PASSWORD_CLI: {}}, os.path.join(ephemeral_dir, "password-cli.yml"),
                          "--connection-password-file", password_file))
    cases = {**CASES, PASSWORD_CLI: ({}, ["base_ssh_hardening", "password"])}
    wrong = {name: found.get(name, ["(not refused)"]) for name, (_, words) in cases.items()
             if not any(all(word in message for word in words) for message in found.get(name, []))}
    assert not wrong, json.dumps(wrong, indent=1)[:6000]
    after = files(outsider)
    changed = sorted(path for path in before.keys() | after.keys() if before.get(path) != after.get(path))
    assert not changed, changed[:50]
    # the lockout cases above left root's login as it was: a new SSH login (no kept connection)
    login = ssh(OUTSIDER, "true", options=("-o", "ControlPath=none"))
    assert login.returncode == 0, login.stderr
