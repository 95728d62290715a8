"""The app role on a real host, in order: the release converge left, then a second release (from
a git repository and a wheelhouse, with PyPI unreachable) under a steady request loop, a broken
release, rollbacks, a secret rotation, a wheel source and the pruning of old releases. Runs of
playbooks/deploy.yml, rollback.yml and converge.yml are made by the tests, as an operator would
make them."""

import contextlib
import json
import os
import re
import shutil
import subprocess
import zipfile

import pytest

from conftest import ansible_playbook, break_readiness, exposure, recap_changed

APP = "demoapp"
HOME = f"/srv/{APP}"
SOCKET = f"/run/{APP}/{APP}.sock"
APP_ENV = f"/etc/berth/{APP}/app.env"
EXAMPLE = os.path.join(os.environ.get("MOLECULE_PROJECT_DIRECTORY", "."), "examples", "app")
UNITS = [f"{APP}.service", f"{APP}-worker-echo.service", f"{APP}-timer-migrate.service"]
# What one request of the loop prints: the body of /api/version, then the status code.
ANSWER = re.compile(r'^\{"release":"([0-9a-f]{12})"\} 200$')
# The request loop, run on the host as a transient unit: a request every ~0.2 s (paced: each
# curl costs CPU the deploy under test needs), until told to stop and at least MIN requests were
# made; one line per request (and one per curl error).
LOOP = r"""
rm -f /root/load.log /root/load.stop
n=0
while [ ! -e /root/load.stop ] || [ $n -lt "$1" ]; do
  curl -sS --max-time 30 --unix-socket {socket} -w ' %{{http_code}}\n' \
    http://localhost/api/version >>/root/load.log 2>&1
  n=$((n + 1))
  sleep 0.2
done
""".format(socket=SOCKET)

releases = {}   # name -> release id, as the tests learn them


def request(host, path, user="root", data=None):
    """GET (or POST data, JSON) through the socket, as `user`: (status, decoded JSON body)."""
    post = f"-H 'Content-Type: application/json' --data '{data}' " if data else ""
    out = host.check_output(
        f"runuser -u {user} -- curl -sS --max-time 30 --unix-socket {SOCKET} {post}"
        f"-w '\\n%{{http_code}}' http://localhost{path}")
    body, status = out.rsplit("\n", 1)
    return int(status), json.loads(body)


def link(host, name):
    return host.check_output(f"readlink {HOME}/{name}")


def release_ids(host):
    return set(host.check_output(f"ls {HOME}/releases").split())


def main_pid(host):
    return int(host.check_output(f"systemctl show -p MainPID --value {APP}.service"))


def environ(host, pid):
    raw = host.check_output(f"tr '\\0' '\\n' < /proc/{pid}/environ")
    return dict(line.split("=", 1) for line in raw.splitlines() if "=" in line)


