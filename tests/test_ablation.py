"""``python -m benchmarks ablation``'s graph changes on a tiny int4 bundle: each one runs and does what it says."""

from __future__ import annotations

import numpy as np
import onnx

from benchmarks.ablation import VARIANTS
from edge.bundle import open_bundle
from edge.decoder import OnnxDecoder
from export.graph import save_model


def test_each_variant_runs_and_only_float_zero_points_stay_exact(tiny_bundle, tmp_path):
    bundle = open_bundle(tiny_bundle("llama", "int4"))
    ids = [5, 9, 2, 7, 11, 3]
    logits = {}
    for i, (name, change) in enumerate(VARIANTS.items()):
        path = tmp_path / str(i) / "model.onnx"
        path.parent.mkdir()
        model = change(onnx.load(str(bundle.model_path)))
        ops = [n.op_type for n in model.graph.node]
        if name != "as exported" and name != "4-bit output layer":
            assert "ReduceSum" not in ops, name  # the offset correction is gone
        save_model(model, path)
        decoder = OnnxDecoder(path, bundle.manifest.kv_cache, threads=1)
        logits[name] = np.stack([decoder.forward([t]) for t in ids])
    exported = logits["as exported"]

    def gap(name: str) -> float:
        return float(np.abs(logits[name] - exported).max() / np.abs(exported).max())

    # the same weights: only the kernels' rounding of activations differs (int8 blocks vs float)
    assert gap("float zero points") < 0.05
    for name in ("no offsets", "integer zero points", "4-bit output layer"):
        assert gap(name) > 2 * gap("float zero points"), name
