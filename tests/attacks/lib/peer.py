#!/usr/bin/env python3
"""The "external" side of the attack suite, run inside a network namespace.

Usage: peer.py

- HTTP on port 80 and 443 (plain HTTP): GET returns a small body (an
  instance-metadata answer for /latest/..., a fake model for anything else);
  POST and PUT read the whole body and answer 200.
- A raw sink on port 9000 and 3333: reads until the client closes, after
  sending `exit` (so a reverse shell wired to it ends).

Prints READY once every listener is up.
"""

import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *_args):
        pass

    def answer(self, body):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path.startswith("/latest/") or self.path.startswith("/computeMetadata/"):
            self.answer(b'{"AccessKeyId": "ASIAEXAMPLE", "SecretAccessKey": "x", "Token": "y"}')
        else:
            self.answer(b"\x00" * 4096)

    def read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 16))
            if not chunk:
                break
            length -= len(chunk)

    def do_POST(self):
        self.read_body()
        self.answer(b"ok")

    do_PUT = do_POST


def sink(port):
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", port))
    server.listen(16)

    def serve(conn):
        with conn:
            try:
                conn.sendall(b"exit\n")
                while conn.recv(1 << 16):
                    pass
            except OSError:
                pass

    while True:
        conn, _ = server.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


def main():
    servers = [ThreadingHTTPServer(("0.0.0.0", port), Handler) for port in (80, 443)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    for port in (9000, 3333):
        threading.Thread(target=sink, args=(port,), daemon=True).start()
    print("READY", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    sys.exit(main())
