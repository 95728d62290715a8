"""The secrets env file logic behind berth.stack.secrets."""

import itertools
import re

import pytest

from ansible_collections.berth.stack.plugins.module_utils.secrets_file import (
    SecretsError, changed_between, follow, generate, parse, plan, render, secret_id, view)

DAY = 86400
DEFS = [
    {"name": "JWT_SECRET", "bytes": 32, "encoding": "base64url", "min_length": 32},
    {"name": "SECRET_KEY", "bytes": 32, "encoding": "hex", "min_length": 32},
    {"name": "SMTP_PASS", "source": "provided", "min_length": 8, "required": False},
]


def counter():
    numbers = itertools.count(1)
    return lambda nbytes, enc: f"v{next(numbers):0{nbytes}d}"


def run(text="", provided=None, rotate=(), overlap=7 * DAY, now=1000, make=None, derived=None,
        retire=(), force=False, defs=DEFS):
    return plan(text, defs, provided or {}, list(rotate), overlap, now, derived, make or counter(),
                retire=list(retire), force=force)


def test_generate_encodings():
    assert len(generate(32, "hex")) == 64
    value = generate(32, "base64url")
    assert len(value) == 43 and "=" not in value and "+" not in value and "/" not in value
    assert generate(32, "hex") != generate(32, "hex")


def test_first_run_generates_and_second_run_is_identical():
    text, report = run()
    assert report["generated"] == ["JWT_SECRET", "SECRET_KEY"]
    values, _ = parse(text)
    assert set(values) == {"JWT_SECRET", "SECRET_KEY"}
    again, report2 = run(text, make=lambda *_: pytest.fail("must not generate"))
    assert again == text
    assert not any(report2.values())


def test_rotation_keeps_previous_for_the_overlap_then_drops_it():
    text, _ = run()
    old = parse(text)[0]
    rotated, report = run(text, rotate=["JWT_SECRET"], now=2000, make=lambda *_: "n" * 43)
    values, when = parse(rotated)
    assert report["rotated"] == ["JWT_SECRET"]
    assert values["JWT_SECRET"] == "n" * 43
    assert values["JWT_SECRET_PREVIOUS"] == old["JWT_SECRET"]
    assert values["SECRET_KEY"] == old["SECRET_KEY"]
    assert when == {"JWT_SECRET": 2000}
    # within the overlap: unchanged
    assert run(rotated, now=2000 + 7 * DAY - 1)[0] == rotated
    # after it, or with the overlap set to 0: gone
    for later in (run(rotated, now=2000 + 7 * DAY), run(rotated, overlap=0, now=2001)):
        values, when = parse(later[0])
        assert "JWT_SECRET_PREVIOUS" not in values and not when
        assert later[1]["expired"] == ["JWT_SECRET_PREVIOUS"]


def test_rotate_all_takes_generated_only():
    text, _ = run(provided={"SMTP_PASS": "p" * 10})
    _, report = run(text, provided={"SMTP_PASS": "p" * 10}, rotate=["all"])
    assert report["rotated"] == ["JWT_SECRET", "SECRET_KEY"]


def test_rotate_with_all_false_rotates_only_when_named():
    defs = DEFS + [{"name": "RESTIC_PASSWORD", "bytes": 32, "encoding": "hex", "rotate_with_all": False}]
    text, _ = plan("", defs, {"SMTP_PASS": "p" * 10}, [], 7 * DAY, 1000, None, counter())
    _, report = plan(text, defs, {"SMTP_PASS": "p" * 10}, ["all"], 7 * DAY, 1000, None, counter())
    assert "RESTIC_PASSWORD" not in report["rotated"]
    _, report = plan(text, defs, {"SMTP_PASS": "p" * 10}, ["RESTIC_PASSWORD"], 7 * DAY, 1000, None, counter())
    assert report["rotated"] == ["RESTIC_PASSWORD"]


