"""The full stack with SQLite, on Debian 12 and 13: the shared checks of molecule/stack_tests.py
(the work under load runs in stack-postgresql, whose rotation covers a database password), then a
layout value moved in the settings."""

import json

import web_client as web
from stack_tests import *  # noqa: F401,F403 (pytest collects the imported tests)
from stack_tests import APP, site_yml


def test_a_moved_socket_moves_every_consumer(host, site):
    # the contract (group_vars/berth.yml) derives the socket from berth_layout_overrides: the
    # app's socket unit and nginx's upstream follow it, and the site answers through it
    moved = f"/run/{APP}-web/{APP}.sock"
    code, out = site_yml(host, "--tags", "nginx,app", "-e",
                         json.dumps({"berth_layout_overrides": {"socket_dir": f"/run/{APP}-web"}}))
    assert code == 0, out[-3000:]
    assert host.socket(f"unix://{moved}").is_listening
    assert not host.socket(f"unix:///run/{APP}/{APP}.sock").is_listening
    assert web.get(**site, path="/health/ready")[0] == 200
    assert web.get(**site, path="/api/notes")[0] == 200
