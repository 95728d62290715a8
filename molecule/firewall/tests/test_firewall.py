"""The firewall role, seen from outside: each host under test is probed from firewall-outsider,
a second host on the same podman network, as an attacker would probe it, and from this machine
(10.88.0.1), which plays the operator's controller and monitoring host.

"Closed" is proven against a listener: the tests start a server on every probed port, so a port
that does not answer is closed by the firewall, not by the absence of a service. ufw drops what
it denies (the probe times out: "filtered"); fail2ban rejects (the probe is "refused").
"""

import json
import os
import re
import shlex
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import testinfra

from conftest import ansible_playbook, exposure, host_spec, recap_changed

OUTSIDER = "firewall-outsider"
OUTSIDER_IP = "10.88.0.211"
CONTROLLER_IP = "10.88.0.1"
SSH_KEY = os.environ.get("BERTH_SSH_KEY", "/var/lib/berth-test/ssh/id_ed25519")
# What the scenario opens (molecule.yml): SSH, the web ports, one extra port for everyone.
OPEN = [22, 80, 443, 8443]
# Listening, but closed: PostgreSQL, Redis, the app (gunicorn), the monitoring port (open to the
# controller only), and ports nobody listens on.
CLOSED = [5432, 6379, 8000, 9100, 25, 3000, 8080]
LISTENERS = [80, 443, 8443, 5432, 6379, 8000, 9100]
BANTIME = 20          # firewall_fail2ban_bantime in molecule.yml
MAXRETRY = 3          # firewall_fail2ban_maxretry

PROBE = """
import json, socket, sys
from concurrent.futures import ThreadPoolExecutor
address, timeout, ports = sys.argv[1], float(sys.argv[2]), [int(p) for p in sys.argv[3:]]
def probe(port):
    try:
        socket.create_connection((address, port), timeout=timeout).close()
        return "open"
    except ConnectionRefusedError:
        return "refused"
    except OSError:
        return "filtered"
with ThreadPoolExecutor(len(ports)) as pool:
    print(json.dumps(dict(zip(map(str, ports), pool.map(probe, ports)))))
"""


def probe(source, address, ports, timeout=3):
    """{port: open|refused|filtered} for TCP connections from the host `source` to address."""
    args = " ".join(shlex.quote(str(a)) for a in [address, timeout, *ports])
    out = source.check_output(f"python3 -c {shlex.quote(PROBE)} {args}")
    return {int(port): state for port, state in json.loads(out).items()}


def probe_from_controller(address, ports, timeout=3):
    def one(port):
        try:
            socket.create_connection((address, port), timeout=timeout).close()
            return "open"
        except ConnectionRefusedError:
            return "refused"
        except OSError:
            return "filtered"
    with ThreadPoolExecutor(len(ports)) as pool:
        return dict(zip(ports, pool.map(one, ports)))


def ssh_from_controller(address, command="true"):
    return subprocess.run(
        ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5", "-i", SSH_KEY,
         f"root@{address}", command],
        capture_output=True, text=True, timeout=30, check=False,
    )


def banned(host, jail):
    out = host.check_output(f"fail2ban-client status {jail}")
    return re.search(r"Banned IP list:\s*(.*)", out).group(1).split()


