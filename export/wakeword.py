"""microWakeWord's streaming int8 TFLite models -> ONNX, so a wake word could run on onnxruntime like the rest.

A microWakeWord model is a stack of time-axis convolutions that keep their own ring buffers in TFLite resource
variables (VAR_HANDLE / READ_VARIABLE / ASSIGN_VARIABLE, zeroed by a CALL_ONCE subgraph). The ONNX graph takes
those buffers as inputs (``state_*``) and returns their next values (``state_*_next``); the caller carries them
from one call to the next. Every int8 activation gets a QuantizeLinear/DequantizeLinear pair at its own scale,
so the float graph rounds and saturates where the int8 kernels do; weights and biases are stored dequantized.

>>> model, initial_state = convert("okay_nabu.tflite")     # onnx.ModelProto, {"state_...": zeros}

Measured on the four packaged models over espeak-ng speech: the probability equals TFLite's at 88-100% of
steps and is at most 0.04 off (TFLite requantizes in fixed point, this graph in float), with the same decisions.

``python -m export.wakeword [NAME ...] [--out DIR]`` converts the packaged models (all four by default) into
the cache (``edge.wakeword.models.converted_dir()``), where ``edge-run --assistant`` finds them and runs them on
onnxruntime with edge's numpy frontend: each ``NAME.onnx`` beside a ``NAME.json`` sidecar in microWakeWord's
format whose ``edge`` section lists the files' checksums (checked before every load) and the source file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

OPSET = 17
INPUT = "features"  # [1, stride, 40] float micro_frontend features
OUTPUT = "probability"  # [1, 1]


class _Converter:
    """One pass over subgraph 0's operators, emitting ONNX nodes as it goes."""

    def __init__(self, data: bytes):
        import tflite

        self.tfl = tflite
        self.codes = {v: k for k, v in tflite.BuiltinOperator.__dict__.items() if not k.startswith("_")}
        self.model = tflite.Model.GetRootAsModel(data, 0)
        self.graph = self.model.Subgraphs(0)
        self.nodes: list = []
        self.initializers: list = []
        self.names: dict[int, str] = {}  # TFLite tensor index -> ONNX value name
        self.handles: dict[int, str] = {}  # VAR_HANDLE output tensor -> variable name
        self.states: dict[str, str] = {}  # variable name -> ONNX state input name
        self.outputs: list = []

    def op_name(self, op) -> str:
        return self.codes[self.model.OperatorCodes(op.OpcodeIndex()).BuiltinCode()]

    def options(self, op, kind):
        opts, table = kind(), op.BuiltinOptions()
        opts.Init(table.Bytes, table.Pos)
        return opts

    def const(self, name: str, value) -> str:
        from onnx import numpy_helper

        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op_type: str, inputs: list[str], output: str, **attrs) -> str:
        from onnx import helper

        self.nodes.append(helper.make_node(op_type, inputs, [output], **attrs))
        return output

    def quantization(self, index: int, graph=None) -> tuple[np.ndarray, np.ndarray]:
        q = (graph or self.graph).Tensors(index).Quantization()
        return q.ScaleAsNumpy().astype(np.float32), q.ZeroPointAsNumpy().astype(np.int64)

    def raw(self, index: int, graph=None) -> np.ndarray:
        graph = graph or self.graph
        t = self.tfl
        tensor = graph.Tensors(index)
        dtype = {t.TensorType.INT8: np.int8, t.TensorType.INT32: np.int32, t.TensorType.UINT8: np.uint8}
        data = self.model.Buffers(tensor.Buffer()).DataAsNumpy().tobytes()
        return np.frombuffer(data, dtype[tensor.Type()]).reshape(tensor.ShapeAsNumpy())

    def dequantized(self, index: int, axis: int = 0, graph=None) -> np.ndarray:
        """A constant tensor as float: per-channel scales run along ``axis``."""
        scale, zero = self.quantization(index, graph)
        q = self.raw(index, graph).astype(np.float32)
        shape = [1] * q.ndim
        shape[axis] = -1
        return ((q - zero.reshape(shape)) * scale.reshape(shape)).astype(np.float32)

    def fake_quant(self, value: str, index: int) -> str:
        """``value`` rounded and saturated to the int8 grid of tensor ``index``, back in float."""
        scale, zero = self.quantization(index)
        name = f"t{index}"
        args = [self.const(name + "_scale", np.float32(scale[0])), self.const(name + "_zero", np.int8(zero[0]))]
        q = self.node("QuantizeLinear", [value, *args], name + "_q")
        return self.node("DequantizeLinear", [q, *args], name)

    def initial_state(self) -> dict[str, np.ndarray]:
        """The variables' starting values, from the CALL_ONCE subgraph's assignments."""
        init, values = self.model.Subgraphs(1), {}
        for k in range(init.OperatorsLength()):
            op = init.Operators(k)
            if self.op_name(op) == "ASSIGN_VARIABLE":
                handle, value = op.InputsAsNumpy()
                # the init subgraph names its handles with a trailing "1" ("stream/states1")
                values[init.Tensors(handle).Name().decode().removesuffix("1")] = self.dequantized(value, graph=init)
        return values

    def convert(self):
        from onnx import TensorProto, checker, helper

        initial = self.initial_state()
        features = self.graph.Inputs(0)
        shape = [int(d) for d in self.graph.Tensors(features).ShapeAsNumpy()]
        inputs = [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, shape)]
        self.names[features] = self.fake_quant(INPUT, features)
        for k in range(self.graph.OperatorsLength()):
            op = self.graph.Operators(k)
            kind, ins, outs = self.op_name(op), list(op.InputsAsNumpy()), list(op.OutputsAsNumpy())
            if kind == "CALL_ONCE":
                continue
            if kind == "VAR_HANDLE":
                self.handles[outs[0]] = self.graph.Tensors(outs[0]).Name().decode()
            elif kind == "READ_VARIABLE":
                var = self.handles[ins[0]]
                self.states[var] = self.names[outs[0]] = "state_" + var.replace("/", "_")
                inputs.append(helper.make_tensor_value_info(self.states[var], TensorProto.FLOAT, initial[var].shape))
            elif kind == "ASSIGN_VARIABLE":
                var = self.handles[ins[0]]
                out = self.node("Identity", [self.names[ins[1]]], self.states[var] + "_next")
                self.outputs.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, initial[var].shape))
            else:
                self.operator(kind, op, ins, outs)
        graph = helper.make_graph(self.nodes, "microwakeword", inputs, self.outputs, self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        checker.check_model(model)
        return model, {self.states[var]: value for var, value in initial.items()}

    def operator(self, kind: str, op, ins: list[int], outs: list[int]) -> None:
        t, y = self.tfl, f"y{outs[0]}"
        x = self.names.get(ins[0])
        if kind == "RESHAPE":
            target = self.graph.Tensors(outs[0]).ShapeAsNumpy().astype(np.int64)
            self.names[outs[0]] = self.node("Reshape", [x, self.const(y + "_shape", target)], y)
        elif kind == "CONCATENATION":
            axis = self.options(op, t.ConcatenationOptions).Axis()
            self.names[outs[0]] = self.node("Concat", [self.names[i] for i in ins], y, axis=axis)
        elif kind == "STRIDED_SLICE":
            opts = self.options(op, t.StridedSliceOptions)
            if opts.ShrinkAxisMask() or opts.EllipsisMask() or opts.NewAxisMask():
                raise NotImplementedError("STRIDED_SLICE with shrink, ellipsis or new-axis masks")
            begin, end, strides = (self.raw(i).astype(np.int64) for i in ins[1:4])
            starts = [0 if opts.BeginMask() >> a & 1 else b for a, b in enumerate(begin)]
            ends = [np.iinfo(np.int64).max if opts.EndMask() >> a & 1 else e for a, e in enumerate(end)]
            args = [np.array(starts), np.array(ends), np.arange(len(starts)), strides]
            names = [self.const(f"{y}_{i}", np.asarray(a, np.int64)) for i, a in enumerate(args)]
            self.names[outs[0]] = self.node("Slice", [x, *names], y)
        elif kind == "SPLIT_V":
            sizes, axis = self.raw(ins[1]).astype(np.int64), int(self.raw(ins[2]).reshape(-1)[0])
            from onnx import helper

            parts = [f"y{o}" for o in outs]
            self.nodes.append(helper.make_node("Split", [x, self.const(y + "_sizes", sizes)], parts, axis=axis))
            self.names.update(zip(outs, parts, strict=True))
        elif kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            self.names[outs[0]] = self.convolution(kind, op, ins, outs[0], y)
        elif kind == "FULLY_CONNECTED":
            # TFLite's FULLY_CONNECTED flattens its input to [batch, features] by itself
            flat = self.node("Reshape", [x, self.const(y + "_flat", np.array([1, -1], np.int64))], y + "_in")
            weights = self.const(y + "_w", self.dequantized(ins[1]))
            bias = self.const(y + "_b", self.dequantized(ins[2]))
            self.names[outs[0]] = self.fake_quant(self.node("Gemm", [flat, weights, bias], y, transB=1), outs[0])
        elif kind == "LOGISTIC":
            self.names[outs[0]] = self.fake_quant(self.node("Sigmoid", [x], y), outs[0])
        elif kind == "QUANTIZE":  # the final int8 -> uint8 at the same scale: the real value is unchanged
            from onnx import TensorProto, helper

            self.node("Identity", [x], OUTPUT)
            self.outputs.insert(0, helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, [1, 1]))
        else:
            raise NotImplementedError(f"TFLite operator {kind} is not converted")

    def convolution(self, kind: str, op, ins: list[int], out: int, y: str) -> str:
        """TFLite's NHWC (depthwise) convolution as an NCHW ONNX Conv between two transposes."""
        t = self.tfl
        if kind == "CONV_2D":  # weights OHWI -> OIHW
            opts, weights, group = self.options(op, t.Conv2DOptions), self.dequantized(ins[1], 0), 1
            weights = weights.transpose(0, 3, 1, 2)
        else:  # depthwise weights 1HW(C*M) -> (C*M)1HW, one group per input channel
            opts, weights = self.options(op, t.DepthwiseConv2DOptions), self.dequantized(ins[1], 3)
            weights = weights.transpose(3, 0, 1, 2)
            group = weights.shape[0]
        pad = "VALID" if opts.Padding() == t.Padding.VALID else "SAME_UPPER"  # TF's SAME pads the end first
        nchw = self.node("Transpose", [self.names[ins[0]]], y + "_nchw", perm=[0, 3, 1, 2])
        conv = self.node(
            "Conv",
            [nchw, self.const(y + "_w", weights), self.const(y + "_b", self.dequantized(ins[2]))],
            y + "_conv",
            group=group,
            auto_pad=pad,
            strides=[opts.StrideH(), opts.StrideW()],
            dilations=[opts.DilationHFactor(), opts.DilationWFactor()],
        )
        activation = opts.FusedActivationFunction()
        if activation == t.ActivationFunctionType.RELU:
            conv = self.node("Relu", [conv], y + "_relu")
        elif activation != t.ActivationFunctionType.NONE:
            raise NotImplementedError(f"fused activation {activation}")
        return self.fake_quant(self.node("Transpose", [conv], y + "_nhwc", perm=[0, 2, 3, 1]), out)


