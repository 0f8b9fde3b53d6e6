# A CI job on an AI host: checks out a model repository, exports ONNX,
# checksums the weights, archives the logs and runs the tests.
. "$LIB/common.sh"
mkdir -p "$WORK/repo/.git/hooks" "$WORK/repo/models" "$WORK/repo/logs"
cp /dev/null "$WORK/repo/.git/hooks/pre-commit.sample"
"$PY" - "$WORK/repo" <<'PY'
import os, sys
import numpy as np
from safetensors.numpy import save_file, load_file
import onnx
from onnx import TensorProto, helper
repo = sys.argv[1]
save_file({"w": np.ones(16, dtype=np.float32)}, os.path.join(repo, "models", "weights.safetensors"))
w = load_file(os.path.join(repo, "models", "weights.safetensors"))["w"]
x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 16])
y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 16])
init = helper.make_tensor("w", TensorProto.FLOAT, [16], w.tolist())
graph = helper.make_graph([helper.make_node("Mul", ["x", "w"], ["y"])], "g", [x], [y], [init])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
model.ir_version = 8
onnx.save(model, os.path.join(repo, "models", "model.onnx"))
PY
(cd "$WORK/repo" && sha256sum models/weights.safetensors models/model.onnx > SHA256SUMS)
echo "build ok" > "$WORK/repo/logs/build.log"
tar czf "$WORK/logs.tgz" -C "$WORK/repo" logs
"$PY" -m compileall -q "$LIB" > /dev/null
