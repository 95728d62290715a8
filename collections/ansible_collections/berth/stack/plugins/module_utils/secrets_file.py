# -*- coding: utf-8 -*-
"""The secrets env file: parse it, plan the next version, render it.

Pure functions, no Ansible: the module feeds them the file's text and the settings, and gets
back the new text plus a report that holds secret NAMES only, never values.

The file is a systemd EnvironmentFile. Besides NAME=value lines it keeps one comment line per
value in its overlap window, ``# berth-rotated NAME <epoch>``, which is how a later run knows
when NAME_PREVIOUS expires (rotation time + the overlap in force at that run).
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets as _random
import string
import time
from urllib.parse import quote

NAME_RE = re.compile(r"^[A-Z][A-Z0-9_]*$")
ROTATED_RE = re.compile(r"^# berth-rotated ([A-Z][A-Z0-9_]*) ([0-9]+)$")
PREVIOUS = "_PREVIOUS"
ENCODINGS = ("hex", "base64url")
HEADER = (
    "# Managed by berth (secrets role): generated, rotated and expired by re-running the playbook.\n"
    "# Do not edit. Rotate with: ansible-playbook site.yml -e rotate_secrets=NAME[,NAME...]|all\n"
)
VIEW_HEADER = (
    "# Managed by berth (secrets role): a copy of some of the values in the secrets file, the ones\n"
    "# this file's readers use. Do not edit: it is rewritten from the secrets file at each run.\n"
)


def secret_id(value: str) -> str:
    """A short public name for a secret value (8 hex digits of its SHA-256): what changes when
    the value rotates, e.g. the PostgreSQL login role that goes with a password. 32 bits of a
    hash of 256 random bits tell nothing about the value."""
    return hashlib.sha256(value.encode()).hexdigest()[:8]


class _Quoted(str):
    """A URL-quoted value for derived templates; {NAME:id} gives the secret_id of the raw value."""

    def __new__(cls, raw: str):
        obj = super().__new__(cls, quote(raw, safe=""))
        obj.raw = raw
        return obj

    def __format__(self, spec: str) -> str:
        return secret_id(self.raw) if spec == "id" else super().__format__(spec)


class SecretsError(Exception):
    """Invalid settings or file. The message names secrets, never their values."""


def _check_template(name: str, template: str) -> None:
    """Only {NAME} and {NAME:id}: str.format would otherwise reach attributes and indexes."""
    error = SecretsError(f"derived value {name}: a template takes {{NAME}} or {{NAME:id}} only")
    try:
        fields = [f for f in string.Formatter().parse(template) if f[1] is not None]
    except ValueError:
        raise error from None
    if any(not NAME_RE.match(field) or spec not in ("", "id") or conv for _, field, spec, conv in fields):
        raise error


def generate(nbytes: int, encoding: str) -> str:
    raw = _random.token_bytes(nbytes)
    if encoding == "hex":
        return raw.hex()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r'\\(["\\$`])', r"\1", value[1:-1])
    return value


def _quote(value: str) -> str:
    # Generated values (hex, base64url) need no quotes; a provided one may hold anything but a
    # newline, and systemd reads "..." with these four escapes.
    if re.fullmatch(r"[A-Za-z0-9_.,:/@%+=-]*", value):
        return value
    return '"' + re.sub(r'(["\\$`])', r"\\\1", value) + '"'


def parse(text: str) -> tuple[dict[str, str], dict[str, int]]:
    """Return (values, rotated-at epoch per name) from the file's text."""
    values: dict[str, str] = {}
    rotated: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        match = ROTATED_RE.match(line)
        if match:
            rotated[match.group(1)] = int(match.group(2))
            continue
        if not line.strip() or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep or not NAME_RE.match(name):
            raise SecretsError(f"line {number} of the secrets file is not NAME=value")
        values[name] = _unquote(value)
    return values, rotated


def render(values: dict[str, str], rotated: dict[str, int]) -> str:
    lines = [HEADER]
    lines += [f"# berth-rotated {name} {rotated[name]}\n" for name in sorted(rotated)]
    lines += [f"{name}={_quote(values[name])}\n" for name in sorted(values)]
    return "".join(lines)


