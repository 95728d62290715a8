"""HTTPS and WSS clients of a berth site, from this machine: every connection goes to the host's
address, with SNI, Host and certificate verification for the site's name against the given
context (in the tests: Pebble's issuing root and nothing else)."""

import http.client
import json
import os
import socket
import ssl
import subprocess
import threading
import time

import websockets.sync.client


def pebble_root():
    """Path of Pebble's current issuing root (scripts/pebble ca: Pebble makes one per start)."""
    pebble = os.path.join(os.environ.get("MOLECULE_PROJECT_DIRECTORY", "."), "scripts", "pebble")
    return subprocess.run([pebble, "ca"], check=True, capture_output=True, text=True).stdout.strip()


def pebble_context():
    """TLS context whose only trust anchor is Pebble's issuing root."""
    return ssl.create_default_context(cafile=pebble_root())


def plain_http(ip, path, name):
    """One request on port 80: (status, headers, body)."""
    conn = http.client.HTTPConnection(ip, 80, timeout=10)
    try:
        conn.request("GET", path, headers={"Host": name})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


class Conn(http.client.HTTPSConnection):
    """HTTPS to `ip`, as if `name` resolved to it."""

    def __init__(self, ip, context, name, timeout=30):
        super().__init__(name, 443, context=context, timeout=timeout)
        self.ip = ip

    def connect(self):
        raw = socket.create_connection((self.ip, 443), self.timeout)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)


def get(ip, context, path, name, method="GET", headers=None, body=None):
    """One request on its own connection: (status, headers, body)."""
    conn = Conn(ip, context, name)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def post_json(ip, context, path, name, payload, headers=None):
    status, _, body = get(ip, context, path, name, "POST", {"Content-Type": "application/json", **(headers or {})},
                          json.dumps(payload))
    return status, json.loads(body or b"null")


def served_certificate(ip, context, name):
    with socket.create_connection((ip, 443), 10) as raw:
        with context.wrap_socket(raw, server_hostname=name) as tls:
            return tls.getpeercert()


def websocket(ip, context, name, path="/ws/echo", **options):
    """A WSS connection (a context manager) through nginx."""
    raw = socket.create_connection((ip, 443), 10)
    return websockets.sync.client.connect(f"wss://{name}{path}", sock=raw, ssl=context, server_hostname=name,
                                          proxy=None, open_timeout=15, **options)


class RequestLoop:
    """A steady stream of requests over keep-alive HTTPS while the `with` body runs, one after
    another: `requests` is (method, path, headers, expected status) tuples, sent in turn. Every
    answer other than the expected one, and every connection error, is kept in `failed`; only a
    GET on a kept-alive connection the server closed is resent once (counted in `retried`).
    `pause` paces the stream: a request costs ~30 ms of CPU across client, nginx and app, and an
    unpaced stream took most of a core from the run it watches (docs/TESTING.md)."""

    def __init__(self, ip, context, name, requests, pause=0.2):
        self.ip, self.context, self.name, self.requests, self.pause = ip, context, name, requests, pause
        self.count, self.retried, self.failed = 0, 0, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _send(self, conn, method, path, headers):
        conn.request(method, path, headers=headers)
        resp = conn.getresponse()
        return resp, resp.read()

    def _run(self):
        conn, used = None, 0
        while not self._stop.is_set():
            method, path, headers, expected = self.requests[self.count % len(self.requests)]
            self.count += 1
            try:
                if conn is None:
                    conn, used = Conn(self.ip, self.context, self.name, timeout=15), 0
                try:
                    resp, body = self._send(conn, method, path, headers)
                except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                    # A keep-alive connection the server closed while idle (a reload): like a
                    # browser, resend an idempotent request once on a new connection.
                    if not used or method not in ("GET", "HEAD"):
                        raise
                    self.retried += 1
                    conn = Conn(self.ip, self.context, self.name, timeout=15)
                    resp, body = self._send(conn, method, path, headers)
                used += 1
                if resp.status != expected:
                    self.failed.append(f"{method} {path}: {resp.status} {body[:200]!r}")
                if resp.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as err:
                self.failed.append(f"{method} {path}: {type(err).__name__}: {err}")
                conn = None
            time.sleep(self.pause)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=60)
        print(f"request loop: {self.count} requests, {len(self.failed)} failed, {self.retried} resent "
              f"after an idle keep-alive close: {self.failed[:5]}")
