"""The ONNX decoder: one small object that owns the onnxruntime session and the KV cache.

Everything performance-related (session options, cache buffers) lives here so that the
generation loop in ``generate.py`` only sees ``forward(ids) -> logits``.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edge.bundle import KVCacheLayout
from edge.errors import EdgeError

PROVIDERS = ("cpu", "cuda")
GPU_PACKAGE = "onnxruntime-gpu"


class ProviderError(EdgeError):
    """The execution provider asked for cannot run here (no onnxruntime-gpu, no CUDA device)."""


def providers(provider: str) -> list[str]:
    """onnxruntime's provider list for ``provider`` ("cpu" or "cuda"), or a ProviderError naming what is missing."""
    if provider == "cpu":
        return ["CPUExecutionProvider"]
    if provider != "cuda":
        raise ProviderError(f"unknown provider {provider!r}", f"choose one of: {', '.join(PROVIDERS)}")
    available = ort.get_available_providers()
    if "CUDAExecutionProvider" not in available:
        raise ProviderError(
            f"--provider cuda needs onnxruntime's CUDA execution provider; this onnxruntime "
            f"({ort.__version__}) has only {', '.join(p.removesuffix('ExecutionProvider') for p in available)}",
            f"pip uninstall -y onnxruntime && pip install {GPU_PACKAGE} (with the CUDA 12 and cuDNN 9 libraries "
            "it names), or run on the CPU (--provider cpu, the default)",
        )
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


def session_options(threads: int | None, prepack: bool = True) -> ort.SessionOptions:
    """CPU session options: sequential execution, all graph optimisations, ``threads`` intra-op.

    ``prepack=False`` keeps fp32 weights in the memory-mapped file instead of copying them into
    the matmul kernels' layout: measured on SmolLM2 fp32, session creation 0.7 -> 0.04 s and peak
    memory 684 -> 590 MB, for about 10% slower decoding. Quantized kernels (MatMulNBits) need
    prepacking to be fast at all.
    """
    so = ort.SessionOptions()
    if not prepack:
        so.add_session_config_entry("session.disable_prepacking", "1")
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.inter_op_num_threads = 1
    if threads:
        so.intra_op_num_threads = threads
    so.log_severity_level = 3
    return so


