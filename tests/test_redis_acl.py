"""The redis role's ACL file with several apps on one Redis: each app's run renders its own user
and keeps the other apps' lines as they are, so runs of the apps in turn converge on one file,
and a user no longer kept is dropped. Rendered by Ansible's templar from the role's template,
with no host."""

import base64
import hashlib
import pathlib

from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

ROLE = pathlib.Path(__file__).resolve().parent.parent / "roles" / "redis"
LOADER = DataLoader()
TEMPLATE = (ROLE / "templates" / "etc" / "redis" / "users.acl.j2").read_text()
# the Write the ACL file task's own selection of the kept lines (tasks/acl.yml)
TASK = next(task for task in LOADER.load_from_file(str(ROLE / "tasks" / "acl.yml"), trusted_as_template=True)
            if task["name"] == "Write the ACL file")


def acl(user, password, kept_users, current=""):
    variables = {**LOADER.load_from_file(str(ROLE / "defaults" / "main.yml"), trusted_as_template=True),
                 "redis_app_user": user, "redis_app_passwords": [password], "redis_admin_password": "admin-pw",
                 "redis_app_keys": [f"{user}:*"], "redis_app_channels": [f"{user}:*"],
                 "redis_kept_users": kept_users, "redis_other_users": TASK["vars"]["redis_other_users"],
                 "redis_acl_read": {"content": base64.b64encode(current.encode()).decode()}}
    templar = Templar(loader=LOADER, variables=variables)
    variables["redis_kept_lines"] = templar.template(TASK["vars"]["redis_kept_lines"])
    return Templar(loader=LOADER, variables=variables).template(trust_as_template(TEMPLATE))


def users(text):
    return [line.split()[1] for line in text.splitlines() if line.startswith("user ")]


def test_each_apps_run_keeps_the_others():
    first = acl("site", "pw-site", ["site", "admin"])
    assert users(first) == ["default", "site", "berth-admin"]
    second = acl("admin", "pw-admin", ["site", "admin"], first)
    assert users(second) == ["default", "admin", "site", "berth-admin"]
    # the first app's line exactly as its own run wrote it
    site_line = next(line for line in first.splitlines() if line.startswith("user site "))
    assert site_line in second.splitlines()
    assert "~site:*" in site_line and "&site:*" in site_line
    assert hashlib.sha256(b"pw-admin").hexdigest() in second
    # the next runs of each change nothing
    assert acl("site", "pw-site", ["site", "admin"], second) == second
    assert acl("admin", "pw-admin", ["site", "admin"], second) == second


def test_a_user_no_longer_kept_is_dropped():
    both = acl("admin", "pw-admin", ["site", "admin"], acl("site", "pw-site", ["site", "admin"]))
    assert users(acl("site", "pw-site", ["site"], both)) == ["default", "site", "berth-admin"]


def test_only_whole_names_are_kept():
    current = acl("shop", "pw-shop", ["shop"])
    # "sho" is kept, "shop" is not: the name is matched whole, never as a prefix
    assert users(acl("sho", "pw-sho", ["sho"], current)) == ["default", "sho", "berth-admin"]
