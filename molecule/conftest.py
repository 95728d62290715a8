"""Shared by every scenario's testinfra tests.

Tests reach each Molecule instance over SSH at the address its platform pins, through one kept
connection per host (docs/TESTING.md: a command costs a tenth of the CPU of a `podman exec`), and
may reach a host over the network through its address on the podman network, the way a client
or an attacker would.
"""

import base64
import functools
import glob
import json
import os
import re
import subprocess
import time

import pytest
import yaml


@functools.cache
def _instances():
    """The hosts under test: the `berth` group when a scenario has one (its other instances,
    such as an outsider, are tools of the tests), else every instance."""
    with open(os.environ["MOLECULE_INVENTORY_FILE"], encoding="utf-8") as fh:
        inventory = yaml.safe_load(fh)
    group = inventory.get("berth") or inventory["all"]
    return sorted(group["hosts"])


# root's test key, mounted into every host (docs/TESTING.md)
SSH_DIR = os.path.join(os.environ.get("BERTH_STATE", "/var/lib/berth-test"), "ssh")


@functools.cache
def _ssh_config():
    """An ssh_config naming every instance that pins an address (testinfra's ssh backend reads
    it), and those names."""
    with open(os.path.join(os.environ["MOLECULE_SCENARIO_DIRECTORY"], "molecule.yml"),
              encoding="utf-8") as fh:
        pinned = {p["name"]: p["ip"] for p in yaml.safe_load(fh)["platforms"] if "ip" in p}
    ssh_dir = SSH_DIR
    path = os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "ssh_config")
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(f"Host {name}\n  HostName {ip}\n" for name, ip in pinned.items())
        # Test hosts get new host keys at each create; a real server's key is checked.
        # The kept connections' sockets beside the key, in the test bed's private (0700) directory,
        # not in the world-writable /tmp.
        fh.write(f"Host *\n  User root\n  IdentityFile {ssh_dir}/id_ed25519\n  BatchMode yes\n"
                 "  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n"
                 f"  ControlPath {ssh_dir}/cm-%C\n")
    return path, set(pinned)


def host_spec(name):
    """testinfra's address of an instance: SSH for a host under test that pins an address, else
    podman. An outsider's probes (ssh among them) may exit 255, which testinfra's ssh backend
    takes for a lost connection."""
    path, pinned = _ssh_config()
    if name in pinned and name in _instances():
        return f"ssh://{name}?ssh_config={path}"
    return f"podman://{name}"


def pytest_configure(config):
    if "MOLECULE_INVENTORY_FILE" in os.environ:
        config.option.hosts = ",".join(host_spec(name) for name in _instances())
        config.option.connection = None


def pytest_collection_modifyitems(config, items):
    """A test module's testinfra_hosts (specs from host_spec) names the hosts its tests run on:
    --hosts, which pytest_configure sets, would otherwise run every test on every host."""
    kept, dropped = [], []
    for item in items:
        wanted = getattr(item.module, "testinfra_hosts", None)
        host = item.callspec.params.get("_testinfra_host") if hasattr(item, "callspec") else None
        if wanted is not None and host is not None \
                and host.backend.get_pytest_id() not in {spec.split("?")[0] for spec in wanted}:
            dropped.append(item)
        else:
            kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def reaches_a_listener(host, ip, port, other):
    """Whether `other` connects to a listener on host's address ip:port (PostgreSQL and Redis may
    hold the port on loopback), proven to answer on the host, so that only the firewall can keep
    the other host out."""
    host.run(f"systemd-run --quiet --collect --unit=berth-test-listen-{port} "
             f"python3 -c 'import socket,time; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, "
             f"socket.SO_REUSEADDR, 1); s.bind((\"{ip}\", {port})); s.listen(); time.sleep(60)'")
    try:
        assert host.run(f"bash -c 'for i in $(seq 50); do (</dev/tcp/{ip}/{port}) 2>/dev/null && exit 0; "
                        f"sleep 0.1; done; exit 1'").rc == 0, "the test listener did not start"
        return other.run(f"timeout 5 bash -c '</dev/tcp/{ip}/{port}'").rc == 0
    finally:
        host.run(f"systemctl stop berth-test-listen-{port}")


def container_ip(name):
    """The instance's address on the podman network."""
    out = subprocess.run(["podman", "inspect", name], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)[0]["NetworkSettings"]["IPAddress"]


