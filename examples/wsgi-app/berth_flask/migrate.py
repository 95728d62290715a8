"""`python -m berth_flask.migrate`: creates the table if it is missing; safe to run again.

Needs only DATABASE_URL, so a deploy can run it before the rest of the environment is in place.
Prints one line and exits 0, or prints one line on stderr and exits 1.
"""

import os
import sys

from berth_flask.config import ConfigError, check_database_url, fail, redact, url_passwords
from berth_flask.db import Database


def main(environ=None) -> int:
    url = (os.environ if environ is None else environ).get("DATABASE_URL")
    try:
        if not url:
            raise ConfigError("DATABASE_URL is missing")
        check_database_url(url)
    except ConfigError as exc:
        fail(str(exc), 1)
    db = Database(url)
    try:
        db.migrate()
    except Exception as exc:  # noqa: BLE001 - whatever failed, report it in one line
        reason = redact(f"{type(exc).__name__}: {exc}", url_passwords(url))
        # One line: psycopg's messages span several.
        print(f"berth_flask: migration failed ({db.engine}): {' '.join(reason.split())}", file=sys.stderr)
        return 1
    print(f"berth_flask: schema up to date ({db.engine}: notes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
