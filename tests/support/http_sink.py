#!/usr/bin/env python3
"""A local HTTP sink for the notification tests: every POST is appended to a file as one JSON
line (path, Idempotency-Key, Authorization, body); /ticket... answers with a ticket id, as a
helpdesk's e-ticket webhook would. Usage: http_sink.py PORT FILE"""
import http.server
import itertools
import json
import sys

port, path = int(sys.argv[1]), sys.argv[2]
out = open(path, "a", buffering=1)
tickets = itertools.count(1)


class Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            parsed = json.loads(body or b"null")
        except ValueError:
            parsed = body.decode("utf-8", "replace")
        record = {
            "path": self.path,
            "key": self.headers.get("Idempotency-Key"),
            "auth": self.headers.get("Authorization"),
            "body": parsed,
        }
        out.write(json.dumps(record) + "\n")
        answer = json.dumps({"ticket": "INC-%d" % next(tickets)} if self.path.startswith("/ticket") else {})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer.encode())

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", port), Sink).serve_forever()
