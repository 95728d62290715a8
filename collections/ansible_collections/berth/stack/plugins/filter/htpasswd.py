# -*- coding: utf-8 -*-
"""Filter berth.stack.htpasswd_text: an htpasswd file's text with a user's line, kept when it
holds the password already."""

from __future__ import annotations

from passlib.hash import sha512_crypt

DOCUMENTATION = r"""
name: htpasswd_text
short_description: An htpasswd file's text with a user's password, its line kept if it matches
description:
  - SHA-512 crypt at 5000 rounds (crypt's default), as nginx runs crypt() on every request to a
    protected location; the password is a generated secret, whose length (not the rounds) keeps
    it from being guessed. A short password imported in its place (secrets-import) is that much
    easier to guess from a copy of the file, which only root and nginx's group can read.
  - The user's line is kept when its hash is of that kind and verifies the password, so an
    unchanged password leaves the file as it is; otherwise it gets a new hash (new salt), in
    place or appended. Other users' lines are kept. Use it only in tasks with no_log.
positional: _input, user, password
options:
  _input:
    description: The file's current text ("" when there is none).
    type: str
    required: true
  user:
    description: The user name.
    type: str
    required: true
  password:
    description: The password.
    type: str
    required: true
"""

EXAMPLES = r"""
content: "{{ current_text | berth.stack.htpasswd_text('admin', password) }}"
"""

RETURN = r"""
_value:
  description: The file's new text, one line per user, each ending in a newline.
  type: str
"""

ROUNDS = 5000


def htpasswd_text(text, user, password):
    lines = (text or "").splitlines()
    for index, line in enumerate(lines):
        name, _, stored = line.partition(":")
        if name != user:
            continue
        if not (sha512_crypt.identify(stored) and sha512_crypt.from_string(stored).rounds == ROUNDS
                and sha512_crypt.verify(password, stored)):
            lines[index] = f"{user}:{sha512_crypt.using(rounds=ROUNDS).hash(password)}"
        break
    else:
        lines.append(f"{user}:{sha512_crypt.using(rounds=ROUNDS).hash(password)}")
    return "".join(line + "\n" for line in lines)


class FilterModule:
    def filters(self):
        return {"htpasswd_text": htpasswd_text}
