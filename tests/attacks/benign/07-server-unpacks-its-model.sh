# A server that unpacks its model archive into its model folder just before
# loading it, then serves.
. "$LIB/common.sh"
mkdir -p "$WORK/pkg/models" "$WORK/srv/models"
"$PY" - "$WORK/pkg/models" <<'PY'
import os, sys
import onnx
from onnx import TensorProto, helper
x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])
y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])
w = helper.make_tensor("w", TensorProto.FLOAT, [3], [1.0, 2.0, 3.0])
graph = helper.make_graph([helper.make_node("Mul", ["x", "w"], ["y"])], "m", [x], [y], [w])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
model.ir_version = 8
onnx.save(model, os.path.join(sys.argv[1], "model.onnx"))
PY
# The archive as the model's build published it.
"$PY" -c "
import tarfile
with tarfile.open('$WORK/model.tgz', 'w:gz') as t:
    t.add('$WORK/pkg/models', arcname='models')
"
cat > "$WORK/serve.py" <<PY
import tarfile, onnxruntime as ort, numpy as np
with tarfile.open("$WORK/model.tgz") as t:
    t.extractall("$WORK/srv")
s = ort.InferenceSession("$WORK/srv/models/model.onnx", providers=["CPUExecutionProvider"])
for _ in range(20):
    s.run(["y"], {"x": np.ones((1, 3), dtype=np.float32)})
PY
"$PY" "$WORK/serve.py"
