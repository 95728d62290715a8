#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Documentation of berth.stack.source_pack, an action plugin (plugins/action/source_pack.py)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: source_pack
short_description: Pack the app's source on the controller and checksum it
description:
  - Runs on the controller, in the task's own process (no connection, nothing on the host).
  - O(type=dir) writes O(dest), a tar of O(path) that depends on the files' names, contents and
    modes only (sorted names, zero times, owner 0, C(go-w)), leaving out O(exclude);
    O(type=git) writes O(dest) with C(git archive) of the checkout O(path)'s HEAD;
    O(type=wheel) takes the wheel O(path) as it is. O(dest)'s directory is made (0700) if
    missing, whatever the type. Reports no change (an artefact of the controller's cache).
options:
  type:
    description: What O(path) is.
    type: str
    choices: [dir, git, wheel]
    required: true
  path:
    description: The source directory, the git checkout or the wheel (absolute).
    type: path
    required: true
  dest:
    description: The tar to write (absolute); required for O(type=dir) and O(type=git).
    type: path
  exclude:
    description: tar's C(--exclude) patterns, for O(type=dir).
    type: list
    elements: str
author: berth
"""

EXAMPLES = r"""
- name: Pack the source
  berth.stack.source_pack:
    type: dir
    path: /home/me/app
    dest: /home/me/.cache/berth/build/web1/app/source.tar
    exclude: [.git, __pycache__]
  register: app_source_pack
"""

RETURN = r"""
path:
  description: The artefact (O(dest), or the wheel).
  type: str
  returned: success
checksum:
  description: Its SHA-256, hex.
  type: str
  returned: success
"""
