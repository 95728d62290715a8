"""Retiring and purging apps (playbooks/tasks/retire-apps.yml with retire-found.yml, and
purge-apps.yml, wired as in playbooks/tasks/provision-host.yml), run by ansible-playbook on the
controller against records in a temporary directory, with the roles' retire and purge entry
points stubbed (they act on the host's systemd, certbot and PostgreSQL: molecule tests them);
and the preflight's refusal to purge an app still listed."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
ANSIBLE_PLAYBOOK = shutil.which("ansible-playbook", path=f"{pathlib.Path(sys.executable).parent}{os.pathsep}"
                                                        f"{os.environ.get('PATH', '')}")

# each stub notes that it ran, and for which app
STUB = """\
- name: Note the call
  ansible.builtin.command:
    argv: [sh, -c, 'echo "$0" >> "$1"', "{role} {entry} {{{{ {var}.name }}}}", "{{{{ out }}}}/calls.txt"]
  changed_when: true
"""
STUBS = {("app", "retire"): "app_retired", ("backup", "retire"): "backup_retired",
         ("nginx", "retire"): "nginx_retired", ("tls", "retire"): "tls_retired",
         ("postgresql", "purge"): "postgresql_purged"}


@pytest.fixture(name="project")
def project_dir(tmp_path):
    (tmp_path / "tasks").mkdir()
    for name in ("retire-apps.yml", "retire-found.yml", "purge-apps.yml"):
        shutil.copy(ROOT / "playbooks" / "tasks" / name, tmp_path / "tasks" / name)
    for (role, entry), var in STUBS.items():
        (tmp_path / "roles" / role / "tasks").mkdir(parents=True, exist_ok=True)
        (tmp_path / "roles" / role / "tasks" / f"{entry}.yml").write_text(STUB.format(role=role, entry=entry, var=var))
    # provision.yml's tasks after the turns (tasks/provision-host.yml), as they are, but for the
    # path of the files they include, beside them there
    tasks = yaml.safe_load((ROOT / "playbooks" / "tasks" / "provision-host.yml").read_text())
    after_turns = [task for task in tasks if "each-app" not in str(task)]
    assert len(after_turns) == 2
    for task in after_turns:
        include = task["ansible.builtin.include_tasks"]
        include["file"] = "tasks/" + include["file"]
    play = [{"name": "After the turns", "hosts": "all", "gather_facts": False, "tasks": after_turns}]
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play))
    (tmp_path / "records").mkdir()
    (tmp_path / "check.d").mkdir()
    return tmp_path


def record(project, name, engine="sqlite", **paths):
    """A record as group_vars/berth.yml's berth_app_record would be, with paths in the project."""
    base = project / "host"
    rec = {"format": 1, "name": name, "user": f"berthgone{name}", "group": f"berthgone{name}",
           "build_user": f"berthgone{name}-build", "home": f"{base}/srv/{name}",
           "settings_dir": f"{base}/etc/{name}", "units": [f"{name}.socket", f"{name}.service"],
           "unit_patterns": [f"{name}-worker-*.service"], "backup_units": [f"berth-backup-{name}.service"],
           "backup_dir": f"{base}/backups/{name}", "status_dir": f"{base}/status/{name}",
           "backup_files": [f"{base}/etc/{name}-backup.json"],
           "database": {"engine": engine, "name": name, "owner": name},
           "cert_name": name, "tls_dir": f"{base}/tls", "site": name,
           "check_file": str(project / "check.d" / f"{name}.json"), **paths}
    for key in ("home", "settings_dir", "backup_dir", "status_dir"):
        pathlib.Path(rec[key]).mkdir(parents=True, exist_ok=True)
        (pathlib.Path(rec[key]) / "kept").write_text("data\n")
    for path in rec["backup_files"] + [rec["check_file"]]:
        pathlib.Path(path).write_text("{}\n")
    (project / "records" / f"{name}.json").write_text(json.dumps(rec))
    return rec


def run(project, names, purge=(), *extra):
    # SYSTEMD_OFFLINE: systemd_service's daemon-reload warns instead of failing where systemd is not init
    env = dict(os.environ, ANSIBLE_ROLES_PATH=str(project / "roles"), ANSIBLE_RETRY_FILES_ENABLED="false",
               ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_CALLBACK_RESULT_FORMAT="json", SYSTEMD_OFFLINE="1")
    settings = {"berth_app_names": names, "berth_purge_apps": list(purge), "out": str(project),
                "berth_app_records_dir": str(project / "records"), "berth_check_dir": str(project / "check.d")}
    return subprocess.run(
        [ANSIBLE_PLAYBOOK, "-i", "localhost,", "-c", "local", str(project / "play.yml"), "-e", json.dumps(settings),
         *extra], cwd=project, env=env, capture_output=True, text=True, check=False)


def calls(project):
    path = project / "calls.txt"
    return path.read_text().splitlines() if path.exists() else []