def source_copy(ephemeral_dir, name, edit):
    """A copy of examples/app on the controller, changed by edit(path): a new release."""
    path = os.path.join(ephemeral_dir, name)
    shutil.rmtree(path, ignore_errors=True)
    shutil.copytree(EXAMPLE, path, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    edit(path)
    return path


def deploy(*args):
    return ansible_playbook("../../playbooks/deploy.yml", *args)


def append(path, text):
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(text)


@contextlib.contextmanager
def request_loop(host, minimum):
    """Requests through the socket, one after another, while the body runs; the result holds
    the number of requests, the failed ones (refused, reset, timed out, not 200) and the
    releases that answered."""
    host.run("cat > /root/load.sh <<'EOF'\n" + LOOP + "EOF")
    host.check_output(f"systemd-run --quiet --collect --unit=berth-test-load /bin/sh /root/load.sh {minimum}")
    result = {}
    try:
        yield result
    finally:
        host.run("touch /root/load.stop; "
                 "while systemctl is-active -q berth-test-load; do sleep 0.2; done")
        lines = host.file("/root/load.log").content_string.splitlines()
        answers = [ANSWER.match(line) for line in lines]
        result["requests"] = sum(1 for line in lines if re.search(r" \d{3}$", line))
        result["failed"] = [line for line, answer in zip(lines, answers) if not answer]
        result["releases"] = {answer.group(1) for answer in answers if answer}
        print(f"request loop: {result['requests']} requests, {len(result['failed'])} failed, "
              f"releases {sorted(result['releases'])}")


# --- the release converge left --------------------------------------------------------------

def test_ready_through_the_socket(host):
    releases["first"] = link(host, "current").removeprefix("releases/")
    status, body = request(host, "/health/ready")
    assert status == 200, body
    assert body["checks"] == {"database": "ok", "redis": "ok"}
    assert body["release"] == releases["first"]


def test_socket_is_for_nginx_only(host):
    sock = host.file(SOCKET)
    assert sock.is_socket
    assert (sock.user, sock.group, sock.mode) == ("root", "www-data", 0o660)
    assert request(host, "/health/live", user="www-data")[0] == 200
    refused = host.run(f"runuser -u nobody -- curl -sS --unix-socket {SOCKET} http://localhost/health/live")
    assert refused.rc == 7, refused.stderr   # connect(2): permission denied


def test_websocket_echo_through_the_socket(host):
    script = (
        "from websockets.sync.client import unix_connect\n"
        f"with unix_connect('{SOCKET}', 'ws://localhost/ws/echo') as ws:\n"
        "    ws.send('hello berth'); print(ws.recv())\n"
        "    ws.send(bytes([0, 1, 2])); print(list(ws.recv()))\n")
    out = host.check_output(f"{HOME}/current/venv/bin/python - <<'EOF'\n{script}EOF")
    assert out.splitlines() == ["hello berth", "[0, 1, 2]"]


def test_release_is_read_only_for_the_app(host):
    release = f"{HOME}/releases/{releases['first']}"
    assert host.file(f"{HOME}/current").linked_to == release
    assert host.file(f"{release}/.berth/release.env").content_string == f"APP_RELEASE={releases['first']}\n"
    assert host.file(f"{release}/venv/bin/gunicorn").exists
    assert host.file(f"{release}/berth_demo/__pycache__").is_directory, "compiled at build time"
    assert not host.file(f"{release}/.berth/wheelhouse").exists
    assert host.file(f"{release}/berth_demo/app.py").user == "root"
    assert host.run(f"runuser -u {APP} -- touch {release}/berth_demo/x.py").rc != 0
    # nginx (www-data) reads the static files through `current`, and nothing else of the release
    assert host.run(f"runuser -u www-data -- cat {HOME}/current/static/index.html").rc == 0
    for account in ("www-data", "nobody"):
        assert host.run(f"runuser -u {account} -- cat {release}/berth_demo/app.py").rc != 0
        assert host.run(f"runuser -u {account} -- ls {release}/venv").rc != 0
    assert host.run(f"runuser -u {APP} -- cat {release}/berth_demo/app.py").rc == 0
    # pip and the build ran as the unprivileged build account, not as root
    assert host.file(f"{release}/.berth/built-by").content_string == f"{APP}-build\n"


def test_service_runs_as_the_app_with_its_settings(host):
    pid = main_pid(host)
    assert host.process.get(pid=pid).user == APP
    workers = host.check_output(f"pgrep -c -P {pid}")
    assert workers == "3"
    env = environ(host, pid)
    assert env["APP_RELEASE"] == releases["first"]
    assert env["LOG_LEVEL"] == "INFO"
    assert env["CORS_ORIGINS"] == "https://app.example.com"
    assert env["BERTH_TEST_VALUE"] == 'a "quoted" \\path $HOME and spaces'
    assert env["DATABASE_URL"] == f"sqlite:////srv/{APP}/data/{APP}.sqlite3"
    assert env["REDIS_URL"].startswith(f"unix://{APP}:")
    # the app's view of the secrets: nginx's and the backup's passwords are not the app's
    assert "JWT_SECRET" in env and "BASIC_AUTH_PASSWORD" not in env and "RESTIC_PASSWORD" not in env
    assert host.run(f"runuser -u {APP} -- cat /etc/berth/{APP}/secrets.env").rc != 0
    view = host.run(f"runuser -u {APP} -- cat /etc/berth/{APP}/app-secrets.env")
    assert view.rc == 0 and "JWT_SECRET=" in view.stdout and "BASIC_AUTH_PASSWORD" not in view.stdout
    f = host.file(APP_ENV)
    assert (f.user, f.group, f.mode) == ("root", APP, 0o640)


@pytest.mark.parametrize("unit", UNITS)
def test_exposure_at_most_2(host, unit):
    level = exposure(host, unit)
    print(f"systemd-analyze security {unit}: {level}")
    assert level <= 2.0


def test_app_writes_its_data_and_nothing_else(host):
    # inside the running service's own mount namespace (ProtectSystem=strict, ProtectHome)
    def inside(script):
        return host.run(f"nsenter --target {main_pid(host)} --mount sh -c '{script}'")
    assert inside(f"touch /srv/{APP}/data/probe && rm /srv/{APP}/data/probe").rc == 0
    for path in (f"{HOME}/current/probe", "/usr/local/probe", "/etc/probe"):
        result = inside(f"touch {path}")
        assert result.rc != 0 and "Read-only file system" in result.stderr, path
    assert host.check_output("ls -A /root") != ""
    assert inside("ls -A /root").stdout.strip() == "", "ProtectHome hides /root"
    status, note = request(host, "/api/notes", data='{"text": "hello from the test"}')
    assert status == 201 and note["text"] == "hello from the test"


def test_worker_runs_the_current_release(host):
    assert host.service(f"{APP}-worker-echo").is_running
    log = host.check_output(f"journalctl -u {APP}-worker-echo --no-pager -o cat")
    assert f"worker {releases['first']} {HOME}/releases/{releases['first']}" in log


def test_timer_is_scheduled_and_its_job_runs(host):
    assert host.service(f"{APP}-timer-migrate.timer").is_running
    assert host.service(f"{APP}-timer-migrate.timer").is_enabled
    host.check_output(f"systemctl start {APP}-timer-migrate.service")
    log = host.check_output(f"journalctl -u {APP}-timer-migrate.service --no-pager -o cat")
    assert "berth_demo: schema up to date" in log


def test_bad_source_stops_before_anything_changes(host):
    before = link(host, "current")
    code, out = deploy("-e", "app_source_dir=/nonexistent/app")
    assert code != 0
    assert "app_source_type 'dir' needs" in out
    assert link(host, "current") == before


# A request whose body is still on its way when the restart begins: it must be answered.
IN_FLIGHT = r"""
import socket, subprocess, time
body = b'{"text": "in flight across a restart"}'
s = socket.socket(socket.AF_UNIX)
s.connect("SOCKET")
s.sendall(b"POST /api/notes HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
          b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body[:10])
time.sleep(0.5)
subprocess.run(["systemctl", "restart", "--no-block", "APP.service"], check=True)
time.sleep(2)
s.sendall(body[10:])
print(s.makefile("rb").readline().decode().strip())
""".replace("SOCKET", SOCKET).replace("APP", APP)


def test_request_in_flight_finishes_across_a_restart(host):
    pid = main_pid(host)
    out = host.check_output(f"python3 - <<'EOF'\n{IN_FLIGHT}EOF")
    assert out == "HTTP/1.1 201 Created"
    host.run(f"while ! systemctl is-active -q {APP}.service; do sleep 0.2; done")
    assert main_pid(host) != pid
    assert request(host, "/health/ready")[0] == 200


# --- a second release: wheelhouse, no PyPI, under load --------------------------------------

def git_repository(ephemeral_dir, name, edit):
    """A git repository on the controller holding a changed copy of examples/app, committed."""
    repo = source_copy(ephemeral_dir, name, edit)
    git = ["git", "-C", repo, "-c", "user.name=berth", "-c", "user.email=berth@example.com"]
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "release"]):
        subprocess.run(git + args, check=True)
    return repo


