"""berth's WSGI reference application: a small Flask app with a database, Redis and JWT."""