def test_rotation_with_zero_overlap_keeps_no_previous():
    text, _ = run()
    values, _ = parse(run(text, rotate=["all"], overlap=0)[0])
    assert not [n for n in values if n.endswith("_PREVIOUS")]


@pytest.mark.parametrize("rotate,message", [
    (["NOPE"], "cannot rotate NOPE: no such secret"),
    (["SMTP_PASS"], "cannot rotate SMTP_PASS: it is provided"),
])
def test_bad_rotation_names(rotate, message):
    with pytest.raises(SecretsError, match=message):
        run(rotate=rotate)


def test_provided_secret_checks_name_it_never_the_value():
    with pytest.raises(SecretsError) as err:
        run(provided={"SMTP_PASS": "short"})
    assert "SMTP_PASS is too short" in str(err.value) and "short\"" not in str(err.value)
    required = [dict(DEFS[2], required=True)]
    with pytest.raises(SecretsError, match="SMTP_PASS is missing or empty"):
        plan("", required, {"SMTP_PASS": ""}, [], 0, 0)


def test_too_short_value_on_the_host_is_refused_unless_rotated():
    text = render({"JWT_SECRET": "abc", "SECRET_KEY": "k" * 64}, {})
    with pytest.raises(SecretsError, match="JWT_SECRET on the host is shorter than 32"):
        run(text)
    assert parse(run(text, rotate=["JWT_SECRET"], overlap=0)[0])[0]["JWT_SECRET"] != "abc"


def test_derived_values_are_url_quoted_and_follow_rotation():
    defs = [{"name": "DB_PASSWORD", "bytes": 16, "encoding": "hex", "min_length": 8}]
    tpl = {"DATABASE_URL": "postgresql://app:{DB_PASSWORD}@localhost/app"}
    text, _ = plan("", defs, {}, [], 0, 0, tpl, lambda *_: "a/b c")
    assert parse(text)[0]["DATABASE_URL"] == "postgresql://app:a%2Fb%20c@localhost/app"
    text2, report = plan(text, defs, {}, ["DB_PASSWORD"], 0, 0, tpl, lambda *_: "x" * 32)
    assert report["derived"] == ["DATABASE_URL"]
    assert parse(text2)[0]["DATABASE_URL"].endswith(":" + "x" * 32 + "@localhost/app")


def test_derived_id_names_the_value_and_changes_with_it():
    defs = [{"name": "DB_PASSWORD", "bytes": 16, "encoding": "hex", "min_length": 8}]
    tpl = {"DATABASE_URL": "postgresql://app_{DB_PASSWORD:id}:{DB_PASSWORD}@localhost/app"}
    text, _ = plan("", defs, {}, [], 0, 0, tpl, lambda *_: "a/b c")
    assert parse(text)[0]["DATABASE_URL"] == (
        f"postgresql://app_{secret_id('a/b c')}:a%2Fb%20c@localhost/app")
    assert re.fullmatch("[0-9a-f]{8}", secret_id("a/b c"))
    text2, _ = plan(text, defs, {}, ["DB_PASSWORD"], 0, 0, tpl, lambda *_: "x" * 32)
    assert f"app_{secret_id('x' * 32)}:" in parse(text2)[0]["DATABASE_URL"]


def test_derived_template_with_another_format_is_refused():
    defs = [{"name": "DB_PASSWORD", "bytes": 16, "encoding": "hex", "min_length": 8}]
    with pytest.raises(SecretsError, match="takes {NAME} or {NAME:id} only"):
        plan("", defs, {}, [], 0, 0, {"URL": "{DB_PASSWORD.upper}"}, lambda *_: "x" * 32)


def test_odd_provided_values_round_trip():
    # systemd's reading of the same file is checked on a real host by molecule/redis (tests/test_secrets.py)
    value = 'p@ss "w$rd" `x` \\ end'
    text, _ = run(provided={"SMTP_PASS": value})
    assert parse(text)[0]["SMTP_PASS"] == value


