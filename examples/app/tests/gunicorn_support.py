"""gunicorn as berth runs it, for the example apps' tests (examples/app, examples/wsgi-app).

`serve` starts gunicorn on a listening socket the test holds, as APP.socket holds it under
systemd (LISTEN_FDS, fd 3), with the role's own gunicorn.conf.py; `restart` is what `systemctl
restart` does to it (SIGTERM to the master, wait for it to exit, start a new one on the same
socket); `Load` sends a steady stream of requests meanwhile and counts what fails.
"""

import http.client
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import jinja2
import yaml

ROLE = Path(__file__).resolve().parents[3] / "roles" / "app"

# The child moves the inherited socket to fd 3 and names itself in LISTEN_PID, as systemd does
# before exec: gunicorn then takes the socket and neither binds nor unlinks a path.
LAUNCH = """\
import os, sys
fd = int(sys.argv[1])
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()))
os.execv(sys.executable, [sys.executable, "-m", "gunicorn", *sys.argv[2:]])
"""


def gunicorn_config(path: Path, drain: float | None = None) -> Path:
    """roles/app's gunicorn.conf.py.j2 rendered to path (app_shutdown_drain: the role's default)."""
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, trim_blocks=True, keep_trailing_newline=True)
    template = env.from_string((ROLE / "templates" / "etc" / "berth" / "APP" / "gunicorn.conf.py.j2").read_text())
    path.write_text(template.render(
        ansible_managed="rendered by gunicorn_support", app_service="test",
        app_shutdown_drain=defaults["app_shutdown_drain"] if drain is None else drain))
    return path


def listening_socket(path: Path, backlog: int = 1024) -> socket.socket:
    """What APP.socket makes: a unix stream socket, bound and listening, owned by the test."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(backlog)
    return sock


def serve(listener: socket.socket, app_dir: Path, environ: dict, *args: str) -> subprocess.Popen:
    """gunicorn with args (the app, its worker class ...) on listener; output to files."""
    command = [sys.executable, "-c", LAUNCH, str(listener.fileno()), *args,
               # gunicorn >= 25.1 otherwise opens a control socket under $HOME or $XDG_RUNTIME_DIR
               "--no-control-socket"]
    return subprocess.Popen(command, cwd=app_dir, env=environ, pass_fds=[listener.fileno()],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def stop(proc: subprocess.Popen, timeout: float = 30) -> str:
    """SIGTERM to the master, as systemd's KillMode=mixed sends it; its stderr."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.communicate(timeout=timeout)[1]
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


def stderr_of_failed_start(proc: subprocess.Popen, timeout: float = 60) -> str:
    """The stderr of a gunicorn that must stop by itself (on a bad setting): an error if it keeps
    running or exits 0."""
    try:
        stderr = proc.communicate(timeout=timeout)[1]
    except subprocess.TimeoutExpired:
        stop(proc)
        raise AssertionError("gunicorn kept running with a bad configuration") from None
    assert proc.returncode != 0, stderr
    return stderr


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = str(path)

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


class Unanswered(ConnectionError):
    """The connection failed before any byte of an answer came."""


