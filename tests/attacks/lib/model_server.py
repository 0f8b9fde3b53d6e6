#!/usr/bin/env python3
"""A model server with the flaws real AI servers had, for the attack suite.

Usage: model_server.py <dir>

Builds a small ONNX model under <dir>/models/, loads it with onnxruntime
and serves on 127.0.0.1 (a free port, printed as `READY <port>`):

  GET  /predict?x=1,2,3  inference
  POST /jobs             runs the body as a shell command (Ray's Jobs API:
                         ShadowRay)
  POST /validate         runs the body as Python in the server's process
                         (Langflow CVE-2025-3248)
  POST /load             unpickles the body (ShadowMQ: pickle over a socket)
  POST /pull?name=N      writes the body to <dir>/models/N unsanitised
                         (Ollama CVE-2024-37032 path traversal)
"""

import os
import pickle
import subprocess
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper


def build_model(models_dir):
    os.makedirs(models_dir, exist_ok=True)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])
    w = helper.make_tensor("w", TensorProto.FLOAT, [3], [1.0, 2.0, 3.0])
    graph = helper.make_graph([helper.make_node("Mul", ["x", "w"], ["y"])], "m", [x], [y], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = os.path.join(models_dir, "model.onnx")
    if not os.path.exists(path):
        onnx.save(model, path)
    return path


def main(argv):
    root = argv[1]
    models = os.path.join(root, "models")
    session = ort.InferenceSession(build_model(models), providers=["CPUExecutionProvider"])

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_args):
            pass

        def answer(self, body=b"ok"):
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            row = np.ones((1, 3), dtype=np.float32)
            (out,) = session.run(["y"], {"x": row})
            self.answer(str(out.tolist()).encode())

        def do_POST(self):
            url = urlparse(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if url.path == "/jobs":
                subprocess.run(body.decode(), shell=True, check=False)
            elif url.path == "/validate":
                exec(compile(body.decode(), "<validate>", "exec"), {})
            elif url.path == "/load":
                pickle.loads(body)
            elif url.path == "/pull":
                name = parse_qs(url.query)["name"][0]
                with open(os.path.join(models, name), "wb") as handle:
                    handle.write(body)
            self.answer()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"READY {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
