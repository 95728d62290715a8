"""The full stack with PostgreSQL: the shared checks, then the work under load (in this order:
the load tests use the token the shared checks issue)."""

from stack_tests import *  # noqa: F401,F403 (pytest collects the imported tests)
from stack_load_tests import *  # noqa: F401,F403