class Load:
    """Client threads sending requests through the socket until stopped.

    `keepalive` threads reuse their connection as nginx does upstream: a request that fails on a
    reused connection before any byte of an answer is sent again once on a new one (the retry
    RFC 9112 9.3.1 allows and nginx makes), and counted in `retried`. `fresh` threads open a
    connection per request and never retry. `requests` is [(method, path, body or None)], sent
    in turn; any answer but 2xx, or none, is a failure.
    """

    def __init__(self, sock_path: Path, requests, keepalive: int = 4, fresh: int = 4,
                 timeout: float = 30, limit: int = 100_000):
        self.sock_path, self.requests, self.timeout, self.limit = sock_path, requests, timeout, limit
        self.kinds = ["keepalive"] * keepalive + ["fresh"] * fresh
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.retried = 0
        self.failures: list[str] = []
        self.releases: set[str] = set()
        self.threads = [threading.Thread(target=self.run, args=(kind, n), daemon=True)
                        for n, kind in enumerate(self.kinds)]

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        for thread in self.threads:
            thread.join(self.timeout + 5)

    @staticmethod
    def send(conn, method, path, body, close):
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if close:
            headers["Connection"] = "close"
        try:
            conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
            response = conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
            raise Unanswered(f"{type(exc).__name__}: {exc}") from exc
        data = response.read()
        if response.will_close:
            conn.close()  # the next request opens a new connection
        return response.status, data

    def run(self, kind, n):
        fresh = kind == "fresh"
        conn = UnixHTTPConnection(self.sock_path, self.timeout)
        sent = 0
        while not self.stopping.is_set() and sent < self.limit:
            method, path, body = self.requests[(n + sent) % len(self.requests)]
            sent += 1
            reused = conn.sock is not None  # http.client connects when it has no connection
            try:
                try:
                    status, data = self.send(conn, method, path, body, fresh)
                except Unanswered:
                    if not reused:
                        raise
                    conn.close()
                    with self.lock:
                        self.retried += 1
                    status, data = self.send(conn, method, path, body, fresh)
            except (OSError, http.client.HTTPException) as exc:
                self.fail(f"{kind} {method} {path}: {type(exc).__name__}: {exc}")
                conn.close()
                continue
            finally:
                if fresh:
                    conn.close()
            if not 200 <= status < 300:
                self.fail(f"{kind} {method} {path}: HTTP {status} {data[:200]!r}")
                continue
            with self.lock:
                self.ok += 1
                if path == "/health/live":
                    self.releases.add(json.loads(data)["release"])

    def fail(self, what):
        with self.lock:
            self.failures.append(what)


def restart(proc: subprocess.Popen, start, timeout: float = 40) -> subprocess.Popen:
    """`systemctl restart`: stop the master (its workers finish what they accepted), then start a
    new one; connections made meanwhile wait in the socket's queue. start() -> the new master."""
    stderr = stop(proc, timeout)
    assert proc.returncode == 0, stderr[-3000:]
    return start()


def wait_until_serving(sock_path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        conn = UnixHTTPConnection(sock_path, 5)
        try:
            conn.request("GET", "/health/live")
            if conn.getresponse().status == 200:
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
        finally:
            conn.close()
        time.sleep(0.1)


# What the load sends by default: the contract's endpoints, both health checks, a write, a read.
CONTRACT_REQUESTS = [("GET", "/health/live", None), ("GET", "/health/ready", None),
                     ("POST", "/api/notes", {"text": "under load"}), ("GET", "/api/notes", None)]


def restarts_under_load(sock_path: Path, start, requests=CONTRACT_REQUESTS, restarts: int = 3,
                        interval: float = 2.0, **load_args) -> Load:
    """Starts gunicorn, then restarts it `restarts` times, `interval` seconds apart, under a steady
    Load; the Load when all is done. start(release) -> a master whose app says APP_RELEASE=release
    (run-0, run-1 ...): every one must have answered, or the load did not span the restarts."""
    proc = start("run-0")
    try:
        wait_until_serving(sock_path)
        with Load(sock_path, requests, **load_args) as load:
            for n in range(1, restarts + 1):
                time.sleep(interval)
                proc = restart(proc, lambda n=n: start(f"run-{n}"))
                # the old master has exited: any answer now is the new one's (on a busy machine
                # its workers may take longer than the interval to boot)
                wait_until_serving(sock_path)
            time.sleep(interval)
    finally:
        stderr = stop(proc)
    assert proc.returncode == 0, stderr[-3000:]
    print(f"{load.ok} answered, {len(load.failures)} failed, {load.retried} retried on a new connection")
    expected = {f"run-{n}" for n in range(restarts + 1)}
    assert load.releases == expected, f"the load did not span every restart: {sorted(load.releases)}"
    assert load.ok > 100 * restarts, "too few requests to tell"
    return load
