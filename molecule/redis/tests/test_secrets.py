"""The secrets role on a real host, in order: the state converge left, then further runs.

Every value the host ever held is collected, and the last test searches the output of every
run (Molecule's own, logged to ansible.log, and the ones made here, -vvv and --diff included).
"""

import os

import pytest

from conftest import ansible_playbook, recap_changed

ENV_FILE = "/etc/berth/demoapp/secrets.env"
APP_VIEW = "/etc/berth/demoapp/app-secrets.env"
GENERATED = ["SECRET_KEY", "JWT_SECRET", "JWT_REFRESH_SECRET", "COOKIE_SECRET",
             "ENCRYPTION_KEY", "DATABASE_PASSWORD", "REDIS_PASSWORD"]
SMTP_PASS = 'Sm7p "pa$$ word" `x` \\ end'   # what group_vars/berth.yml encrypts

outputs = []
seen_values = set()


def environment(host, path=ENV_FILE):
    """The file as systemd reads it for a service: the contract with the app."""
    out = host.check_output(
        f"systemd-run --quiet --pipe --wait -p EnvironmentFile={path} /usr/bin/env -0")
    env = dict(item.split("=", 1) for item in out.split("\0") if "=" in item)
    secret_names = GENERATED + [n + "_PREVIOUS" for n in GENERATED] + ["SMTP_PASS", "REDIS_URL"]
    seen_values.update(env[n] for n in secret_names if n in env)
    return env


def run(*args, everything=False):
    # Only the secrets role (and the preflight, tagged always) unless the test needs base too.
    tags = [] if everything else ["--tags", "secrets"]
    code, out = ansible_playbook("converge.yml", *tags, *args)
    outputs.append(out)
    return code, out


def digest(host):
    return host.check_output(f"sha256sum {ENV_FILE}").split()[0]


def test_file_is_root_s_and_the_app_reads_its_view_only(host):
    f = host.file(ENV_FILE)
    assert (f.user, f.group, f.mode) == ("root", "root", 0o600)
    d = host.file(os.path.dirname(ENV_FILE))
    assert (d.user, d.group, d.mode) == ("root", "demoapp", 0o750)
    view = host.file(APP_VIEW)
    assert (view.user, view.group, view.mode) == ("root", "demoapp", 0o640)
    assert host.run(f"runuser -u demoapp -- cat {ENV_FILE}").rc != 0
    assert host.run(f"runuser -u demoapp -- cat {APP_VIEW}").rc == 0
    assert host.run(f"runuser -u nobody -- cat {APP_VIEW}").rc != 0


def test_the_app_s_view_is_every_value_but_nginx_s_and_the_backup_s(host):
    everything, app = environment(host), environment(host, APP_VIEW)
    names = set(host.check_output(f"sed -n 's/^\\([A-Z_]*\\)=.*/\\1/p' {ENV_FILE}").split())
    withheld = {"BASIC_AUTH_PASSWORD", "RESTIC_PASSWORD"}
    assert withheld <= names and not withheld & set(app)
    assert {n: app[n] for n in names - withheld} == {n: everything[n] for n in names - withheld}


def test_systemd_reads_every_value(host):
    env = environment(host)
    for name in GENERATED:
        assert len(env[name]) >= 43, name
    assert len(set(env[n] for n in GENERATED)) == len(GENERATED), "values are distinct"
    assert env["SMTP_PASS"] == SMTP_PASS
    assert env["REDIS_URL"] == f"unix://demoapp:{env['REDIS_PASSWORD']}@/run/redis-berth/redis-server.sock?db=0"
    assert not [n for n in env if n.endswith("_PREVIOUS")]


def assert_rerun_changes_nothing(host, everything=False):
    before = digest(host)
    code, out = run(everything=everything)
    assert code == 0 and recap_changed(out) == 0, out[-2000:]
    assert digest(host) == before


def test_rerun_changes_nothing(host):
    assert_rerun_changes_nothing(host)


def test_rotation_replaces_exactly_the_named_secrets(host):
    before = environment(host)
    code, out = run("-e", "rotate_secrets=JWT_SECRET,COOKIE_SECRET")
    assert code == 0, out[-2000:]
    after = environment(host)
    for name in ("JWT_SECRET", "COOKIE_SECRET"):
        assert after[name] != before[name]
        assert after[name + "_PREVIOUS"] == before[name]
    for name in set(GENERATED) - {"JWT_SECRET", "COOKIE_SECRET"}:
        assert after[name] == before[name], name
    assert sorted(n for n in after if n.endswith("_PREVIOUS")) == ["COOKIE_SECRET_PREVIOUS",
                                                                  "JWT_SECRET_PREVIOUS"]


def test_within_the_overlap_a_rerun_keeps_previous(host):
    assert_rerun_changes_nothing(host)
    assert "JWT_SECRET_PREVIOUS" in environment(host)


