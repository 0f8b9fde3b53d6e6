#!/usr/bin/env python3
"""Runs one cell in a real Jupyter kernel (`python -m ipykernel_launcher`),
the way a notebook server does. Usage: notebook.py <dir> <cell.py>

Prints the cell's output and exits with 1 if the cell raised.
"""

import os
import sys

from jupyter_client import KernelManager


def main(argv):
    workdir, cell_path = argv[1], argv[2]
    with open(cell_path, encoding="utf-8") as handle:
        cell = handle.read()
    manager = KernelManager(connection_file=os.path.join(workdir, "kernel.json"))
    manager.kernel_cmd = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    manager.start_kernel(cwd=workdir)
    client = manager.client()
    client.start_channels()
    client.wait_for_ready(timeout=60)
    failed = False

    def output(message):
        nonlocal failed
        content = message["content"]
        if message["msg_type"] == "stream":
            sys.stdout.write(content["text"])
        elif message["msg_type"] == "error":
            failed = True
            sys.stdout.write("\n".join(content["traceback"]) + "\n")

    client.execute_interactive(cell, timeout=120, output_hook=output)
    client.stop_channels()
    manager.shutdown_kernel(now=False)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
