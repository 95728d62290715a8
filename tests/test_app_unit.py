"""The app role's unit and input checks for each worker class: APP.service.j2 rendered by
Ansible's templar from the role's defaults and vars (as a play sees them, no host), and the
conditions of validate.yml's check of what gunicorn serves evaluated the same way."""

import pathlib
import shlex

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

ROLE = pathlib.Path(__file__).resolve().parent.parent / "roles" / "app"
LOADER = DataLoader()
# What group_vars/berth.yml (the contract) assigns and a play's template module adds.
REQUIRED = {"app_home": "/srv/app", "app_secrets_env_file": "/etc/berth/app/app-secrets.env",
            "app_shared_dir": "/srv/app/shared", "ansible_managed": "managed by berth",
            "ansible_facts": {"processor_vcpus": 2}}


def load(name):
    return LOADER.load_from_file(str(ROLE / name), trusted_as_template=True)


def templar(settings):
    variables = {**load("defaults/main.yml"), **load("vars/main.yml"), **REQUIRED, **settings}
    return Templar(loader=LOADER, variables=variables)


def exec_start(settings):
    """The unit's ExecStart= command as argv (its backslash-continued lines joined)."""
    text = (ROLE / "templates" / "etc" / "systemd" / "system" / "APP.service.j2").read_text()
    unit = templar(settings).template(trust_as_template(text))
    joined = unit.replace("\\\n", " ")
    line = next(line for line in joined.splitlines() if line.startswith("ExecStart="))
    description = next(line for line in joined.splitlines() if line.startswith("Description="))
    return shlex.split(line.removeprefix("ExecStart=")), description


def option(argv, name):
    return argv[argv.index(name) + 1] if name in argv else None


@pytest.mark.parametrize("settings, callable_, worker, threads", [
    ({}, "berth_demo.main:app", "uvicorn_worker.UvicornWorker", None),
    ({"app_worker_class": "gthread", "app_callable": "berth_flask.main:app"},
     "berth_flask.main:app", "gthread", "4"),
    ({"app_worker_class": "gthread", "app_threads": 8, "app_callable": "shop.wsgi:create_app()"},
     "shop.wsgi:create_app()", "gthread", "8"),
    # sync gets no --threads: with threads > 1 gunicorn would run gthread instead
    ({"app_worker_class": "sync", "app_threads": 8, "app_callable": "shop.wsgi:application"},
     "shop.wsgi:application", "sync", None),
    # the deprecated name still sets what gunicorn serves; app_callable wins over it
    ({"app_asgi_app": "shop.asgi:application"}, "shop.asgi:application", "uvicorn_worker.UvicornWorker", None),
    ({"app_asgi_app": "old.asgi:app", "app_callable": "new.asgi:app"}, "new.asgi:app",
     "uvicorn_worker.UvicornWorker", None),
])
def test_the_unit_runs_the_worker_class(settings, callable_, worker, threads):
    argv, description = exec_start(settings)
    assert argv[0] == "/srv/app/current/venv/bin/gunicorn"
    assert argv[1] == callable_
    assert option(argv, "--worker-class") == worker
    assert option(argv, "--threads") == threads
    assert argv.count("--worker-class") == 1
    assert f"gunicorn with {worker} workers" in description


def valid(settings):
    (checks,) = [task["berth.stack.checks"]["checks"] for task in load("tasks/validate.yml") if "berth.stack.checks" in task]
    conditions = next(check["that"] for check in checks if check["msg"].startswith("app: app_callable must be"))
    t = templar(settings)
    return all(t.evaluate_conditional(trust_as_template(condition)) for condition in conditions)


@pytest.mark.parametrize("settings", [
    {},
    {"app_worker_class": "gthread", "app_callable": "berth_flask.main:app"},
    {"app_worker_class": "sync", "app_callable": "shop.wsgi:create_app()"},
    {"app_worker_class": "gunicorn.workers.gthread.ThreadWorker", "app_callable": "a.b.c:application"},
    {"app_asgi_app": "shop.asgi:application"},
])
def test_valid_callables_and_worker_classes_pass(settings):
    assert valid(settings)


@pytest.mark.parametrize("settings", [
    {"app_worker_class": ""},
    {"app_worker_class": "g thread"},
    {"app_worker_class": "uvicorn_worker.UvicornWorker --reload"},
    {"app_worker_class": "Gthread"},
    {"app_callable": ""},
    {"app_callable": "berth_demo.main"},
    {"app_callable": "berth_demo.main:"},
    {"app_callable": "berth_demo/main.py:app"},
    {"app_callable": "shop.wsgi:create_app(debug=True)"},
    {"app_asgi_app": "shop.asgi"},
    {"app_threads": 0},
])
def test_an_empty_or_malformed_setting_fails(settings):
    assert not valid(settings)
