"""Shared by every scenario's testinfra tests.

Tests reach each Molecule instance over SSH at the address its platform pins, through one kept
connection per host (docs/TESTING.md: a command costs a tenth of the CPU of a `podman exec`), and
may reach a host over the network through its address on the podman network, the way a client
or an attacker would.
"""

import base64
import functools
import json
import os
import re
import subprocess

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


@functools.cache
def _ssh_config():
    """An ssh_config naming every instance that pins an address (testinfra's ssh backend reads
    it), and those names."""
    with open(os.path.join(os.environ["MOLECULE_SCENARIO_DIRECTORY"], "molecule.yml"),
              encoding="utf-8") as fh:
        pinned = {p["name"]: p["ip"] for p in yaml.safe_load(fh)["platforms"] if "ip" in p}
    ssh_dir = os.path.join(os.environ.get("BERTH_STATE", "/var/lib/berth-test"), "ssh")
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


def container_ip(name):
    """The instance's address on the podman network."""
    out = subprocess.run(["podman", "inspect", name], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)[0]["NetworkSettings"]["IPAddress"]


@pytest.fixture
def instance_name(host):
    return host.backend.hostname


@pytest.fixture
def ip(instance_name):
    return container_ip(instance_name)


@pytest.fixture(scope="session")
def ephemeral_dir():
    return os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]


def ansible_playbook(playbook, *args):
    """Run a playbook of the current scenario against its instances, as Molecule would (same
    inventory, config and environment). Returns (exit code, combined output)."""
    scenario = os.environ["MOLECULE_SCENARIO_DIRECTORY"]
    inventory = os.path.dirname(os.environ["MOLECULE_INVENTORY_FILE"])
    result = subprocess.run(
        ["ansible-playbook", "-i", inventory, os.path.join(scenario, playbook), *args],
        capture_output=True, text=True, check=False, cwd=scenario, timeout=900,
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
