"""Writes models/dew-point-linear.onnx: a regressor for the `onnx` stage's
regression outputs (one value per row).

It is the simple dew-point approximation (Lawrence 2005, good within about
1 C above 50 % relative humidity): dew = T - (100 - RH) / 5, written as
one MatMul and one Add, so the expected value of every row is known
exactly. Not needed to build or test Weir (the model is committed). To
reproduce it:

    python3 -m venv /tmp/onnx && /tmp/onnx/bin/pip install onnx==1.17.0
    /tmp/onnx/bin/python models/make_dew_point.py
"""

import pathlib

import onnx
from onnx import TensorProto, helper

weights = helper.make_tensor("w", TensorProto.FLOAT, [2, 1], [1.0, 0.2])
bias = helper.make_tensor("b", TensorProto.FLOAT, [1], [-20.0])
graph = helper.make_graph(
    [
        helper.make_node("MatMul", ["input", "w"], ["scaled"]),
        helper.make_node("Add", ["scaled", "b"], ["dew_point"]),
    ],
    "dew-point-linear",
    [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 2])],
    [helper.make_tensor_value_info("dew_point", TensorProto.FLOAT, ["N", 1])],
    initializer=[weights, bias],
)
model = helper.make_model(
    graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="weir"
)
model.ir_version = 8
onnx.checker.check_model(model)
out = pathlib.Path(__file__).with_name("dew-point-linear.onnx")
onnx.save(model, out)
print(f"wrote {out}")
