"""Ansible's linear strategy run through Mitogen, or plain linear where Mitogen is missing.

Mitogen keeps one Python interpreter per host over one SSH connection and sends it each task,
where plain Ansible copies and starts a new module process per task: a no-op site.yml takes
a fraction of the time (docs/PERFORMANCE.md). ansible.cfg names this strategy; requirements.txt
pins Mitogen.
"""
from __future__ import annotations

import os

from ansible.utils.display import Display
from ansible_collections.berth.stack.plugins.plugin_utils import template_cache

# Each template compiled once per run, not once per task (plugin_utils/template_cache.py);
# BERTH_TEMPLATE_CACHE=0 turns it off, to compare.
if os.environ.get("BERTH_TEMPLATE_CACHE", "1") != "0":
    template_cache.install()

try:
    import ansible_mitogen.affinity
    import ansible_mitogen.loaders
    import ansible_mitogen.planner
    import ansible_mitogen.strategy
except ImportError:
    ansible_mitogen = None

if ansible_mitogen is None:
    from ansible.plugins.strategy.linear import StrategyModule as _Linear

    Display().warning("Mitogen is not installed (pip install -r requirements.txt): the plays run "
                      "on Ansible's own linear strategy, about twice as slow.")

    class StrategyModule(_Linear):
        pass
else:
    # Mitogen pins the controller, its workers and their SSH clients to CPUs of its choosing;
    # on a 2-core machine that is all on one core, whatever else runs there.
    ansible_mitogen.affinity.policy = ansible_mitogen.affinity.Policy()

    # For each task of a collection's module Mitogen lists every installed collection, reading
    # each one's metadata, and caches the list in the task's own forked worker, which dies with
    # it: listed once here, before the workers fork.
    import ansible.collections.list

    _COLLECTION_DIRS = []

    def _collection_dirs():
        if not _COLLECTION_DIRS:
            _COLLECTION_DIRS.extend(path.decode("utf-8") for path in ansible.collections.list.list_collection_dirs())
        return _COLLECTION_DIRS

    def _load_collections(invocation):
        invocation._extra_sys_paths.update(_collection_dirs())

    ansible_mitogen.planner._load_collections = _load_collections

    # For each module a run first uses, Mitogen finds the module_utils it needs by compiling
    # every file they import, basic.py and its dozens of helpers again each time: compiled once
    # per file here (in the process that scans, forked after this import).
    import ansible_mitogen.module_finder

    _COMPILED = {}

    def _compile_once(source, filename, mode):
        key = (source, filename, mode)
        if key not in _COMPILED:
            _COMPILED[key] = compile(source, filename, mode)
        return _COMPILED[key]

    ansible_mitogen.module_finder.compile = _compile_once

    _Linear = ansible_mitogen.loaders.strategy_loader.get("linear", class_only=True)

    class StrategyModule(ansible_mitogen.strategy.StrategyMixin, _Linear):
        def run(self, iterator, play_context, *args):
            # A play on the controller itself (`connection: local`, as Molecule's create and
            # destroy) gains little, and Mitogen's async runner hangs there importing a module
            # after it detaches: such a play runs as plain linear.
            if iterator._play.connection == "local":
                return _Linear.run(self, iterator, play_context, *args)
            _collection_dirs()
            return super().run(iterator, play_context, *args)
