#!/usr/bin/env python3
"""The inference-server case of `cargo xtask bench`: an ONNX Runtime model
server under a fixed concurrent load.

Usage: onnx_server.py DIR LOAD_GENERATOR REQUESTS CONCURRENCY [MARKER...]

Builds a small multilayer perceptron (256 inputs, two hidden layers of 256
with ReLU, 16 outputs; fixed pseudo-random weights) as DIR/models/mlp.onnx,
loads it with ONNX Runtime (one intra-op thread, as a server with one
worker per core would) and serves `POST /v1/predict` on 127.0.0.1 with
HTTP/1.1 keep-alive, a thread per connection. It prints `READY` and waits
for a line on standard input (the harness first makes sure the agent tracks
this process), then runs the native load generator
(`LOAD_GENERATOR http-load PORT REQUESTS CONCURRENCY BODY_FILE`: CONCURRENCY
keep-alive connections sending REQUESTS requests in all, a new one as soon
as the last answered), waits for it and prints one line:

    RESULT wall_ns=<n> cpu_ns=<n> requests=<n> p50_ns=<n> p99_ns=<n>

wall_ns, requests and the latency percentiles are the load generator's;
cpu_ns is this server's own CPU time (user + system, every thread) over the
load, not the load generator's. Trailing MARKER arguments are ignored: they
only make the command line match a declared workload's argv pattern.
"""

import json
import os
import resource
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

INPUTS = 256
HIDDEN = 256
OUTPUTS = 16


def build_model(path):
    rng = np.random.default_rng(7)
    shapes = [(INPUTS, HIDDEN), (HIDDEN, HIDDEN), (HIDDEN, OUTPUTS)]
    initializers = []
    nodes = []
    previous = "x"
    for index, (rows, cols) in enumerate(shapes):
        weight = (rng.standard_normal((rows, cols)) / np.sqrt(rows)).astype(np.float32)
        bias = np.zeros(cols, dtype=np.float32)
        initializers.append(numpy_helper.from_array(weight, f"w{index}"))
        initializers.append(numpy_helper.from_array(bias, f"b{index}"))
        nodes.append(helper.make_node("MatMul", [previous, f"w{index}"], [f"m{index}"]))
        out = "y" if index == len(shapes) - 1 else f"a{index}"
        nodes.append(helper.make_node("Add", [f"m{index}", f"b{index}"], [f"z{index}"]))
        if index < len(shapes) - 1:
            nodes.append(helper.make_node("Relu", [f"z{index}"], [out]))
        else:
            nodes.append(helper.make_node("Identity", [f"z{index}"], [out]))
        previous = out
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, INPUTS])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, OUTPUTS])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    onnx.save(model, path)


def make_handler(session):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out as two writes: without this, Nagle holds
        # the body until the client's delayed ACK, 40 ms a request.
        disable_nagle_algorithm = True

        def log_message(self, *_args):
            pass

        def reply(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            if self.path != "/v1/predict":
                self.reply(404, {"error": "not found"})
                return
            try:
                values = json.loads(body)["inputs"]
                row = np.asarray(values, dtype=np.float32).reshape(1, INPUTS)
            except (ValueError, KeyError, TypeError):
                self.reply(400, {"error": f'body must be {{"inputs": [{INPUTS} numbers]}}'})
                return
            (out,) = session.run(["y"], {"x": row})
            self.reply(200, {"outputs": out[0].tolist()})

    return Handler


def cpu_ns():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return int((usage.ru_utime + usage.ru_stime) * 1e9)


def main(argv):
    if len(argv) < 5:
        print(
            "usage: onnx_server.py DIR LOAD_GENERATOR REQUESTS CONCURRENCY [MARKER...]",
            file=sys.stderr,
        )
        return 2
    directory, load_generator, requests, concurrency = argv[1:5]
    model_path = os.path.join(directory, "models", "mlp.onnx")
    build_model(model_path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    session.run(["y"], {"x": np.zeros((1, INPUTS), dtype=np.float32)})
    body_path = os.path.join(directory, "request.json")
    rng = np.random.default_rng(11)
    with open(body_path, "w", encoding="utf-8") as handle:
        json.dump({"inputs": [round(float(v), 4) for v in rng.standard_normal(INPUTS)]}, handle)
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(session))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    print("READY", flush=True)
    sys.stdin.readline()
    before = cpu_ns()
    load = subprocess.run(
        [
            load_generator,
            "http-load",
            str(server.server_address[1]),
            requests,
            concurrency,
            body_path,
        ],
        stdout=subprocess.PIPE,
        check=False,
        text=True,
    )
    spent = cpu_ns() - before
    server.shutdown()
    server.server_close()
    if load.returncode != 0:
        print(f"the load generator failed with status {load.returncode}", file=sys.stderr)
        return 1
    fields = dict(
        field.split("=", 1) for field in load.stdout.split() if "=" in field
    )
    try:
        print(
            f"RESULT wall_ns={int(fields['wall_ns'])} cpu_ns={spent} "
            f"requests={int(fields['requests'])} p50_ns={int(fields['p50_ns'])} "
            f"p99_ns={int(fields['p99_ns'])}",
            flush=True,
        )
    except (KeyError, ValueError):
        print(f"the load generator said {load.stdout!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
