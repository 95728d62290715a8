"""berth_flask's fixtures. The services (Redis, PostgreSQL, empty databases) are the example apps'
shared ones (examples/conftest.py); so are the contract's test values and the gunicorn helpers
(examples/app/tests: demo_support, gunicorn_support)."""

import sys
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
# The app and the shared helpers are imported as top-level modules, whatever pytest's import mode.
sys.path[:0] = [str(TESTS_DIR.parent), str(TESTS_DIR.parents[1] / "app" / "tests")]

from demo_support import app_env

from berth_flask.app import create_app
from berth_flask.config import load_settings
from berth_flask.db import Database


@pytest.fixture
def app_database():
    return Database


@pytest.fixture
def app_logger():
    return "berth_flask"


@pytest.fixture
def make_client(redis_server):
    """make_client(database_url, redis_url=None, **env) -> Flask's test client."""

    def make(database_url, redis_url=None, **env):
        settings = load_settings(app_env(database_url, redis_url or redis_server.unix_url, **env))
        return create_app(settings).test_client()

    return make


@pytest.fixture
def client(make_client, migrated_url):
    return make_client(migrated_url)
