"""A fault-injecting HTTP proxy in front of a real server (the moto server in tests).

Each request is forwarded as is, unless a rule says otherwise: answer with an AWS
throttling error, a 500, or drop the connection, for the first `times` requests whose
body names an operation (`Action=DescribeInstances`). What it did is counted, so a test
can check that rhplan retried and by how much.
"""
from __future__ import annotations

import http.client
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

THROTTLE = (503, b'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error>'
                 b"<Code>RequestLimitExceeded</Code><Message>Request limit exceeded."
                 b"</Message></Error></Errors><RequestID>fault</RequestID></Response>")
SERVER_ERROR = (500, b'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error>'
                     b"<Code>InternalError</Code><Message>An internal error has occurred"
                     b"</Message></Error></Errors><RequestID>fault</RequestID></Response>")


@dataclass
class Rule:
    operation: str  # matched in the request body, e.g. "DescribeInstances"
    answer: tuple[int, bytes] | None  # None: drop the connection
    times: int  # how many matching requests get it (-1: all)
    hits: int = 0


@dataclass
class FaultyProxy:
    upstream: str
    rules: list[Rule] = field(default_factory=list)
    forwarded: int = 0

    def start(self) -> FaultyProxy:
        proxy = self
        up = urlsplit(self.upstream)

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                for rule in proxy.rules:
                    if (f"Action={rule.operation}".encode() in body
                            and (rule.times < 0 or rule.hits < rule.times)):
                        rule.hits += 1
                        if rule.answer is None:
                            self.close_connection = True
                            self.connection.close()
                            return
                        status, payload = rule.answer
                        self.send_response(status)
                        self.send_header("Content-Type", "text/xml")
                        self.send_header("Content-Length", str(len(payload)))
                        self.end_headers()
                        self.wfile.write(payload)
                        return
                conn = http.client.HTTPConnection(up.hostname, up.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                proxy.forwarded += 1
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
