"""Build Whisper's encoder and decoder ONNX graphs directly from a Hugging Face model's weights.

Two graphs, no If-node merging:

- The **encoder** takes a log-mel window of any even length (``2 * n`` frames, ``n <= 1500``) and
  returns, for every decoder layer, the cross-attention keys and values. Positional embeddings
  are sliced to the window, so a 3 s command is encoded as 3 s, not as a zero-padded 30 s.
- The **decoder** takes new token ids, its self-attention cache and those cross keys/values and
  returns the last position's logits and the grown cache. Cross keys/values are computed once per
  utterance by the encoder, never per step.

Attention is onnxruntime's fused ``MultiHeadAttention`` (com.microsoft); everything else is
standard ONNX, so the graphs quantize with the same tools as the text decoder.

Encoder: ``input_features`` float [1, n_mels, frames] -> ``cross_key.{i}``, ``cross_value.{i}``
float [1, heads, frames / 2, head_dim].
Decoder: ``input_ids`` int64 [1, seq], ``past_key.{i}``/``past_value.{i}`` [1, heads, past, head_dim],
``cross_key.{i}``/``cross_value.{i}`` -> ``logits`` [1, vocab] and ``present_key.{i}``/``present_value.{i}``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper

from edge.bundle import KVCacheLayout

from .graph import MS, GraphBuilder, _last_position, _np


@dataclass
class WhisperSpec:
    """The shape facts of a Whisper model, read from its config."""

    num_mels: int
    hidden: int
    num_heads: int
    encoder_layers: int
    decoder_layers: int
    vocab_size: int
    max_source_positions: int  # 1500 encoder positions = 30 s
    max_target_positions: int  # 448 decoder positions

    @property
    def head_dim(self) -> int:
        return self.hidden // self.num_heads

    @classmethod
    def from_config(cls, config) -> WhisperSpec:
        return cls(
            num_mels=config.num_mel_bins,
            hidden=config.d_model,
            num_heads=config.encoder_attention_heads,
            encoder_layers=config.encoder_layers,
            decoder_layers=config.decoder_layers,
            vocab_size=config.vocab_size,
            max_source_positions=config.max_source_positions,
            max_target_positions=config.max_target_positions,
        )


def decoder_layout(spec: WhisperSpec) -> KVCacheLayout:
    """How the decoder's self-attention cache is named: the runtime reads this from the manifest."""
    return KVCacheLayout(
        num_layers=spec.decoder_layers,
        num_kv_heads=spec.num_heads,
        head_dim=spec.head_dim,
        past_key="past_key.{layer}",
        past_value="past_value.{layer}",
        present_key="present_key.{layer}",
        present_value="present_value.{layer}",
    )


CROSS_KEY = "cross_key.{layer}"
CROSS_VALUE = "cross_value.{layer}"


class _Whisper:
    """Writes one Whisper graph; methods are the building blocks both graphs share."""

    def __init__(self, model, spec: WhisperSpec):
        self.sd = {k: _np(v) for k, v in model.state_dict().items()}
        self.spec = spec
        self.g = GraphBuilder()

    def linear(self, x: str, prefix: str, bias: bool = True) -> str:
        y = self.g.matmul(x, self.sd[f"{prefix}.weight"].T, prefix)
        if bias and f"{prefix}.bias" in self.sd:
            y = self.g.op("Add", [y, self.g.weight(f"{prefix}.bias", self.sd[f"{prefix}.bias"])])
        return y

    def layer_norm(self, x: str, prefix: str) -> str:
        w = self.g.weight(f"{prefix}.weight", self.sd[f"{prefix}.weight"])
        b = self.g.weight(f"{prefix}.bias", self.sd[f"{prefix}.bias"])
        return self.g.op("LayerNormalization", [x, w, b], axis=-1, epsilon=1e-5, name=prefix)

    def mha(self, q: str, k: str, v: str, name: str, past: tuple[str, str] | None = None, present=None) -> str:
        """Attention over [1, seq, hidden] inputs; with ``past``, causal self-attention on a cache."""
        inputs = [q, k, v]
        outputs = [f"{name}/out0"]
        if past:
            inputs += ["", "", "", *past]  # bias, key_padding_mask, attention_bias unused
            outputs += list(present)
        node = helper.make_node(
            "MultiHeadAttention",
            inputs,
            outputs,
            name=name,
            domain=MS,
            num_heads=self.spec.num_heads,
            unidirectional=int(past is not None),
        )
        self.g.nodes.append(node)
        return outputs[0]

    def feed_forward(self, x: str, prefix: str) -> str:
        h = self.layer_norm(x, f"{prefix}.final_layer_norm")
        h = self.g.op("Gelu", [self.linear(h, f"{prefix}.fc1")])
        return self.g.op("Add", [x, self.linear(h, f"{prefix}.fc2")])

    def heads(self, x: str, name: str) -> str:
        """[1, seq, hidden] -> [1, heads, seq, head_dim] (BNSH), as the cache is stored."""
        shape = self.g.weight(f"{name}.shape", np.array([0, -1, self.spec.num_heads, self.spec.head_dim], np.int64))
        return self.g.op("Transpose", [self.g.op("Reshape", [x, shape])], perm=[0, 2, 1, 3], name=name)


