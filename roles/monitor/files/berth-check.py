#!/usr/bin/python3
"""berth-check: the host's periodic checks, each problem told once when it starts and once when
it is resolved, by mail (the host's sendmail) and by webhook.

CONFIG holds the host's settings; each app's (its site, its backup) is a file APP.json of its
apps_dir, and that app's problems carry its name (health:APP).

    berth-check [-c CONFIG] run     check, tell what changed, deliver what is still owed
    berth-check [-c CONFIG] status  print the problems of the last run (no alert)

The state file keeps the open problems and an outbox: a message the relay or the webhook refused
is tried again at the next run, never told twice. Standard library only.
"""

import argparse
import fnmatch
import json
import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import email.policy
from email.message import EmailMessage
from pathlib import Path

CONFIG = "/etc/berth/check.json"
OUTBOX_LIMIT = 200


def log(message: str) -> None:
    print(message, flush=True)


# --- the apps: one file each --------------------------------------------------------------------

# the checks of one app; their problem keys are KIND:APP[:MORE]
APP_KINDS = ("health", "certificate", "backup", "backup-remote", "backup-check")


def app_key(kind: str, app: dict, *more: str) -> str:
    """An app's problem key: KIND:APP[:MORE], or KIND[:MORE] for the app of an older check.json."""
    return ":".join([kind, *([app["name"]] if app.get("name") else []), *more])


def app_of(problem: str) -> str | None:
    """The app a problem key belongs to ("" : an older check.json's), None for the host's."""
    kind, _, rest = problem.partition(":")
    if kind not in APP_KINDS:
        return None
    if kind in ("health", "certificate", "backup"):
        return rest
    app, named, _ = rest.partition(":")   # backup-remote:APP:REMOTE, or backup-remote:REMOTE
    return app if named else ""


def load_apps(cfg: dict) -> tuple[list[dict], dict[str, str]]:
    """Each app's settings: every APP.json of apps_dir (sorted). A file that does not read is a
    problem (config:FILE) and its app goes unchecked. An older check.json's own health and backup
    are an app named "" (its keys unprefixed), until the role rewrites it."""
    apps, problems = [], {}
    if cfg.get("health") or cfg.get("backup"):
        apps.append({"name": "", "health": cfg.get("health"), "backup": cfg.get("backup")})
    if not cfg.get("apps_dir"):
        return apps, problems
    directory = Path(cfg["apps_dir"])
    try:
        paths = sorted(p for p in directory.iterdir() if p.suffix == ".json" and not p.name.startswith("."))
    except FileNotFoundError:
        return apps, problems
    except OSError as err:
        return apps, {f"config:{directory.name}": f"{directory}: {type(err).__name__}: {err}; no app checked"}
    for path in paths:
        try:
            app = json.loads(path.read_text())
            if not isinstance(app, dict):
                raise ValueError("not a JSON object")
            for name, kind in (("health", dict), ("backup", dict), ("ignore_units", list)):
                if not isinstance(app.get(name, kind()), kind):
                    raise ValueError(f'"{name}" is not a JSON {"object" if kind is dict else "array"}')
        except (OSError, ValueError) as err:
            problems[f"config:{path.name}"] = (f"{path}: {type(err).__name__}: {err}; {path.stem} is not "
                                               "checked, its open problems stay open")
            continue
        apps.append({**app, "name": path.stem})
    return apps, problems


def held(cfg: dict, state: dict, found: dict[str, str]) -> dict[str, str]:
    """The open problems of the apps whose file does not read (found's config:FILE): kept open,
    not told resolved, as no check ran."""
    broken = {problem.split(":", 1)[1] for problem in found if problem.startswith("config:")}
    every = bool(cfg.get("apps_dir")) and Path(cfg["apps_dir"]).name in broken
    return {problem: open_["detail"] for problem, open_ in state["problems"].items()
            if problem not in found and (app := app_of(problem)) is not None
            and (every or f"{app}.json" in broken)}


# --- the checks: each returns {problem key: detail} ------------------------------------------