def wait_for(condition, timeout, interval=1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


def converge(instance_name, *extra_vars):
    """The ufw part of converge.yml against one host, over SSH, with extra settings."""
    args = ["--tags", "firewall-ufw", "--limit", instance_name]
    for extra in extra_vars:
        args += ["-e", json.dumps(extra)]
    return ansible_playbook("converge.yml", *args)


@pytest.fixture(autouse=True)
def _hosts_under_test_only(instance_name):
    if instance_name == OUTSIDER:
        pytest.skip("the outsider is the tests' tool")


@pytest.fixture
def reruns(instance_name):
    """For the tests that re-run the role: the guard and the pruning are the role's own logic,
    and ufw is the same version on both targets, so Debian 12 alone keeps the scenario short."""
    if instance_name != "firewall-debian12":
        pytest.skip("re-runs of the role: on Debian 12 only")


@pytest.fixture(scope="module")
def outsider():
    return testinfra.get_host(host_spec(OUTSIDER))


@pytest.fixture(scope="module")
def listeners(host):
    """A server on every probed port, IPv4 and IPv6, for the module's tests."""
    for port in LISTENERS:
        host.run(f"systemd-run --unit=berth-probe-{port} python3 -m http.server {port} --bind ::")
    assert wait_for(lambda: set(probe(host, "::1", LISTENERS, timeout=1).values()) == {"open"}, 15)
    yield LISTENERS
    host.run("systemctl stop " + " ".join(f"berth-probe-{p}" for p in LISTENERS))


@pytest.fixture(scope="module")
def link_local(host):
    """The host's IPv6 link-local address, as the outsider on the same link reaches it."""
    out = host.check_output("ip -6 -o addr show dev eth0 scope link")
    return re.search(r"inet6 (fe80::[0-9a-f:]+)/", out).group(1) + "%eth0"


# --- ufw's state ---------------------------------------------------------------------------

def test_ufw_active_with_deny_incoming(host):
    status = host.check_output("ufw status verbose")
    assert "Status: active" in status
    # routed: "disabled" while the host does not forward at all (firewall_sysctl), else "deny"
    assert re.search(r"Default: deny \(incoming\), allow \(outgoing\), (deny|disabled) \(routed\)", status)
    assert "Logging: on (low)" in status
    assert host.service("ufw").is_enabled


def test_ssh_limited_and_nothing_can_shadow_it(host):
    rules = [line for line in host.check_output("ufw status").splitlines()[4:] if line.strip()]
    assert any(re.match(r"22/tcp +LIMIT( IN)? +Anywhere ", r) for r in rules), rules
    assert any(re.match(r"22/tcp \(v6\) +LIMIT( IN)? +Anywhere \(v6\) ", r) for r in rules), rules
    # ufw takes the first rule that matches: with allow and limit rules only, none comes
    # between a packet for SSH and its rule
    assert not [r for r in rules if re.search(r" (DENY|REJECT) ", r)], rules


def test_ipv6_rules_mirror_ipv4(host):
    rules = [line for line in host.check_output("ufw status").splitlines()[4:] if line.strip()]
    v4 = {re.sub(r"\s+", " ", r) for r in rules if "(v6)" not in r and "Anywhere" in r}
    v6 = {re.sub(r"\s+", " ", r.replace(" (v6)", "")) for r in rules if "(v6)" in r}
    assert v4 and v4 == v6
    assert "IPV6=yes" in host.file("/etc/default/ufw").content_string.splitlines()


@pytest.mark.parametrize("key,value", [
    ("net.ipv4.conf.all.rp_filter", "1"),
    ("net.ipv4.conf.all.send_redirects", "0"),
    ("net.ipv4.conf.default.accept_source_route", "0"),
    ("net.ipv4.conf.all.log_martians", "1"),   # ufw's own default would turn it off
    ("net.ipv4.conf.all.forwarding", "0"),
    ("net.ipv6.conf.all.forwarding", "0"),
])
def test_network_kernel_settings(host, key, value):
    assert host.check_output(f"sysctl -n {key}") == value


def test_machine_still_routes():
    # the settings are the container's own (per network namespace): the machine, whose
    # forwarding the podman network needs, keeps its own
    with open("/proc/sys/net/ipv4/conf/all/forwarding", encoding="utf-8") as fh:
        assert fh.read().strip() == "1"


def test_unused_protocols_blocked(host):
    conf = host.file("/etc/modprobe.d/berth-net-protocols.conf").content_string
    for protocol in ("dccp", "sctp", "rds", "tipc"):
        assert f"install {protocol} /bin/true" in conf


# --- from the outside ----------------------------------------------------------------------

def test_listeners_answer_locally(host, listeners):
    # the control for every "closed" below: each port has a server behind it
    assert set(probe(host, "127.0.0.1", listeners).values()) == {"open"}


def test_open_ports_reachable_from_outsider(outsider, ip, listeners):
    assert probe(outsider, ip, OPEN) == {port: "open" for port in OPEN}


def test_everything_else_closed_from_outsider(outsider, ip, listeners):
    assert probe(outsider, ip, CLOSED) == {port: "filtered" for port in CLOSED}


def test_ipv6_filtered_like_ipv4(outsider, link_local, listeners):
    result = probe(outsider, link_local, [22, 80, 443, 5432, 6379, 8000])
    assert result == {22: "open", 80: "open", 443: "open",
                      5432: "filtered", 6379: "filtered", 8000: "filtered"}


def test_ssh_rate_limited(outsider, link_local):
    # ufw limit: a source's 6th new connection within 30 s is rejected. Over IPv6 (a counter of
    # its own), so the IPv4 tests that follow start with a clean slate.
    results = [probe(outsider, link_local, [22], timeout=2)[22] for _ in range(7)]
    assert results[0] == "open"
    assert results.count("open") <= 5, results
    assert results[-1] != "open", results


@pytest.mark.usefixtures("reruns")
def test_operator_runs_playbooks_back_to_back(host, instance_name):
    # the controller (Ansible's address, 10.88.0.1): eight runs in a row, each task over a new
    # SSH connection (no kept master), 16 logins where the limit refuses a stranger's sixth in 30 s
    fresh = {"ANSIBLE_SSH_ARGS": "-o ControlMaster=no -o ControlPath=none"}
    for run in range(8):
        code, out = ansible_playbook("logins.yml", "--limit", instance_name, env=fresh)
        assert code == 0 and "unreachable=0" in out, f"run {run + 1}: {out[-2000:]}"
    # and fail2ban, which bans on failed logins, never bans it
    assert "10.88.0.1" in host.check_output("fail2ban-client get sshd ignoreip")


def test_source_restricted_rule(outsider, ip, listeners):
    assert probe_from_controller(ip, [9100]) == {9100: "open"}
    assert probe(outsider, ip, [9100]) == {9100: "filtered"}


def test_outgoing_traffic_still_flows(host):
    # the test bed's apt cache on the gateway, and the Debian mirror on the internet
    assert host.run("timeout 5 bash -c '</dev/tcp/10.88.0.1/3142'").rc == 0
    mirror = host.check_output("awk '/^deb /{print $2; exit}' /etc/apt/sources.list")
    assert host.run(f"curl -sS -o /dev/null --noproxy '*' -m 15 {mirror}/dists/").rc == 0


# --- the operator is never locked out -----------------------------------------------------

def test_converge_went_on_over_ssh_after_enabling(host, instance_name, ephemeral_dir):
    # converge.yml's last play, after ufw was enabled: the old connection, then a new one
    with open(os.path.join(ephemeral_dir, "ansible.log"), encoding="utf-8") as fh:
        log = fh.read()
    tail = log.split("TASK [Log in again over a new connection]")[1]
    assert re.search(rf"ok: \[{instance_name}\]", tail.split("TASK [")[0])
    # ... and Ansible came in over SSH, from the controller, with its key
    journal = host.check_output("journalctl -u ssh --no-pager -o cat")
    assert f"Accepted publickey for root from {CONTROLLER_IP}" in journal


def test_new_ssh_login_from_controller(ip):
    result = ssh_from_controller(ip, "ufw status")
    assert result.returncode == 0, result.stderr
    assert "Status: active" in result.stdout


@pytest.mark.usefixtures("reruns")
def test_wrong_ssh_port_refused(host, instance_name):
    before = host.check_output("ufw status numbered")
    code, out = converge(instance_name, {"firewall_ssh_port": 2222})
    assert code != 0
    assert "REFUSED" in out and "connected to SSH on port 22" in out, out[-3000:]
    assert host.check_output("ufw status numbered") == before


@pytest.mark.usefixtures("reruns")
def test_ssh_sources_without_the_controller_refused(host, instance_name):
    before = host.check_output("ufw status numbered")
    code, out = converge(instance_name, {"firewall_ssh_sources": ["192.0.2.0/24", "2001:db8::/32"]})
    assert code != 0
    assert "REFUSED" in out and f"Ansible connects from {CONTROLLER_IP}" in out, out[-3000:]
    assert host.check_output("ufw status numbered") == before


def forward_policy(host):
    """The live policy of the kernel's FORWARD chain, where ufw's routed default goes."""
    return host.check_output("iptables -S FORWARD").splitlines()[0].split()[-1]


@pytest.mark.usefixtures("reruns", "listeners")
def test_settings_changes_apply_and_undeclared_rules_go(host, instance_name, ip, outsider):
    # SSH for the controller's network only: closed to the outsider, open to the operator
    code, out = converge(instance_name, {"firewall_ssh_sources": ["10.88.0.0/30"]})
    assert code == 0, out[-3000:]
    assert recap_changed(out) > 0
    assert probe(outsider, ip, [22]) == {22: "filtered"}
    assert ssh_from_controller(ip).returncode == 0
    # a port opened, the policy and log level changed by hand, then the settings as they were:
    # all undone (the role reads ufw's files to change only what differs)
    host.check_output("ufw allow 5432/tcp")
    host.check_output("ufw default allow routed")
    host.check_output("ufw logging medium")
    assert probe(outsider, ip, [5432]) == {5432: "open"}
    assert forward_policy(host) == "ACCEPT"
    code, out = converge(instance_name)
    assert code == 0, out[-3000:]
    assert probe(outsider, ip, [22, 5432]) == {22: "open", 5432: "filtered"}
    status = host.check_output("ufw status verbose")
    assert "5432" not in status and "10.88.0.0/30" not in status
    assert "Logging: on (low)" in status
    assert forward_policy(host) == "DROP"



@pytest.mark.usefixtures("reruns", "listeners")
def test_a_disabled_or_stopped_firewall_is_filtering_again(host, instance_name, ip, outsider):
    # ufw disabled (ENABLED=no), then its unit stopped (the rules unloaded, ENABLED=yes kept):
    # each time the next run filters again
    for undo in ("ufw disable", "systemctl stop ufw"):
        host.check_output(undo)
        assert probe(outsider, ip, [5432]) == {5432: "open"}, undo
        code, out = converge(instance_name)
        assert code == 0, out[-3000:]
        assert recap_changed(out) > 0, undo
        assert probe(outsider, ip, [22, 5432]) == {22: "open", 5432: "filtered"}, undo
        assert host.check_output("ufw status").startswith("Status: active")

# --- fail2ban ------------------------------------------------------------------------------

def test_jails_running(host):
    jails = host.check_output("fail2ban-client status")
    for jail in ("sshd", "nginx-http-auth", "nginx-limit-req"):
        assert jail in jails
    assert "_SYSTEMD_UNIT=ssh.service" in host.check_output("fail2ban-client status sshd")
    assert CONTROLLER_IP in host.check_output("fail2ban-client get sshd ignoreip")


def test_jails_configured_in_jail_local(host):
    # fail2ban's own file for a host's settings (never a package's); berth's former file is gone
    assert "banaction = nftables" in host.file("/etc/fail2ban/jail.local").content_string
    assert not host.file("/etc/fail2ban/jail.d/berth.local").exists


def test_fail2ban_sandboxed(host):
    # as far as it still bans: the bans and unbans here run in it
    level = exposure(host, "fail2ban.service")
    print(f"fail2ban.service: exposure {level}")
    assert level <= 5.0


@pytest.mark.parametrize("jail,line", [
    ("nginx-http-auth",
     '{now} [error] 812#812: *{n} user "admin" was not found in "/etc/nginx/berth.htpasswd", '
     'client: {ip}, server: app.example.com, request: "GET /admin/ HTTP/1.1", host: "app.example.com"'),
    ("nginx-limit-req",
     '{now} [error] 812#812: *{n} limiting requests, excess: 20.360 by zone "berth", '
     'client: {ip}, server: app.example.com, request: "POST /login HTTP/1.1", host: "app.example.com"'),
])
def test_nginx_failures_ban_the_web_ports(host, ip, outsider, listeners, jail, line):
    # what nginx writes for a wrong basic-auth user and a request over its limit_req rate
    now = time.strftime("%Y/%m/%d %H:%M:%S", time.gmtime())
    lines = "\n".join(line.format(now=now, n=n, ip=OUTSIDER_IP) for n in range(MAXRETRY))
    host.check_output(f"printf '%s\\n' {shlex.quote(lines)} >> /var/log/nginx/error.log")
    try:
        assert wait_for(lambda: OUTSIDER_IP in banned(host, jail), 15)
        # the web ports are shut for it; other ports stay as they were
        assert probe(outsider, ip, [80, 443, 8443]) == {80: "refused", 443: "refused", 8443: "open"}
    finally:
        host.run(f"fail2ban-client set {jail} unbanip {OUTSIDER_IP}")
    assert probe(outsider, ip, [80, 443]) == {80: "open", 443: "open"}


def test_failed_ssh_logins_ban_until_bantime(host, ip, outsider):
    attempts = 0
    while OUTSIDER_IP not in banned(host, "sshd") and attempts < MAXRETRY + 2:
        outsider.run("ssh -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
                     "-o ConnectTimeout=3 -o PubkeyAuthentication=no "
                     f"-o PreferredAuthentications=password bogus@{ip} true")
        attempts += 1
        wait_for(lambda: OUTSIDER_IP in banned(host, "sshd"), 2, interval=0.5)
    assert OUTSIDER_IP in banned(host, "sshd"), f"not banned after {attempts} failed logins"
    assert attempts <= MAXRETRY
    # the ban's length as fail2ban set it ("IP  start + SECONDS = end"); a re-run of the tests
    # finds the earlier bans in fail2ban's database, and bans of repeat offenders increase
    ban = host.check_output("fail2ban-client get sshd banip --with-time")
    seconds = int(re.search(rf"{re.escape(OUTSIDER_IP)}\s.*\+ (\d+) =", ban).group(1))
    assert seconds >= BANTIME
    banned_at = time.monotonic()
    assert probe(outsider, ip, [22]) == {22: "refused"}
    # only the offender: the operator still logs in
    assert ssh_from_controller(ip).returncode == 0
    # after bantime, it is let in again
    assert wait_for(lambda: OUTSIDER_IP not in banned(host, "sshd"), seconds + 15)
    assert time.monotonic() - banned_at >= seconds - 5
    assert probe(outsider, ip, [22]) == {22: "open"}
