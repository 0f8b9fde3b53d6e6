#!/usr/bin/env python3
"""Runs a Jupyter kernel the way a notebook server does, for aiwatch tests.

Usage: notebook_kernel.py <dir>

Starts `python3 -m ipykernel_launcher -f <dir>/kernel.json` through
jupyter-client (the kernel's argv is what aiwatch recognises), runs a cell
of numpy code in it, prints `RESULT <value>`, shuts the kernel down and
exits. With `--hold` the kernel stays up until SIGTERM, and `KERNEL <pid>`
is printed once it is ready.
"""

import os
import signal
import sys
import threading

from jupyter_client import KernelManager

CELL = "import numpy as np\nprint(int(np.arange(10).sum()))"


def main(argv):
    args = [a for a in argv[1:] if a != "--hold"]
    if len(args) != 1:
        print("usage: notebook_kernel.py <dir> [--hold]", file=sys.stderr)
        return 2
    os.makedirs(args[0], exist_ok=True)
    manager = KernelManager(connection_file=os.path.join(args[0], "kernel.json"))
    # The launcher argv, spelled out: python3 -m ipykernel_launcher -f <file>.
    manager.kernel_cmd = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    manager.start_kernel()
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        output = []

        def collect(message):
            if message["msg_type"] == "stream":
                output.append(message["content"]["text"])

        reply = client.execute_interactive(CELL, output_hook=collect, timeout=60)
        if reply["content"]["status"] != "ok":
            print("cell failed", file=sys.stderr)
            return 1
        print(f"RESULT {''.join(output).strip()}", flush=True)
        if "--hold" in argv:
            print(f"KERNEL {manager.provisioner.process.pid}", flush=True)
            done = threading.Event()
            signal.signal(signal.SIGTERM, lambda *_: done.set())
            done.wait()
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