def second_release(path):
    append(os.path.join(path, "static", "index.html"), "<!-- second release -->\n")
    append(os.path.join(path, "GIT_SOURCE"), "yes\n")


# From a git repository: one build covers the git source, the wheelhouse and the switch.
def test_second_release_from_git_without_downtime(host, ephemeral_dir):
    repo = git_repository(ephemeral_dir, "second", second_release)
    old_pid = main_pid(host)
    # Any index pip might try is closed: the release installs from its wheelhouse only.
    host.run("printf '[global]\\nindex-url = http://127.0.0.1:9/simple\\n' > /etc/pip.conf")
    try:
        with request_loop(host, 300) as load:
            code, out = deploy("-e", "app_source_type=git", "-e", f"app_source_git_url=file://{repo}",
                               "-e", "app_source_git_ref=main")
    finally:
        host.run("rm -f /etc/pip.conf")
    assert code == 0, out[-3000:]
    releases["second"] = link(host, "current").removeprefix("releases/")
    assert releases["second"] != releases["first"]
    assert link(host, "previous") == f"releases/{releases['first']}"
    assert {releases["first"], releases["second"]} <= release_ids(host)
    assert main_pid(host) != old_pid
    assert request(host, "/api/version")[1]["release"] == releases["second"]
    assert "second release" in host.file(f"{HOME}/current/static/index.html").content_string
    assert host.file(f"{HOME}/current/GIT_SOURCE").exists
    # the steady loop spanned the switch, and nobody saw a refusal or an error
    assert load["requests"] >= 300
    assert load["releases"] == {releases["first"], releases["second"]}
    assert load["failed"] == [], load["failed"][:10]


