#!/usr/bin/env python3
"""A numpy training loop for aiwatch end-to-end tests.

Usage: train_loop.py <dir> [steps] [checkpoint_every]

Fits y = 3x + 1 by gradient descent on data it generates into
<dir>/data/train.npy, and writes a checkpoint every `checkpoint_every`
steps to <dir>/checkpoints/step-<n>.safetensors (and the final weights to
<dir>/checkpoints/final.safetensors). Prints `DONE <loss>` at the end;
exits cleanly on SIGTERM after the current step.
"""

import os
import signal
import sys
import time

import numpy as np
from safetensors.numpy import save_file

stopping = False


def stop(_signum, _frame):
    global stopping
    stopping = True


def main(argv):
    if len(argv) < 2:
        print("usage: train_loop.py <dir> [steps] [checkpoint_every]", file=sys.stderr)
        return 2
    root = argv[1]
    steps = int(argv[2]) if len(argv) > 2 else 200
    every = max(1, int(argv[3]) if len(argv) > 3 else 50)
    signal.signal(signal.SIGTERM, stop)

    data_dir = os.path.join(root, "data")
    ckpt_dir = os.path.join(root, "checkpoints")
    os.makedirs(data_dir, exist_ok=True)
    os.makedirs(ckpt_dir, exist_ok=True)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=256).astype(np.float32)
    np.save(os.path.join(data_dir, "train.npy"), np.stack([x, 3 * x + 1]))
    data = np.load(os.path.join(data_dir, "train.npy"))
    x, y = data[0], data[1]

    w = np.zeros(1, dtype=np.float32)
    b = np.zeros(1, dtype=np.float32)
    loss = float("inf")
    for step in range(1, steps + 1):
        if stopping:
            break
        pred = w * x + b
        err = pred - y
        loss = float(np.mean(err**2))
        w -= 0.1 * np.mean(2 * err * x)
        b -= 0.1 * np.mean(2 * err)
        if step % every == 0:
            save_file({"w": w, "b": b}, os.path.join(ckpt_dir, f"step-{step}.safetensors"))
            time.sleep(0.01)
    save_file({"w": w, "b": b}, os.path.join(ckpt_dir, "final.safetensors"))
    print(f"DONE {loss:.6f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
