"""The preflight's check of an inventory split into a database server and web servers
(playbooks/tasks/app-preflight.yml, "Check the stack settings": the berth_db one): its conditions and message
evaluated by Ansible's templar over the contract, as a play sees them, with no host."""

import pytest
from ansible.template import Templar, trust_as_template

from test_contract import ADDRESSES, LOADER, ROOT, SPLIT, render

TASKS = LOADER.load_from_file(str(ROOT / "playbooks" / "tasks" / "app-preflight.yml"), trusted_as_template=True)
CHECKS = next(task for task in TASKS[0]["block"] if task["name"] == "Check the stack settings")
CHECK = next(check for check in CHECKS["berth.stack.checks"]["checks"] if "berth_db" in check["msg"])
# each host's interfaces, as its facts list them
FACTS = {"db": ["10.0.0.5", "203.0.113.20"], "web1": ["10.0.0.11"], "web2": ["10.0.0.12"], "odd": ["10.0.0.13"]}


def check(host, groups=None, addresses=None, **settings):
    groups = groups or SPLIT
    v = render({"berth_database": "postgresql", **settings}, host, groups, addresses or ADDRESSES)
    variables = {"groups": {"all": groups["berth"], **groups}, "inventory_hostname": host,
                 "berth_database": v("berth_database"), "berth_private_address": v("berth_private_address"),
                 "berth_backend_port": v("berth_backend_port"),
                 "ansible_facts": {"all_ipv4_addresses": FACTS[host], "all_ipv6_addresses": []}}
    templar = Templar(loader=LOADER, variables=variables)
    assert templar.template(trust_as_template("{{ %s }}" % CHECK["when"]))
    that = CHECK["that"]
    passed = all(templar.template(trust_as_template("{{ %s }}" % condition)) for condition in that)
    return passed, " ".join(templar.template(CHECK["msg"]).split())


@pytest.mark.parametrize("host", ["db", "web1", "web2"])
def test_a_database_server_and_web_servers_pass(host):
    assert check(host)[0]


def test_one_database_server_only():
    groups = {**SPLIT, "berth_db": ["db", "web1"]}
    passed, message = check("web2", groups)
    assert not passed and "one host in berth_db (got db, web1)" in message


def test_web_servers_needed():
    groups = {"berth": ["db"], "berth_db": ["db"]}
    passed, message = check("db", groups)
    assert not passed and "one or more in berth_web (got none)" in message


def test_every_host_in_a_group():
    groups = {**SPLIT, "berth": SPLIT["berth"] + ["odd"]}
    passed, message = check("odd", groups, {**ADDRESSES, "odd": {"berth_private_address": "10.0.0.13"}})
    assert not passed and message.startswith("odd: with the group berth_db")


def test_sqlite_belongs_to_one_host():
    passed, message = check("web1", berth_database="sqlite")
    assert not passed and "(got sqlite: a SQLite file belongs to one host)" in message


@pytest.mark.parametrize("address", ["", "10.0.0.99", "10.0.0.0/24", "db.internal"])
def test_a_private_address_of_the_hosts_own(address):
    passed, message = check("db", addresses={**ADDRESSES, "db": {"berth_private_address": address}})
    assert not passed and f"(got '{address}'; this host has 10.0.0.5, 203.0.113.20)" in message


BALANCED = {**SPLIT, "berth": SPLIT["berth"] + ["lb"], "berth_lb": ["lb"]}
LB_ADDRESSES = {**ADDRESSES, "lb": {"berth_private_address": "10.0.0.2"}}
FACTS["lb"] = ["10.0.0.2", "203.0.113.30"]


@pytest.mark.parametrize("host", ["db", "web1", "lb"])
def test_a_balancer_of_its_own_passes(host):
    assert check(host, BALANCED, LB_ADDRESSES)[0]


@pytest.mark.parametrize("groups, got", [
    ({**BALANCED, "berth_lb": ["lb", "web1"]}, "(got lb, web1)"),
    ({**BALANCED, "berth_web": ["web1", "web2", "lb"]}, "(got lb)"),
])
def test_one_balancer_of_its_own(groups, got):
    passed, message = check("lb", groups, LB_ADDRESSES)
    assert not passed and f"at most one, of its own, in berth_lb {got}" in message


def test_a_balancer_needs_a_database_server():
    groups = {"berth": ["web1", "lb"], "berth_web": ["web1"], "berth_lb": ["lb"]}
    passed, message = check("lb", groups, LB_ADDRESSES)
    assert not passed and "one host in berth_db (got none)" in message


def test_the_backend_port_is_a_port():
    passed, message = check("web1", BALANCED, LB_ADDRESSES, berth_backend_port=70000)
    assert not passed and "berth_backend_port is a port (got 70000)" in message