@pytest.mark.parametrize("bad", [
    {"name": "lower"}, {"name": "X_PREVIOUS"}, {"name": "X", "encoding": "rot13"},
    {"name": "X", "bytes": 8}, {"name": "X", "source": "vault"},
])
def test_bad_definitions(bad):
    with pytest.raises(SecretsError):
        plan("", [bad], {}, [], 0, 0)


def test_garbage_in_the_file_is_refused():
    with pytest.raises(SecretsError, match="line 1"):
        parse("this is not an env file\n")


def test_second_rotation_within_the_overlap_is_refused_with_its_end():
    rotated, _ = run(run()[0], rotate=["JWT_SECRET"], now=2000)
    with pytest.raises(SecretsError, match=r"cannot rotate JWT_SECRET again before its overlap ends "
                                           r"\(1970-01-08 00:33 UTC\).*secrets_rotate_force=true"):
        run(rotated, rotate=["JWT_SECRET"], now=3000)
    with pytest.raises(SecretsError, match="JWT_SECRET"):
        run(rotated, rotate=["all"], now=3000)
    # after the overlap, after an explicit end, or forced: it rotates
    assert run(rotated, rotate=["JWT_SECRET"], now=2000 + 7 * DAY)[1]["rotated"] == ["JWT_SECRET"]
    forced, report = run(rotated, rotate=["JWT_SECRET"], now=3000, force=True, make=lambda *_: "f" * 43)
    assert report["rotated"] == ["JWT_SECRET"]
    assert parse(forced)[0]["JWT_SECRET_PREVIOUS"] == parse(rotated)[0]["JWT_SECRET"]
    ended, report = run(rotated, retire=["JWT_SECRET"], now=3000)
    assert "JWT_SECRET_PREVIOUS" not in parse(ended)[0] and report["expired"] == ["JWT_SECRET_PREVIOUS"]
    assert run(ended, rotate=["JWT_SECRET"], now=3001)[1]["rotated"] == ["JWT_SECRET"]


KEY = {"name": "ENCRYPTION_KEY", "bytes": 32, "encoding": "base64url", "rotate_with_all": False,
       "expires": False}


def test_an_encryption_key_is_kept_until_retired():
    text, _ = run(defs=DEFS + [KEY])
    assert "ENCRYPTION_KEY" not in run(text, rotate=["all"], defs=DEFS + [KEY])[1]["rotated"]
    # overlap 0, and long after: the previous key stays, it still decrypts
    rotated, _ = run(text, rotate=["ENCRYPTION_KEY"], overlap=0, now=2000, defs=DEFS + [KEY])
    previous = parse(text)[0]["ENCRYPTION_KEY"]
    for later in (run(rotated, now=2000 + 365 * DAY, defs=DEFS + [KEY]), run(rotated, overlap=0, defs=DEFS + [KEY])):
        assert parse(later[0])[0]["ENCRYPTION_KEY_PREVIOUS"] == previous
    with pytest.raises(SecretsError, match="kept until it is retired.*retire_secrets=ENCRYPTION_KEY"):
        run(rotated, rotate=["ENCRYPTION_KEY"], now=2000 + 365 * DAY, defs=DEFS + [KEY])
    retired, report = run(rotated, retire=["ENCRYPTION_KEY"], defs=DEFS + [KEY])
    assert "ENCRYPTION_KEY_PREVIOUS" not in parse(retired)[0]
    assert report["expired"] == ["ENCRYPTION_KEY_PREVIOUS"]
    # retiring again changes nothing
    assert run(retired, retire=["ENCRYPTION_KEY"], defs=DEFS + [KEY])[0] == retired


@pytest.mark.parametrize("name", ["NOPE", "SMTP_PASS"])
def test_retiring_what_is_no_generated_secret_is_refused(name):
    with pytest.raises(SecretsError, match=f"cannot retire {name}_PREVIOUS"):
        run(retire=[name])


