"""The full stack with SQLite, on Debian 12 and 13: the shared checks of molecule/stack_tests.py
(the work under load runs in stack-postgresql, whose rotation covers a database password)."""

from stack_tests import *  # noqa: F401,F403 (pytest collects the imported tests)