def changed(result):
    return int(result.stdout.rsplit("changed=", 1)[1].split()[0])


def test_an_app_no_longer_listed_is_retired_once(project):
    live, old = record(project, "site"), record(project, "old", engine="postgresql")
    result = run(project, ["site"])
    assert result.returncode == 0, result.stdout + result.stderr
    # the site before the certificate it names
    assert calls(project) == ["app retire old", "backup retire old", "nginx retire old", "tls retire old"]
    assert not pathlib.Path(old["check_file"]).exists() and pathlib.Path(live["check_file"]).exists()
    assert not (project / "records" / "old.json").exists()
    assert json.loads((project / "records" / "retired" / "old.json").read_text()) == old
    assert (project / "records" / "retired").stat().st_mode & 0o777 == 0o700
    assert (project / "records" / "retired" / "old.json").stat().st_mode & 0o777 == 0o600
    # what was kept, and how to purge, on one line
    said = [line for line in result.stdout.splitlines() if "Retired old:" in line]
    assert len(said) == 1, result.stdout
    assert "database old (PostgreSQL)" in said[0] and "berth_purge_apps: [old]" in said[0]
    for key in ("home", "settings_dir", "backup_dir", "status_dir"):
        assert (pathlib.Path(old[key]) / "kept").exists(), key
    again = run(project, ["site"])
    assert again.returncode == 0 and changed(again) == 0, again.stdout
    assert len(calls(project)) == 4


def test_one_app_asked_for_retires_nothing(project):
    record(project, "site"), record(project, "old")
    result = run(project, ["site"], (), "-e", "app=site")
    assert result.returncode == 0, result.stdout + result.stderr
    assert calls(project) == [] and (project / "records" / "old.json").exists()


def test_a_retired_app_is_purged_once(project):
    live, old = record(project, "site"), record(project, "old", engine="postgresql")
    result = run(project, ["site"], ["old"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert calls(project)[-1] == "postgresql purge old"
    for key in ("home", "settings_dir", "backup_dir", "status_dir"):
        assert not pathlib.Path(old[key]).exists(), key
        assert (pathlib.Path(live[key]) / "kept").exists(), key
    assert not pathlib.Path(old["backup_files"][0]).exists()
    assert not (project / "records" / "retired" / "old.json").exists()
    assert (project / "records" / "site.json").exists()
    assert "Purged old:" in result.stdout
    again = run(project, ["site"], ["old"])
    assert again.returncode == 0 and changed(again) == 0, again.stdout
    assert "no retired app old on this host" in again.stdout
    assert calls(project)[-1] == "postgresql purge old"


def test_a_purge_never_deletes_another_apps_paths(project):
    live = record(project, "site")
    old = record(project, "old", backup_dir=live["home"] + "/backups")
    result = run(project, ["site"], ["old"])
    assert result.returncode != 0
    assert "another app's" in result.stdout and live["home"] + "/backups" in result.stdout
    assert (project / "records" / "retired" / "old.json").exists(), "retired, not purged"
    assert (pathlib.Path(old["home"]) / "kept").exists() and (pathlib.Path(live["home"]) / "kept").exists()


@pytest.fixture(name="preflight")
def run_preflight(tmp_path):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"berth": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}))
    env = dict(os.environ, ANSIBLE_RETRY_FILES_ENABLED="false")

    def preflight(settings):
        # the app's own checks fail at once (berth_database): nothing after them runs on this machine
        settings = {"berth_preflight_roles": [], "berth_database": "none", "ansible_become": False, **settings}
        return subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(inventory), str(ROOT / "playbooks" / "preflight.yml"),
                               "-e", json.dumps(settings)], cwd=ROOT, env=env, capture_output=True, text=True,
                              check=False)
    return preflight


def test_the_preflight_refuses_to_purge_an_app_still_listed(preflight):
    result = preflight({"berth_purge_apps": ["app"]})
    assert result.returncode != 0
    assert "TASK [Check the apps]" in result.stdout
    assert "berth_purge_apps: app is still an app of this host" in result.stdout
    apps = [{"berth_app_name": "shop"}]
    result = preflight({"berth_apps": apps, "berth_purge_apps": ["shop"]})
    assert "berth_purge_apps: shop is still an app of this host" in result.stdout


def test_the_preflight_lets_a_retired_app_be_purged(preflight):
    result = preflight({"berth_purge_apps": ["old"]})
    passed = result.stdout.split("TASK [Check the apps]", 1)[1].split("TASK [", 1)[0]
    assert "ok: [localhost]" in passed, result.stdout
    assert "TASK [Check the stack settings]" in result.stdout, "stopped by the test's own bad setting"
    result = preflight({"berth_purge_apps": "old"})
    assert "berth_purge_apps: a list of app names" in result.stdout


def test_the_preflight_refuses_berths_own_directories_as_app_names(preflight):
    result = preflight({"berth_app_name": "tls"})
    assert result.returncode != 0 and "the app's paths would be berth's own" in result.stdout