def check_health(app: dict) -> dict[str, str]:
    """The app's site through nginx and TLS, as a visitor reaches it: the certificate verified
    against the system's CAs (or ca_file), the name matched; days left on the served certificate."""
    health = app.get("health") or {}
    if not health.get("name"):
        return {}
    name, path = health["name"], health.get("path", "/health/ready")
    problems = {}
    try:
        context = ssl.create_default_context(cafile=health.get("ca_file") or None)
        with socket.create_connection((health.get("address", "127.0.0.1"), health.get("port", 443)),
                                      timeout=10) as raw, \
                context.wrap_socket(raw, server_hostname=name) as tls:
            cert = tls.getpeercert()
            tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n"
                        "User-Agent: berth-check\r\n\r\n".encode())
            tls.settimeout(10)
            head = tls.recv(4096).decode("latin-1").split("\r\n", 1)[0]
        status = head.split(" ")[1] if head.count(" ") >= 1 else "no answer"
        if status != "200":
            problems[app_key("health", app)] = f"https://{name}{path} answered {head.strip() or 'nothing'}"
        days = (ssl.cert_time_to_seconds(cert["notAfter"]) - time.time()) / 86400
        if days < health.get("cert_warn_days", 14):
            problems[app_key("certificate", app)] = (f"the certificate of {name} expires in {days:.1f} days "
                                                     f"({cert['notAfter']}); renewal has not happened")
    except ssl.SSLCertVerificationError as err:
        problems[app_key("health", app)] = (f"https://{name}{path}: the certificate does not verify: "
                                            f"{err.verify_message}")
    except (OSError, ValueError, IndexError) as err:
        problems[app_key("health", app)] = f"https://{name}{path}: {type(err).__name__}: {err}"
    return problems


def failed_units(cfg: dict) -> dict[str, str]:
    out = subprocess.run(["systemctl", "list-units", "--state=failed", "--plain", "--no-legend",
                          "--no-pager", "--all"], capture_output=True, text=True, check=False)
    ignore = cfg.get("ignore_units", [])
    problems = {}
    for line in out.stdout.splitlines():
        unit = line.split(" ", 1)[0].strip()
        if not unit or any(fnmatch.fnmatchcase(unit, pattern) for pattern in ignore):
            continue
        problems[f"unit:{unit}"] = f"{unit} failed: {journal_tail(unit)}"
    if out.returncode != 0 and not out.stdout:
        problems["units"] = f"systemctl list-units failed: {out.stderr.strip()}"
    return problems


def journal_tail(unit: str, lines: int = 5) -> str:
    out = subprocess.run(["journalctl", "--unit", unit, "--lines", str(lines), "--output", "cat",
                          "--no-pager", "--quiet"], capture_output=True, text=True, check=False)
    return " | ".join(line.strip() for line in out.stdout.splitlines() if line.strip()) or "(no log)"


def check_disks(cfg: dict) -> dict[str, str]:
    disk = cfg.get("disk") or {}
    problems = {}
    for path in disk.get("paths", ["/"]):
        try:
            st = os.statvfs(path)
        except OSError as err:
            problems[f"disk:{path}"] = f"{path}: {err}"
            continue
        if st.f_blocks:
            used = 100 * (st.f_blocks - st.f_bfree) / (st.f_blocks - st.f_bfree + st.f_bavail)
            if used > disk.get("max_percent", 90):
                problems[f"disk:{path}"] = (f"{path} is {used:.0f}% full (over {disk.get('max_percent', 90)}%): "
                                            f"{st.f_bavail * st.f_frsize // 2**20} MiB left")
        if st.f_files:
            inodes = 100 * (st.f_files - st.f_ffree) / st.f_files
            if inodes > disk.get("max_inodes_percent", 90):
                problems[f"inodes:{path}"] = (f"{path} has used {inodes:.0f}% of its inodes "
                                              f"(over {disk.get('max_inodes_percent', 90)}%)")
    return problems


