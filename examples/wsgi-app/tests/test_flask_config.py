"""Start-up validation, as examples/app's: one line that names the variable, never its value."""

import subprocess
import sys
from pathlib import Path

import pytest
from demo_support import JWT_SECRET, RELEASE, app_env

from berth_flask.config import EXIT_CONFIG_ERROR, ConfigError, load_settings

SQLITE = "sqlite:////var/lib/demo/db.sqlite3"
REDIS = "unix://app:hunter2hunter2@/run/redis-app/redis-server.sock?db=0"

APP_DIR = Path(__file__).resolve().parent.parent


def env(**overrides):
    return app_env(SQLITE, REDIS, **overrides)


def test_valid_environment_loads():
    settings = load_settings(env(JWT_SECRET_PREVIOUS="p" * 32, LOG_LEVEL="debug"))
    assert (settings.jwt_secret, settings.jwt_secret_previous) == (JWT_SECRET, "p" * 32)
    assert (settings.log_level, settings.release, settings.redis_url) == ("DEBUG", RELEASE, REDIS)


def test_defaults():
    settings = load_settings(env(APP_RELEASE=None, JWT_SECRET_PREVIOUS=""))
    assert (settings.release, settings.log_level, settings.jwt_secret_previous) == ("dev", "INFO", None)


@pytest.mark.parametrize("name", ["DATABASE_URL", "REDIS_URL", "SECRET_KEY", "JWT_SECRET"])
@pytest.mark.parametrize("value", [None, ""])
def test_missing_variable_is_named(name, value):
    with pytest.raises(ConfigError, match=f"^{name} is missing$"):
        load_settings(env(**{name: value}))


@pytest.mark.parametrize("name, value, message", [
    ("SECRET_KEY", "x" * 31, "SECRET_KEY is too short (min 32 characters)"),
    ("JWT_SECRET_PREVIOUS", "x" * 31, "JWT_SECRET_PREVIOUS is too short (min 32 characters)"),
    ("DATABASE_URL", "mysql://u:p@h/db", "DATABASE_URL must start with sqlite:/// or postgresql://"),
    ("DATABASE_URL", "sqlite:///relative.db", "DATABASE_URL must name an absolute path: sqlite:////path/to/db"),
    ("REDIS_URL", "http://127.0.0.1:6379", "REDIS_URL must start with redis://, rediss:// or unix://"),
    ("LOG_LEVEL", "LOUD", "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
])
def test_bad_values_are_named_not_shown(name, value, message):
    with pytest.raises(ConfigError) as caught:
        load_settings(env(**{name: value}))
    assert str(caught.value) == message


def import_app(environ):
    return subprocess.run([sys.executable, "-c", "import berth_flask.main"], cwd=APP_DIR,
                          env=environ, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("overrides, expected", [
    ({"JWT_SECRET": "short-jwt-secret-value"}, "JWT_SECRET is too short (min 32 characters)"),
    ({"REDIS_URL": None}, "REDIS_URL is missing"),
])
def test_import_fails_with_one_line(overrides, expected):
    result = import_app(env(**overrides))
    assert result.returncode == EXIT_CONFIG_ERROR
    assert result.stderr == f"berth_flask: configuration error: {expected}\n"
    assert "short-jwt-secret-value" not in result.stderr + result.stdout


def test_import_succeeds_with_valid_environment():
    # No service is contacted at import: connections are made per request.
    result = import_app(env())
    assert result.returncode == 0, result.stderr
    assert JWT_SECRET not in result.stderr
