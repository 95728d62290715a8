"""The tls and nginx roles as clients see them: every HTTPS and WSS connection from this machine
verifies the certificate against Pebble's issuing root and nothing else (scripts/pebble ca). In
file order: the converged site, its limits and basic auth, a renamed site, a refused configuration
change, then a WebSocket left idle for 70 s while a changed domain list is re-issued, testssl.sh
and a forced renewal run."""

import base64
import http.client
import json
import os
import re
import socket
import ssl
import subprocess
import time

import pytest

import web_client as web
from conftest import ansible_playbook, container_ip, exposure, recap_changed

APP = "demoapp"
DOMAIN = "nginx.berth.test"
ROOT = os.environ.get("MOLECULE_PROJECT_DIRECTORY", ".")
PEBBLE = os.path.join(ROOT, "scripts", "pebble")
SITE_CONF = f"/etc/nginx/sites-available/{APP}.conf"
SOCKET = f"/run/{APP}/{APP}.sock"
SECRETS = f"/etc/berth/{APP}/secrets.env"
WEBROOT = "/var/www/acme"
# Longer than nginx's default proxy_read_timeout (60 s): an idle WebSocket must outlive it.
IDLE_SECONDS = 70


@pytest.fixture(scope="module")
def pebble_root():
    return web.pebble_root()


@pytest.fixture(scope="module")
def ctx(pebble_root):
    return ssl.create_default_context(cafile=pebble_root)


@pytest.fixture
def site(host, ctx):
    return {"ip": container_ip(host.backend.hostname), "context": ctx, "name": DOMAIN}


def master_pid(host):
    return int(host.check_output("systemctl show -p MainPID --value nginx.service"))


def serial(site):
    cert = web.served_certificate(site["ip"], site["context"], DOMAIN)
    return cert["serialNumber"]


def basic_auth_password(host):
    """Read on the host at test time; never printed, never in an assertion message."""
    line = host.check_output(f"grep '^BASIC_AUTH_PASSWORD=' {SECRETS}")
    return line.split("=", 1)[1].strip().strip("'\"")


# --- the converged site ----------------------------------------------------------------------

def test_https_with_pebble_certificate_and_http2(site, pebble_root):
    status, _, body = web.get(**site, path="/health/ready")
    assert status == 200, body
    cert = web.served_certificate(site["ip"], site["context"], DOMAIN)
    assert "Pebble" in dict(x[0] for x in cert["issuer"])["commonName"]
    assert ("DNS", DOMAIN) in cert["subjectAltName"]
    h2 = ssl.create_default_context(cafile=pebble_root)
    h2.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection((site["ip"], 443), 10) as raw:
        with h2.wrap_socket(raw, server_hostname=DOMAIN) as tls:
            assert tls.selected_alpn_protocol() == "h2"
            assert tls.version() in ("TLSv1.2", "TLSv1.3")


def test_no_configuration_offers_tls_before_1_2(host):
    # nginx's whole configuration as it loads it, Debian's http-level default in nginx.conf
    # included: a server block naming no protocols of its own inherits that one
    config = host.check_output("nginx -T 2>/dev/null")
    protocols = re.findall(r"^\s*ssl_protocols\s+([^;]*);", config, re.M)
    assert len(protocols) >= 2, protocols
    for line in protocols:
        assert set(line.split()) <= {"TLSv1.2", "TLSv1.3"}, line


def test_certificate_files(host):
    live = f"/etc/letsencrypt/live/{APP}"
    assert host.file(f"/etc/berth/tls/{APP}/fullchain.pem").linked_to.startswith(f"/etc/letsencrypt/archive/{APP}/")
    key = host.file(host.check_output(f"readlink -f /etc/berth/tls/{APP}/privkey.pem"))
    assert key.path.startswith(f"/etc/letsencrypt/archive/{APP}/privkey")
    assert (key.user, key.group, key.mode) == ("root", "root", 0o600)
    assert host.file(f"{live}/privkey.pem").exists
    assert host.file("/etc/letsencrypt/archive").mode & 0o077 == 0
    renewal = host.file(f"/etc/letsencrypt/renewal/{APP}.conf").content_string
    assert "server = https://10.88.0.1:14000/dir" in renewal
    assert "authenticator = webroot" in renewal
    # certbot.timer renews with the same CA bundle as the first issuance
    assert host.service("certbot.timer").is_enabled
    env = host.check_output("systemctl show -p Environment --value certbot.service")
    assert "REQUESTS_CA_BUNDLE=/etc/berth/tls/acme-ca.pem" in env
    assert host.file("/etc/letsencrypt/renewal-hooks/deploy/50-berth-reload").mode == 0o755


