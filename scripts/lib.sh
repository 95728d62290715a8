# shellcheck shell=bash
# Shared by scripts/test, scripts/demo and scripts/build-test-image: one place that knows how to
# turn a fresh Debian 12 machine (root) into a berth test bed. Sourced, never run.
set -euo pipefail

BERTH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Machine-wide state shared by every clone: images, the .deb cache, the test SSH key, venvs.
BERTH_STATE=${BERTH_STATE:-/var/lib/berth-test}
export BERTH_ROOT BERTH_STATE

# Debian packages the controller needs; checked first so a warm machine skips apt entirely.
# The shellcheck package: actionlint checks the examples' run: scripts with it (skips them without).
BERTH_APT_PACKAGES=(podman runc mmdebstrap apt-cacher-ng python3-venv openssh-client curl rsync git pebble openssl
  redis-server postgresql wrk testssl.sh restic rclone shellcheck)
# Where test hosts find the .deb cache: the podman network's gateway, i.e. this machine.
BERTH_APT_PROXY_HOST=10.88.0.1
BERTH_APT_PROXY_PORT=3142
export BERTH_APT_PROXY_HOST BERTH_APT_PROXY_PORT

# Logs of the tools read as plain text.
export NO_COLOR=1 PY_COLORS=0 ANSIBLE_FORCE_COLOR=0 ANSIBLE_NOCOLOR=1

log() { printf '[berth] %s\n' "$*" >&2; }
die() { printf '[berth] error: %s\n' "$*" >&2; exit 1; }

ensure_apt_packages() {
  local missing=() p
  for p in "${BERTH_APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || die "run as root: apt must install ${missing[*]}"
  log "apt: installing ${missing[*]}"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}

# The venv is keyed by requirements.txt, so clones share it and a changed pin builds a new one.
ensure_venv() {
  local key
  key=$(sha256sum "$BERTH_ROOT/requirements.txt" | cut -c1-12)
  BERTH_VENV=${BERTH_VENV:-$BERTH_STATE/venv-$key}
  # .complete is written last: an interrupted install is redone, never half-used
  if [ ! -f "$BERTH_VENV/.complete" ]; then
    log "venv: creating $BERTH_VENV"
    rm -rf "$BERTH_VENV"
    /usr/bin/python3 -m venv "$BERTH_VENV"
    "$BERTH_VENV/bin/pip" install -q --disable-pip-version-check -r "$BERTH_ROOT/requirements.txt" \
      >"$BERTH_STATE/log/pip.log" 2>&1 || die "pip install failed: see $BERTH_STATE/log/pip.log"
    touch "$BERTH_VENV/.complete"
  fi
  export PATH="$BERTH_VENV/bin:$PATH" VIRTUAL_ENV="$BERTH_VENV"
}

# One apt-cacher-ng for every test host (images point apt at it): a package is downloaded once
# per machine, not once per container, and concurrent installs do not fight over one lock.
# It listens on all addresses because the podman bridge only exists while a container runs.
ensure_apt_proxy() {
  local pidfile=$BERTH_STATE/apt-cacher-ng.pid
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then return 0; fi
  mkdir -p "$BERTH_STATE/apt-cache" "$BERTH_STATE/log" "$BERTH_STATE/acng"
  # Our own config, without Debian's remaps to mirrors this machine cannot reach: each file is
  # fetched from the host its URL names (the mirror the test images use) and cached.
  cat >"$BERTH_STATE/acng/acng.conf" <<CONF
CacheDir: $BERTH_STATE/apt-cache
LogDir: $BERTH_STATE/log
SupportDir: /usr/lib/apt-cacher-ng
PidFile: $pidfile
Port: $BERTH_APT_PROXY_PORT
BindAddress: 0.0.0.0
ExThreshold: 4
CONF
  /usr/sbin/apt-cacher-ng -c "$BERTH_STATE/acng"
  for _ in $(seq 50); do
    curl -s -o /dev/null "http://127.0.0.1:$BERTH_APT_PROXY_PORT/" && return 0
    sleep 0.1
  done
  die "apt-cacher-ng did not start (see $BERTH_STATE/log)"
}

