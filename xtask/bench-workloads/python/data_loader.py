#!/usr/bin/env python3
"""The data-loader loop of `cargo xtask bench`.

Usage: data_loader.py DATASET_DIR [MARKER...]

Reads every file under DATASET_DIR (one level of class folders, as an image
dataset is laid out) the way a PyTorch map-style Dataset's __getitem__ does:
open, read the whole file, close; one sample at a time, in a shuffled order
fixed by a seed, so every run reads the same files in the same order. No
torch: the loop is the file access, which is what aiwatch sees.

Prints READY once the file list is built, waits for a line on standard
input (the harness first makes sure the agent tracks this process), reads
every sample once and prints `RESULT wall_ns=<n> cpu_ns=<n> items=<n>`:
the wall and CPU time (user + system of this process) of the loop.
Trailing MARKER arguments are ignored: they only make the command line
match a declared workload's argv pattern.
"""

import os
import random
import sys
import time


class FolderDataset:
    """A map-style dataset of raw samples: one file per item."""

    def __init__(self, root):
        self.paths = []
        for folder in sorted(os.listdir(root)):
            directory = os.path.join(root, folder)
            self.paths.extend(os.path.join(directory, name) for name in sorted(os.listdir(directory)))

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        with open(self.paths[index], "rb") as handle:
            return handle.read()


def main():
    if len(sys.argv) < 2:
        print("usage: data_loader.py DATASET_DIR [MARKER...]", file=sys.stderr)
        return 2
    try:
        dataset = FolderDataset(sys.argv[1])
    except OSError as error:
        print(f"data_loader.py: cannot list the dataset: {error}", file=sys.stderr)
        return 1
    if len(dataset) == 0:
        print(f"data_loader.py: {sys.argv[1]} holds no samples", file=sys.stderr)
        return 1
    order = list(range(len(dataset)))
    random.Random(17).shuffle(order)
    print("READY", flush=True)
    sys.stdin.readline()
    wall = time.perf_counter_ns()
    cpu = time.process_time_ns()
    total = 0
    for index in order:
        total += len(dataset[index])
    cpu = time.process_time_ns() - cpu
    wall = time.perf_counter_ns() - wall
    if total == 0:
        print("data_loader.py: every sample was empty", file=sys.stderr)
        return 1
    print(f"RESULT wall_ns={wall} cpu_ns={cpu} items={len(order)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
