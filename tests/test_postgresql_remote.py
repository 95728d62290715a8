"""The postgresql role's files for remote clients, rendered without a host (Jinja as Ansible)."""

import pathlib

import jinja2
import pytest
from ansible.plugins.filter.core import FilterModule as CoreFilters
from ansible.plugins.filter.mathstuff import FilterModule as MathFilters

from ansible_collections.berth.stack.plugins.filter.network import cidr

TEMPLATES = pathlib.Path(__file__).resolve().parent.parent / "roles/postgresql/templates"
BASE = {"ansible_managed": "managed", "postgresql_app_user": "shop", "postgresql_app_database": "shop",
        "postgresql_other_apps": ["shop", "blog"], "postgresql_remote_clients": [],
        "postgresql_listen_addresses": [], "postgresql_tls_certificate": "/c.crt",
        "postgresql_tls_key": "/c.key", "postgresql_max_connections": 100, "postgresql_memory_mb": 1024,
        "postgresql_shared_buffers_mb": 256, "postgresql_effective_cache_size_mb": 768,
        "postgresql_work_mem_mb": 4, "postgresql_maintenance_work_mem_mb": 64, "postgresql_settings": {}}


def render(name, **settings):
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), trim_blocks=True,
                             undefined=jinja2.StrictUndefined)
    env.filters.update(CoreFilters().filters() | MathFilters().filters(), **{"berth.stack.cidr": cidr})
    return env.get_template(name).render(**(BASE | settings))


def lines(text):
    return [line.split() for line in text.splitlines() if line and not line.startswith("#")]


@pytest.mark.parametrize("value, network", [
    ("192.0.2.10", "192.0.2.10/32"), (" 192.0.2.7/24", "192.0.2.0/24"), ("2001:db8::1", "2001:db8::1/128"),
    ("db.example.net", ""), ("any", ""), ("192.0.2.300", ""), ("", "")])
def test_cidr(value, network):
    assert cidr(value) == network


def test_local_only_by_default():
    hba = lines(render("etc/postgresql/pg_hba.conf.j2"))
    assert {line[0] for line in hba} == {"local", "host"}
    assert all(line[3] in ("127.0.0.1/32", "::1/128") for line in hba if line[0] == "host")
    assert "listen_addresses = 'localhost'" in render("etc/postgresql/conf.d/40-berth-restart.conf.j2")
    assert "ssl" not in render("etc/postgresql/conf.d/50-berth.conf.j2")


def test_remote_clients_over_tls_to_each_apps_database():
    settings = {"postgresql_remote_clients": ["10.0.0.11", "10.0.1.0/24"],
                "postgresql_listen_addresses": ["10.0.0.5"]}
    hba = lines(render("etc/postgresql/pg_hba.conf.j2", **settings))
    remote = [line for line in hba if line[3:4] not in (["127.0.0.1/32"], ["::1/128"]) and line[0] != "local"]
    assert remote == [["hostssl", db, "+" + db, net, "scram-sha-256"]
                      for db in ("shop", "blog") for net in ("10.0.0.11/32", "10.0.1.0/24")]
    assert "listen_addresses = 'localhost,10.0.0.5'" in render(
        "etc/postgresql/conf.d/40-berth-restart.conf.j2", **settings)
    conf = render("etc/postgresql/conf.d/50-berth.conf.j2", **settings)
    assert "ssl = on" in conf and "ssl_cert_file = '/c.crt'" in conf and "ssl_key_file = '/c.key'" in conf
    unit = render("etc/systemd/system/postgresql.service.d/50-berth-sandbox.conf.j2", **settings)
    assert "After=network-online.target" in unit
