#!/usr/bin/env python3
"""The TLS request loop of `cargo xtask bench`'s tls-request case.

Usage: tls_request.py PORT CA_CERT REQUESTS [MARKER...]

A CA_CERT of `-` speaks plain HTTP instead (the plain-request case, to a
model server's port).

Sends REQUESTS small POSTs of an LLM chat request over one keep-alive TLS
connection (http.client over the system's OpenSSL, so SSL_write_ex and
SSL_read_ex run) to tls_server.py on 127.0.0.1:PORT, Nagle off as in the
API clients' HTTP stacks. Prints READY once connected, waits for a line on
standard input, runs the loop and prints `RESULT wall_ns=<n> cpu_ns=<n>`:
the wall and CPU time (user + system) of this process during the loop.
Trailing MARKER arguments only make the command line match a declared
workload's argv pattern. TLS_REQUEST_PATH (default /v1/chat/completions)
is the path posted to: another one keeps an untracked client untracked.
"""

import http.client
import os
import socket
import ssl
import sys
import time

BODY = b'{"model":"bench","messages":[{"role":"user","content":"ping"}]}'
HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer sk-bench"}
PATH = os.environ.get("TLS_REQUEST_PATH", "/v1/chat/completions")


def main():
    if len(sys.argv) < 4:
        print("usage: tls_request.py PORT CA_CERT REQUESTS [MARKER...]", file=sys.stderr)
        return 2
    try:
        port, requests = int(sys.argv[1]), int(sys.argv[3])
    except ValueError:
        print("tls_request.py: PORT and REQUESTS must be numbers", file=sys.stderr)
        return 2
    if sys.argv[2] == "-":
        connection = http.client.HTTPConnection("127.0.0.1", port)
    else:
        context = ssl.create_default_context(cafile=sys.argv[2])
        connection = http.client.HTTPSConnection("localhost", port, context=context)
    connection.connect()
    connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    print("READY", flush=True)
    sys.stdin.readline()
    wall = time.perf_counter_ns()
    cpu = time.process_time_ns()
    for _ in range(requests):
        connection.request("POST", PATH, body=BODY, headers=HEADERS)
        response = connection.getresponse()
        if response.status != 200:
            print(f"tls_request.py: the server answered {response.status}", file=sys.stderr)
            return 1
        response.read()
    cpu = time.process_time_ns() - cpu
    wall = time.perf_counter_ns() - wall
    connection.close()
    print(f"RESULT wall_ns={wall} cpu_ns={cpu}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