def convert(path: str | Path):
    """A microWakeWord ``.tflite`` -> (``onnx.ModelProto``, the state inputs' initial values)."""
    return _Converter(Path(path).read_bytes()).convert()


def export_wake_word(name: str, out: Path) -> Path:
    """Convert the packaged model ``name`` into ``out``; return the sidecar's path."""
    from edge.files import atomic_write_bytes, atomic_write_json, sha256_file
    from edge.wakeword.models import wake_word_spec

    spec = wake_word_spec(name, runtime="tflite")
    model, state = convert(spec.model_path)
    if any(np.any(value) for value in state.values()):
        raise NotImplementedError(f"{name}: streaming state that does not start at zero is not carried over")
    out.mkdir(parents=True, exist_ok=True)
    onnx_name = spec.name + ".onnx"
    atomic_write_bytes(out / onnx_name, model.SerializeToString())
    sidecar = json.loads(spec.model_path.with_suffix(".json").read_text())
    sidecar["model"] = onnx_name
    sidecar["edge"] = {
        "files": {onnx_name: {"sha256": sha256_file(out / onnx_name), "size": (out / onnx_name).stat().st_size}},
        "converted_from": {"file": spec.model_path.name, "sha256": sha256_file(spec.model_path)},
        "features": "edge.wakeword.features (TFLite Micro's micro_frontend: 30 ms window, 10 ms step, 40 channels)",
    }
    atomic_write_json(out / (spec.name + ".json"), sidecar)
    return out / (spec.name + ".json")


def main(argv: list[str] | None = None) -> int:
    from edge.errors import EdgeError
    from edge.wakeword.models import converted_dir, packaged_sidecars

    parser = argparse.ArgumentParser(
        prog="python -m export.wakeword",
        description="Convert the packaged microWakeWord models to ONNX, so the assistant runs them on onnxruntime.",
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="wake words to convert (default: all packaged)")
    parser.add_argument("--out", type=Path, default=None, help=f"folder to write (default: {converted_dir()})")
    args = parser.parse_args(argv)
    out = args.out or converted_dir()
    try:
        names = args.names or sorted(packaged_sidecars())
        for name in names:
            print(f"{name}: {export_wake_word(name, out)}")
    except EdgeError as e:
        print(f"python -m export.wakeword: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
