"""Process start to first token, stage by stage: ``python -m benchmarks startup``.

Each run is a fresh process (``python -m benchmarks.startup BUNDLE VARIANT THREADS IDS``) that does
what ``edge.load`` and the first step of a generation do, in the same order, stamping the wall
clock after each stage: interpreter start, imports (numpy, onnxruntime, tokenizers, edge), opening
and verifying the bundle, loading the tokenizer, creating the onnxruntime session, prefilling the
chat prompt, choosing the first token (greedy). It prints one JSON line with the stage times, peak
RSS (VmHWM) after the tokenizer, after the session and at the first token, and 16 greedy tokens,
which must be the same for every variant of a bundle.

Variants, each one change from edge as it runs now:

- ``edge``: as shipped (the tokenizer's compact copy in the user cache, written before the runs);
- ``bundle-tokenizer``: the tokenizer read from the bundle's own ``tokenizer.json`` (edge before it);
- ``no-repack`` (quantized bundles): ``session.disable_prepacking``, to split session creation into
  reading the graph and repacking the weights; decoding that way is far slower, hence not kept;
- ``prepack-cache`` (quantized bundles): the graph saved once with its repacked weights in an
  external data file (``session.save_external_prepacked_constant_initializers``) and loaded from it.
"""

from __future__ import annotations

import time

ENTERED = time.time()  # before any import: the interpreter has started

import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

STAGES = ("python", "imports", "open_bundle", "tokenizer", "session", "prefill", "first_token")
VARIANTS = ("edge", "bundle-tokenizer", "no-repack", "prepack-cache")
CHECK_TOKENS = 16


def _hwm_mb() -> float:
    from edge.system import peak_rss_mb

    return round(peak_rss_mb(), 1)


def worker(bundle_dir: str, variant: str, threads: int, ids: list[int], spawned: float) -> dict:
    """One measured start in this (fresh) process; ``spawned`` is the parent's time.time() before it started us."""
    stamps = {"python": ENTERED}
    import numpy  # noqa: F401
    import onnxruntime  # noqa: F401
    import tokenizers  # noqa: F401

    from edge.bundle import open_bundle
    from edge.text.decoder import OnnxDecoder
    from edge.text.sampling import Sampler, SamplingOptions
    from edge.text.tokenizer import Tokenizer

    stamps["imports"] = time.time()
    bundle = open_bundle(bundle_dir)
    m = bundle.manifest
    stamps["open_bundle"] = time.time()
    _tokenizer = Tokenizer(bundle.tokenizer_path) if variant == "bundle-tokenizer" else Tokenizer.from_bundle(bundle)
    stamps["tokenizer"] = time.time()
    rss = {"tokenizer": _hwm_mb()}
    model_path, prepack = bundle.model_path, m.precision != "fp32"
    if variant == "no-repack":
        prepack = False
    elif variant == "prepack-cache":
        model_path = prepacked_dir(Path(bundle_dir)) / "model.onnx"
    decoder = OnnxDecoder(model_path, m.kv_cache, threads=threads, prepack=prepack)
    stamps["session"] = time.time()
    rss["session"] = _hwm_mb()
    logits = decoder.forward(ids)
    stamps["prefill"] = time.time()
    greedy = Sampler(SamplingOptions(temperature=0))
    token = greedy(logits, ids)
    stamps["first_token"] = time.time()
    rss["first_token"] = _hwm_mb()
    from edge.system import rss_mb

    rss["now"] = round(rss_mb(), 1)
    tokens = [token]
    while len(tokens) < CHECK_TOKENS:
        tokens.append(greedy(decoder.forward([tokens[-1]]), ids + tokens))
    previous, stages = spawned, {}
    for stage in STAGES:
        stages[stage] = stamps[stage] - previous
        previous = stamps[stage]
    return {
        "stages_s": stages,
        "start_to_first_token_s": stamps["first_token"] - spawned,
        "peak_rss_mb": rss,
        "tokens": tokens,
        "tokenizer_file_mb": round(Path(tokenizer_source(bundle, variant)).stat().st_size / 1e6, 2),
    }


def tokenizer_source(bundle, variant: str) -> Path:
    """The file the variant's tokenizer is read from."""
    from edge.bundle import TOKENIZER_FILE
    from edge.paths import cache_dir
    from edge.text.tokenizer import compact_path

    if variant == "bundle-tokenizer":
        return bundle.tokenizer_path
    sha = bundle.manifest.files[TOKENIZER_FILE].sha256
    return compact_path(bundle.tokenizer_path, sha, cache_dir() / "tokenizers") or bundle.tokenizer_path


def prepacked_dir(bundle_dir: Path) -> Path:
    """Where :func:`build_prepacked` keeps a bundle's graph with repacked weights (benchmark scratch space)."""
    return Path(tempfile.gettempdir()) / "edge-startup-prepacked" / bundle_dir.name


def build_prepacked(bundle_dir: Path) -> Path:
    """Save the bundle's optimized graph with its repacked weights in an external data file, once."""
    import onnxruntime as ort

    from edge.text.decoder import session_options

    out = prepacked_dir(bundle_dir)
    if (out / "model.onnx").is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    so = session_options(1)
    so.optimized_model_filepath = str(out / "model.onnx")
    so.add_session_config_entry("session.optimized_model_external_initializers_file_name", "model.onnx.data")
    so.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
    so.add_session_config_entry("session.save_external_prepacked_constant_initializers", "1")
    ort.InferenceSession(str(bundle_dir / "model.onnx"), so, providers=["CPUExecutionProvider"])
    return out


