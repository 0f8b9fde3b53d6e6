# Fine-tuning: a training loop writes checkpoints, overwrites the "last"
# checkpoint each time, and saves final weights in two formats.
. "$LIB/common.sh"
"$PY" - "$WORK/run" <<'PY'
import os, sys, pickle
import numpy as np
from safetensors.numpy import save_file, load_file
out = sys.argv[1]
os.makedirs(os.path.join(out, "checkpoints"), exist_ok=True)
w = np.zeros(64, dtype=np.float32)
x = np.random.rand(256, 64).astype(np.float32)
y = x @ np.arange(64, dtype=np.float32)
for step in range(1, 61):
    grad = 2 * x.T @ (x @ w - y) / len(x)
    w -= 0.01 * grad
    if step % 20 == 0:
        save_file({"w": w}, os.path.join(out, "checkpoints", f"step-{step}.safetensors"))
        save_file({"w": w}, os.path.join(out, "checkpoints", "last.safetensors"))
        load_file(os.path.join(out, "checkpoints", "last.safetensors"))
with open(os.path.join(out, "checkpoints", "final.pt"), "wb") as f:
    pickle.dump({"w": w.tolist()}, f)
PY
