"""berth's reference application: a small Starlette app with a database, Redis, JWT and a WebSocket."""
