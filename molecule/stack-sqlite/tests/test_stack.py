"""The full stack with SQLite, on Debian 12 and 13: the shared checks of molecule/stack_tests.py
(the work under load runs in stack-postgresql, whose rotation covers a database password), nginx's
limits on one client, then a layout value moved in the settings."""

import base64
import contextlib
import json
import socket
import threading
import time

import pytest
import websockets.exceptions

import web_client as web
from stack_tests import *  # noqa: F401,F403 (pytest collects the imported tests)
from conftest import container_ip, host_spec, recap_changed
from stack_tests import APP, SCENARIO, playbook, site_yml


def test_a_moved_socket_moves_every_consumer(host, site):
    # the contract (group_vars/berth.yml) derives the socket from berth_layout_overrides: the
    # app's socket unit and nginx's upstream follow it, and the site answers through it
    moved = f"/run/{APP}-web/{APP}.sock"
    code, out = site_yml(host, "--tags", "nginx,app", "-e",
                         json.dumps({"berth_layout_overrides": {"socket_dir": f"/run/{APP}-web"}}))
    assert code == 0, out[-3000:]
    assert host.socket(f"unix://{moved}").is_listening
    assert not host.socket(f"unix:///run/{APP}/{APP}.sock").is_listening
    assert web.get(**site, path="/health/ready")[0] == 200
    assert web.get(**site, path="/api/notes")[0] == 200
    # and back with the settings: later tests (tests/test_two_apps.py) act on the converged layout
    code, out = site_yml(host, "--tags", "nginx,app")
    assert code == 0, out[-3000:]
    assert host.socket(f"unix:///run/{APP}/{APP}.sock").is_listening
    assert web.get(**site, path="/health/ready")[0] == 200


CONN_LIMIT = 20   # nginx_limit_conn_per_client, group_vars/berth/scenario.yml


def test_a_slow_client_is_cut_off_while_others_are_served(site):
    with socket.create_connection((site["ip"], 443), timeout=10) as raw, \
            site["context"].wrap_socket(raw, server_hostname=site["name"]) as slow:
        # headers that never end (slowloris)
        slow.sendall(f"GET /health/ready HTTP/1.1\r\nHost: {site['name']}\r\n".encode())
        assert web.get(**site, path="/health/ready")[0] == 200
        # nginx's own default would hold it for 60 s: this fails unless the 10 s cut it off
        slow.settimeout(30)
        answer = slow.recv(1024)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer


def test_one_client_has_a_limited_number_of_requests_in_progress(site):
    with contextlib.ExitStack() as held:
        sockets = [held.enter_context(web.websocket(site["ip"], site["context"], site["name"]))
                   for _ in range(CONN_LIMIT)]
        sockets[-1].send("the last one allowed")
        assert sockets[-1].recv(timeout=10) == "the last one allowed"
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            web.websocket(site["ip"], site["context"], site["name"]).close()
        assert refused.value.response.status_code == 429
    # closed, they no longer count
    with web.websocket(site["ip"], site["context"], site["name"]) as ws:
        ws.send("again")
        assert ws.recv(timeout=10) == "again"


def test_maintenance_mode_under_load(host, site):
    seen, errors, stop = [], [], threading.Event()

    def steady():
        while not stop.is_set():
            try:
                status, headers, body = web.get(**site, path="/api/notes")
                seen.append((status, headers.get("Retry-After"), b"Down for maintenance" in body))
            except OSError as err:
                errors.append(err)
            time.sleep(0.1)

    code, out = playbook("maintenance.yml", host, "-e", "state=maybe")
    assert code != 0 and "-e state=on or -e state=off" in out, out[-2000:]
    stream = threading.Thread(target=steady, daemon=True)
    stream.start()
    try:
        time.sleep(1)
        code, out = playbook("maintenance.yml", host, "-e", "state=on")
        assert code == 0, out[-3000:]
        status, headers, body = web.get(**site, path="/api/notes")
        assert (status, headers.get("Retry-After")) == (503, "300") and b"Down for maintenance" in body
        assert "Strict-Transport-Security" in headers, "the site's own headers too"
        status, headers, _ = web.get(**site, path="/health/ready")
        assert status == 200 and "Retry-After" not in headers, "the health checks still answer"
        assert recap_changed(playbook("maintenance.yml", host, "-e", "state=on")[1]) == 0
        time.sleep(1)
        code, out = playbook("maintenance.yml", host, "-e", "state=off")
        assert code == 0, out[-3000:]
        status, headers, _ = web.get(**site, path="/api/notes")
        assert status == 200 and "Retry-After" not in headers
        time.sleep(1)
    finally:
        stop.set()
        stream.join(timeout=30)
    assert errors == []
    assert {answer[0] for answer in seen} == {200, 503}, "served, closed, served again"
    assert all(answer == (503, "300", True) for answer in seen if answer[0] != 200), seen
    assert seen[0][0] == seen[-1][0] == 200


