"""gunicorn as berth runs it, for the example apps' tests (examples/app, examples/wsgi-app).

`serve` starts gunicorn on a listening socket the test holds, as APP.socket holds it under
systemd (LISTEN_FDS, fd 3), with the role's own gunicorn.conf.py; `stop` is systemd's SIGTERM.
"""

import http.client
import signal
import socket
import subprocess
import sys
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