def test_a_view_withholds_names_and_their_previous_values():
    text, _ = run(provided={"SMTP_PASS": "relay-password"})
    rotated, _ = run(text, provided={"SMTP_PASS": "relay-password"}, rotate=["JWT_SECRET"], now=2000)
    app = view(rotated, ["JWT_SECRET"])
    values, kept_rotations = parse(app)
    assert set(values) == {"SECRET_KEY", "SMTP_PASS"} and kept_rotations == {}
    assert values == {n: v for n, v in parse(rotated)[0].items() if n in values}
    assert app.startswith("# Managed by berth") and "JWT_SECRET" not in app


def test_what_changed_in_a_view():
    text, _ = run()
    rotated, _ = run(text, rotate=["JWT_SECRET"], now=2000, make=lambda nbytes, enc: "r" * nbytes)
    assert changed_between(view(text, ["JWT_SECRET"]), view(rotated, ["JWT_SECRET"])) == []
    assert changed_between(view(text, []), view(rotated, [])) == ["JWT_SECRET", "JWT_SECRET_PREVIOUS"]
    assert changed_between("", view(text, [])) == ["JWT_SECRET", "SECRET_KEY"]
    assert changed_between("not an env file", view(text, ["SECRET_KEY"])) == ["JWT_SECRET"]


# --- a host that keeps another host's secrets (a web server's, from the database server) ------

LEADER_URL = {"DATABASE_URL": "postgresql://app:{JWT_SECRET}@localhost/app"}
WEB_URL = {"DATABASE_URL": "postgresql://app:{JWT_SECRET}@10.0.0.5/app?sslmode=verify-full"}


def test_a_follower_takes_the_leaders_values_and_derives_its_own():
    leader, _ = run(provided={"SMTP_PASS": "relay-pass"}, derived=LEADER_URL)
    text, report = follow("", leader, DEFS, WEB_URL)
    values, lead = parse(text)[0], parse(leader)[0]
    assert {n: values[n] for n in ("JWT_SECRET", "SECRET_KEY", "SMTP_PASS")} == \
        {n: lead[n] for n in ("JWT_SECRET", "SECRET_KEY", "SMTP_PASS")}
    assert values["DATABASE_URL"] == f"postgresql://app:{lead['JWT_SECRET']}@10.0.0.5/app?sslmode=verify-full"
    assert report == {"followed": ["JWT_SECRET", "SECRET_KEY", "SMTP_PASS"], "derived": ["DATABASE_URL"]}
    assert follow(text, leader, DEFS, WEB_URL) == (text, {"followed": [], "derived": []})


def test_a_follower_keeps_the_leaders_overlap_and_its_end():
    first, _ = run(derived=LEADER_URL)
    rotated, _ = run(first, rotate=["JWT_SECRET"], now=2000, derived=LEADER_URL, make=lambda n, e: "r" * n)
    web, _ = follow("", first, DEFS, WEB_URL)
    web, report = follow(web, rotated, DEFS, WEB_URL)
    assert report == {"followed": ["JWT_SECRET", "JWT_SECRET_PREVIOUS"], "derived": ["DATABASE_URL"]}
    assert parse(web)[1] == {"JWT_SECRET": 2000}
    assert parse(web)[0]["JWT_SECRET_PREVIOUS"] == parse(first)[0]["JWT_SECRET"]
    expired, _ = run(rotated, now=2000 + 8 * DAY, derived=LEADER_URL)
    web, report = follow(web, expired, DEFS, WEB_URL)
    assert report == {"followed": ["JWT_SECRET_PREVIOUS"], "derived": []}
    assert "JWT_SECRET_PREVIOUS" not in parse(web)[0] and parse(web)[1] == {}


def test_a_follower_refuses_a_leader_without_its_secrets():
    leader, _ = run(defs=DEFS[:1])
    with pytest.raises(SecretsError, match="lacks SECRET_KEY: converge the host that keeps the secrets first"):
        follow("", leader, DEFS, WEB_URL)
