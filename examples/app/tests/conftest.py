"""berth_demo's own fixtures; the services (Redis, PostgreSQL, empty databases) are the example
apps' shared ones in examples/conftest.py."""

import sys
from pathlib import Path

import pytest
from starlette.testclient import TestClient

TESTS_DIR = Path(__file__).resolve().parent
# The app and demo_support are imported as top-level modules, whatever pytest's import mode.
sys.path[:0] = [str(TESTS_DIR.parent), str(TESTS_DIR)]

from demo_support import app_env

from berth_demo.app import create_app
from berth_demo.config import load_settings
from berth_demo.db import Database


@pytest.fixture
def app_database():
    return Database


@pytest.fixture
def app_logger():
    return "berth_demo"


@pytest.fixture
def make_client(redis_server):
    """make_client(database_url, redis_url=None, **env) -> a TestClient with its lifespan running."""
    clients = []

    def make(database_url, redis_url=None, **env):
        settings = load_settings(app_env(database_url, redis_url or redis_server.unix_url, **env))
        client = TestClient(create_app(settings))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client, migrated_url):
    return make_client(migrated_url)