def test_releases_of_the_same_requirements_share_their_venv(host):
    first = host.file(f"{HOME}/releases/{releases['first']}/venv")
    second = host.file(f"{HOME}/releases/{releases['second']}/venv")
    assert first.is_symlink and second.is_symlink
    assert first.linked_to == second.linked_to, "the second release built no venv of its own"
    venv = first.linked_to
    assert venv.startswith(f"{HOME}/venvs/")
    # built where it stays: its scripts name its own interpreter
    assert host.file(f"{venv}/bin/gunicorn").content_string.splitlines()[0] == f"#!{venv}/bin/python3"
    assert (host.file(venv).user, host.file(venv).group, host.file(venv).mode) == ("root", APP, 0o750)
    assert host.run(f"runuser -u {APP} -- touch {venv}/bin/x").rc != 0


def test_workers_moved_to_the_second_release(host):
    env = environ(host, host.check_output(f"systemctl show -p MainPID --value {APP}-worker-echo"))
    assert env["APP_RELEASE"] == releases["second"]


# --- a broken release -----------------------------------------------------------------------

def test_broken_release_fails_and_the_previous_keeps_serving(host, ephemeral_dir):
    broken = source_copy(ephemeral_dir, "broken", break_readiness)
    with request_loop(host, 100) as load:
        code, out = deploy("-e", f"app_source_dir={broken}", "-e", "app_health_timeout=10")
    assert code != 0
    assert "was not activated" in out
    assert "/health/ready did not answer 200 within 10 s" in out
    assert "HTTP 503" in out
    assert f"Switched back to release {releases['second']}, which is ready." in out
    # the new release's last log lines name the cause
    assert "deliberately broken release" in out
    assert link(host, "current") == f"releases/{releases['second']}"
    assert link(host, "previous") == f"releases/{releases['first']}"
    status, body = request(host, "/health/ready")
    assert status == 200 and body["release"] == releases["second"]
    releases["broken"] = (release_ids(host) - {releases["first"], releases["second"]}).pop()
    # every request was answered, by the old release or (during its check) the broken one
    assert load["failed"] == [], load["failed"][:10]
    assert releases["second"] in load["releases"]


def test_settings_that_stop_the_app_are_undone(host):
    # a setting the app refuses at start-up (its LOG_LEVEL check): the run fails, the release
    # that was live comes back with the settings and units it ran with, and keeps serving
    live, settings = link(host, "current"), host.file(APP_ENV).content_string
    unit = host.file(f"/etc/systemd/system/{APP}.service").content_string
    code, out = deploy("-e", '{"app_environment": {"LOG_LEVEL": "LOUD"}}', "-e", "app_health_timeout=10")
    assert code != 0
    assert "LOG_LEVEL must be one of" in out   # the app's own words, from its log
    assert "previous settings" in out
    assert link(host, "current") == live
    assert host.file(APP_ENV).content_string == settings
    assert host.file(f"/etc/systemd/system/{APP}.service").content_string == unit
    assert not host.run(f"ls /etc/berth/{APP}/*~ /etc/systemd/system/{APP}*~").stdout.strip()
    assert request(host, "/health/ready")[0] == 200


# --- rollbacks ------------------------------------------------------------------------------

def test_rollback_playbook(host):
    with request_loop(host, 100) as load:
        code, out = ansible_playbook("../../playbooks/rollback.yml")
    assert code == 0, out[-3000:]
    assert link(host, "current") == f"releases/{releases['first']}"
    assert link(host, "previous") == f"releases/{releases['second']}"
    assert request(host, "/api/version")[1]["release"] == releases["first"]
    assert load["failed"] == [], load["failed"][:10]
    assert load["releases"] == {releases["first"], releases["second"]}


