"""The HTTP contract: the app, its request path, and the gunicorn server that runs it."""
