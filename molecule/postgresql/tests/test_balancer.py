"""The load balancer of the scenario (inventory group berth_lb) and the two web servers behind it:
the site's name answers over HTTPS verified against Pebble's root through the balancer alone,
which keeps serving under a steady load through a rolling deploy, a failing deploy and a web
server stopped (and a rotation of every secret: test_postgresql.py); each host's firewall opens
only what its part needs."""

import json
import os
import time

import pytest

import web_client as web
from conftest import ansible_playbook, break_readiness, host_spec, reaches_a_listener
from stack_tests import changed_release

testinfra_hosts = [host_spec("postgresql-lb")]
ROOT = os.environ.get("MOLECULE_PROJECT_DIRECTORY", ".")
LB_IP, DB, DB_IP = "10.88.0.123", "postgresql-debian12", "10.88.0.121"
WEB = {"postgresql-web": "10.88.0.122", "postgresql-web2": "10.88.0.124"}
NAME = "balanced.berth.test"
UPSTREAMS = "/etc/nginx/berth-upstreams/demoapp.conf"


@pytest.fixture(scope="module")
def site():
    return balanced_site()


def other(host, name):
    return host.get_host(host_spec(name))


def release(host, name):
    return other(host, name).check_output("readlink /srv/demoapp/current")


def balanced_site():
    return {"ip": LB_IP, "context": web.pebble_context(), "name": NAME}


def load(site=None, requests=()):
    """A steady request stream through the balancer (test_postgresql.py's rotation too)."""
    site = site or balanced_site()
    return web.RequestLoop(site["ip"], site["context"], site["name"], [
        ("GET", "/health/ready", {}, 200),
        ("GET", "/api/notes", {}, 200),
        *requests,
    ])


def deploy(*args):
    return ansible_playbook(os.path.join(ROOT, "playbooks", "deploy.yml"), *args)


def test_the_site_answers_through_the_balancer(site):
    status, headers, body = web.get(**site, path="/health/ready")
    assert status == 200 and json.loads(body)["checks"]["database"] == "ok", body
    assert headers["Strict-Transport-Security"].startswith("max-age=")
    assert web.plain_http(LB_IP, "/", NAME)[0] == 301


def test_each_web_server_serves_through_the_balancer_alone(host, site):
    # its site, over plain HTTP on its private address, to the balancer only
    for name, ip in WEB.items():
        assert host.run(f"curl -fsS -H 'Host: {NAME}' http://{ip}:8080/health/ready").rc == 0, name
        assert not reaches_a_listener(other(host, name), ip, 8080, other(host, DB)), name
        for port in (80, 443):
            assert not reaches_a_listener(other(host, name), ip, port, host), (name, port)


@pytest.mark.parametrize("port", [5432, 6379])
def test_the_database_server_answers_the_web_servers_alone(host, port):
    assert reaches_a_listener(other(host, DB), DB_IP, port, other(host, "postgresql-web2"))
    assert not reaches_a_listener(other(host, DB), DB_IP, port, host)


def test_the_balancer_opens_the_web_ports_and_ssh_alone(host):
    outsider = other(host, DB)
    for port in (22, 80, 443):
        assert outsider.run(f"timeout 5 bash -c '</dev/tcp/{LB_IP}/{port}'").rc == 0, port
    for port in (8080, 5432):
        assert not reaches_a_listener(host, LB_IP, port, outsider), port


def test_a_rolling_deploy_under_load(host, site, ephemeral_dir):
    before = {name: release(host, name) for name in WEB}
    source = changed_release(ephemeral_dir, "rolled", "rolled release")
    # a static file changed and the same size: its validators must change all the same
    css = os.path.join(source, "static", "style.css")
    with open(css, encoding="utf-8") as fh:
        text = fh.read()
    with open(css, "w", encoding="utf-8") as fh:
        fh.write(text.replace("#1d2430", "#1d2431", 1))
    etag = web.get(**site, path="/static/style.css")[1]["ETag"]
    with load(site) as loop:
        code, out = deploy("-e", f"app_source_dir={source}")
    assert code == 0, out[-3000:]
    assert loop.count >= 50 and loop.failed == [], loop.failed[:10]
    after = {name: release(host, name) for name in WEB}
    assert len(set(after.values())) == 1 and set(after.values()).isdisjoint(before.values()), (before, after)
    for _ in WEB:   # whichever web server answers
        _, headers, body = web.get(**site, path="/static/style.css")
        assert b"#1d2431" in body and headers["ETag"] != etag, headers
    # one at a time, out of the balancer and back
    assert out.count("TASK [Take this web server out of the balancer]") == len(WEB), out[-3000:]
    assert " down;" not in host.file(UPSTREAMS).content_string


def test_a_failing_deploy_stops_the_roll(host, site, ephemeral_dir):
    live = {name: release(host, name) for name in WEB}
    broken = changed_release(ephemeral_dir, "broken", "broken release")
    break_readiness(broken)
    with load(site) as loop:
        code, out = deploy("-e", f"app_source_dir={broken}", "-e", "app_health_timeout=10")
    assert code != 0
    assert "was not activated" in out and "The deploy stopped at postgresql-web:" in out, out[-3000:]
    assert "This one is in the balancer." in out, out[-3000:]
    # the first one switched back, the second one never reached
    assert {name: release(host, name) for name in WEB} == live
    assert loop.count >= 20 and loop.failed == [], loop.failed[:10]
    assert " down;" not in host.file(UPSTREAMS).content_string


def test_a_web_server_stopped(host, site):
    # the balancer finds it down on its own: a request it refuses goes to the other one, and it
    # is left out for the fail timeout
    stopped = other(host, "postgresql-web2")
    stopped.run("systemctl stop nginx")
    try:
        with load(site) as loop:
            while loop.count < 60:
                time.sleep(1)
        assert loop.failed == [], loop.failed[:10]
    finally:
        stopped.run("systemctl start nginx")