def check_backup(app: dict, now: float) -> dict[str, str]:
    """The app's backup units are judged here, not as failed units: one problem for the local
    backup and its drill, one for each remote's push and drill, one for each remote's check."""
    backup = app.get("backup") or {}
    if not backup.get("status_file"):
        return {}
    max_age = backup.get("max_age_hours", 26) * 3600
    try:
        status = json.loads(Path(backup["status_file"]).read_text())
    except (OSError, ValueError):
        status = {}
    # no result yet: a problem only once the backup has been set up for longer than max_age
    try:
        since = Path(backup["status_file"]).parent.stat().st_mtime
    except OSError:
        since = now
    problems = {}

    def judge(problem, result, what):
        if not result:
            if now - since > max_age:
                problems[problem] = (f"no {what} in the {(now - since) / 3600:.0f} hours since the backup "
                                     "was set up")
        elif not result.get("ok"):
            problems[problem] = f"the last {what} FAILED: {result.get('detail', '')}"
        elif now - result.get("time", 0) > max_age:
            hours = (now - result.get("time", 0)) / 3600
            problems[problem] = f"the last {what} is {hours:.0f} hours old (over {max_age / 3600:.0f})"

    judge(app_key("backup", app), status if "ok" in status else None, "backup and restore drill")
    remotes = status.get("remotes", {})
    for name in backup.get("remotes", []):
        judge(app_key("backup-remote", app, name), remotes.get(name), f"push to {name} and its drill")
    for name, result in status.get("checks", {}).items():
        if name in backup.get("remotes", []) and not result.get("ok"):
            problems[app_key("backup-check", app, name)] = (f"restic check of {name} FAILED: "
                                                            f"{result.get('detail', '')}")
    unit = backup.get("unit")
    told = {app_key("backup", app), *(app_key("backup-remote", app, n) for n in remotes)}
    if unit and is_failed(unit) and not problems.keys() & told:
        problems[app_key("backup", app)] = f"{unit} failed: {journal_tail(unit)}"
    return problems


def is_failed(unit: str) -> bool:
    return subprocess.run(["systemctl", "is-failed", "--quiet", unit], check=False).returncode == 0


def check_reboot(cfg: dict) -> dict[str, str]:
    flag = Path(cfg.get("reboot_flag", "/run/reboot-required"))
    if not flag.exists():
        return {}
    try:
        packages = " ".join(sorted(set(flag.with_suffix(".pkgs").read_text().split())))
    except OSError:
        packages = ""
    return {"reboot": f"a reboot is pending after updates{': ' + packages if packages else ''}"}


def problems_now(cfg: dict, now: float) -> dict[str, str]:
    """The host's checks once, each app's for each app."""
    apps, found = load_apps(cfg)
    ignore = [*cfg.get("ignore_units", []), *(unit for app in apps for unit in app.get("ignore_units", []))]
    found.update(failed_units({**cfg, "ignore_units": ignore}))
    for check in (check_disks, check_reboot):
        found.update(check(cfg))
    for app in apps:
        found.update(check_health(app))
        found.update(check_backup(app, now))
    return found


# --- state and delivery ------------------------------------------------------------------------

def load_state(path: Path) -> dict:
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        state = {}
    return {"problems": state.get("problems", {}), "outbox": state.get("outbox", [])}


def save_state(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(state, sort_keys=True, indent=1) + "\n")
    os.replace(tmp, path)


def transitions(cfg: dict, state: dict, found: dict[str, str], now: float) -> list[dict]:
    """New problems and resolved ones since the last run, updating state["problems"]."""
    old = state["problems"]
    events = []
    for key in sorted(found.keys() - old.keys()):
        events.append({"event": "problem", "key": key, "detail": found[key], "time": now})
    for key in sorted(old.keys() - found.keys()):
        events.append({"event": "resolved", "key": key, "detail": old[key]["detail"],
                       "since": old[key]["since"], "time": now})
    state["problems"] = {key: {"detail": found[key], "since": old.get(key, {}).get("since", now)}
                         for key in found}
    channels = [c for c in ("mail", "webhook") if (cfg.get(c) or {}).get("to" if c == "mail" else "url")]
    state["outbox"] += [{**event, "channel": channel} for event in events for channel in channels]
    del state["outbox"][:-OUTBOX_LIMIT]
    return events


def text(cfg: dict, msg: dict) -> tuple[str, str]:
    host = cfg.get("host", socket.getfqdn())
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(msg["time"]))
    if msg["event"] == "problem":
        subject = f"[berth] {host}: PROBLEM {msg['key']}"
        runbook = f"{cfg.get('runbook', 'docs/RUNBOOK.md')}, section {msg['key'].split(':', 1)[0]}"
        body = f"{msg['detail']}\n\nSince {stamp}. What to do: {runbook}\n"
    else:
        took = (msg["time"] - msg.get("since", msg["time"])) / 60
        subject = f"[berth] {host}: resolved {msg['key']}"
        body = f"Resolved at {stamp} after {took:.0f} minutes. It was: {msg['detail']}\n"
    return subject, body


