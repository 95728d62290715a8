"""Constants and helpers shared by berth_demo's tests (conftest.py holds the fixtures).

A module of its own, not conftest: the repository has more than one conftest.py, and `import
conftest` could find the wrong one.
"""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

APP_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "secret-key-for-tests-0123456789abcdef"
JWT_SECRET = "jwt-secret-current-0123456789abcdef"
JWT_SECRET_OLD = "jwt-secret-previous-0123456789abcdef"
REDIS_PASSWORD = "redis-pass-4c1f"
PG_PASSWORD = "pg-pass-9e27"
PG_USER = "berth"
RELEASE = "20250101T000000-test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(check, what: str, timeout: float = 20) -> None:
    """Polls check() until it returns true; its last exception is raised at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except Exception:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not come up in {timeout}s")
        time.sleep(0.1)


def app_env(database_url: str, redis_url: str, **overrides) -> dict:
    """A complete, valid environment for the app; an override of None removes that variable.

    Built from scratch, not from os.environ, so a DATABASE_URL of the machine never leaks in.
    """
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SECRET_KEY": SECRET_KEY,
        "JWT_SECRET": JWT_SECRET,
        "APP_RELEASE": RELEASE,
    }
    env.update(overrides)
    return {name: value for name, value in env.items() if value is not None}


def assert_no_secrets(*texts) -> None:
    for text in texts:
        for secret in (REDIS_PASSWORD, PG_PASSWORD, JWT_SECRET):
            assert secret not in text


def run_migration(module: str, database_url: str | None, app_dir: Path = APP_DIR):
    """`python -m MODULE` as a deploy runs it: a process with only DATABASE_URL set."""
    environ = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    if database_url is not None:
        environ["DATABASE_URL"] = database_url
    return subprocess.run([sys.executable, "-m", module], cwd=app_dir, env=environ,
                          capture_output=True, text=True, timeout=60, check=False)