def build_encoder(model, spec: WhisperSpec) -> onnx.ModelProto:
    """Encoder graph: log-mel frames -> cross-attention keys and values for every decoder layer."""
    w = _Whisper(model, spec)
    g, sd = w.g, w.sd
    x = "input_features"
    for i, stride in ((1, 1), (2, 2)):
        conv = f"model.encoder.conv{i}"
        x = g.op(
            "Conv",
            [x, g.weight(f"{conv}.weight", sd[f"{conv}.weight"]), g.weight(f"{conv}.bias", sd[f"{conv}.bias"])],
            pads=[1, 1],
            strides=[stride],
            name=conv,
        )
        x = g.op("Gelu", [x])
    x = g.op("Transpose", [x], perm=[0, 2, 1])  # [1, frames / 2, hidden]
    # positions 0 .. n-1 for an n-position window: the shorter audio context
    n = g.op("Shape", [x], start=1, end=2)
    zero = g.weight("zero", np.array([0], np.int64))
    positions = g.op("Slice", [g.weight("encoder.positions", sd["model.encoder.embed_positions.weight"]), zero, n])
    x = g.op("Add", [x, positions])
    for i in range(spec.encoder_layers):
        p = f"model.encoder.layers.{i}"
        h = w.layer_norm(x, f"{p}.self_attn_layer_norm")
        q = w.linear(h, f"{p}.self_attn.q_proj")
        k = w.linear(h, f"{p}.self_attn.k_proj", bias=False)
        v = w.linear(h, f"{p}.self_attn.v_proj")
        x = g.op("Add", [x, w.linear(w.mha(q, k, v, f"{p}.self_attn"), f"{p}.self_attn.out_proj")])
        x = w.feed_forward(x, p)
    x = w.layer_norm(x, "model.encoder.layer_norm")
    outputs = []
    frames = "encoder_positions"
    for i in range(spec.decoder_layers):
        p = f"model.decoder.layers.{i}.encoder_attn"
        for kind, bias, template in (("k", False, CROSS_KEY), ("v", True, CROSS_VALUE)):
            out = template.format(layer=i)
            g.nodes.append(
                helper.make_node("Identity", [w.heads(w.linear(x, f"{p}.{kind}_proj", bias), out + "/bnsh")], [out])
            )
            outputs.append(
                helper.make_tensor_value_info(out, TensorProto.FLOAT, [1, spec.num_heads, frames, spec.head_dim])
            )
    inputs = [helper.make_tensor_value_info("input_features", TensorProto.FLOAT, [1, spec.num_mels, "frames"])]
    return g.model("edge-whisper-encoder", inputs, outputs)