class OnnxDecoder:
    """Runs the exported graph one chunk of tokens at a time, keeping keys and values between calls.

    The cache is one preallocated buffer per layer and direction, bound as both the graph's
    ``past`` input and its ``present`` output: GroupQueryAttention writes the new keys and values
    in place, so a step copies nothing. Buffers start small and double when full.

    ``tokens`` lists the ids whose keys/values are cached; :meth:`rewind` forgets a suffix of
    them, which lets a chat reuse the cache for the unchanged start of a conversation.
    """

    INITIAL_CAPACITY = 256

    def __new__(cls, model_path: str | Path | None = None, layout: KVCacheLayout | None = None, *args, **kwargs):
        # a graph exported by optimum ("concat" interface) gets the decoder that feeds its inputs;
        # copy.copy (fork) calls this without arguments
        if cls is OnnxDecoder and layout is not None and layout.interface == "concat":
            cls = ConcatCacheDecoder
        return super().__new__(cls)

    def __init__(
        self,
        model_path: str | Path,
        layout: KVCacheLayout,
        threads: int | None = None,
        prepack: bool = True,
        provider: str = "cpu",
    ):
        self.layout = layout
        self.session = ort.InferenceSession(
            str(model_path), session_options(threads, prepack), providers=providers(provider)
        )
        # onnxruntime falls back to the CPU, with a line on stderr, when CUDA cannot start (no device, no driver)
        self.device = "cuda" if self.session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
        if provider == "cuda" and self.device != "cuda":
            raise ProviderError(
                "onnxruntime-gpu is installed but could not start CUDA here (no NVIDIA device or driver, or "
                "missing CUDA/cuDNN libraries; onnxruntime said why above)",
                "check `nvidia-smi` and the CUDA libraries onnxruntime-gpu needs, or use --provider cpu",
            )
        self._names = [layout.names(i) for i in range(layout.num_layers)]
        self._bind()

    def _bind(self) -> None:
        """A fresh binding and an empty cache."""
        logits = self.session.get_outputs()[0]
        # an fp16 graph takes and returns float16 throughout (its cache is written in place)
        self._dtype = np.float16 if logits.type == "tensor(float16)" else np.float32
        self._logits = np.zeros((1, 1, logits.shape[-1]), self._dtype)
        self._binding = self.session.io_binding()
        self._binding.bind_ortvalue_output("logits", ort.OrtValue.ortvalue_from_numpy(self._logits))
        self._cache: list[np.ndarray] = []
        self.tokens: list[int] = []
        self._reserve(self.INITIAL_CAPACITY)

    def fork(self) -> OnnxDecoder:
        """A decoder on the same session (weights loaded once) with a KV cache of its own.

        Two streams of requests that take turns, such as chats and voice commands on one server,
        each keep their cached prefix instead of prefilling it again after the other ran.
        """
        twin = copy.copy(self)
        twin._bind()
        return twin

    @property
    def capacity(self) -> int:
        shape = self._cache[0].shape
        return (shape() if callable(shape) else shape)[2]  # an OrtValue's shape is a method

    def _reserve(self, needed: int) -> None:
        """Make the cache buffers hold at least ``needed`` positions, keeping their contents."""
        if self._cache and needed <= self.capacity:
            return
        capacity = max(needed, 2 * self.capacity if self._cache else needed)
        shape = (1, self.layout.num_kv_heads, capacity, self.layout.head_dim)
        old, n = self._cache, len(self.tokens)
        self._cache = [np.zeros(shape, self._dtype) for _ in range(2 * self.layout.num_layers)]
        for new, prev in zip(self._cache, old, strict=False):
            new[:, :, :n] = (prev.numpy() if isinstance(prev, ort.OrtValue) else prev)[:, :, :n]
        if self.device == "cuda":  # the cache lives on the GPU, written in place there; copied only to grow
            self._cache = [ort.OrtValue.ortvalue_from_numpy(c, "cuda", 0) for c in self._cache]
        for i, (pk, pv, nk, nv) in enumerate(self._names):
            for j, (past, present) in enumerate(((pk, nk), (pv, nv))):
                value = self._cache[2 * i + j]
                value = value if isinstance(value, ort.OrtValue) else ort.OrtValue.ortvalue_from_numpy(value)
                self._binding.bind_ortvalue_input(past, value)
                self._binding.bind_ortvalue_output(present, value)

    def rewind(self, n: int) -> None:
        """Keep only the first ``n`` cached tokens (later positions are overwritten as needed)."""
        del self.tokens[n:]

    def forward(self, ids: list[int]) -> np.ndarray:
        """Feed ``ids`` after the cached tokens; return the next-token logits, shape ``(vocab,)``."""
        total = len(self.tokens) + len(ids)
        self._reserve(total)
        # held on self: the binding may point into these arrays until the next call
        self._inputs = {
            "input_ids": np.asarray([ids], dtype=np.int64),
            "seqlens_k": np.asarray([total - 1], dtype=np.int32),
            "total_sequence_length": np.asarray(total, dtype=np.int32),
        }
        for name, array in self._inputs.items():
            self._binding.bind_cpu_input(name, array)
        self.session.run_with_iobinding(self._binding)
        self.tokens.extend(ids)
        return self._logits[0, -1].astype(np.float32)


class ConcatCacheDecoder(OnnxDecoder):
    """The decoder for graphs exported by optimum (``kv_cache.interface == "concat"``).

    Their attention takes ``attention_mask`` and ``position_ids`` and returns the past keys and
    values with the new positions appended, a new tensor each call, so every step copies the whole
    cache: slower than edge's fused graph, which writes one buffer in place.
    """

    def _bind(self) -> None:
        inputs = {i.name for i in self.session.get_inputs()}
        self._wants_positions = "position_ids" in inputs
        self._wants_mask = "attention_mask" in inputs
        self._outputs = ["logits"] + [name for names in self._names for name in (names[2], names[3])]
        empty = np.zeros((1, self.layout.num_kv_heads, 0, self.layout.head_dim), np.float32)
        self._cache = [empty] * (2 * self.layout.num_layers)
        self.tokens = []

    @property
    def capacity(self) -> int:
        return self._cache[0].shape[2]

    def _reserve(self, needed: int) -> None:  # the graph allocates its own present tensors
        pass

    def rewind(self, n: int) -> None:
        del self.tokens[n:]
        self._cache = [c[:, :, :n] for c in self._cache]

    def forward(self, ids: list[int]) -> np.ndarray:
        past, total = len(self.tokens), len(self.tokens) + len(ids)
        feed: dict[str, np.ndarray] = {"input_ids": np.asarray([ids], dtype=np.int64)}
        if self._wants_mask:
            feed["attention_mask"] = np.ones((1, total), np.int64)
        if self._wants_positions:
            feed["position_ids"] = np.arange(past, total, dtype=np.int64)[None]
        for i, (pk, pv, _, _) in enumerate(self._names):
            feed[pk], feed[pv] = self._cache[2 * i], self._cache[2 * i + 1]
        logits, *present = self.session.run(self._outputs, feed)
        self._cache = present
        self.tokens.extend(ids)
        return logits[0, -1].copy()
