"""Compiled Jinja templates shared by the processes of one ansible-playbook run.

Ansible compiles each template and conditional it evaluates (Jinja's parse and code generation,
then Python's compile) and keeps none of them: every task runs in a worker process forked for
it, so the same `when:`, the same variable of group_vars, is compiled again by every task that
uses it. install() keeps each compiled code object in the process and, for the workers forked
after it, in a directory of the run in /dev/shm (memory: nothing reaches the disk), removed
when the run ends. The key is the template's text and every setting its compiled code depends
on; a template that fails to compile is never kept, so its error is reported as before.

Private interfaces of ansible-core: install() does nothing on a version it was not made for,
and any failure of the cache falls back to Ansible's own compile.
"""
from __future__ import annotations

import atexit
import contextvars
import hashlib
import marshal
import os
import re
import shutil
import tempfile

SUPPORTED = re.compile(r"2\.19\.")
SHM = "/dev/shm"
PREFIX = "berth-templates-"

_memory = {}
_pending = contextvars.ContextVar("berth_template_cache_pending", default=None)
_state = {"dir": None}


def _store(key, code):
    _memory[key] = code
    if _state["dir"] is None:
        return
    try:
        fd, tmp = tempfile.mkstemp(dir=_state["dir"])
        with os.fdopen(fd, "wb") as out:
            out.write(marshal.dumps(code))
        os.replace(tmp, os.path.join(_state["dir"], key))
    except OSError:
        pass


def _load(key):
    code = _memory.get(key)
    if code is None and _state["dir"] is not None:
        try:
            with open(os.path.join(_state["dir"], key), "rb") as cached:
                code = _memory[key] = marshal.loads(cached.read())
        except (OSError, EOFError, ValueError, TypeError):
            return None
    return code


def _make_run_dir(base):
    """A directory of this run, 0700, removed at exit; others' left by killed runs removed."""
    if not os.path.isdir(base) or not os.access(base, os.W_OK):
        return None
    for name in os.listdir(base):
        pid = name[len(PREFIX):].split("-", 1)[0]
        path = os.path.join(base, name)
        if name.startswith(PREFIX) and pid.isdigit() and not _alive(int(pid)):
            if os.stat(path).st_uid == os.getuid():
                shutil.rmtree(path, ignore_errors=True)
    owner = os.getpid()
    path = tempfile.mkdtemp(prefix="%s%d-" % (PREFIX, owner), dir=base)

    def remove():
        if os.getpid() == owner:
            shutil.rmtree(path, ignore_errors=True)

    atexit.register(remove)
    return path


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def install(base=SHM):
    """Patch Ansible's Jinja environment to share compiled templates; True if it did."""
    from ansible.module_utils.ansible_release import __version__

    if not SUPPORTED.match(__version__) or _state.get("installed"):
        return bool(_state.get("installed"))
    try:
        _patch(__version__)
    except (ImportError, AttributeError):
        # another patch release's internals: Ansible's own compile, every time
        return False
    try:
        _state["dir"] = _make_run_dir(base)
    except OSError:
        _state["dir"] = None
    _state["installed"] = True
    return True


def _patch(version):
    from ansible._internal._datatag._tags import VaultedValue
    from ansible._internal._templating import _jinja_bits
    from ansible._internal._templating._jinja_common import _TemplateConfig
    from ansible.utils.collection_loader import AnsibleCollectionConfig
    from jinja2 import nodes
    from jinja2.environment import TemplateExpression

    # what the key reads, there before anything is patched
    _jinja_bits._TemplateCompileContext.current  # pylint: disable=pointless-statement
    _jinja_bits._TEMPLATE_OVERRIDE_FIELD_NAMES  # pylint: disable=pointless-statement
    _TemplateConfig.allow_embedded_templates  # pylint: disable=pointless-statement
    env_class = _jinja_bits.AnsibleEnvironment
    env_class._debuggable_template_source  # pylint: disable=pointless-statement
    ansible_compile = env_class.compile
    ansible_compile_expression = env_class.compile_expression

    def key_of(env, kind, source, *args):
        if env._debuggable_template_source or VaultedValue.is_tagged_on(source):
            return None
        context = _jinja_bits._TemplateCompileContext.current(optional=True)
        settings = (
            version, kind, args, type(env).__qualname__,
            tuple(getattr(env, name) for name in _jinja_bits._TEMPLATE_OVERRIDE_FIELD_NAMES),
            env.optimized, repr(env.autoescape), tuple(sorted(env.extensions)), env.is_async,
            getattr(env.finalize, "__qualname__", repr(env.finalize)),
            _TemplateConfig.allow_embedded_templates, AnsibleCollectionConfig.default_collection,
            context.escape_backslashes if context else None,
        )
        digest = hashlib.sha256(repr(settings).encode())
        digest.update(b"\0" + str.encode(source, "utf-8", "surrogatepass"))
        return digest.hexdigest()

    def compile(self, source, name=None, filename=None, raw=False, defer_init=False):
        key = None
        try:
            if raw:
                pass
            elif isinstance(source, str):
                key = key_of(self, "template", source, name, filename, defer_init)
            elif isinstance(source, nodes.Template) and name is None and filename is None:
                key = _pending.get()
            code = key and _load(key)
        except Exception:  # pylint: disable=broad-except
            key = code = None
        if code is not None:
            return code
        code = ansible_compile(self, source, name, filename, raw, defer_init)
        if key:
            _store(key, code)
        return code

    def compile_expression(self, source, undefined_to_none=True):
        try:
            key = key_of(self, "expression", source) if isinstance(source, str) else None
            code = key and _load(key)
        except Exception:  # pylint: disable=broad-except
            key = code = None
        if code is not None:
            template = self.template_class.from_code(self, code, self.make_globals(None), None)
            return TemplateExpression(template, undefined_to_none)
        token = _pending.set(key)
        try:
            return ansible_compile_expression(self, source, undefined_to_none)
        finally:
            _pending.reset(token)

    env_class.compile = compile
    env_class.compile_expression = compile_expression