def view(text: str, withhold: list[str]) -> str:
    """A consumer's view of the file: every value but the withheld names and their
    NAME_PREVIOUS (no rotation lines: only the secrets file's keeper reads those)."""
    values, _ = parse(text)
    kept = {n for n in values if n not in withhold and n.removesuffix(PREVIOUS) not in withhold}
    return VIEW_HEADER + render({n: values[n] for n in kept}, {}).removeprefix(HEADER)


def changed_between(old_text: str, new_text: str) -> list[str]:
    """Names whose value differs between two versions of a file (added and removed ones too);
    an old version that is not NAME=value lines counts as empty (it is replaced)."""
    try:
        old, _ = parse(old_text)
    except SecretsError:
        old = {}
    new, _ = parse(new_text)
    return sorted(n for n in old.keys() | new.keys() if old.get(n) != new.get(n))


def check_definitions(definitions: list[dict]) -> None:
    seen = set()
    for item in definitions:
        name = item.get("name", "")
        if not NAME_RE.match(name) or name.endswith(PREVIOUS):
            raise SecretsError(f"secret name {name!r} must be UPPER_CASE and not end in {PREVIOUS}")
        if name in seen:
            raise SecretsError(f"secret {name} is declared twice")
        seen.add(name)
        if item.get("source", "generated") not in ("generated", "provided"):
            raise SecretsError(f"secret {name}: source must be generated or provided")
        if item.get("source", "generated") == "generated":
            if item.get("encoding", "base64url") not in ENCODINGS:
                raise SecretsError(f"secret {name}: encoding must be one of {', '.join(ENCODINGS)}")
            if int(item.get("bytes", 32)) < 16:
                raise SecretsError(f"secret {name}: at least 16 random bytes")


FOREVER = 2**63


def _previous_kept_until(name, item, old_values, old_rotated, overlap):
    """When NAME_PREVIOUS goes by itself (FOREVER for expires: false), None if there is none."""
    if old_values.get(name + PREVIOUS) is None:
        return None
    if not item.get("expires", True):
        return FOREVER
    return old_rotated.get(name, 0) + overlap


def _second_rotation(name, kept_until):
    """Why a rotation of a secret whose previous value is still kept is refused."""
    dropped = (f"{name}{PREVIOUS} would be dropped, and whatever was signed, encrypted or logged "
               f"in with it (tokens, sessions, data) refused")
    if kept_until == FOREVER:
        return (f"cannot rotate {name}: {name}{PREVIOUS} is kept until it is retired, for data "
                f"encrypted with it: {dropped}. Re-encrypt, retire it (-e retire_secrets={name}), "
                f"then rotate, or force it (-e secrets_rotate_force=true)")
    until = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(kept_until))
    return (f"cannot rotate {name} again before its overlap ends ({until}): {dropped}. Rotate "
            f"after that, end the overlap first (-e retire_secrets={name}), or force it "
            f"(-e secrets_rotate_force=true)")