# Test hosts get what a VPS provider gives: root's authorized key (the harness key, read-only).
ensure_testbed() {
  ensure_apt_proxy
  mkdir -p "$BERTH_STATE/ssh"
  chmod 0700 "$BERTH_STATE/ssh"
  [ -f "$BERTH_STATE/ssh/id_ed25519" ] ||
    ssh-keygen -q -t ed25519 -N '' -C berth-test -f "$BERTH_STATE/ssh/id_ed25519"
  install -m 0600 "$BERTH_STATE/ssh/id_ed25519.pub" "$BERTH_STATE/ssh/authorized_keys"
  # podman reads this instead of /etc/containers/containers.conf: the machine's own config stays
  # untouched. runc and the ulimits are what make containers start on this VM (docs/TESTING.md).
  cat >"$BERTH_STATE/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
volumes = [
  "$BERTH_STATE/ssh/authorized_keys:/root/.ssh/authorized_keys:ro",
]

[engine]
runtime = "runc"
CONF
  export CONTAINERS_CONF="$BERTH_STATE/containers.conf"
  export BERTH_SSH_KEY="$BERTH_STATE/ssh/id_ed25519"
}

setup_controller() {
  ensure_apt_packages
  mkdir -p "$BERTH_STATE/log"
  ensure_venv
  ensure_testbed
}

# start_test_host NAME IP [12|13]: a systemd test host with its own address on the podman
# network, reached over SSH like a VPS (an existing one is started, not re-created).
start_test_host() {
  local name=$1 ip=$2 version=${3:-12}
  # A host podman cannot start again (seen once: stuck in "stopping" after a `podman stop`) is
  # replaced: a test host holds nothing a converge cannot rebuild.
  if podman container exists "$name" && ! podman start "$name" >/dev/null 2>&1; then
    log "$name cannot start ($(podman inspect -f '{{.State.Status}}' "$name")): a new one replaces it"
    podman rm -f "$name" >/dev/null
  fi
  if ! podman container exists "$name"; then
    # privileged: the stack's own sandboxed units and its firewall need it (docs/TESTING.md)
    podman run -d --name "$name" --hostname "$name" --ip "$ip" --privileged --systemd=always \
      "localhost/berth-debian$version" /sbin/init >/dev/null
  fi
  for _ in $(seq 60); do
    ssh -q -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
      -o ConnectTimeout=2 -i "$BERTH_SSH_KEY" "root@$ip" true 2>/dev/null && return 0
    sleep 1
  done
  die "no SSH on $name ($ip) after 60 s"
}

# ratio A B: A / B, two decimals.
ratio() {
  awk "BEGIN {printf \"%.2f\", $1 / $2}"
}

# host_inventory FILE NAME IP: an inventory of the test host NAME at IP in the group berth,
# reached over SSH as root with the test bed's key (host keys not kept: hosts are replaced).
host_inventory() {
  cat >"$1" <<EOF
berth:
  hosts:
    $2:
      ansible_host: $3
      ansible_user: root
      ansible_ssh_private_key_file: $BERTH_SSH_KEY
      ansible_ssh_common_args: -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
      ansible_host_key_checking: false
EOF
}

# bench_host_inventory DIR NAME IP: that inventory in DIR with the demo's settings (Pebble, the
# wheelhouse), as scripts/bench and bench-compare use it.
bench_host_inventory() {
  mkdir -p "$1"
  ln -sfn "$BERTH_ROOT/inventories/local/group_vars" "$1/group_vars"
  host_inventory "$1/hosts.yml" "$2" "$3"
}

# bench_release DIR MARK: in DIR a release that differs from any converged one: the reference
# app with MARK in its page.
bench_release() {
  rm -rf "$1"
  cp -r "$BERTH_ROOT/examples/app" "$1"
  printf '<!-- bench %s -->\n' "$2" >>"$1/static/index.html"
}

# median N...: the median of the numbers given.
median() {
  printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'
}
