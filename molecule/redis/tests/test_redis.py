"""The redis role on each Redis host, as converge left it, then after a crash and a restart.
Rotation is in test_rotation.py (which runs after this file)."""

import json
import os
import re
import subprocess
import time
from urllib.parse import unquote, urlsplit

import pytest

from conftest import ansible_playbook, container_ip, host_spec, recap_changed
from redis_host import (ADMIN_FILE, APP, OUTSIDER, REDIS_HOSTS, SOCKET, admin, admin_password, app,
                        cli, main_pid, secrets, wait_until_up)

testinfra_hosts = [host_spec(name) for name in REDIS_HOSTS]

_kernel_check = []


def kernel_check():
    """kernel-check.yml in check mode, run once for every host: (exit code, output)."""
    if not _kernel_check:
        _kernel_check.append(ansible_playbook("kernel-check.yml", "--check", "--diff"))
    return _kernel_check[0]


def test_service_runs_and_starts_at_boot(host):
    assert host.package("redis-server").is_installed
    assert host.service("redis-server").is_enabled
    assert host.service("redis-server").is_running


def test_listens_on_loopback_and_the_socket_only(host):
    listening = host.check_output("ss -Htln").splitlines()
    local = [line.split()[3] for line in listening]
    addresses = {address.rsplit(":", 1)[0] for address in local if address.endswith(":6379")}
    assert addresses == {"127.0.0.1", "[::1]"}
    assert host.socket(f"unix://{SOCKET}").is_listening


def test_socket_is_for_the_apps_group_only(host):
    sock, directory = host.file(SOCKET), host.file(os.path.dirname(SOCKET))
    assert (sock.user, sock.group, sock.mode) == ("redis", "redis-clients", 0o660)
    assert (directory.user, directory.group, directory.mode) == ("redis", "redis-clients", 0o2750)
    assert "redis-clients" in host.user(APP).groups
    assert app(host, "PING") == "PONG"
    assert "Permission denied" in cli(host, "PING", as_user="nobody")


@pytest.mark.parametrize("tcp", [False, True], ids=["socket", "tcp"])
@pytest.mark.parametrize("command", [["PING"], ["SET", "k", "v"], ["GET", "k"], ["FLUSHALL"]])
def test_unauthenticated_commands_are_refused(host, command, tcp):
    assert cli(host, *command, tcp=tcp).startswith("NOAUTH")


def test_default_user_is_disabled(host):
    assert "WRONGPASS" in cli(host, "PING", user="default", password="anything")


@pytest.mark.parametrize("tcp", [False, True], ids=["socket", "tcp"])
def test_app_user_can_set_and_get(host, tcp):
    assert app(host, "SET", "berth:test", "hello", tcp=tcp) == "OK"
    assert app(host, "GET", "berth:test", tcp=tcp) == "hello"
    assert app(host, "DEL", "berth:test", tcp=tcp) == "1"


@pytest.mark.parametrize("command", [
    ["FLUSHALL"], ["FLUSHDB"], ["CONFIG", "GET", "maxmemory"], ["CONFIG", "SET", "maxmemory", "1"],
    ["KEYS", "*"], ["SHUTDOWN"], ["ACL", "LIST"], ["INFO"], ["CLIENT", "KILL", "TYPE", "normal"],
])
def test_app_user_gets_noperm_for_dangerous_commands(host, command):
    assert app(host, *command).startswith("NOPERM"), command
    assert host.service("redis-server").is_running


def test_debug_is_refused_to_everyone(host):
    # enable-debug-command no answers before the ACL would (the ACL denies it too: @dangerous)
    assert app(host, "DEBUG", "SLEEP", "0").startswith("ERR DEBUG command not allowed")


def test_acl_file_holds_hashes_only(host):
    acl = host.file("/etc/redis/users.acl")
    assert (acl.user, acl.group, acl.mode) == ("root", "redis", 0o640)
    text = acl.content_string
    for value in (secrets(host)["REDIS_PASSWORD"], admin_password(host)):
        assert value not in text
    assert len(re.findall(r" #[0-9a-f]{64}\b", text)) == 2
    admin_file = host.file(ADMIN_FILE)
    assert (admin_file.user, admin_file.group, admin_file.mode) == ("root", "root", 0o600)


def test_app_gets_a_working_redis_url(host):
    values = secrets(host)
    url = urlsplit(values["REDIS_URL"])
    assert (url.scheme, url.username, url.path, url.query) == ("unix", APP, SOCKET, "db=0")
    assert unquote(url.password) == values["REDIS_PASSWORD"]
    assert app(host, "PING", password=unquote(url.password)) == "PONG"


def test_port_is_not_reachable_from_another_host(host):
    ip = container_ip(host.backend.hostname)
    outsider = host.get_host(host_spec(OUTSIDER))
    probe = "timeout 3 bash -c '</dev/tcp/{}/{}'"
    # A listener on all addresses is reachable: what stops Redis is its binding, not the network.
    host.run("systemd-run --unit=berth-test-listener python3 -m http.server --bind 0.0.0.0 6380")
    try:
        deadline = time.time() + 10
        while outsider.run(probe.format(ip, 6380)).rc != 0 and time.time() < deadline:
            time.sleep(0.3)
        assert outsider.run(probe.format(ip, 6380)).rc == 0, "the network works"
    finally:
        host.run("systemctl stop berth-test-listener")
    assert outsider.run(probe.format(ip, 6379)).rc != 0
    assert host.run(probe.format(ip, 6379)).rc != 0, "not on the host's own external address either"
    assert host.run(probe.format("127.0.0.1", 6379)).rc == 0


