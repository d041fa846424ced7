"""A fault-injecting HTTP proxy in front of a real server (the moto server in tests).

Each request is forwarded as is, unless a rule says otherwise: answer with an AWS
throttling error, a 500, or drop the connection, for the first `times` requests whose
body names an operation (`Action=DescribeInstances`). A rule can also be slow (wait
`delay` seconds first: past the client's read timeout, the answer never arrives in
time) and can act after the server did (`after_upstream=True`: the request reaches the
server, which carries it out, and its answer is then lost, delayed or replaced, the
case where a retry meets what the first attempt already made). What it did is counted,
so a test can check that rhplan retried and by how much.

moto ignores RunInstances' ClientToken (it launches again); EC2 answers a repeated
token with the instances the first call launched. With `client_tokens=True` the proxy
does what EC2 does: a RunInstances whose ClientToken the server already answered gets
that answer again, so a retry after a lost answer is tested as it happens on EC2.
"""
from __future__ import annotations

import http.client
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

THROTTLE = (503, b'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error>'
                 b"<Code>RequestLimitExceeded</Code><Message>Request limit exceeded."
                 b"</Message></Error></Errors><RequestID>fault</RequestID></Response>")
SERVER_ERROR = (500, b'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error>'
                     b"<Code>InternalError</Code><Message>An internal error has occurred"
                     b"</Message></Error></Errors><RequestID>fault</RequestID></Response>")
# A rule's answer: forward the server's own answer (with a rule's delay: a slow answer)
FORWARD = (0, b"")


@dataclass
class Rule:
    operation: str  # matched in the request body, e.g. "DescribeInstances"
    answer: tuple[int, bytes] | None  # None: drop the connection; FORWARD: the real one
    times: int  # how many matching requests get it (-1: all)
    hits: int = 0
    delay: float = 0.0  # seconds to wait before answering (or dropping)
    after_upstream: bool = False  # the server gets the request first


@dataclass
class FaultyProxy:
    upstream: str
    rules: list[Rule] = field(default_factory=list)
    forwarded: int = 0
    seen: list[str] = field(default_factory=list)  # every operation asked, in order
    client_tokens: bool = False  # answer a repeated RunInstances ClientToken as EC2 does
    replayed: int = 0  # launches answered from an earlier call with the same token
    _launches: dict[str, tuple[int, list[tuple[str, str]], bytes]] = field(
        default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _launch_lock: threading.Lock = field(default_factory=threading.Lock)

    def _rule_for(self, body: bytes) -> Rule | None:
        with self._lock:
            action = body.split(b"Action=", 1)[1].split(b"&", 1)[0] if b"Action=" in body \
                else b"?"
            self.seen.append(action.decode(errors="replace"))
            for rule in self.rules:
                if (f"Action={rule.operation}&".encode() in body + b"&"
                        and (rule.times < 0 or rule.hits < rule.times)):
                    rule.hits += 1
                    return rule
        return None

    def start(self) -> FaultyProxy:
        proxy = self
        up = urlsplit(self.upstream)

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
                self.send_response(status)
                for k, v in headers:
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
                token = ""
                if proxy.client_tokens and b"Action=RunInstances&" in body + b"&":
                    token = (parse_qs(body.decode()).get("ClientToken") or [""])[0]
                if not token:
                    return self._upstream(body)
                # one launch at a time: a retry that comes while the first call is still
                # with the server waits for its answer, as on EC2
                with proxy._launch_lock:
                    if token in proxy._launches:
                        proxy.replayed += 1
                        return proxy._launches[token]
                    answer = self._upstream(body)
                    if answer[0] == 200:
                        proxy._launches[token] = answer
                    return answer

            def _upstream(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
                conn = http.client.HTTPConnection(up.hostname, up.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                with proxy._lock:
                    proxy.forwarded += 1
                return resp.status, resp.getheaders(), data

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                rule = proxy._rule_for(body)
                if rule is None:
                    self._send(*self._forward(body))
                    return
                real = self._forward(body) if rule.after_upstream else None
                if rule.delay:
                    time.sleep(rule.delay)
                if rule.answer is None:
                    self.close_connection = True
                    self.connection.close()
                elif rule.answer is FORWARD:
                    self._send(*(real or self._forward(body)))
                else:
                    status, payload = rule.answer
                    self._send(status, [("Content-Type", "text/xml")], payload)

            def handle_one_request(self) -> None:
                # a client that gave up on a slow answer is gone: not an error here
                try:
                    super().handle_one_request()
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
