"""Helpers of the redis scenario's tests: the hosts, their secrets, redis-cli as a local user."""

import re
import shlex
import time

import pytest

# Every Redis host of the scenario; not the outsider, which plays the attacker.
REDIS_HOSTS = ["redis-debian12"]
OUTSIDER = "redis-outsider"

ENV_FILE = "/etc/berth/demoapp/secrets.env"
ADMIN_FILE = "/etc/redis/berth-admin.env"
SOCKET = "/run/redis-berth/redis-server.sock"
APP = "demoapp"

# Every password a host held while the tests looked: the last test searches all output for them.
seen_values = set()


def env_values(text):
    values = {}
    for line in text.splitlines():
        if line.startswith("#") or "=" not in line:
            continue
        name, value = line.split("=", 1)
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = re.sub(r'\\(["\\$`])', r"\1", value[1:-1])
        values[name] = value
    return values


def secrets(host):
    values = env_values(host.file(ENV_FILE).content_string)
    seen_values.update(v for n, v in values.items() if n.startswith("REDIS_PASSWORD"))
    return values


def admin_password(host):
    value = env_values(host.file(ADMIN_FILE).content_string)["REDIS_ADMIN_PASSWORD"]
    seen_values.add(value)
    return value


def cli(host, *command, user=None, password=None, as_user="root", tcp=False):
    """redis-cli as a local user, over the socket (or 127.0.0.1): the reply, stdout + stderr."""
    args = ["-h", "127.0.0.1", "-p", "6379"] if tcp else ["-s", SOCKET]
    if user:
        args += ["--user", user, "--pass", password, "--no-auth-warning"]
    line = shlex.join(["runuser", "-u", as_user, "--", "redis-cli", *args, *command])
    result = host.run(line)
    return (result.stdout + result.stderr).strip()


def app(host, *command, password=None, **kwargs):
    """A command as the app: its user, its ACL user, its current password unless given one."""
    return cli(host, *command, user=APP, password=password or secrets(host)["REDIS_PASSWORD"],
               as_user=APP, **kwargs)


def admin(host, *command):
    return cli(host, *command, user="berth-admin", password=admin_password(host))


def main_pid(host):
    return host.check_output("systemctl show -p MainPID --value redis-server")


def wait_until_up(host, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if host.service("redis-server").is_running and admin(host, "PING") == "PONG":
            return
        time.sleep(0.5)
    pytest.fail("redis-server did not come back")
