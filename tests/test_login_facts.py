"""berth.stack.login_facts: a login password is seen whichever way Ansible was given it."""

import importlib.util
import pathlib

PLUGIN = (pathlib.Path(__file__).parent.parent / "collections" / "ansible_collections" / "berth"
          / "stack" / "plugins" / "action" / "login_facts.py")
_spec = importlib.util.spec_from_file_location("login_facts", PLUGIN)
login_facts = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(login_facts)


class Connection:
    """What the plugin asks of a connection plugin: its `password` option, if it has one."""

    def __init__(self, options):
        self.options = options

    def get_option(self, name):
        return self.options[name]


class PlayContext:
    def __init__(self, password=""):
        self.password = password


def test_a_password_variable_counts():
    assert login_facts.connection_has_password(Connection({"password": "pw"}), PlayContext())


def test_a_password_from_the_command_line_counts():
    assert login_facts.connection_has_password(Connection({"password": None}), PlayContext("pw"))


def test_a_key_login_has_none():
    assert not login_facts.connection_has_password(Connection({"password": None}), PlayContext())


def test_a_connection_without_passwords_has_none():
    assert not login_facts.connection_has_password(Connection({}), PlayContext())