def build_decoder(model, spec: WhisperSpec) -> onnx.ModelProto:
    """Decoder graph: new tokens + self cache + cross keys/values -> last logits + grown cache."""
    w = _Whisper(model, spec)
    g, sd = w.g, w.sd
    layout = decoder_layout(spec)
    embed = sd["model.decoder.embed_tokens.weight"]
    x = g.op("Gather", [g.weight("decoder.embed_tokens", embed), "input_ids"])
    # positions past .. past + seq - 1, read from the cache's length
    past = g.op("Shape", [layout.names(0)[0]], start=2, end=3)
    seq = g.op("Shape", ["input_ids"], start=1, end=2)
    end = g.op("Add", [past, seq])
    positions = g.op("Slice", [g.weight("decoder.positions", sd["model.decoder.embed_positions.weight"]), past, end])
    x = g.op("Add", [x, positions])
    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, "sequence"])]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1, spec.vocab_size])]
    kv_shape = [1, spec.num_heads, None, spec.head_dim]
    for i in range(spec.decoder_layers):
        p = f"model.decoder.layers.{i}"
        pk, pv, nk, nv = layout.names(i)
        ck, cv = CROSS_KEY.format(layer=i), CROSS_VALUE.format(layer=i)
        h = w.layer_norm(x, f"{p}.self_attn_layer_norm")
        q = w.linear(h, f"{p}.self_attn.q_proj")
        k = w.linear(h, f"{p}.self_attn.k_proj", bias=False)
        v = w.linear(h, f"{p}.self_attn.v_proj")
        attn = w.mha(q, k, v, f"{p}.self_attn", past=(pk, pv), present=(nk, nv))
        x = g.op("Add", [x, w.linear(attn, f"{p}.self_attn.out_proj")])
        h = w.layer_norm(x, f"{p}.encoder_attn_layer_norm")
        cross = w.mha(w.linear(h, f"{p}.encoder_attn.q_proj"), ck, cv, f"{p}.encoder_attn")
        x = g.op("Add", [x, w.linear(cross, f"{p}.encoder_attn.out_proj")])
        x = w.feed_forward(x, p)
        for name, dim in ((pk, "past"), (pv, "past"), (ck, "encoder_positions"), (cv, "encoder_positions")):
            shape = list(kv_shape)
            shape[2] = dim
            inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))
        for name in (nk, nv):
            shape = list(kv_shape)
            shape[2] = "total"
            outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))
    x = w.layer_norm(_last_position(g, x), "model.decoder.layer_norm")
    # the output projection is tied to the embedding; a separate copy lets the quantizer compress it
    logits = g.matmul(x, embed.T, "proj_out")
    g.nodes.append(helper.make_node("Identity", [logits], ["logits"], name="logits"))
    return g.model("edge-whisper-decoder", inputs, outputs)


def share_quantized_embedding(model: onnx.ModelProto) -> onnx.ModelProto:
    """Read the decoder's token embeddings from its int8 output projection; drop the fp32 table.

    Whisper ties the two matrices. After per-channel int8 quantization the projection holds every
    token's embedding as one int8 column with its own scale, so a lookup is a column gather and a
    multiply, and the 80 MB fp32 copy (two thirds of tiny.en's int8 bundle) can go.
    """
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    weight, scale, zero = "proj_out.weight_quantized", "proj_out.weight_scale", "proj_out.weight_zero_point"
    if weight not in inits or scale not in inits or numpy_helper.to_array(inits[scale]).ndim != 1:
        return model  # fp32, or per-tensor scales: keep the table
    if numpy_helper.to_array(inits[zero]).any():
        return model
    nodes = list(model.graph.node)
    at, gather = next(
        (i, n) for i, n in enumerate(nodes) if n.op_type == "Gather" and n.input[0] == "decoder.embed_tokens"
    )
    ids, out, p = gather.input[1], gather.output[0], "embed_tokens.shared"
    axes = numpy_helper.from_array(np.array([-1], np.int64), f"{p}.axes")
    lookup = [
        helper.make_node("Gather", [weight, ids], [f"{p}/columns"], axis=1),  # [hidden, 1, seq] int8
        helper.make_node("Transpose", [f"{p}/columns"], [f"{p}/rows"], perm=[1, 2, 0]),  # [1, seq, hidden]
        helper.make_node("Cast", [f"{p}/rows"], [f"{p}/float"], to=TensorProto.FLOAT),
        helper.make_node("Gather", [scale, ids], [f"{p}/scales"]),  # [1, seq]
        helper.make_node("Unsqueeze", [f"{p}/scales", axes.name], [f"{p}/scales3"]),
        helper.make_node("Mul", [f"{p}/float", f"{p}/scales3"], [out], name=p),
    ]
    del model.graph.node[:]
    model.graph.node.extend(nodes[:at] + lookup + nodes[at + 1 :])
    model.graph.initializer.remove(inits["decoder.embed_tokens"])
    model.graph.initializer.append(axes)
    return model
