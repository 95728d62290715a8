"""A database host's files for remote clients (the postgresql and redis roles), rendered without a
host (Jinja with Ansible's filters)."""

import pathlib

import jinja2
import pytest
from ansible.plugins.filter.core import FilterModule as CoreFilters
from ansible.plugins.filter.mathstuff import FilterModule as MathFilters

from ansible_collections.berth.stack.plugins.filter.network import cidr, host_addresses

ROLES = pathlib.Path(__file__).resolve().parent.parent / "roles"
TEMPLATES = ROLES / "postgresql/templates"
BASE = {"ansible_managed": "managed", "postgresql_app_user": "shop", "postgresql_app_database": "shop",
        "postgresql_other_apps": ["shop", "blog"], "postgresql_remote_clients": [],
        "postgresql_listen_addresses": [], "postgresql_tls_certificate": "/c.crt",
        "postgresql_tls_key": "/c.key", "postgresql_max_connections": 100, "postgresql_memory_mb": 1024,
        "postgresql_shared_buffers_mb": 256, "postgresql_effective_cache_size_mb": 768,
        "postgresql_work_mem_mb": 4, "postgresql_maintenance_work_mem_mb": 64, "postgresql_settings": {}}


def render(name, templates=TEMPLATES, base=None, **settings):
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(templates), trim_blocks=True,
                             undefined=jinja2.StrictUndefined)
    env.filters.update(CoreFilters().filters() | MathFilters().filters(), **{"berth.stack.cidr": cidr})
    return env.get_template(name).render(**((BASE if base is None else base) | settings))


def lines(text):
    return [line.split() for line in text.splitlines() if line and not line.startswith("#")]


@pytest.mark.parametrize("value, network", [
    ("192.0.2.10", "192.0.2.10/32"), (" 192.0.2.7/24", "192.0.2.0/24"), ("2001:db8::1", "2001:db8::1/128"),
    ("db.example.net", ""), ("any", ""), ("192.0.2.300", ""), ("", "")])
def test_cidr(value, network):
    assert cidr(value) == network


def test_host_addresses():
    facts = {"all_ipv4_addresses": ["10.0.0.5", "203.0.113.7"], "all_ipv6_addresses": ["fe80::1"]}
    assert host_addresses(facts) == ["10.0.0.5/32", "203.0.113.7/32", "fe80::1/128"]
    assert host_addresses({}) == []


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


REDIS = {"ansible_managed": "managed", "redis_remote_clients": [], "redis_listen_addresses": [], "redis_port": 0,
         "redis_tls_port": 6379, "redis_tls_certificate": "/r.crt", "redis_tls_key": "/r.key",
         "redis_tcp_backlog": 511, "redis_socket": "/run/redis-berth/redis-server.sock", "redis_acl_file": "/a",
         "redis_data_dir": "/var/lib/redis", "redis_save": [], "redis_maxmemory": "1mb",
         "redis_maxmemory_policy": "noeviction", "redis_config_extra": {}, "redis_config_file": "/c",
         "redis_socket_dir": "/run/redis-berth"}


def redis(name, **settings):
    return render(name, templates=ROLES / "redis/templates", base=REDIS, **settings)


def test_redis_local_only_by_default():
    conf = redis("etc/redis/berth.conf.j2")
    assert "bind 127.0.0.1 -::1\n" in conf and "tls-" not in conf
    assert "[Unit]" not in redis("etc/systemd/system/redis-server.service.d/50-berth.conf.j2")


def test_redis_remote_clients_over_tls_only():
    settings = {"redis_remote_clients": ["10.0.0.11"], "redis_listen_addresses": ["10.0.0.5"]}
    conf = redis("etc/redis/berth.conf.j2", **settings).splitlines()
    assert "bind 127.0.0.1 -::1 10.0.0.5" in conf and "port 0" in conf
    for line in ("tls-port 6379", "tls-cert-file /r.crt", "tls-key-file /r.key", "tls-auth-clients no"):
        assert line in conf
    unit = redis("etc/systemd/system/redis-server.service.d/50-berth.conf.j2", **settings)
    assert "After=network-online.target" in unit
