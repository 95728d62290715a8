"""Settings from the environment, checked once at start-up (the contract of examples/app).

A bad setting stops the process before it serves anything, with one line that names the variable
and never its value: that line ends up in journald, which more people can read than the secrets.
"""

import os
import sys
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

REQUIRED = ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "JWT_SECRET")
SECRETS = ("SECRET_KEY", "JWT_SECRET", "JWT_SECRET_PREVIOUS")
MIN_SECRET_LENGTH = 32
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
REDIS_SCHEMES = ("redis", "rediss", "unix")

# gunicorn's arbiter halts on a worker that exits with 3 ("Worker failed to boot") instead of
# respawning it forever: systemd sees the failure, the log gets one line, not a loop.
EXIT_CONFIG_ERROR = 3


class ConfigError(Exception):
    """A setting is missing or invalid; the message names the variable, never its value."""


@dataclass(frozen=True)
class Settings:
    database_url: str
    redis_url: str
    secret_key: str
    jwt_secret: str
    jwt_secret_previous: str | None
    log_level: str
    release: str

    def secret_values(self) -> set[str]:
        values = {self.secret_key, self.jwt_secret, self.jwt_secret_previous}
        values |= url_passwords(self.database_url) | url_passwords(self.redis_url)
        return {value for value in values if value}


def load_settings(environ=None) -> Settings:
    env = os.environ if environ is None else environ

    def get(name):
        return env.get(name) or None  # empty counts as unset: env files carry `NAME=` too

    for name in REQUIRED:
        if get(name) is None:
            raise ConfigError(f"{name} is missing")
    for name in SECRETS:
        if get(name) is not None and len(get(name)) < MIN_SECRET_LENGTH:
            raise ConfigError(f"{name} is too short (min {MIN_SECRET_LENGTH} characters)")
    check_database_url(get("DATABASE_URL"))
    if urlsplit(get("REDIS_URL")).scheme not in REDIS_SCHEMES:
        raise ConfigError("REDIS_URL must start with redis://, rediss:// or unix://")
    log_level = (get("LOG_LEVEL") or "INFO").upper()
    if log_level not in LOG_LEVELS:
        raise ConfigError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}")
    return Settings(database_url=get("DATABASE_URL"), redis_url=get("REDIS_URL"),
                    secret_key=get("SECRET_KEY"), jwt_secret=get("JWT_SECRET"),
                    jwt_secret_previous=get("JWT_SECRET_PREVIOUS"), log_level=log_level,
                    release=get("APP_RELEASE") or "dev")


def fail(message: str, status: int) -> None:
    sys.stderr.write(f"berth_flask: configuration error: {message}\n")
    sys.stderr.flush()
    raise SystemExit(status)


def load_settings_or_exit(environ=None) -> Settings:
    try:
        return load_settings(environ)
    except ConfigError as exc:
        fail(str(exc), EXIT_CONFIG_ERROR)


def check_database_url(url: str) -> None:
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        # A relative path would resolve against the release directory and vanish with it.
        if not url.startswith("sqlite:////"):
            raise ConfigError("DATABASE_URL must name an absolute path: sqlite:////path/to/db")
    elif scheme not in ("postgresql", "postgres"):
        raise ConfigError("DATABASE_URL must start with sqlite:/// or postgresql://")


def url_passwords(url: str) -> set[str]:
    parts = urlsplit(url)
    values = set(parse_qs(parts.query).get("password", []))
    if parts.password:
        values |= {parts.password, unquote(parts.password)}
    return values


def redact(text: str, secrets) -> str:
    """Drivers' messages may echo a URL: what reaches a log or a client goes through here."""
    for value in sorted(secrets, key=len, reverse=True):
        text = text.replace(value, "***")
    return text
