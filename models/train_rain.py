"""Trains the rain classifiers shipped in models/ and writes their fixtures.

Predicts `rain` (precipitation recorded in the hour) from temperature (C)
and relative humidity (%) on data/weather_greensboro.csv, a typical
meteorological year of hourly observations (NREL TMY3, Greensboro NC, via
pvlib). Not needed to build or test Weir: the models and fixtures are
committed. To reproduce them:

    python3 -m venv /tmp/ml && /tmp/ml/bin/pip install \
        scikit-learn==1.4.2 skl2onnx==1.18.0 onnxruntime==1.19.2 onnx==1.15.0 numpy==1.26.4
    /tmp/ml/bin/python models/train_rain.py

Outputs:
- rain-mlp.onnx: a 16-16 ReLU MLP (input scaling folded into the first
  layer, because tract does not implement the ONNX-ML `Scaler` op), the
  model Weir's pipeline uses;
- rain-forest.onnx: a small random forest (10 trees, depth 5), kept to show
  tree ensembles load and predict correctly in tract;
- *-expected.csv: 2,000 rows of inputs with the label and probabilities
  onnxruntime computes for each model (the fixtures the tests compare with);
- unsupported-zipmap.onnx: a one-tree forest exported *with* ZipMap, an
  operator tract does not implement, for the test that a model tract
  cannot run is refused at load, naming the operator.
"""

import csv
import pathlib

import numpy as np
import onnx.helper
import onnxruntime as ort
from skl2onnx import to_onnx
from sklearn.ensemble import RandomForestClassifier
from sklearn.neural_network import MLPClassifier

HERE = pathlib.Path(__file__).resolve().parent
DATA = HERE.parent / "data" / "weather_greensboro.csv"


# skl2onnx writes the forest's `nodes_missing_value_tracks_true` as a list
# of Python bools, which onnx's attribute builder refuses; they are 0/1 ints
# in the ONNX-ML spec.
_make_attribute = onnx.helper.make_attribute


def _make_attribute_with_int_flags(key, value, *args, **kwargs):
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (bool, np.bool_)) for v in value):
        value = [int(v) for v in value]
    return _make_attribute(key, value, *args, **kwargs)


onnx.helper.make_attribute = _make_attribute_with_int_flags


def load():
    with open(DATA, newline="") as f:
        rows = list(csv.DictReader(f))
    x = np.array([[float(r["temperature"]), float(r["humidity"])] for r in rows], dtype=np.float32)
    y = np.array([int(r["rain"]) for r in rows], dtype=np.int64)
    return x, y


def fold_scaling(mlp, mean, std):
    """Makes an MLP trained on (x - mean) / std accept raw x."""
    w = mlp.coefs_[0]
    mlp.intercepts_[0] = mlp.intercepts_[0] - (mean / std) @ w
    mlp.coefs_[0] = w / std[:, None]


def export(model, x, name):
    onx = to_onnx(model, x[:1], options={id(model): {"zipmap": False}}, target_opset={"": 15, "ai.onnx.ml": 3})
    path = HERE / f"{name}.onnx"
    path.write_bytes(onx.SerializeToString())
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(7)
    idx = rng.choice(len(x), size=2000, replace=False)
    sample = x[idx]
    label, proba = sess.run(None, {sess.get_inputs()[0].name: sample})
    with open(HERE / f"{name}-expected.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["temperature", "humidity", "label", "p0", "p1"])
        for (t, h), l, p in zip(sample, label, proba):
            w.writerow([repr(float(t)), repr(float(h)), int(l), repr(float(p[0])), repr(float(p[1]))])
    print(f"{name}: {path.stat().st_size} bytes, outputs {[o.name for o in sess.get_outputs()]}")


def main():
    x, y = load()
    mean, std = x.mean(axis=0), x.std(axis=0)
    mlp = MLPClassifier(hidden_layer_sizes=(16, 16), max_iter=400, random_state=1)
    mlp.fit((x - mean) / std, y)
    fold_scaling(mlp, mean, std)
    print("mlp accuracy", (mlp.predict(x) == y).mean(), "rain share", y.mean())
    export(mlp, x, "rain-mlp")
    forest = RandomForestClassifier(n_estimators=10, max_depth=5, random_state=1)
    forest.fit(x, y)
    print("forest accuracy", (forest.predict(x) == y).mean())
    export(forest, x, "rain-forest")
    tiny = RandomForestClassifier(n_estimators=1, max_depth=1, random_state=1).fit(x, y)
    onx = to_onnx(tiny, x[:1], options={id(tiny): {"zipmap": True}}, target_opset={"": 15, "ai.onnx.ml": 3})
    (HERE / "unsupported-zipmap.onnx").write_bytes(onx.SerializeToString())


if __name__ == "__main__":
    main()