def plan(
    text: str,
    definitions: list[dict],
    provided: dict[str, str],
    rotate: list[str],
    overlap: int,
    now: int,
    derived: dict[str, str] | None = None,
    make=generate,
    retire: list[str] | None = None,
    force: bool = False,
) -> tuple[str, dict[str, list[str]]]:
    """Compute the next file text and a report {generated, rotated, expired, provided, derived}
    of the names that change. Raises SecretsError before anything is decided on bad input.

    retire: names whose NAME_PREVIOUS goes now (the only way one with expires: false goes).
    force: rotate a secret whose previous value is still kept, dropping that value."""
    check_definitions(definitions)
    old_values, old_rotated = parse(text)
    by_name = {item["name"]: item for item in definitions}
    generated_names = [n for n, i in by_name.items() if i.get("source", "generated") == "generated"]
    retire = set(retire or ())
    for name in sorted(retire):
        if name not in generated_names:
            raise SecretsError(f"cannot retire {name}_PREVIOUS: {name} is no generated secret")

    # rotate_with_all: false keeps a secret out of [all] (a backup repository's password): it
    # rotates only when named.
    wanted = set(rotate) - {"all"}
    if "all" in rotate:
        wanted |= {n for n in generated_names if by_name[n].get("rotate_with_all", True)}
    for name in sorted(wanted):
        if name not in by_name:
            raise SecretsError(f"cannot rotate {name}: no such secret")
        if name not in generated_names:
            raise SecretsError(f"cannot rotate {name}: it is provided; change it where you provide it")
        kept_until = _previous_kept_until(name, by_name[name], old_values, old_rotated, overlap)
        if kept_until is not None and now < kept_until and name not in retire and not force:
            raise SecretsError(_second_rotation(name, kept_until))

    values: dict[str, str] = {}
    rotated: dict[str, int] = {}
    report: dict[str, list[str]] = {k: [] for k in ("generated", "rotated", "expired", "provided", "derived")}

    for name, item in sorted(by_name.items()):
        minimum = int(item.get("min_length", 32))
        if item.get("source", "generated") == "provided":
            value = provided.get(name)
            if value is None or value == "":
                if item.get("required", True):
                    raise SecretsError(f"secret {name} is missing or empty: provide it (ansible-vault)")
                continue
            if len(value) < minimum:
                raise SecretsError(f"secret {name} is too short: at least {minimum} characters")
            if "\n" in value or "\0" in value:
                raise SecretsError(f"secret {name} must be one line")
            if old_values.get(name) != value:
                report["provided"].append(name)
            values[name] = value
            continue

        current = old_values.get(name)
        if current is not None and name not in wanted and len(current) < minimum:
            raise SecretsError(
                f"secret {name} on the host is shorter than {minimum} characters: "
                f"rotate it (-e rotate_secrets={name})")
        if current is None:
            values[name] = make(int(item.get("bytes", 32)), item.get("encoding", "base64url"))
            report["generated"].append(name)
        elif name in wanted:
            values[name] = make(int(item.get("bytes", 32)), item.get("encoding", "base64url"))
            report["rotated"].append(name)
            if overlap > 0 or not item.get("expires", True):
                values[name + PREVIOUS] = current
                rotated[name] = now
        else:
            values[name] = current

        previous = old_values.get(name + PREVIOUS)
        if previous is not None and name not in wanted:
            kept_until = _previous_kept_until(name, item, old_values, old_rotated, overlap)
            if now < kept_until and name not in retire:
                values[name + PREVIOUS] = previous
                rotated[name] = old_rotated.get(name, 0)
            else:
                report["expired"].append(name + PREVIOUS)

    _derive(values, derived or {}, by_name, old_values, report)
    return render(values, rotated), report


def _derive(values, derived, by_name, old_values, report):
    """Adds the derived values to values (in place), naming the changed ones in the report."""
    for name, template in sorted(derived.items()):
        if not NAME_RE.match(name) or name in by_name:
            raise SecretsError(f"derived value {name!r} must be UPPER_CASE and not a secret's name")
        _check_template(name, template)
        try:
            values[name] = template.format(**{k: _Quoted(v) for k, v in values.items()})
        except KeyError as missing:
            raise SecretsError(f"derived value {name} refers to unknown secret {missing}") from None
        if old_values.get(name) != values[name]:
            report["derived"].append(name)


def follow(
    text: str,
    leader_text: str,
    definitions: list[dict],
    derived: dict[str, str] | None = None,
) -> tuple[str, dict[str, list[str]]]:
    """The next file text of a host that keeps another host's secrets (a web server, whose
    secrets the database server generates): the leader's values and rotation lines, as they
    are, and this host's own derived values (its URLs name the database server). Nothing is
    generated, rotated or expired here: the leader does it. The report names the changes as
    {followed, derived}."""
    check_definitions(definitions)
    old_values, _ = parse(text)
    leader_values, leader_rotated = parse(leader_text)
    derived = derived or {}
    by_name = {item["name"]: item for item in definitions}
    missing = [name for name, item in sorted(by_name.items())
               if name not in leader_values
               and (item.get("source", "generated") == "generated" or item.get("required", True))]
    if missing:
        raise SecretsError(f"the leader's secrets file lacks {', '.join(missing)}: "
                           "converge the host that keeps the secrets first")
    values = {n: v for n, v in leader_values.items() if n not in derived}
    report: dict[str, list[str]] = {"followed": [], "derived": []}
    report["followed"] = sorted(n for n in values.keys() | (old_values.keys() - derived.keys())
                                if old_values.get(n) != values.get(n))
    _derive(values, derived, by_name, old_values, report)
    rotated = {n: t for n, t in leader_rotated.items() if n + PREVIOUS in values}
    return render(values, rotated), report