def ssh(name, *command, options=()):
    """`ssh OPTIONS NAME COMMAND` from this machine, as testinfra reaches the scenario's pinned
    hosts (its ssh_config), e.g. options=("-o", "ControlPath=none") for a new login."""
    return subprocess.run(["ssh", "-F", _ssh_config()[0], *options, name, *command],
                          capture_output=True, text=True, check=False, timeout=60)


def replace_instance(name, image):
    """Destroy an instance and start a new host from `image` in its place: the same name and
    address, as Molecule made it (privileged, systemd), nothing else kept. Returns once its SSH
    answers. The kept SSH connections to the old one are closed first: they would carry the next
    commands to a host that is gone."""
    ip = container_ip(name)
    ssh(name, options=("-O", "exit"))
    for socket in glob.glob(os.path.expanduser(f"~/.ansible/cp/{ip}-*")):   # Ansible's (%h-%p-%r)
        subprocess.run(["ssh", "-O", "exit", "-o", f"ControlPath={socket}", ip],
                       capture_output=True, check=False)
    subprocess.run(["podman", "rm", "--force", "--time", "0", name], check=True, capture_output=True)
    subprocess.run(["podman", "run", "--detach", "--name", name, "--hostname", name, "--ip", ip,
                    "--privileged", "--systemd", "always", "--label", "owner=molecule", image, "/sbin/init"],
                   check=True, capture_output=True)
    # this machine's neighbour entry still names the old host's MAC address: packets would go
    # nowhere until it expires
    subprocess.run(["ip", "neigh", "flush", "to", ip], capture_output=True, check=False)
    for _ in range(120):
        if ssh(name, "true", options=("-o", "ConnectTimeout=2")).returncode == 0:
            return
        time.sleep(0.5)
    raise AssertionError(f"{name}: no SSH from the new host")


@pytest.fixture
def instance_name(host):
    return host.backend.hostname


@pytest.fixture
def ip(instance_name):
    return container_ip(instance_name)


@pytest.fixture(scope="session")
def ephemeral_dir():
    return os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]


def ansible_playbook(playbook, *args, env=None):
    """Run a playbook of the current scenario against its instances, as Molecule would (same
    inventory, config and environment, plus `env`). Returns (exit code, combined output)."""
    scenario = os.environ["MOLECULE_SCENARIO_DIRECTORY"]
    inventory = os.path.dirname(os.environ["MOLECULE_INVENTORY_FILE"])
    result = subprocess.run(
        ["ansible-playbook", "-i", inventory, os.path.join(scenario, playbook), *args],
        capture_output=True, text=True, check=False, cwd=scenario, timeout=900,
        env={**os.environ, **(env or {})},
    )
    return result.returncode, result.stdout + result.stderr


def as_app(host, env_file, user, script, stdin):
    """Run `script` (sh) as the app runs: its user and the environment systemd gives it from
    env_file; stdin (text) is fed through base64, so any quoting survives."""
    encoded = base64.b64encode(stdin.encode()).decode()
    return host.check_output(
        f"echo {encoded} | base64 -d | systemd-run --quiet --pipe --wait "
        f"-p EnvironmentFile={env_file} -p User={user} sh -c '{script}'")


def recap_changed(output):
    """The changed= counts of a run's PLAY RECAP, summed over hosts."""
    return sum(int(n) for n in re.findall(r"\bchanged=(\d+)", output.split("PLAY RECAP")[-1]))


def exposure(host, unit):
    """systemd-analyze security's overall exposure of a unit (0 best, 10 worst)."""
    last = host.check_output(f"systemd-analyze security --no-pager {unit} | tail -n 1")
    return float(last.split(": ", 1)[1].split()[0])


def break_readiness(path):
    """Edit the reference app's copy at path: a release whose readiness check fails."""
    app = os.path.join(path, "berth_demo", "app.py")
    with open(app, encoding="utf-8") as fh:
        text = fh.read()
    assert 'probe, "redis", cache.ping' in text
    text = text.replace('probe, "redis", cache.ping', 'probe, "redis", broken_check')
    text += '\n\ndef broken_check():\n    raise RuntimeError("deliberately broken release")\n'
    with open(app, "w", encoding="utf-8") as fh:
        fh.write(text)