def send_mail(cfg: dict, msg: dict) -> str | None:
    """Through the host's sendmail (msmtp: the relay's certificate verified). None when sent."""
    mail = cfg["mail"]
    subject, body = text(cfg, msg)
    # unfolded up to RFC 5322's line limit: a folded subject reads back with a leading space
    message = EmailMessage(policy=email.policy.default.clone(max_line_length=998))
    message["Subject"], message["To"] = subject, mail["to"]
    if mail.get("from"):
        message["From"] = mail["from"]
    message.set_content(body)
    try:
        out = subprocess.run([mail.get("sendmail", "/usr/sbin/sendmail"), "-t", "-i"], input=message.as_bytes(),
                             capture_output=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"{type(err).__name__}: {err}"
    if out.returncode:
        return f"sendmail exited {out.returncode}: {out.stderr.decode(errors='replace').strip()}"
    return None


def post_webhook(cfg: dict, msg: dict) -> str | None:
    """A JSON POST: "text" for Slack-compatible receivers, the fields for others."""
    subject, body = text(cfg, msg)
    payload = {"text": f"{subject}\n{body}", "host": cfg.get("host", socket.getfqdn()), "event": msg["event"],
               "problem": msg["key"], "detail": msg["detail"], "time": int(msg["time"])}
    return http(cfg["webhook"]["url"], json.dumps(payload).encode())


def http(url: str, data: bytes | None = None) -> str | None:
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET",
                                     headers={"Content-Type": "application/json", "User-Agent": "berth-check"})
    try:
        with urllib.request.urlopen(request, timeout=15) as answer:
            answer.read(1024)
    except (OSError, ValueError) as err:
        # only the host: the URL's path may carry a token
        return f"{type(err).__name__} from {urllib.parse.urlsplit(url).hostname}: {getattr(err, 'reason', err)}"
    return None


def deliver(cfg: dict, state: dict) -> None:
    kept = []
    for msg in state["outbox"]:
        sender = send_mail if msg["channel"] == "mail" else post_webhook
        if not (cfg.get(msg["channel"]) or {}):
            continue  # the channel was switched off since
        error = sender(cfg, msg)
        what = f"{msg['event']} {msg['key']} by {msg['channel']}"
        if error:
            log(f"NOT sent ({what}), kept for the next run: {error}")
            kept.append({**msg, "tries": msg.get("tries", 0) + 1})
        else:
            log(f"sent: {what}")
    state["outbox"] = kept


def ping(cfg: dict, suffix: str) -> None:
    url = (cfg.get("ping") or {}).get("url")
    if url:
        error = http(url.rstrip("/") + suffix)
        if error:
            log(f"ping {suffix or 'success'} not received: {error}")


def run(cfg: dict) -> int:
    now = time.time()
    ping(cfg, "/start")
    path = Path(cfg.get("state_file", "/var/lib/berth-check/state.json"))
    state = load_state(path)
    found = problems_now(cfg, now)
    found.update(held(cfg, state, found))
    for event in transitions(cfg, state, found, now):
        log(f"{event['event'].upper()} {event['key']}: {event['detail']}")
    save_state(path, state)
    deliver(cfg, state)
    save_state(path, state)
    for key, problem in sorted(state["problems"].items()):
        log(f"open: {key}: {problem['detail']}")
    ping(cfg, "/fail" if found else "")
    log(f"{len(found)} problem(s), {len(state['outbox'])} message(s) not yet delivered")
    return 0


def show(cfg: dict) -> int:
    state = load_state(Path(cfg.get("state_file", "/var/lib/berth-check/state.json")))
    print(json.dumps(state, sort_keys=True, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("-c", "--config", default=CONFIG)
    parser.add_argument("command", choices=["run", "status"], nargs="?", default="run")
    args = parser.parse_args(argv)
    cfg = json.loads(Path(args.config).read_text())
    return run(cfg) if args.command == "run" else show(cfg)


if __name__ == "__main__":
    sys.exit(main())
