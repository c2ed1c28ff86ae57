"""The ONNX decoder: one small object that owns the onnxruntime session and the KV cache.

Everything performance-related (session options, cache buffers) lives here so that the
generation loop in ``generate.py`` only sees ``forward(ids) -> logits``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from .bundle import KVCacheLayout


def session_options(threads: int | None) -> ort.SessionOptions:
    """CPU session options: sequential execution, all graph optimisations, ``threads`` intra-op."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.inter_op_num_threads = 1
    if threads:
        so.intra_op_num_threads = threads
    so.log_severity_level = 3
    return so


class OnnxDecoder:
    """Runs the exported graph one chunk of tokens at a time, keeping keys and values between calls.

    ``tokens`` lists the ids whose keys/values are cached; :meth:`rewind` drops a suffix of
    them, which lets a chat reuse the cache for the unchanged part of a conversation.
    """

    def __init__(self, model_path: str | Path, layout: KVCacheLayout, threads: int | None = None):
        self.layout = layout
        self.session = ort.InferenceSession(
            str(model_path), session_options(threads), providers=["CPUExecutionProvider"]
        )
        self._names = [layout.names(i) for i in range(layout.num_layers)]
        self._output_names = ["logits"] + [n for names in self._names for n in names[2:]]
        self.tokens: list[int] = []
        self._past: list[np.ndarray] = []
        self.rewind(0)

    def rewind(self, n: int) -> None:
        """Keep only the first ``n`` cached tokens."""
        if n == 0 or not self._past:
            shape = (1, self.layout.num_kv_heads, 0, self.layout.head_dim)
            self._past = [np.zeros(shape, np.float32) for _ in range(2 * self.layout.num_layers)]
            self.tokens = []
        else:
            self._past = [np.ascontiguousarray(p[:, :, :n]) for p in self._past]
            self.tokens = self.tokens[:n]

    def forward(self, ids: list[int]) -> np.ndarray:
        """Feed ``ids`` after the cached tokens; return the next-token logits, shape ``(vocab,)``."""
        total = len(self.tokens) + len(ids)
        feeds: dict[str, np.ndarray] = {
            "input_ids": np.asarray([ids], dtype=np.int64),
            "seqlens_k": np.asarray([total - 1], dtype=np.int32),
            "total_sequence_length": np.asarray(total, dtype=np.int32),
        }
        for i, (pk, pv, _, _) in enumerate(self._names):
            feeds[pk] = self._past[2 * i]
            feeds[pv] = self._past[2 * i + 1]
        logits, *present = self.session.run(self._output_names, feeds)
        self._past = present
        self.tokens.extend(ids)
        return logits[0, -1]
