"""The systems a user might pick instead of edge, each run the same way: load, prefill, decode.

Every runner takes the same prompt token ids and yields one wall-clock timestamp per new token
(greedy, end of sequence ignored), so the harness measures all of them alike. Libraries are
imported inside the runners: each measured run is a fresh process that loads only its own.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

PEERS_DIR = Path(__file__).resolve().parent / ".peers"
HF_DIR = PEERS_DIR / "hf"

Runner = Callable[[str, list[int], int, int], tuple[float, Iterator[float]]]


def run_edge(artifact: str, ids: list[int], threads: int, tokens: int):
    import edge
    from edge.text.generate import generate
    from edge.text.sampling import Sampler, SamplingOptions

    start = time.perf_counter()
    model = edge.load(artifact, threads=threads)
    load_s = time.perf_counter() - start

    def stamps():
        # token ids, as the other runners yield them: text pieces would merge tokens that end mid-character
        greedy = Sampler(SamplingOptions(temperature=0))
        for _ in generate(model.decoder, ids, greedy, tokens, set(), model.context_length):
            yield time.perf_counter()

    return load_s, stamps()


def genai_model(artifact: str, threads: int, **session_options):
    """An onnxruntime-genai model on the CPU with ``threads`` intra-op threads (plus any session options)."""
    import onnxruntime_genai as og

    config = og.Config(artifact)
    config.clear_providers()
    options = {"intra_op_num_threads": threads, "inter_op_num_threads": 1, **session_options}
    config.overlay(json.dumps({"model": {"decoder": {"session_options": options}}}))
    return og.Model(config)


def genai_greedy(model, ids: list[int], tokens: int, window: int = 0) -> Iterator[None]:
    """Greedy decoding of exactly ``tokens`` new tokens after ``ids``; yields after each one.

    ``window``: the model's sliding window (Gemma 3: 512), which genai's cache must hold whole."""
    import onnxruntime_genai as og

    params = og.GeneratorParams(model)
    total = len(ids) + tokens
    params.set_search_options(max_length=max(total, window), min_length=total, do_sample=False)
    generator = og.Generator(model, params)
    generator.append_tokens(ids)
    for _ in range(tokens):
        generator.generate_next_token()
        yield


def run_genai(artifact: str, ids: list[int], threads: int, tokens: int):
    start = time.perf_counter()
    model = genai_model(artifact, threads)
    load_s = time.perf_counter() - start
    config = json.loads((Path(artifact) / "genai_config.json").read_text())
    window = (config["model"]["decoder"].get("sliding_window") or {}).get("window_size", 0)
    return load_s, (time.perf_counter() for _ in genai_greedy(model, ids, tokens, window))


def run_llama_cpp(artifact: str, ids: list[int], threads: int, tokens: int):
    from llama_cpp import Llama

    start = time.perf_counter()
    llm = Llama(artifact, n_threads=threads, n_threads_batch=threads, n_ctx=512, verbose=False)
    load_s = time.perf_counter() - start

    def stamps():
        for i, _ in enumerate(llm.generate(ids, top_k=1, temp=0.0, reset=True)):
            yield time.perf_counter()
            if i + 1 == tokens:
                break

    return load_s, stamps()


def _hf_stamps(model, ids: list[int], tokens: int):
    """Time transformers-style generate() through a streamer that notes each new token."""
    import torch
    from transformers.generation.streamers import BaseStreamer

    times: list[float] = []

    class Clock(BaseStreamer):
        def __init__(self):
            self.prompt_seen = False

        def put(self, value):
            if self.prompt_seen:
                times.append(time.perf_counter())
            self.prompt_seen = True

        def end(self):
            pass

    model.generate(
        torch.tensor([ids]),
        attention_mask=torch.ones(1, len(ids), dtype=torch.long),
        max_new_tokens=tokens,
        min_new_tokens=tokens,
        do_sample=False,
        streamer=Clock(),
    )
    yield from times


def run_optimum(artifact: str, ids: list[int], threads: int, tokens: int):
    import onnxruntime as ort
    from optimum.onnxruntime import ORTModelForCausalLM

    start = time.perf_counter()
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    model = ORTModelForCausalLM.from_pretrained(artifact, session_options=so)
    return time.perf_counter() - start, _hf_stamps(model, ids, tokens)


def run_torch(artifact: str, ids: list[int], threads: int, tokens: int):
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(threads)
    start = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(artifact, dtype=torch.float32).eval()
    load_s = time.perf_counter() - start

    def stamps():
        with torch.no_grad():
            yield from _hf_stamps(model, ids, tokens)

    return load_s, stamps()


RUNNERS: dict[str, Runner] = {
    "edge": run_edge,
    "onnxruntime-genai": run_genai,
    "llama.cpp": run_llama_cpp,
    "optimum-ort": run_optimum,
    "transformers-torch": run_torch,
}
