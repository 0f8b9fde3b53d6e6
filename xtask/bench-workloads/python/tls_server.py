#!/usr/bin/env python3
"""The TLS server of `cargo xtask bench`'s tls-request case.

Usage: tls_server.py CERT KEY
       tls_server.py --plain PORT

Serves HTTP/1.1 with keep-alive over TLS on 127.0.0.1 (a free port), or in
plain HTTP on 127.0.0.1:PORT (a model server's port, as Ollama's), and
answers every POST with a small JSON body, as an LLM API answers a short
completion. Nagle is off, as on real API servers. Prints `READY <port>`
once listening; stops on SIGTERM.
"""

import signal
import socket
import ssl
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ANSWER = b'{"id":"bench","choices":[{"message":{"role":"assistant","content":"ok"}}]}'


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(length)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(ANSWER)))
        self.end_headers()
        self.wfile.write(ANSWER)

    def log_message(self, *args):
        pass


def main():
    if len(sys.argv) != 3:
        print("usage: tls_server.py CERT KEY | --plain PORT", file=sys.stderr)
        return 2
    if sys.argv[1] == "--plain":
        try:
            server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), Handler)
        except (OSError, ValueError) as error:
            print(f"tls_server.py: cannot listen on port {sys.argv[2]}: {error}", file=sys.stderr)
            return 1
        server.daemon_threads = True
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(sys.argv[1], sys.argv[2])
        except (OSError, ssl.SSLError) as error:
            print(f"tls_server.py: cannot load the certificate: {error}", file=sys.stderr)
            return 1
        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        server.socket = context.wrap_socket(server.socket, server_side=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"READY {server.server_address[1]}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
