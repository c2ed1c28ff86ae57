"""``python -m benchmarks ablation``'s graph changes on a tiny int4 bundle: each one runs and does what it says."""

from __future__ import annotations

import numpy as np
import onnx

from benchmarks.ablation import VARIANTS
from edge.bundle import open_bundle
from edge.text.decoder import OnnxDecoder
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


def test_calibrated_variants_run_on_the_fast_path(tiny_bundle, tmp_path):
    from benchmarks.ablation import CALIBRATED, calibrated_variants
    from edge.text.tokenizer import Tokenizer
    from export import calibrate

    fp32, int4 = open_bundle(tiny_bundle("llama", "fp32")), open_bundle(tiny_bundle("llama", "int4"))
    chunks = calibrate.calib_chunks(calibrate.calib_text(), Tokenizer(fp32.tokenizer_path).encode, max_tokens=40)
    hessians = calibrate.input_hessians(fp32.model_path, fp32.manifest.kv_cache, chunks, threads=1)
    variants = calibrated_variants(hessians)
    assert len(variants) == len(CALIBRATED)
    ids = [5, 9, 2, 7, 11, 3]
    for i, ((_, block, symmetric, head), (name, change)) in enumerate(zip(CALIBRATED, variants.items(), strict=True)):
        model = change(onnx.load(str(int4.model_path)))
        assert "ReduceSum" not in [n.op_type for n in model.graph.node], name  # no offset correction
        for node in (n for n in model.graph.node if n.op_type == "MatMulNBits"):
            attrs = {a.name: a.i for a in node.attribute}
            if node.name.startswith("lm_head") and not head:
                assert attrs["bits"] == 8, name
                continue
            assert (attrs["bits"], attrs["block_size"], len(node.input)) == (4, block, 3 if symmetric else 4), name
        path = tmp_path / str(i) / "model.onnx"
        path.parent.mkdir()
        save_model(model, path)
        decoder = OnnxDecoder(path, int4.manifest.kv_cache, threads=1)
        assert np.isfinite(np.stack([decoder.forward([t]) for t in ids])).all(), name
