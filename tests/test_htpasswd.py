"""berth.stack.htpasswd_text: nginx's basic auth file, rehashed only when the password changed."""

import warnings

with warnings.catch_warnings():
    # passlib and this test use glibc's crypt() (Python 3.11's crypt, deprecated), as nginx does
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt

    from ansible_collections.berth.stack.plugins.filter.htpasswd import htpasswd_text
    from passlib.hash import sha512_crypt


def stored(text, user="admin"):
    return dict(line.split(":", 1) for line in text.splitlines())[user]


def test_a_new_file_has_the_user_with_a_hash_crypt_accepts():
    text = htpasswd_text("", "admin", "s3cret")
    assert text.startswith("admin:$6$") and text.endswith("\n") and text.count("\n") == 1
    # what nginx does at each request: crypt() with the stored hash as the salt
    assert crypt.crypt("s3cret", stored(text)) == stored(text)
    assert crypt.crypt("wrong", stored(text)) != stored(text)


def test_an_unchanged_password_keeps_the_line():
    text = htpasswd_text("", "admin", "s3cret")
    assert htpasswd_text(text, "admin", "s3cret") == text


def test_a_changed_password_replaces_the_line_and_keeps_other_users():
    text = "ops:$apr1$x$y\n" + htpasswd_text("", "admin", "old")
    new = htpasswd_text(text, "admin", "new")
    assert new.startswith("ops:$apr1$x$y\nadmin:$6$")
    assert sha512_crypt.verify("new", stored(new)) and new.count("\n") == 2


def test_a_slow_hash_of_the_same_password_is_replaced_once():
    slow = "admin:" + sha512_crypt.using(rounds=656000).hash("s3cret") + "\n"
    text = htpasswd_text(slow, "admin", "s3cret")
    assert text != slow and "rounds=" not in text
    assert htpasswd_text(text, "admin", "s3cret") == text


def test_a_missing_user_is_appended():
    assert htpasswd_text("ops:x", "admin", "pw").startswith("ops:x\nadmin:$6$")
