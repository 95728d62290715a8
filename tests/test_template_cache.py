"""plugin_utils/template_cache: each template compiled once per run, with the same results."""

import os
import subprocess
import sys
import textwrap

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template
from ansible_collections.berth.stack.plugins.plugin_utils import template_cache

COLLECTIONS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "collections")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    base = tmp_path_factory.mktemp("shm")
    assert template_cache.install(base=str(base))
    (path,) = base.iterdir()
    return path


def templar(**variables):
    return Templar(loader=DataLoader(), variables=variables)


def compiled(run_dir):
    return {entry.name for entry in run_dir.iterdir()}


@pytest.fixture
def compiles(monkeypatch):
    """The keys of the templates compiled (not found in the cache) during the test."""
    keys = []
    store = template_cache._store

    def counted(key, code):
        keys.append(key)
        store(key, code)

    monkeypatch.setattr(template_cache, "_store", counted)
    return keys


def test_the_run_directory_is_the_owners_alone(run_dir):
    assert run_dir.name.startswith("berth-templates-%d-" % os.getpid())
    assert run_dir.stat().st_mode & 0o777 == 0o700


def test_a_template_renders_the_same_and_is_compiled_once(run_dir, compiles):
    source = "{{ name | upper }}-{{ items | map('int') | sum }}"
    assert templar(name="web", items=["1", "2"]).template(trust_as_template(source)) == "WEB-3"
    assert len(compiles) == 1 and compiles[0] in compiled(run_dir)
    assert templar(name="app", items=[]).template(trust_as_template(source)) == "APP-0"
    # another process of the run (a forked worker) finds it in the directory
    template_cache._memory.clear()
    assert templar(name="db", items=["5"]).template(trust_as_template(source)) == "DB-5"
    assert len(compiles) == 1


def test_a_conditional_is_kept_and_evaluated_again(run_dir, compiles):
    condition = trust_as_template("port | int in range(1, 65536) and mode == 'tls'")
    assert templar(port="443", mode="tls").evaluate_conditional(condition)
    assert len(compiles) == 1 and compiles[0] in compiled(run_dir)
    template_cache._memory.clear()
    assert not templar(port="70000", mode="tls").evaluate_conditional(condition)
    assert not templar(port="443", mode="none").evaluate_conditional(condition)
    assert len(compiles) == 1


def test_other_delimiters_are_another_template(run_dir):
    source = trust_as_template("[[ a ]] {{ a }}")
    plain = templar(a="x").template(source)
    other = templar(a="x").copy_with_new_env(variable_start_string="[[", variable_end_string="]]")
    assert plain == "[[ a ]] x"
    assert other.template(source) == "x {{ a }}"
    assert templar(a="y").template(source) == "[[ a ]] y"


def test_a_template_that_does_not_compile_fails_each_time(run_dir, compiles):
    for _ in range(2):
        with pytest.raises(Exception, match="unexpected"):
            templar(a=1).template(trust_as_template("{{ a + }}"))
    assert compiles == []


def in_a_new_process(body):
    """Runs body (Python) in a new interpreter with Ansible's templar and the cache module
    imported; returns its output."""
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {COLLECTIONS!r})
        from ansible.parsing.dataloader import DataLoader
        from ansible.template import Templar, trust_as_template
        from ansible_collections.berth.stack.plugins.plugin_utils import template_cache
        def render(source, **variables):
            return Templar(loader=DataLoader(), variables=variables).template(trust_as_template(source))
    """) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stdout


def test_the_directory_goes_with_the_run_and_a_killed_runs_with_the_next(tmp_path):
    stale = tmp_path / "berth-templates-999999999-x"
    stale.mkdir()
    out = in_a_new_process(f"""
        assert template_cache.install(base={str(tmp_path)!r})
        print(template_cache._state["dir"])
        assert render("{{{{ a * 3 }}}}", a=2) == 6
    """)
    assert out.strip().startswith(str(tmp_path / "berth-templates-"))
    assert list(tmp_path.iterdir()) == []


def test_other_internals_leave_ansibles_compile_alone(tmp_path):
    in_a_new_process(f"""
        from ansible._internal._datatag import _tags
        from ansible._internal._templating import _jinja_bits
        compile = _jinja_bits.AnsibleEnvironment.compile
        del _tags.VaultedValue   # as if a patch release had moved it
        assert template_cache.install(base={str(tmp_path)!r}) is False
        assert _jinja_bits.AnsibleEnvironment.compile is compile
        assert render("{{{{ a + 1 }}}}", a=2) == 3
    """)
    assert list(tmp_path.iterdir()) == []
