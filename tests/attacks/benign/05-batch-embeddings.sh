# A batch embedding job: loads an ONNX encoder, embeds a data set, writes
# the vectors, then reports to a metrics endpoint on loopback.
. "$LIB/common.sh"
"$PY" - "$WORK" <<'PY'
import os, sys
import numpy as np
import onnx, onnxruntime as ort
from onnx import TensorProto, helper
root = sys.argv[1]
os.makedirs(os.path.join(root, "models"), exist_ok=True)
os.makedirs(os.path.join(root, "data"), exist_ok=True)
x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 8])
y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 8])
w = helper.make_tensor("w", TensorProto.FLOAT, [8, 8], np.eye(8, dtype=np.float32).flatten().tolist())
graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "enc", [x], [y], [w])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
model.ir_version = 8
path = os.path.join(root, "models", "encoder.onnx")
onnx.save(model, path)
np.save(os.path.join(root, "data", "corpus.npy"), np.random.rand(512, 8).astype(np.float32))
session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
corpus = np.load(os.path.join(root, "data", "corpus.npy"))
vectors = np.concatenate([session.run(["y"], {"x": corpus[i:i + 64]})[0] for i in range(0, len(corpus), 64)])
np.save(os.path.join(root, "data", "embeddings.npy"), vectors)
PY