def test_http_redirects_to_https(site):
    status, headers, _ = web.plain_http(site["ip"], "/api/notes?x=1", DOMAIN)
    assert status == 301
    assert headers["Location"] == f"https://{DOMAIN}/api/notes?x=1"


def test_acme_challenge_served_on_http(host, site):
    token = f"berth-test-{time.time_ns()}"
    host.check_output(f"mkdir -p {WEBROOT}/.well-known/acme-challenge && "
                      f"echo {token} > {WEBROOT}/.well-known/acme-challenge/{token}")
    try:
        status, _, body = web.plain_http(site["ip"], f"/.well-known/acme-challenge/{token}", DOMAIN)
    finally:
        host.run(f"rm -f {WEBROOT}/.well-known/acme-challenge/{token}")
    assert status == 200 and body.decode().strip() == token
    assert web.plain_http(site["ip"], "/.well-known/acme-challenge/missing", DOMAIN)[0] == 404


def test_acme_challenge_asked_of_the_peers(host, site, tmp_path):
    # Several web servers behind DNS: a challenge this one lacks is asked of its peers, here a
    # server on this machine (berth: the other web servers' port 80), and never passed on by one.
    token = f"berth-peer-{time.time_ns()}"
    challenges = tmp_path / ".well-known" / "acme-challenge"
    challenges.mkdir(parents=True)
    (challenges / token).write_text(token)
    peer = subprocess.Popen(["python3", "-m", "http.server", "--bind", "10.88.0.1", "18089",
                             "--directory", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        code, out = ansible_playbook("converge.yml", "--tags", "nginx",
                                     "-e", json.dumps({"nginx_acme_peers": ["10.88.0.1:18089"]}))
        assert code == 0, out[-3000:]
        status, _, body = web.plain_http(site["ip"], f"/.well-known/acme-challenge/{token}", DOMAIN)
        assert status == 200 and body.decode().strip() == token
        assert web.plain_http(site["ip"], "/.well-known/acme-challenge/missing", DOMAIN)[0] == 404
        conn = http.client.HTTPConnection(site["ip"], 80, timeout=10)
        conn.request("GET", f"/.well-known/acme-challenge/{token}", headers={"Host": DOMAIN, "X-Berth-Acme-Peer": "1"})
        assert conn.getresponse().status == 404
        conn.close()
    finally:
        peer.terminate()
        code, out = ansible_playbook("converge.yml", "--tags", "nginx")
    assert code == 0, out[-3000:]
    assert web.plain_http(site["ip"], f"/.well-known/acme-challenge/{token}", DOMAIN)[0] == 404


def test_unknown_host_dropped_on_http(site):
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        web.plain_http(site["ip"], "/", "unknown.berth.test")


def test_unknown_name_refused_on_https(site):
    # An unknown SNI name: the handshake itself is refused (ssl_reject_handshake).
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((site["ip"], 443), 10) as raw:
        with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME|unrecognized name"):
            context.wrap_socket(raw, server_hostname="unknown.berth.test")
    # No SNI at all (a scan by address): refused too.
    with socket.create_connection((site["ip"], 443), 10) as raw:
        with pytest.raises(ssl.SSLError):
            context.wrap_socket(raw)


def test_unknown_host_on_a_known_connection(site):
    # The right SNI name, another Host: nginx closes the connection unanswered (444).
    try:
        status, _, _ = web.get(**site, path="/", headers={"Host": "unknown.berth.test"})
    except (http.client.RemoteDisconnected, ConnectionResetError):
        return
    assert status == 421


@pytest.mark.parametrize("path,expected", [("/health/live", 200), ("/static/style.css", 200),
                                           ("/no/such/page", 404), ("/api/version", 401)])
def test_security_headers(site, path, expected):
    status, headers, _ = web.get(**site, path=path)
    assert status == expected
    hsts = headers["Strict-Transport-Security"]
    assert int(hsts.split("max-age=")[1].split(";")[0]) >= 365 * 86400
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    csp = headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert "camera=()" in headers["Permissions-Policy"]
    assert headers["Server"] == "nginx", "server_tokens off: no version"


def test_static_files_by_nginx_cached_and_compressed(site):
    status, headers, body = web.get(**site, path="/static/style.css", headers={"Accept-Encoding": "gzip"})
    assert status == 200
    assert headers["Content-Encoding"] == "gzip"
    assert headers["Cache-Control"] == "max-age=2592000"   # nginx's expires 30d, not the app
    assert "Expires" in headers and body[:2] == b"\x1f\x8b"
    # only for clients that ask
    _, plain, _ = web.get(**site, path="/static/index.html")
    assert "Content-Encoding" not in plain


def test_the_apps_media_served_and_nothing_else_of_its_files(host, site):
    # written as the app writes: its user, its UMask
    host.check_output(
        "systemd-run --quiet --pipe --wait -p User=demoapp -p UMask=0027 sh -c"
        " 'echo a picture > /srv/demoapp/shared/media/pic.txt && echo private > /srv/demoapp/shared/private.txt'")
    status, headers, body = web.get(**site, path="/media/pic.txt")
    assert (status, body) == (200, b"a picture\n")
    assert headers["Cache-Control"] == "max-age=2592000" and headers["X-Content-Type-Options"] == "nosniff"
    assert web.get(**site, path="/media/")[0] == 403   # no listing
    for path in ("/media/../private.txt", "/media/%2e%2e/private.txt", "/private.txt"):
        assert b"private" not in web.get(**site, path=path)[2], path


def test_body_larger_than_10m_refused(site):
    # Only the headers are sent: nginx answers from Content-Length, before any body.
    with socket.create_connection((site["ip"], 443), 10) as raw:
        with site["context"].wrap_socket(raw, server_hostname=DOMAIN) as tls:
            tls.sendall(f"POST /api/notes HTTP/1.1\r\nHost: {DOMAIN}\r\nContent-Type: application/json\r\n"
                        f"Content-Length: {10 * 1024 * 1024 + 1}\r\n\r\n".encode())
            assert tls.recv(100).startswith(b"HTTP/1.1 413")
    assert web.post_json(**site, path="/api/notes", payload={"text": "x" * 100})[0] == 201


def test_wss_echo_through_nginx(site):
    with web.websocket(site["ip"], site["context"], DOMAIN) as ws:
        ws.send("hello through nginx")
        assert ws.recv(timeout=10) == "hello through nginx"
        ws.send(bytes([0, 1, 2]))
        assert ws.recv(timeout=10) == bytes([0, 1, 2])


def test_rate_limit_answers_429_after_the_burst(site):
    conn = web.Conn(site["ip"], site["context"], DOMAIN)
    statuses = []
    try:
        for i in range(20):
            conn.request("POST", "/api/token", body=json.dumps({"sub": f"burst-{i}"}),
                         headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            statuses.append(resp.status)
    finally:
        conn.close()
    print(f"POST /api/token x20: {statuses}")
    # burst 10 (+1 for the rate itself), then 429 for every request over it
    assert statuses[:10] == [200] * 10
    assert statuses[-5:] == [429] * 5
    assert set(statuses) == {200, 429}


def test_basic_auth(host, site):
    htpasswd = host.file(f"/etc/nginx/berth-{APP}.htpasswd")
    assert (htpasswd.user, htpasswd.group, htpasswd.mode) == ("root", "www-data", 0o640)
    assert htpasswd.content_string.startswith("admin:$6$"), "a SHA-512 crypt hash only"
    status, headers, _ = web.get(**site, path="/api/version")
    assert status == 401
    assert headers["WWW-Authenticate"] == f'Basic realm="{APP}"'
    wrong = "Basic " + base64.b64encode(b"admin:wrong-password").decode()
    assert web.get(**site, path="/api/version", headers={"Authorization": wrong})[0] == 401
    right = "Basic " + base64.b64encode(f"admin:{basic_auth_password(host)}".encode()).decode()
    status, _, body = web.get(**site, path="/api/version", headers={"Authorization": right})
    assert status == 200 and "release" in json.loads(body), "the right password is let through"


def test_basic_auth_rotation_leaves_the_app_alone(host, site):
    def authorization():
        return "Basic " + base64.b64encode(f"admin:{basic_auth_password(host)}".encode()).decode()
    old, app_pid = authorization(), host.check_output(f"systemctl show -p MainPID --value {APP}")
    code, out = ansible_playbook("converge.yml", "--tags", "secrets", "-e", "rotate_secrets=BASIC_AUTH_PASSWORD")
    assert code == 0, out[-3000:]
    new = authorization()
    assert new != old
    assert web.get(**site, path="/api/version", headers={"Authorization": new})[0] == 200
    assert web.get(**site, path="/api/version", headers={"Authorization": old})[0] == 401
    assert host.check_output(f"systemctl show -p MainPID --value {APP}") == app_pid, "the app was not restarted"


# --- a renamed site --------------------------------------------------------------------------

def enabled_sites(host):
    return host.check_output("ls /etc/nginx/sites-enabled").split()


def another_site(name, kept):
    """The site under another name (the app, its socket and its certificate keep theirs)."""
    return {"nginx_site_name": name, "nginx_sites_kept": kept, "nginx_upstream_socket": SOCKET,
            "nginx_static_dir": f"/srv/{APP}/current/static",
            "nginx_ssl_certificate": f"/etc/berth/tls/{APP}/fullchain.pem",
            "nginx_ssl_certificate_key": f"/etc/berth/tls/{APP}/privkey.pem"}


def test_a_second_site_kept_beside_the_first(host, site):
    # another app's site on the same host: both enabled, the host's catch-all shared
    second = dict(another_site("second", [APP, "second"]), nginx_domains=["second.berth.test"])
    code, out = ansible_playbook("converge.yml", "--tags", "nginx", "-e", json.dumps(second))
    assert code == 0, out[-3000:]
    assert enabled_sites(host) == ["berth-catch-all.conf", f"{APP}.conf", "second.conf"]
    assert web.get(**site, path="/health/live")[0] == 200
    conn = web.Conn(site["ip"], site["context"], site["name"])
    conn.request("GET", "/health/live", headers={"Host": "second.berth.test"})
    assert conn.getresponse().status == 200, "the second site answers its own name"
    conn.close()


def test_renamed_site_replaces_the_old_one(host, site):
    # Only the site's name changes; every other site of berth's not kept goes (the second too).
    code, out = ansible_playbook("converge.yml", "--tags", "nginx",
                                 "-e", json.dumps(another_site("renamed", [])))
    assert code == 0, out[-3000:]
    assert enabled_sites(host) == ["berth-catch-all.conf", "renamed.conf"]
    assert not host.file(SITE_CONF).exists
    assert not host.file(f"/etc/nginx/berth-{APP}.htpasswd").exists
    assert web.get(**site, path="/health/live")[0] == 200
    assert web.get(**site, path="/api/version")[0] == 401


# Back to the site's own name, with a second domain: one run for both.
def test_renamed_back_with_a_changed_domain_list_reissues(host, site):
    www = f"www.{DOMAIN}"
    subprocess.run([PEBBLE, "add-a", www, site["ip"]], check=True)
    before = serial(site)
    names = json.dumps([DOMAIN, www])
    code, out = ansible_playbook("converge.yml", "--tags", "tls,nginx",
                                 "-e", f'{{"tls_domains": {names}, "nginx_domains": {names}}}')
    assert code == 0, out[-3000:]
    assert "RUNNING HANDLER [tls : Request the certificate from the ACME server]" in out
    deadline = time.monotonic() + 10
    while serial(site) == before and time.monotonic() < deadline:
        time.sleep(0.5)
    cert = web.served_certificate(site["ip"], site["context"], www)
    assert {("DNS", DOMAIN), ("DNS", www)} <= set(cert["subjectAltName"])
    assert serial(site) != before
    assert web.get(site["ip"], site["context"], "/static/style.css", www)[0] == 200
    assert enabled_sites(host) == ["berth-catch-all.conf", f"{APP}.conf"]
    assert not host.file("/etc/nginx/sites-available/renamed.conf").exists
    assert not host.file("/etc/nginx/berth-renamed.htpasswd").exists


# --- a configuration nginx refuses -----------------------------------------------------------

def test_refused_setting_fails_the_play_and_keeps_serving(host, site):
    before = host.file(SITE_CONF).sha256sum
    pid = master_pid(host)
    code, out = ansible_playbook("converge.yml", "--tags", "nginx",
                                 "-e", '{"nginx_server_extra": ["berth_no_such_directive on;"]}')
    assert code != 0
    assert 'unknown directive "berth_no_such_directive"' in out, out[-3000:]
    assert host.file(SITE_CONF).sha256sum == before
    assert "berth_no_such_directive" not in host.check_output("nginx -T 2>/dev/null")
    assert master_pid(host) == pid
    assert web.get(**site, path="/health/live")[0] == 200


# --- an idle WebSocket, meanwhile testssl.sh and a renewal -----------------------------------

# A WebSocket echo server that never pings, on the app's socket: with the app's own server
# (uvicorn pings every 20 s) an idle socket would outlive any proxy_read_timeout, so only
# this one proves nginx keeps a WebSocket without traffic in either direction.
SILENT_ECHO = """
import asyncio, os
from websockets.asyncio.server import unix_serve
async def echo(ws):
    async for message in ws:
        await ws.send(message)
async def main():
    async with unix_serve(echo, "SOCKET", ping_interval=None):
        os.chmod("SOCKET", 0o666)
        await asyncio.Future()
asyncio.run(main())
""".replace("SOCKET", SOCKET)


@pytest.fixture(scope="module")
def idle_websocket(host, ctx):
    """A WSS connection through nginx, idle from its first echo on (no pings either way), to a
    silent echo server standing in for the app; the app comes back at the end."""
    ip = container_ip(host.backend.hostname)
    host.check_output(f"systemctl stop {APP}.socket {APP}.service && rm -f {SOCKET} && mkdir -p /run/{APP}")
    host.check_output(f"cat > /root/silent_echo.py <<'EOF'\n{SILENT_ECHO}EOF")
    host.check_output(f"systemd-run --quiet --collect --unit=berth-test-silent-echo "
                      f"/srv/{APP}/current/venv/bin/python /root/silent_echo.py")
    host.run(f"for i in $(seq 50); do [ -S {SOCKET} ] && break; sleep 0.1; done")
    try:
        with web.websocket(ip, ctx, DOMAIN, path="/ws/idle", ping_interval=None) as ws:
            ws.send("before the pause")
            assert ws.recv(timeout=10) == "before the pause"
            yield {"ws": ws, "since": time.monotonic()}
    finally:
        host.run("systemctl stop berth-test-silent-echo")
        host.run(f"rm -f {SOCKET}")
        host.check_output(f"systemctl start {APP}.socket {APP}.service")


def test_idle_websocket_opened(idle_websocket):
    assert idle_websocket["ws"].protocol.state.name == "OPEN"


def test_testssl(site):
    report = os.path.join(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/tmp"), "testssl.json")
    if os.path.exists(report):
        os.remove(report)
    out = subprocess.run(
        ["testssl", "--quiet", "--color", "0", "--warnings", "off", "--nodns", "none", "--protocols",
         "--std", "--ip", site["ip"], "--jsonfile", report, f"https://{DOMAIN}"],
        capture_output=True, text=True, timeout=300)
    print(out.stdout[out.stdout.find("Testing protocols"):])
    findings = {f["id"]: f["finding"] for f in json.load(open(report, encoding="utf-8"))}
    for refused in ("SSLv2", "SSLv3", "TLS1", "TLS1_1", "cipherlist_NULL", "cipherlist_aNULL",
                    "cipherlist_EXPORT", "cipherlist_LOW", "cipherlist_3DES_IDEA", "cipherlist_AVERAGE"):
        assert findings[refused] == "not offered", (refused, findings[refused])
    assert findings["TLS1_2"] == "offered"
    assert findings["TLS1_3"].startswith("offered")
    assert findings["ALPN_HTTP2"] == "h2"


RENEW_DROPIN = "/run/systemd/system/certbot.service.d/zz-berth-test-force.conf"


def test_forced_renewal_served_without_restart(host, site):
    before = serial(site)
    pid = master_pid(host)
    # certbot.service as the timer starts it (berth's drop-in, the deploy hook), forced to renew
    # now: without a terminal certbot renew first sleeps up to 8 minutes (spreading the load on
    # Let's Encrypt), which the timer keeps.
    host.check_output(f"mkdir -p {os.path.dirname(RENEW_DROPIN)} && printf '%s\\n' '[Service]' 'ExecStart=' "
                      f"'ExecStart=/usr/bin/certbot -q renew --force-renewal --no-random-sleep-on-renew' "
                      f"> {RENEW_DROPIN} && systemctl daemon-reload")
    try:
        result = host.run("systemctl start certbot.service")
        assert result.rc == 0, host.run("journalctl -u certbot.service -n 30 --no-pager").stdout
    finally:
        host.run(f"rm -f {RENEW_DROPIN} && systemctl daemon-reload")
    deadline = time.monotonic() + 15
    while serial(site) == before and time.monotonic() < deadline:
        time.sleep(0.5)
    after = serial(site)
    print(f"served serial before {before}, after the renewal {after}")
    assert after != before
    assert master_pid(host) == pid, "reloaded, not restarted"


@pytest.mark.parametrize("unit", ["nginx.service", "certbot.service"])
def test_sandboxed(host, unit):
    # after the renewal above proved certbot, its hook and nginx's reload work in it
    level = exposure(host, unit)
    print(f"{unit}: exposure {level}")
    assert level <= 5.0


def test_idle_websocket_survives_70s(idle_websocket):
    ws = idle_websocket["ws"]
    remaining = IDLE_SECONDS - (time.monotonic() - idle_websocket["since"])
    if remaining > 0:
        time.sleep(remaining)
    idle = time.monotonic() - idle_websocket["since"]
    ws.send("after the pause")
    assert ws.recv(timeout=10) == "after the pause"
    print(f"WebSocket idle for {idle:.0f} s, then echoed")


# --- selfsigned mode: a certificate near its expiry is replaced --------------------------------

SELFSIGNED = f"/etc/berth/tls/{APP}/selfsigned"


def served_days_left(host, site):
    """Days the served certificate has left, verified against the self-signed one only."""
    context = ssl.create_default_context(cadata=host.file(f"{SELFSIGNED}/fullchain.pem").content_string)
    cert = web.served_certificate(site["ip"], context, DOMAIN)
    return (ssl.cert_time_to_seconds(cert["notAfter"]) - time.time()) / 86400


# The site's configuration names the stable paths, whatever the mode: the tls role alone switches
# them and reloads nginx.
def converge_selfsigned(extra=None):
    code, out = ansible_playbook("converge.yml", "--tags", "tls",
                                 "-e", json.dumps({"tls_mode": "selfsigned", **(extra or {})}))
    assert code == 0, out[-3000:]
    return out


def wait_days_left(host, site, ok):
    """The served certificate's days left, once ok(days) or after 10 s (a reload is quick)."""
    deadline = time.monotonic() + 10
    while not ok(served_days_left(host, site)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return served_days_left(host, site)


def test_selfsigned_certificate_near_expiry_replaced(host, site):
    # A 5-day certificate made by the role itself, so that only its expiry differs from what the
    # settings ask (one made otherwise would be replaced for its other extensions alone).
    host.check_output(f"rm -f {SELFSIGNED}/fullchain.pem")
    converge_selfsigned({"tls_selfsigned_days": 5, "tls_selfsigned_renew_days": 0})
    assert wait_days_left(host, site, lambda days: days < 6) < 6
    # the default margin (30 days): the next run replaces it
    converge_selfsigned()
    assert wait_days_left(host, site, lambda days: days > 800) > 800
    # and once renewed, a run leaves it alone
    assert recap_changed(converge_selfsigned()) == 0
