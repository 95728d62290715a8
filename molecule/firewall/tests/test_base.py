"""The base role, checked on the running host."""

import json
import re
import os
import subprocess

import pytest

SSH_KEY = os.environ.get("BERTH_SSH_KEY", "/var/lib/berth-test/ssh/id_ed25519")


def ssh(ip, *options, command="true"):
    return subprocess.run(
        ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5", *options,
         f"root@{ip}", command],
        capture_output=True, text=True, timeout=30, check=False,
    )


def test_app_user(host):
    user = host.user("demoapp")
    assert user.exists
    assert user.shell == "/usr/sbin/nologin"
    assert user.home == "/srv/demoapp"
    assert user.uid < 1000, "a system user"
    assert user.group == "demoapp"
    assert host.file("/srv/demoapp").mode == 0o751


def test_app_user_has_no_password(host):
    assert host.user("demoapp").password.startswith("!")


@pytest.mark.parametrize("pkg", ["acl", "curl", "sudo", "unattended-upgrades", "systemd-timesyncd"])
def test_packages(host, pkg):
    assert host.package(pkg).is_installed


def test_timezone(host):
    assert host.check_output("timedatectl show -p Timezone --value") == "Etc/UTC"


def test_time_sync_enabled(host):
    assert host.service("systemd-timesyncd").is_enabled


@pytest.mark.parametrize("timer", ["apt-daily.timer", "apt-daily-upgrade.timer"])
def test_update_timers_active(host, timer):
    assert host.service(timer).is_enabled
    assert host.service(timer).is_running


def test_unattended_upgrades_takes_security_only(host):
    out = host.run("unattended-upgrade --dry-run --debug 2>&1").stdout
    origins = next(line for line in out.splitlines() if line.startswith("Allowed origins are:"))
    assert "-security" in origins
    assert origins.count("origin=") == 1, origins


def test_journald_limits_in_effect(host):
    # journald itself reports the cap it enforces each time it (re)opens the journal
    log = host.check_output("journalctl -b -u systemd-journald -o cat --no-pager")
    assert "System Journal" in log
    last = [line for line in log.splitlines() if line.startswith("System Journal")][-1]
    assert re.search(r"max 123(\.0)?M,", last), last


@pytest.mark.parametrize("setting", [
    "passwordauthentication no",
    "kbdinteractiveauthentication no",
    "permitemptypasswords no",
    "permitrootlogin without-password",
    "pubkeyauthentication yes",
    "maxauthtries 6",
    "x11forwarding no",
    "allowtcpforwarding no",
    "maxsessions 2",
    "loglevel VERBOSE",
    "compression no",
    "tcpkeepalive no",
])
def test_sshd_effective_settings(host, setting):
    assert setting in host.check_output("sshd -T").splitlines()


def test_key_login_still_works(ip):
    result = ssh(ip, "-i", SSH_KEY, command="id -u")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"


def test_password_login_refused(ip):
    result = ssh(ip, "-o", "PreferredAuthentications=password,keyboard-interactive",
                 "-o", "PubkeyAuthentication=no")
    assert result.returncode != 0
    assert "Permission denied (publickey)" in result.stderr, result.stderr


def test_guard_left_passwords_on_without_a_key(host):
    # recorded by side_effect.yml while the login user had no key
    settings = host.file("/root/sshd-nokey.txt").content_string.splitlines()
    assert "passwordauthentication yes" in settings


def test_machine_kernel_untouched(ephemeral_dir):
    with open(os.path.join(ephemeral_dir, "sysctl-before.json"), encoding="utf-8") as fh:
        before = json.load(fh)
    for key, value in before.items():
        with open("/proc/sys/" + key.replace(".", "/"), encoding="utf-8") as fh:
            assert fh.read().strip() == value, key


def test_core_dumps_refused(host):
    # a new login session (PAM limits) gets a hard limit of 0 and cannot raise it
    assert host.check_output("su -s /bin/sh -c 'ulimit -H -c' nobody") == "0"
    assert host.run("su -s /bin/sh -c 'ulimit -c 1024' nobody").rc != 0


