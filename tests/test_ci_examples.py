"""examples/ci: what actionlint and GitLab's schema cannot know. Deploys never overlap, secrets
never reach a command line, the host key is pinned, and every path the jobs name exists."""

import pathlib
import re
import shlex

import pytest
import yaml

ROOT = pathlib.Path(__file__).parent.parent
GITHUB = ROOT / "examples" / "ci" / "github" / "deploy.yml"
GITLAB = ROOT / "examples" / "ci" / "gitlab" / ".gitlab-ci.yml"
SHA_PIN = re.compile(r"^[\w.-]+/[\w.-]+@[0-9a-f]{40}  # v\d+(\.\d+)*$")


@pytest.fixture(scope="module")
def github():
    return yaml.safe_load(GITHUB.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def gitlab():
    return yaml.safe_load(GITLAB.read_text(encoding="utf-8"))


def deploy_steps(github):
    return github["jobs"]["deploy"]["steps"]


def step_running(steps, command):
    [step] = [s for s in steps if command in s.get("run", "")]
    return step


def ssh_options(args):
    """-o NAME=VALUE pairs, in order, as ssh reads them (the first value of each wins)."""
    words = shlex.split(args)
    options = {}
    for flag, option in zip(words, words[1:]):
        if flag == "-o":
            name, _, value = option.partition("=")
            options.setdefault(name, value)
    return options


# One deploy at a time, none stopped half-way.

def test_github_deploys_wait_for_each_other(github):
    deploy = github["jobs"]["deploy"]
    assert deploy["concurrency"] == {"group": "berth-deploy-production", "cancel-in-progress": False}
    assert deploy["needs"] == "lint"
    assert deploy["environment"] == "production"
    assert "github.ref == 'refs/heads/main'" in deploy["if"]
    assert "concurrency" not in github, "a workflow-wide group would queue pull requests' lint too"


def test_gitlab_deploys_wait_for_each_other(gitlab):
    deploy = gitlab["deploy"]
    assert deploy["resource_group"] == "production"
    assert deploy["environment"]["name"] == "production"
    assert deploy["needs"] == ["lint"]
    [rule] = deploy["rules"]
    assert rule["if"].startswith("$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH &&")


# Secrets: through the environment or a file, never an argument.

def test_github_secrets_only_in_env(github):
    for job in github["jobs"].values():
        for step in job["steps"]:
            assert "secrets." not in step.get("run", ""), step
            assert "secrets." not in str(step.get("with", "")), step


def test_github_secret_variables_reach_builtins_only(github):
    """A line that expands a secret starts with a shell builtin: its value is in no process's argv."""
    builtins = ("printf ", "if [ -z ", "[ -z ", "test -n ")
    seen = 0
    for step in deploy_steps(github):
        for name, value in step.get("env", {}).items():
            if "secrets." not in str(value):
                continue
            seen += 1
            for line in step["run"].splitlines():
                if f"${name}" in line or f"${{{name}}}" in line:
                    assert line.strip().startswith(builtins), line
    assert seen == 2


def test_github_vault_password_file_is_private_and_removed(github):
    steps = deploy_steps(github)
    run = step_running(steps, "ansible-playbook")["run"]
    [path] = re.findall(r'--vault-password-file "([^"]+)"', run)
    write = step_running(steps, f'>"{path}"')["run"]
    assert write.index("umask 077") < write.index(f'>"{path}"')
    cleanup = step_running(steps, f'rm -f "{path}"')
    assert cleanup["if"] == "always()"
    assert steps.index(cleanup) == len(steps) - 1


def test_gitlab_secret_files_are_only_passed_by_path(gitlab):
    script = "\n".join(gitlab["deploy"]["script"])
    allowed = ['chmod 600 "$BERTH_SSH_PRIVATE_KEY" "$BERTH_VAULT_PASSWORD_FILE"',
               '<"$BERTH_SSH_PRIVATE_KEY"',
               '--vault-password-file "$BERTH_VAULT_PASSWORD_FILE"']
    for form in allowed:
        assert form in script
        script = script.replace(form, "")
    assert "BERTH_SSH_PRIVATE_KEY" not in script
    assert "BERTH_VAULT_PASSWORD" not in script
    assert "BERTH_VAULT_PASSWORD" not in str(gitlab["lint"])


# The host key: the pinned line is the only one trusted.

def test_github_pins_the_host_key(github):
    steps = deploy_steps(github)
    deploy = step_running(steps, "ansible-playbook")
    assert deploy["env"]["ANSIBLE_HOST_KEY_CHECKING"] == "True"
    # GitHub fills in ${{ runner.temp }}: the directory that is $RUNNER_TEMP in the steps.
    options = ssh_options(deploy["env"]["ANSIBLE_SSH_ARGS"].replace("${{ runner.temp }}", "$RUNNER_TEMP"))
    assert options["StrictHostKeyChecking"] == "yes"
    assert options["GlobalKnownHostsFile"] == "/dev/null"
    pin = options["UserKnownHostsFile"]
    written = step_running(steps, f'>"{pin}"')
    assert written["env"] == {"KNOWN_HOSTS": "${{ vars.BERTH_SSH_KNOWN_HOSTS }}"}
    assert steps.index(written) < steps.index(deploy)


def test_gitlab_pins_the_host_key(gitlab):
    variables = gitlab["deploy"]["variables"]
    assert variables["ANSIBLE_HOST_KEY_CHECKING"] == "True"
    options = ssh_options(variables["ANSIBLE_SSH_ARGS"])
    assert options["StrictHostKeyChecking"] == "yes"
    assert options["UserKnownHostsFile"] == "/dev/null"
    pin = options["GlobalKnownHostsFile"]
    assert f'printf \'%s\\n\' "$BERTH_SSH_KNOWN_HOSTS" >{pin}' in gitlab["deploy"]["script"]


@pytest.mark.parametrize("path", [GITHUB, GITLAB], ids=["github", "gitlab"])
def test_ansible_cfg_ssh_args_are_kept(path):
    """ANSIBLE_SSH_ARGS replaces ansible.cfg's ssh_args: the examples repeat them."""
    cfg = re.search(r"^ssh_args = (.*)$", (ROOT / "ansible.cfg").read_text(), re.M).group(1)
    text = path.read_text(encoding="utf-8")
    assert " ".join(text.split()).count(cfg) == 1
    assert "StrictHostKeyChecking=no" not in text


# What the jobs name exists.

def test_github_actions_are_pinned_by_commit():
    uses = [line.split("uses: ", 1)[1] for line in GITHUB.read_text().splitlines() if "uses: " in line]
    assert uses
    for action in uses:
        assert SHA_PIN.match(action), action


def playbooks_named(commands):
    return {word for command in commands for word in re.findall(r"[\w./*-]+\.yml\b", command)}


def test_every_path_the_jobs_name_exists(github, gitlab):
    dispatch = github[True]["workflow_dispatch"]["inputs"]["playbook"]   # YAML 1.1: `on` is True
    choice = gitlab["variables"]["BERTH_PLAYBOOK"]
    runs = [s.get("run", "") for job in github["jobs"].values() for s in job["steps"]]
    runs += [s.get("env", {}).get("PLAYBOOK", "") for s in deploy_steps(github)]
    scripts = gitlab["lint"]["script"] + gitlab["deploy"]["script"]
    named = playbooks_named(runs + scripts) | set(dispatch["options"]) | set(choice["options"])
    assert {"site.yml", "playbooks/deploy.yml", "playbooks/*.yml"} <= named
    for path in named:
        assert list(ROOT.glob(path)), path
    assert dispatch["default"] in dispatch["options"] and choice["value"] in choice["options"]
    # GitLab cannot hold a pipeline variable to its options: the script does.
    case = gitlab["deploy"]["script"][0]
    assert set(re.search(r" in (\S+)\)", case).group(1).split("|")) == set(choice["options"])
    for text in runs + scripts:
        for inventory in re.findall(r"-i (\S+)", text):
            assert (ROOT / inventory).is_dir(), inventory
        if "-r requirements.txt" in text:
            assert (ROOT / "requirements.txt").is_file()
