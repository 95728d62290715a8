"""berth.stack.checks, run by ansible-playbook on the controller: a check's `when`, its
conditions in order, and its message rendered only when it fails."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

PLAYBOOK = """
- name: Checks
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Check the settings
      berth.stack.checks:
        checks:
          - that: port | int in range(1, 65536)
            msg: "port must be a port number (got {{ port }})"
          - that:
              - mode in ['tls', 'none']
              - mode != 'none' or not strict
            msg: "mode tls or none, and not none when strict (got {{ mode }})"
          # only when it fails may a message name what exists only then
          - that: missing is not defined
            msg: "missing is set: {{ missing }}"
          - that: false
            msg: "{{ undefined_in_a_check_not_applied }}"
            when: [strict, port | int == 1]
"""


def run(tmp_path, **settings):
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / "collections"), ANSIBLE_RETRY_FILES_ENABLED="false",
               ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json")
    variables = {"port": 443, "mode": "tls", "strict": False, **settings}
    out = subprocess.run(["ansible-playbook", "-i", "localhost,", "-c", "local", str(tmp_path / "play.yml"),
                          "-e", json.dumps(variables)], cwd=tmp_path, env=env, capture_output=True, text=True,
                         check=False)
    result = json.loads(out.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
    return out.returncode, result


def test_passing_checks_render_no_message(tmp_path):
    rc, result = run(tmp_path, strict=True)
    assert rc == 0 and not result.get("failed") and result["msg"] == "All checks passed"


@pytest.mark.parametrize("settings, assertion, message", [
    ({"port": 70000}, "port | int in range(1, 65536)", "port must be a port number (got 70000)"),
    ({"mode": "none", "strict": True}, "mode != 'none' or not strict", "mode tls or none, and not none when strict (got none)"),
    ({"mode": "ssl", "port": 70000}, "port | int in range(1, 65536)", "port must be a port number (got 70000)"),
    ({"missing": "here"}, "missing is not defined", "missing is set: here"),
])
def test_the_first_failing_check_fails_with_its_message(tmp_path, settings, assertion, message):
    rc, result = run(tmp_path, **settings)
    assert rc != 0 and result["failed"]
    assert result["assertion"] == assertion and result["msg"] == message


def test_a_check_applies_only_when_all_its_when_are_true(tmp_path):
    rc, result = run(tmp_path, strict=True, port=1)
    assert rc != 0 and "undefined_in_a_check_not_applied" in result["msg"]
