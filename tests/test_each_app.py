"""playbooks/tasks/each-app.yml, run by ansible-playbook on the controller (local connection):
each app's settings hold for its turn only, its handlers run in its turn with its settings, and
nothing of one app reaches the next or the tasks after the loop."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent

ROLE_TASKS = """\
- name: Write the app's file
  ansible.builtin.copy:
    content: "{{ demo_line }}\\n"
    dest: "{{ out }}/{{ berth_app_name }}.txt"
    mode: "0644"
  notify: Record the handler
"""
ROLE_HANDLERS = """\
- name: Record the handler
  ansible.builtin.lineinfile:
    path: "{{ out }}/handlers.txt"
    line: "{{ berth_app_name }}: {{ demo_line }}"
    create: true
    mode: "0644"
"""
# what group_vars/berth.yml does: a role input derived from the app's settings
GROUP_VARS = """\
berth_app_name: single
demo_colour: grey
demo_line: "{{ berth_app_name }} {{ demo_colour }}"
"""
PLAYBOOK = """\
- name: Turns
  hosts: all
  gather_facts: true
  gather_subset: [min]
  tasks:
    - name: Each app
      ansible.builtin.include_tasks: tasks/each-app.yml
      vars:
        berth_app_tasks: app-demo.yml
    - name: After the turns
      ansible.builtin.copy:
        content: "{{ {'name': berth_app_name, 'colour': demo_colour, 'distribution': ansible_facts.distribution} | to_json }}"
        dest: "{{ out }}/after.json"
        mode: "0644"
- name: A later play, which gathers facts only if the cache lost them
  hosts: all
  tasks:
    - name: Nothing
      ansible.builtin.meta: noop
"""


@pytest.fixture(name="project")
def project_dir(tmp_path):
    (tmp_path / "tasks").mkdir()
    for name in ("each-app.yml", "one-app.yml"):
        shutil.copy(ROOT / "playbooks" / "tasks" / name, tmp_path / "tasks" / name)
    (tmp_path / "tasks" / "app-demo.yml").write_text(
        "- name: Demo\n  ansible.builtin.include_role:\n    name: demo\n")
    role = tmp_path / "roles" / "demo"
    (role / "tasks").mkdir(parents=True)
    (role / "handlers").mkdir()
    (role / "tasks" / "main.yml").write_text(ROLE_TASKS)
    (role / "handlers" / "main.yml").write_text(ROLE_HANDLERS)
    (tmp_path / "group_vars" / "all").mkdir(parents=True)
    (tmp_path / "group_vars" / "all" / "settings.yml").write_text(GROUP_VARS)
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    (tmp_path / "out").mkdir()
    return tmp_path


def run(project, apps, *extra):
    # the selection exactly as group_vars/berth.yml has it
    contract = yaml.safe_load((ROOT / "group_vars" / "berth.yml").read_text())
    selection = {name: contract[name] for name in ("berth_app_list", "berth_app_names", "berth_app_selection")}
    (project / "group_vars" / "all" / "selection.yml").write_text(yaml.safe_dump(selection))
    # berth's own ansible.cfg (its strategy, its facts' injection), the test's roles and collections
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_COLLECTIONS_PATH=str(ROOT / "collections"),
               ANSIBLE_ROLES_PATH=str(project / "roles"), ANSIBLE_RETRY_FILES_ENABLED="false", ANSIBLE_GATHERING="smart",
               ANSIBLE_PYTHON_INTERPRETER=sys.executable)
    return subprocess.run(
        ["ansible-playbook", "-i", "localhost,", "-c", "local", str(project / "play.yml"),
         "-e", json.dumps({"berth_apps": apps, "out": str(project / "out")}), *extra],
        cwd=project, env=env, capture_output=True, text=True, check=False)


APPS = [{"berth_app_name": "site", "demo_colour": "red"}, {"berth_app_name": "admin"}]


def test_each_app_has_its_settings_and_its_handlers(project):
    result = run(project, APPS)
    assert result.returncode == 0, result.stdout + result.stderr
    out = project / "out"
    assert (out / "site.txt").read_text() == "site red\n"
    assert (out / "admin.txt").read_text() == "admin grey\n", "the group's colour: site's stayed with site"
    assert (out / "handlers.txt").read_text().splitlines() == ["site: site red", "admin: admin grey"]
    after = json.loads((out / "after.json").read_text())
    assert after["name"] == "single" and after["colour"] == "grey", "the group's settings after the turns"
    assert after["distribution"], "the host's gathered facts are back"
    assert result.stdout.count("TASK [Gathering Facts]") == 1, "the later play found them gathered"


def test_a_handler_runs_for_the_app_that_changed_only(project):
    assert run(project, APPS).returncode == 0
    (project / "out" / "handlers.txt").unlink()
    (project / "out" / "admin.txt").write_text("changed by hand\n")
    assert run(project, APPS).returncode == 0
    assert (project / "out" / "handlers.txt").read_text().splitlines() == ["admin: admin grey"]


def test_no_apps_is_the_one_app_of_the_settings(project):
    assert run(project, []).returncode == 0
    assert (project / "out" / "single.txt").read_text() == "single grey\n"


def test_one_app_asked_for_is_the_only_one_touched(project):
    assert run(project, APPS, "-e", "app=admin").returncode == 0
    assert sorted(p.name for p in (project / "out").glob("*.txt")) == ["admin.txt", "handlers.txt"]
    result = run(project, APPS, "-e", "app=shop")
    assert result.returncode != 0 and "no such app here; the apps are site, admin" in result.stdout


def test_an_apps_settings_are_not_shown(project):
    # an entry may hold provided secrets: not even -v shows the settings task's result
    apps = [{"berth_app_name": "site", "demo_colour": "s3cret-marker-value"}]
    result = run(project, apps, "-v")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "out" / "site.txt").read_text() == "site s3cret-marker-value\n"
    shown = [line for line in result.stdout.splitlines() if "s3cret-marker-value" in line]
    assert shown == [], shown


def test_a_playbook_for_one_apps_data_needs_the_app_named(project):
    # restore.yml and rollback.yml set berth_app_required
    result = run(project, APPS, "-e", "berth_app_required=true")
    assert result.returncode != 0 and "Name the app: -e app=NAME; the apps are site, admin" in result.stdout
    assert not list((project / "out").glob("*.txt")), "refused before any turn"
    assert run(project, APPS, "-e", "berth_app_required=true", "-e", "app=site").returncode == 0
    assert run(project, APPS[:1], "-e", "berth_app_required=true").returncode == 0, "one app: no need"
