#!/usr/bin/env python3
"""A small inference server for aiwatch end-to-end tests.

Usage: onnx_server.py <dir> <port>

Builds a tiny ONNX model (y = x * w + b) and a safetensors file under
<dir>/models/, loads and runs the model with onnxruntime, reads the
Hugging Face token at $HOME/.cache/huggingface/token (if present), then
serves predictions on 127.0.0.1:<port> (0 picks a free port):

  GET  /predict?x=1,2,3     -> {"y": [...]}
  POST /predict  {"x": [...]} -> {"y": [...]}
  GET  /spawn               runs `/bin/sh -c true` as a child process
  GET  /connect?port=N      opens a TCP connection to 127.0.0.1:N, sends
                            one line and closes it
  GET  /health              -> ok

Prints `READY <port>` on stdout once serving; exits cleanly on SIGTERM.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper
from safetensors.numpy import load_file, save_file

WIDTH = 3


def build_model(models_dir):
    os.makedirs(models_dir, exist_ok=True)
    weights = np.arange(1, WIDTH + 1, dtype=np.float32)
    bias = np.full(WIDTH, 0.5, dtype=np.float32)
    safetensors_path = os.path.join(models_dir, "tiny.safetensors")
    save_file({"w": weights, "b": bias}, safetensors_path)

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, WIDTH])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, WIDTH])
    w_init = helper.make_tensor("w", TensorProto.FLOAT, [WIDTH], weights.tolist())
    b_init = helper.make_tensor("b", TensorProto.FLOAT, [WIDTH], bias.tolist())
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "w"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])],
        "tiny",
        [x],
        [y],
        [w_init, b_init],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx_path = os.path.join(models_dir, "tiny.onnx")
    onnx.save(model, onnx_path)
    return onnx_path, safetensors_path


def read_token():
    path = os.path.join(os.path.expanduser("~"), ".cache", "huggingface", "token")
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError:
        return None


class Model:
    def __init__(self, onnx_path, safetensors_path):
        # Load both files the way real servers do: the tensors, then the graph.
        self.tensors = load_file(safetensors_path)
        self.session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
        self.lock = threading.Lock()

    def predict(self, values):
        row = np.zeros((1, WIDTH), dtype=np.float32)
        for i, value in enumerate(values[:WIDTH]):
            row[0, i] = float(value)
        with self.lock:
            (out,) = self.session.run(["y"], {"x": row})
        return out[0].tolist()


def make_handler(model):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_args):
            pass

        def reply(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            url = urlparse(self.path)
            if url.path == "/predict":
                raw = parse_qs(url.query).get("x", ["0"])[0]
                try:
                    values = [float(v) for v in raw.split(",") if v]
                except ValueError:
                    self.reply(400, {"error": "x must be comma-separated numbers"})
                    return
                self.reply(200, {"y": model.predict(values)})
            elif url.path == "/spawn":
                code = subprocess.call(["/bin/sh", "-c", "true"])
                self.reply(200, {"spawned": "/bin/sh -c true", "exit": code})
            elif url.path == "/connect":
                try:
                    port = int(parse_qs(url.query).get("port", [""])[0])
                except ValueError:
                    self.reply(400, {"error": "port must be a number"})
                    return
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                        conn.sendall(b"hello\n")
                    self.reply(200, {"connected": port})
                except OSError as err:
                    self.reply(502, {"error": str(err)})
            elif url.path == "/health":
                self.reply(200, {"status": "ok"})
            else:
                self.reply(404, {"error": "not found"})

        def do_POST(self):
            if urlparse(self.path).path != "/predict":
                self.reply(404, {"error": "not found"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            try:
                values = json.loads(self.rfile.read(length) or b"{}").get("x", [])
                self.reply(200, {"y": model.predict([float(v) for v in values])})
            except (ValueError, AttributeError, TypeError):
                self.reply(400, {"error": "body must be {\"x\": [numbers]}"})

    return Handler


def main(argv):
    if len(argv) != 3:
        print("usage: onnx_server.py <dir> <port>", file=sys.stderr)
        return 2
    onnx_path, safetensors_path = build_model(os.path.join(argv[1], "models"))
    model = Model(onnx_path, safetensors_path)
    model.predict([1.0, 2.0, 3.0])
    token = read_token()
    server = ThreadingHTTPServer(("127.0.0.1", int(argv[2])), make_handler(model))

    def stop(_signum, _frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"READY {server.server_address[1]}", flush=True)
    print(f"token {'found' if token else 'absent'}", file=sys.stderr, flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