# --- real client addresses: the controller is a trusted proxy (group_vars/berth/scenario.yml) ---

def logged_client(host, marker):
    """The address the access log gives the request whose query is `marker` (flushed every 5 s)."""
    for _ in range(40):
        line = host.run(f"grep -h -- '{marker}' /var/log/nginx/access.log").stdout
        if line:
            return line.split()[0]
        time.sleep(0.25)
    raise AssertionError(f"no access log line for {marker}")


def test_behind_a_trusted_proxy_the_client_is_the_client(host, site):
    marker = f"trusted-{time.time_ns()}"
    forwarded = {"X-Forwarded-For": "192.0.2.44, 203.0.113.7"}
    assert web.get(**site, path=f"/api/notes?{marker}", headers=forwarded)[0] == 200
    assert logged_client(host, marker) == "203.0.113.7", "the last address that is not a trusted proxy"
    # the rate limit counts per client: one client's 429s leave another's requests alone
    def token(client):
        return web.get(**site, path="/api/token", method="POST", body=json.dumps({"sub": client}),
                       headers={"Content-Type": "application/json", "X-Forwarded-For": client})[0]
    assert [token("203.0.113.8") for _ in range(12)][-1] == 429
    assert token("203.0.113.9") == 200


def test_fail2ban_bans_the_client_behind_the_proxy_in_nginx(host, site):
    """The nginx jails ban the client nginx logged; nginx refuses it (the firewall sees the proxy)."""
    client, other = "203.0.113.20", "203.0.113.21"

    def token(address):
        return web.get(**site, path="/api/token", method="POST", body=json.dumps({"sub": address}),
                       headers={"Content-Type": "application/json", "X-Forwarded-For": address})[0]

    seen = []
    for _ in range(80):   # 429s until the jail has counted maxretry of them, then 403
        seen.append(token(client))
        if seen[-1] == 403:
            break
        time.sleep(0.25)
    assert seen[-1] == 403 and 429 in seen, seen
    assert client in host.check_output("fail2ban-client status nginx-limit-req")
    assert token(other) == 200, "another client through the same proxy is served"
    assert web.get(**site, path="/health/live")[0] == 200, "and so is the proxy itself"
    # Until the jail has read every rejection logged before the ban took effect: one still
    # queued would ban the client again right after the unban.
    failed = None
    for _ in range(30):
        status = host.check_output("fail2ban-client status nginx-limit-req")
        now = [line for line in status.splitlines() if "Total failed" in line]
        if now == failed:
            break
        failed = now
        time.sleep(1)
    host.check_output(f"fail2ban-client set nginx-limit-req unbanip {client}")
    for _ in range(40):   # the unban reloads nginx
        if web.get(**site, path="/health/live", headers={"X-Forwarded-For": client})[0] == 200:
            break
        time.sleep(0.5)
    assert web.get(**site, path="/health/live", headers={"X-Forwarded-For": client})[0] == 200, (
        host.run("cat /var/lib/berth/fail2ban/nginx-banlist.conf; fail2ban-client status nginx-limit-req;"
                 " tail -n 20 /var/log/fail2ban.log; journalctl -u nginx.service -n 20 --no-pager;"
                 " tail -n 20 /var/log/nginx/error.log; ps -o pid,lstart,args -C nginx").stdout)


def test_from_anyone_else_the_header_is_ignored(host, site):
    outsider = host.get_host(host_spec(f"{SCENARIO}-outsider"))
    marker = f"untrusted-{time.time_ns()}"
    script = f"""
import socket, ssl
tls = ssl._create_unverified_context().wrap_socket(socket.create_connection(("{site['ip']}", 443), 10),
                                                   server_hostname="{site['name']}")
tls.sendall(b"GET /api/notes?{marker} HTTP/1.1\\r\\nHost: {site['name']}\\r\\n"
            b"X-Forwarded-For: 203.0.113.10\\r\\nConnection: close\\r\\n\\r\\n")
print(tls.recv(64).split()[1].decode())
"""
    encoded = base64.b64encode(script.encode()).decode()
    assert outsider.check_output(f"echo {encoded} | base64 -d | python3 -") == "200"
    assert logged_client(host, marker) == container_ip(f"{SCENARIO}-outsider")