def test_rollback_again_returns(host):
    code, out = ansible_playbook("../../playbooks/rollback.yml")
    assert code == 0, out[-3000:]
    assert link(host, "current") == f"releases/{releases['second']}"
    assert link(host, "previous") == f"releases/{releases['first']}"
    assert request(host, "/api/version")[1]["release"] == releases["second"]


# --- secrets, pruning, idempotence ----------------------------------------------------------

def test_secret_rotation_restarts_the_app(host):
    pid = main_pid(host)
    code, out = ansible_playbook("converge.yml", "--tags", "secrets", "-e", "rotate_secrets=JWT_SECRET")
    assert code == 0, out[-3000:]
    assert main_pid(host) != pid
    env = environ(host, main_pid(host))
    assert env["JWT_SECRET_PREVIOUS"] and env["JWT_SECRET"] != env["JWT_SECRET_PREVIOUS"]
    assert request(host, "/health/ready")[0] == 200


def build_wheel(directory):
    """A wheel of berth_demo, as an app's build would make it: its code, its dependencies."""
    requirements = [line.split("#")[0].strip() for line in open(
        os.path.join(EXAMPLE, "requirements.txt"), encoding="utf-8")]
    path = os.path.join(directory, "berth_demo-1.0-py3-none-any.whl")
    info = "berth_demo-1.0.dist-info"
    with zipfile.ZipFile(path, "w") as whl:
        package = os.path.join(EXAMPLE, "berth_demo")
        names = sorted(n for n in os.listdir(package) if n.endswith(".py"))
        for name in names:
            whl.write(os.path.join(package, name), f"berth_demo/{name}")
        whl.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: berth_demo\nVersion: 1.0\n"
                     + "".join(f"Requires-Dist: {r}\n" for r in requirements if r))
        whl.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: berth-test\n"
                     "Root-Is-Purelib: true\nTag: py3-none-any\n")
        whl.writestr(f"{info}/RECORD", "".join(f"berth_demo/{n},,\n" for n in names)
                     + "".join(f"{info}/{n},,\n" for n in ("METADATA", "WHEEL", "RECORD")))
    return path


def test_wheel_source(host, ephemeral_dir):
    wheel = build_wheel(ephemeral_dir)
    code, out = deploy("-e", "app_source_type=wheel", "-e", f"app_source_wheel={wheel}",
                       "-e", f"app_requirements_file={EXAMPLE}/requirements.txt")
    assert code == 0, out[-3000:]
    releases["wheel"] = link(host, "current").removeprefix("releases/")
    assert releases["wheel"] not in (releases["first"], releases["second"])
    assert host.file(f"{HOME}/current/venv/lib/python3.11/site-packages/berth_demo/app.py").exists
    assert not host.file(f"{HOME}/current/venv").is_symlink, "a wheel's venv holds the app: its own"
    assert not host.file(f"{HOME}/current/berth_demo").exists
    status, body = request(host, "/health/ready")
    assert status == 200 and body["release"] == releases["wheel"]


def test_known_release_is_switched_to_without_a_build_and_old_ones_go(host):
    code, out = deploy("-e", f"app_source_dir={EXAMPLE}", "-e", "app_keep_releases=2")
    assert code == 0, out[-3000:]
    assert "Install the dependencies" not in out, "no new build"
    assert link(host, "current") == f"releases/{releases['first']}"
    assert link(host, "previous") == f"releases/{releases['wheel']}"
    # kept: the live one and the previous one, and the one shared venv the first links to
    assert release_ids(host) == {releases["first"], releases["wheel"]}
    shared = host.file(f"{HOME}/releases/{releases['first']}/venv").linked_to
    assert host.check_output(f"ls {HOME}/venvs").split() == [os.path.basename(shared)]
    assert request(host, "/api/version")[1]["release"] == releases["first"]


def test_unchanged_source_changes_nothing(host):
    pid = main_pid(host)
    code, out = deploy()
    assert code == 0, out[-3000:]
    assert recap_changed(out) == 0, out[-3000:]
    assert main_pid(host) == pid