def test_persistence_settings(host):
    conf = host.file("/etc/redis/berth.conf").content_string.splitlines()
    for line in ("appendonly yes", "appendfsync everysec", "save 900 1", "save 120 500"):
        assert line in conf
    assert "aof_enabled:1" in admin(host, "INFO", "persistence").splitlines()
    data = host.file("/var/lib/redis")
    assert (data.user, data.group, data.mode) == ("redis", "redis", 0o750)


def test_memory_limit_and_policy(host):
    mem_kb = int(host.check_output("awk '/^MemTotal:/ {print $2}' /proc/meminfo"))
    expected = int((mem_kb // 1024) * 0.25) * 1024 * 1024
    info = dict(line.split(":", 1) for line in admin(host, "INFO", "memory").splitlines()
                if ":" in line)
    assert int(info["maxmemory"]) == expected
    assert info["maxmemory_policy"] == "allkeys-lru"


def test_no_startup_warning_berth_could_fix(host):
    """Only the kernel warnings berth skips in a container (the kernel is the machine's) remain."""
    log = host.check_output(f"journalctl -o cat --no-pager _PID={main_pid(host)}")
    assert "Ready to accept connections" in log
    warnings = [line for line in log.splitlines() if "warning" in line.lower()]
    expected = []
    if host.file("/proc/sys/vm/overcommit_memory").content_string.strip() != "1":
        expected.append("Memory overcommit must be enabled")
    if int(host.file("/proc/sys/net/core/somaxconn").content_string) < 511:
        expected.append("TCP backlog setting of 511 cannot be enforced")
    unexpected = [w for w in warnings if not any(e in w for e in expected)]
    assert not unexpected
    assert not host.file("/etc/sysctl.d/60-berth-redis.conf").exists, "skipped in a container"


def test_kernel_tasks_work_on_a_real_host_in_check_mode(host):
    keys = ["vm/overcommit_memory", "net/core/somaxconn", "kernel/mm/transparent_hugepage/enabled"]

    def machine():
        values = {}
        for key in keys:
            base = "/sys/" if key.startswith("kernel/mm") else "/proc/sys/"
            with open(base + key, encoding="utf-8") as fh:
                values[key] = fh.read().strip()
        return values

    before = machine()
    code, out = kernel_check()
    assert code == 0, out[-2000:]
    overcommit = out.split("Let Redis fork")[1].split("TASK [")[0]
    would_change = f"changed: [{host.backend.hostname}]" in overcommit
    assert would_change == (before["vm/overcommit_memory"] != "1"), overcommit
    assert machine() == before, "the machine's kernel is untouched"
    assert not host.file("/etc/sysctl.d/60-berth-redis.conf").exists


def test_a_key_written_before_a_crash_is_there_after_it(host):
    assert app(host, "SET", "berth:durable", "still-here") == "OK"
    time.sleep(2)   # appendfsync everysec
    before = main_pid(host)
    host.run("systemctl kill --signal=KILL redis-server")   # no shutdown save: only the AOF
    time.sleep(1)
    wait_until_up(host)
    assert main_pid(host) != before, "it was restarted"
    assert app(host, "GET", "berth:durable") == "still-here"


def test_a_key_written_before_a_restart_is_there_after_it(host):
    assert app(host, "SET", "berth:restart", "kept") == "OK"
    host.run("systemctl restart redis-server")
    wait_until_up(host)
    assert app(host, "GET", "berth:restart") == "kept"


def test_a_database_host_serves_its_remote_clients_over_tls_only(host, tmp_path):
    # this machine (10.88.0.1) stands in for a web server; the run after puts the defaults back
    ip = container_ip(host.backend.hostname)
    remote = json.dumps({"redis_port": 0, "redis_remote_clients": ["10.88.0.1"], "redis_listen_addresses": [ip]})
    try:
        code, out = ansible_playbook("converge.yml", "--tags", "redis", "-e", remote)
        assert code == 0, out[-3000:]
        pinned = tmp_path / "redis.crt"
        pinned.write_text(host.file("/etc/ssl/berth-redis/server.crt").content_string)

        def ping(*tls):
            env = dict(os.environ, REDISCLI_AUTH=secrets(host)["REDIS_PASSWORD"])
            result = subprocess.run(["redis-cli", "-h", ip, "-p", "6379", "--user", APP, *tls, "PING"],
                                    env=env, capture_output=True, text=True, timeout=30, check=False)
            return (result.stdout + result.stderr).strip()

        # as the app's ACL user, over TLS, verifying the pinned certificate
        assert ping("--tls", "--cacert", str(pinned)) == "PONG"
        # not in plain text, and not to a server the pin does not vouch for
        assert "PONG" not in ping()
        assert "certificate verify failed" in ping("--tls", "--cacert", "/etc/ssl/certs/ca-certificates.crt")
        # the socket as before; no plain TCP left on loopback
        assert app(host, "PING") == "PONG"
        assert "PONG" not in cli(host, "PING", tcp=True)
        code, out = ansible_playbook("converge.yml", "--tags", "redis", "-e", remote)
        assert code == 0 and recap_changed(out) == 0, out[-3000:]
    finally:
        code, out = ansible_playbook("converge.yml", "--tags", "redis")
        assert code == 0, out[-3000:]
    wait_until_up(host)
    assert app(host, "PING", tcp=True) == "PONG"