def measure(bundle_dir: Path, variant: str, threads: int, ids: list[int]) -> dict:
    spawned = time.time()
    cmd = [sys.executable, "-m", "benchmarks.startup", str(bundle_dir), variant, str(threads), ",".join(map(str, ids))]
    cmd.append(repr(spawned))
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    if r.returncode != 0:
        last = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}"
        raise RuntimeError(f"{bundle_dir.name} {variant}: {last}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def summarise(key: tuple, runs: list[dict]) -> dict:
    precision, variant, threads = key
    med = lambda f: round(statistics.median(f(r) for r in runs), 3)  # noqa: E731
    return {
        "precision": precision,
        "variant": variant,
        "threads": threads,
        "runs": len(runs),
        "stages_s": {s: med(lambda r, s=s: r["stages_s"][s]) for s in STAGES},
        "start_to_first_token_s": med(lambda r: r["start_to_first_token_s"]),
        "peak_rss_mb": {k: med(lambda r, k=k: r["peak_rss_mb"][k]) for k in runs[0]["peak_rss_mb"]},
        "tokenizer_file_mb": runs[0]["tokenizer_file_mb"],
        "tokens": runs[0]["tokens"],
        "same_tokens_every_run": all(r["tokens"] == runs[0]["tokens"] for r in runs),
    }


def markdown(rows: list[dict], runs: int, prompt_tokens: int) -> str:
    lines = [
        f"SmolLM2-135M, process start to first token by stage (s), medians of {runs} fresh-process runs "
        f"interleaved across variants; {prompt_tokens}-token chat prompt, greedy; peak RSS (VmHWM) after each stage; "
        f"'same tokens': the first {CHECK_TOKENS} greedy tokens equal those of the `edge` row",
        "",
        "| precision | variant | threads | python | imports | open bundle | tokenizer | session | prefill | "
        "1st token | start->1st token s | peak RSS MB: tokenizer / session / 1st token | same tokens |",
        "|" + "---|" * 13,
    ]
    for r in rows:
        s, m = r["stages_s"], r["peak_rss_mb"]
        lines.append(
            f"| {r['precision']} | {r['variant']} | {r['threads']} | "
            + " | ".join(f"{s[k]:.3f}" for k in STAGES)
            + f" | **{r['start_to_first_token_s']:.3f}** | {m['tokenizer']:.0f} / {m['session']:.0f} / "
            f"**{m['first_token']:.0f}** | {'yes' if r['same_as_edge'] else 'NO'} |"
        )
    return "\n".join(lines) + "\n"


def interleaved(keys: list[tuple], runs: int, measure) -> dict[tuple, list[dict]]:
    """Each run measures every key once, starting one key later than the last run; a key that fails is dropped."""
    samples: dict[tuple, list[dict]] = {}
    failed: set[tuple] = set()
    for run in range(runs):
        shift = run % len(keys)
        for key in keys[shift:] + keys[:shift]:
            if key in failed:
                continue
            print(f"run {run + 1}/{runs}: {' '.join(map(str, key))}", file=sys.stderr)
            try:
                samples.setdefault(key, []).append(measure(key))
            except RuntimeError as e:
                failed.add(key)
                print(f"  could not run: {e}", file=sys.stderr)
    return samples


def run(args, bundles: dict[str, Path], ids: list[int]) -> None:
    """Measure ``args.variants`` of each bundle ({precision: folder}) at ``args.threads``; write results/startup.*."""
    from edge.bundle import open_bundle
    from edge.text.tokenizer import Tokenizer

    keys = []
    for precision, folder in bundles.items():
        Tokenizer.from_bundle(open_bundle(folder))  # writes the compact copy, as a first run would
        variants = [v for v in args.variants if precision != "fp32" or v in ("edge", "bundle-tokenizer")]
        if "prepack-cache" in variants:
            print(f"saving {folder.name} with repacked weights -> {build_prepacked(folder)}", file=sys.stderr)
        keys += [(precision, v, t) for t in args.threads for v in variants]
    samples = interleaved(keys, args.runs, lambda k: measure(bundles[k[0]], k[1], k[2], ids))
    rows = [summarise(k, samples[k]) for k in keys if samples.get(k)]
    reference = {(r["precision"], r["threads"]): r["tokens"] for r in rows if r["variant"] == "edge"}
    for r in rows:
        r["same_as_edge"] = r["same_tokens_every_run"] and r["tokens"] == reference.get((r["precision"], r["threads"]))
    results = Path(__file__).resolve().parent / "results"
    results.mkdir(exist_ok=True)
    (results / "startup.json").write_text(json.dumps(rows, indent=2) + "\n")
    table = markdown(rows, args.runs, len(ids))
    (results / "startup.md").write_text(table)
    print(table)


if __name__ == "__main__":
    bundle_dir, variant, threads, ids, spawned = sys.argv[1:6]
    row = worker(bundle_dir, variant, int(threads), [int(i) for i in ids.split(",")], float(spawned))
    print(json.dumps(row))
