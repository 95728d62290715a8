"""`python -m berth_demo.migrate`: creates the tables if they are missing; safe to run again.

Needs only DATABASE_URL, so a deploy can run it before the rest of the environment is in place.
Prints one line and exits 0, or prints one line on stderr and exits 1.
"""

import os
import sys

from berth_demo.config import ConfigError, check_database_url, redact, url_passwords
from berth_demo.db import Database


def main(environ=None) -> int:
    env = os.environ if environ is None else environ
    url = env.get("DATABASE_URL")
    try:
        if not url:
            raise ConfigError("DATABASE_URL is missing")
        check_database_url(url)
    except ConfigError as exc:
        print(f"berth_demo: configuration error: {exc}", file=sys.stderr)
        return 1
    db = Database(url)
    try:
        db.migrate()
    except Exception as exc:  # noqa: BLE001 - whatever failed, report it in one line
        reason = redact(f"{type(exc).__name__}: {exc}", url_passwords(url))
        # One line: psycopg's messages span several.
        print(f"berth_demo: migration failed ({db.engine}): {' '.join(reason.split())}",
              file=sys.stderr)
        return 1
    print(f"berth_demo: schema up to date ({db.engine}: notes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