def test_new_password_uses_the_rounds(host):
    # chpasswd hashes with SHA-crypt when asked and takes the rounds from login.defs
    host.check_output("useradd -M berth-rounds-probe && echo 'berth-rounds-probe:x-Probe-1' | chpasswd -c SHA512")
    try:
        entry = host.check_output("getent shadow berth-rounds-probe")
        assert "$6$rounds=65536$" in entry.split(":")[1]
    finally:
        host.run("userdel berth-rounds-probe")


def test_needrestart_never_restarts(host):
    # the configuration as needrestart itself loads it (its main file includes conf.d/)
    out = host.check_output(
        "perl -e 'our %nrconf; do \"/etc/needrestart/needrestart.conf\"; print $nrconf{restart}'")
    assert out == "l", out


def test_login_sessions_get_a_private_tmpdir(host):
    uid = host.check_output("id -u nobody")
    assert host.check_output("su -s /bin/sh -c 'echo $TMPDIR' nobody") == f"/tmp/user/{uid}"


@pytest.mark.parametrize("pkg", ["debsums", "apt-show-versions"])
def test_audit_tools(host, pkg):
    assert host.package(pkg).is_installed


def test_login_banner(host):
    assert "Authorised access only" in host.check_output("cat /etc/issue.net")


@pytest.mark.parametrize("module", ["usb-storage", "uas", "firewire-core", "firewire-ohci", "firewire-sbp2"])
def test_storage_modules_never_load(host, module):
    conf = host.file("/etc/modprobe.d/berth-storage.conf").content_string
    assert f"install {module} /bin/false" in conf.splitlines()
    if host.exists("modprobe"):   # kmod: a real host has it, the test images do not
        # what modprobe would run for the module: /bin/false, not an insmod
        assert host.check_output(f"modprobe -n -v {module}").split() == ["install", "/bin/false"]


def test_new_account_gets_password_ageing_and_umask(host):
    host.check_output("useradd -m -s /bin/sh berth-login-probe")
    try:
        ageing = host.check_output("chage -l berth-login-probe")
        assert re.search(r"^Minimum number of days between password change\s*:\s*1$", ageing, re.M), ageing
        assert re.search(r"^Password expires\s*:\s*never$", ageing, re.M), "no lock-out of key-only accounts"
        if host.system_info.release.split(".")[0] == "12":
            # Debian 12's PAM has no pam_umask: UMASK gives the new home its mode
            assert host.file("/home/berth-login-probe").mode == 0o750
        else:
            # pam_umask at login; nobody's group is not its own, so 027 as written
            assert host.check_output("su -s /bin/sh -c umask nobody") == "0027"
    finally:
        host.run("userdel -r berth-login-probe")


def test_weak_password_refused(host):
    # a person changing their own password: passwdqc refuses one of a single character class
    # (pam_unix's own check takes it: 10 letters), takes a passphrase
    user = "berth-qc-probe"
    host.check_output(f"useradd -M -s /bin/sh {user} && echo '{user}:Orig-Pass-4-Probe!' | chpasswd"
                      f" && chage -m 0 {user}")   # ageing's minimum would refuse any change today
    change = "printf '%s\\n' 'Orig-Pass-4-Probe!' {new} {new} {new} {new} | su -s /bin/sh -c passwd " + user
    try:
        assert host.run(change.format(new="qwzkxmvptr")).rc != 0
        assert host.run(change.format(new="horse-Battery-staple-9-x")).rc == 0
    finally:
        host.run(f"userdel -f {user}")   # -f: su's session may still hold a process of it


def test_idle_login_shells_time_out(host):
    assert host.check_output("bash -l -c 'echo $TMOUT'") == "900"
    assert host.run("bash -l -c 'unset TMOUT'").rc != 0, "TMOUT is read-only"


def test_systemd_coredump_keeps_none(host):
    # the configuration as systemd-coredump reads it, drop-ins included
    config = host.check_output("systemd-analyze cat-config systemd/coredump.conf").splitlines()
    assert "Storage=none" in config
    assert "ProcessSizeMax=0" in config
