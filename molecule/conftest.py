"""Shared by every scenario's testinfra tests.

Tests run against each Molecule instance through podman:// (docs/TESTING.md: ~10x faster than the
ansible backend), and may reach a host over the network through its address on the podman
network, the way a client or an attacker would.
"""

import base64
import json
import os
import re
import subprocess

import pytest
import yaml


def _instances():
    """The hosts under test: the `berth` group when a scenario has one (its other instances,
    such as an outsider, are tools of the tests), else every instance."""
    with open(os.environ["MOLECULE_INVENTORY_FILE"], encoding="utf-8") as fh:
        inventory = yaml.safe_load(fh)
    group = inventory.get("berth") or inventory["all"]
    return sorted(group["hosts"])


def pytest_configure(config):
    if "MOLECULE_INVENTORY_FILE" in os.environ:
        config.option.hosts = ",".join(f"podman://{name}" for name in _instances())
        config.option.connection = None


def container_ip(name):
    """The instance's address on the podman network."""
    out = subprocess.run(["podman", "inspect", name], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)[0]["NetworkSettings"]["IPAddress"]


@pytest.fixture
def instance_name(host):
    return host.backend.name


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
