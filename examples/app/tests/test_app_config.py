"""Start-up validation: one line that names the variable, never its value, and a failed start."""

import subprocess
import sys

import pytest
from demo_support import APP_DIR, JWT_SECRET, RELEASE, app_env

from berth_demo.config import EXIT_CONFIG_ERROR, ConfigError, Settings, load_settings, redact

SQLITE = "sqlite:////var/lib/demo/db.sqlite3"
REDIS = "redis://default:hunter2hunter2@127.0.0.1:6379/0"


def env(**overrides):
    return app_env(SQLITE, REDIS, **overrides)


def test_valid_environment_loads():
    settings = load_settings(env(JWT_SECRET_PREVIOUS="p" * 32, LOG_LEVEL="debug"))
    assert settings.jwt_secret == JWT_SECRET
    assert settings.jwt_secret_previous == "p" * 32
    assert settings.log_level == "DEBUG"
    assert settings.release == RELEASE


def test_defaults():
    settings = load_settings(env(APP_RELEASE=None, JWT_SECRET_PREVIOUS=""))
    assert settings.release == "dev"
    assert settings.log_level == "INFO"
    assert settings.jwt_secret_previous is None


@pytest.mark.parametrize("name", ["DATABASE_URL", "REDIS_URL", "SECRET_KEY", "JWT_SECRET"])
@pytest.mark.parametrize("value", [None, ""])
def test_missing_variable_is_named(name, value):
    with pytest.raises(ConfigError, match=f"^{name} is missing$"):
        load_settings(env(**{name: value}))


@pytest.mark.parametrize("name", ["SECRET_KEY", "JWT_SECRET", "JWT_SECRET_PREVIOUS"])
def test_short_secret_is_named_not_shown(name):
    value = "x" * 31
    with pytest.raises(ConfigError) as caught:
        load_settings(env(**{name: value}))
    assert str(caught.value) == f"{name} is too short (min 32 characters)"


@pytest.mark.parametrize("name, value, message", [
    ("DATABASE_URL", "mysql://u:p@h/db", "DATABASE_URL must start with"),
    ("DATABASE_URL", "sqlite:///relative.db", "DATABASE_URL must name an absolute path"),
    ("REDIS_URL", "http://127.0.0.1:6379", "REDIS_URL must start with"),
    ("LOG_LEVEL", "LOUD", "LOG_LEVEL must be one of"),
])
def test_bad_values_are_named_not_shown(name, value, message):
    with pytest.raises(ConfigError) as caught:
        load_settings(env(**{name: value}))
    assert str(caught.value).startswith(message)
    assert value not in str(caught.value)


def test_postgres_url_forms_are_accepted():
    for url in ("postgresql://u:p@127.0.0.1:5432/db", "postgresql://u:p@/db?host=/var/run/postgresql"):
        assert load_settings(env(DATABASE_URL=url)).database_url == url


def test_redact_hides_secrets_and_url_passwords():
    settings = Settings(database_url="postgresql://app:p%40ss@/db?host=/run/postgresql",
                        redis_url=REDIS, secret_key="k" * 32, jwt_secret=JWT_SECRET,
                        jwt_secret_previous=None, log_level="INFO", release="dev")
    text = f"failed for postgresql://app:p%40ss@/db, p@ss, hunter2hunter2, {JWT_SECRET}"
    cleaned = redact(text, settings.secret_values())
    for secret in ("p%40ss", "p@ss", "hunter2hunter2", JWT_SECRET):
        assert secret not in cleaned


def import_app(environ):
    return subprocess.run([sys.executable, "-c", "import berth_demo.main"], cwd=APP_DIR,
                          env=environ, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("overrides, expected", [
    ({"JWT_SECRET": "short-jwt-secret-value"}, "JWT_SECRET is too short (min 32 characters)"),
    ({"JWT_SECRET_PREVIOUS": "short-previous-value"},
     "JWT_SECRET_PREVIOUS is too short (min 32 characters)"),
    ({"SECRET_KEY": None}, "SECRET_KEY is missing"),
])
def test_import_fails_with_one_line(overrides, expected):
    result = import_app(env(**overrides))
    assert result.returncode == EXIT_CONFIG_ERROR
    assert result.stderr == f"berth_demo: configuration error: {expected}\n"
    for value in overrides.values():
        if value:
            assert value not in result.stderr + result.stdout


def test_import_succeeds_with_valid_environment():
    # No service is contacted at import: connections are made per request.
    result = import_app(env())
    assert result.returncode == 0, result.stderr
    assert JWT_SECRET not in result.stderr
