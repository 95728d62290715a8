"""An HTTP receiver for the tests, on this machine (the hosts reach it at the podman gateway):
keeps each request's method, path and JSON body, answers 200 - a webhook's and a dead man's
switch's far end. Port 0 takes a free one (.port); .status is the answer to give."""

import http.server
import json
import threading


class Receiver:
    def __init__(self, address, port=0):
        self.requests, self.status = [], 200
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _keep(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                receiver.requests.append((self.command, self.path, json.loads(body) if body else None))
                self.send_response(receiver.status)
                self.end_headers()

            do_GET = do_POST = _keep  # noqa: N815 (http.server's names)

            def log_message(self, *args):
                del args

        self._server = http.server.ThreadingHTTPServer((address, port), Handler)
        self.port = self._server.server_address[1]

    def paths(self, prefix):
        return [path for _, path, _ in self.requests if path.startswith(prefix)]

    def __enter__(self):
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()