def test_after_the_overlap_previous_is_removed(host):
    before = environment(host)
    code, out = run("-e", "secrets_overlap=0")
    assert code == 0, out[-2000:]
    after = environment(host)
    assert not [n for n in after if n.endswith("_PREVIOUS")]
    assert all(after[n] == before[n] for n in GENERATED)


def test_encryption_key_previous_kept_until_retired(host):
    before = environment(host)["ENCRYPTION_KEY"]
    assert run("-e", "rotate_secrets=ENCRYPTION_KEY")[0] == 0
    # the end of every overlap does not end it: data encrypted with it may remain
    code, out = run("-e", "secrets_overlap=0")
    assert code == 0, out[-2000:]
    assert environment(host)["ENCRYPTION_KEY_PREVIOUS"] == before
    code, out = run("-e", "retire_secrets=ENCRYPTION_KEY")
    assert code == 0, out[-2000:]
    assert "ENCRYPTION_KEY_PREVIOUS" not in environment(host)


@pytest.mark.parametrize("extra,message", [
    ('{"secrets_provided": {"SMTP_PASS": "tooshort"}}', "secret SMTP_PASS is too short"),
    ('{"secrets_provided": {"SMTP_PASS": ""}}', "secret SMTP_PASS is missing or empty"),
    ('{"rotate_secrets": "JWT_SECRTE"}', "cannot rotate JWT_SECRTE: no such secret"),
])
def test_bad_input_stops_the_run_before_anything_changes(host, extra, message):
    before = digest(host)
    # base would change the time zone if the run got that far
    code, out = run("-e", extra, "-e", "base_timezone=Europe/Paris", everything=True)
    assert code != 0
    assert message in out
    assert "tooshort" not in out
    assert digest(host) == before
    assert host.check_output("timedatectl show -p Timezone --value") == "Etc/UTC"


def test_verbose_diff_rotation_of_all(host):
    before = environment(host)
    code, out = run("-vvv", "--diff", "-e", "rotate_secrets=all")
    assert code == 0, out[-2000:]
    after = environment(host)
    rotated = [n for n in GENERATED if n != "ENCRYPTION_KEY"]
    assert all(after[n] != before[n] and after[n + "_PREVIOUS"] == before[n] for n in rotated)
    # not part of all: it is rotated only when named
    assert after["ENCRYPTION_KEY"] == before["ENCRYPTION_KEY"] and "ENCRYPTION_KEY_PREVIOUS" not in after
    assert after["SMTP_PASS"] == SMTP_PASS


def test_second_rotation_within_the_overlap_refused(host):
    before = digest(host)
    code, out = run("-e", "rotate_secrets=JWT_SECRET")
    assert code != 0
    assert "cannot rotate JWT_SECRET again before its overlap ends" in out, out[-3000:]
    assert "secrets_rotate_force=true" in out
    assert digest(host) == before


def test_import_replaces_other_secrets_only_when_forced(host, ephemeral_dir):
    def playbook(name, *args):
        code, out = ansible_playbook(f"../../playbooks/{name}", *args)
        outputs.append(out)
        return code, out

    environment(host)
    exported = os.path.join(ephemeral_dir, "secrets-backup", f"{host.backend.hostname}.env.vault")
    assert playbook("secrets-export.yml", "-e", f"secrets_export_dir={os.path.dirname(exported)}")[0] == 0
    before = digest(host)
    code, out = playbook("secrets-import.yml", "-e", f"secrets_import_file={exported}")
    assert code == 0 and recap_changed(out) == 0, out[-3000:]   # the same secrets: nothing to do
    assert run("-e", "rotate_secrets=JWT_SECRET", "-e", "secrets_rotate_force=true")[0] == 0
    environment(host)
    rotated = digest(host)
    code, out = playbook("secrets-import.yml", "-e", f"secrets_import_file={exported}")
    assert code != 0 and "secrets_import_force=true" in out, out[-3000:]
    assert digest(host) == rotated
    code, out = playbook("secrets-import.yml", "-e", f"secrets_import_file={exported}", "-e", "secrets_import_force=true")
    assert code == 0, out[-3000:]
    assert digest(host) == before
    kept = host.check_output(f"ls {ENV_FILE}.*~").split()
    assert [host.check_output(f"sha256sum {path}").split()[0] for path in kept] == [rotated]
    assert host.check_output(f"stat -c %a {kept[0]}") == "600"
    assert environment(host, APP_VIEW)["JWT_SECRET"] == environment(host)["JWT_SECRET"], "the view follows"


def test_no_value_appears_in_any_output(host, ephemeral_dir):
    environment(host)
    with open(os.path.join(ephemeral_dir, "ansible.log"), encoding="utf-8") as fh:
        logged = fh.read()
    assert "PLAY RECAP" in logged, "Molecule's runs were logged"
    texts = outputs + [logged]
    assert len(outputs) >= 8
    for value in seen_values:
        for text in texts:
            assert value not in text, "a secret value was printed"
