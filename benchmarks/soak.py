"""Soak: one process generates many tokens and transcribes many utterances; memory must stop growing.

    python -m benchmarks.soak [--tokens 20000] [--utterances 500] [--text BUNDLE] [--speech BUNDLE]
    python -m benchmarks soak --server [--minutes 3] [--clients 16] [--model BUNDLE]

Reports the resident-memory slope over the second half of each run (MB per 10,000 tokens and per
1,000 utterances) and the open file descriptors after loading and at the end. The test suite runs the same
function in a reduced form on tiny bundles (tests/test_soak.py).

The server soak (:func:`server_soak`) runs ``edge-run --serve`` on 127.0.0.1 and has many clients at it for
minutes, some of them hostile (hang-ups, slow senders, garbage, huge or deep bodies, foreign Host or
Origin); it reports the server's memory and threads at the start and end, requests by outcome, and
whether every well-formed request was answered.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import socket
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

import edge
from edge.system import open_files, rss_mb
from edge.text.sampling import SamplingOptions

CHUNK_TOKENS = 250
PROMPT = "Tell me about the kitchen."


def _slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope over the second half: the first half is allocation warming up."""
    half = len(xs) // 2
    return float(np.polyfit(xs[half:], ys[half:], 1)[0]) if len(xs) - half >= 2 else 0.0


def soak(text_bundle: Path, speech_bundle: Path | None, tokens: int, utterances: int) -> dict:
    """Run the soak in this process and return its figures."""
    model = edge.load(text_bundle, threads=1)
    recognizer = edge.load(speech_bundle, threads=1) if speech_bundle is not None and utterances else None
    files_before = open_files()  # after loading: a leak is growth while working
    done, xs, ys = 0, [], []
    greedy = SamplingOptions(temperature=0)
    while done < tokens:
        ids = model.tokenizer.encode(model.format_prompt(PROMPT))
        for _ in model.stream_ids(ids, max_new_tokens=CHUNK_TOKENS, sampling=greedy, ignore_eos=True):
            done += 1
        xs.append(done)
        ys.append(rss_mb())
    result = {
        "tokens": done,
        "text_rss_start_mb": ys[0],
        "text_rss_end_mb": ys[-1],
        "mb_per_10k_tokens": _slope(xs, ys) * 10_000,
    }
    if recognizer is not None:
        rng = np.random.default_rng(0)

        def utterance(seconds: float) -> None:
            t = np.arange(int(16000 * seconds)) / 16000
            recognizer.transcribe((0.1 * np.sin(2 * np.pi * rng.uniform(100, 800) * t)).astype(np.float32))

        # Warm up on the longest clip and a few others first: onnxruntime's arena grows to the largest shape
        # it has seen, which is a one-off, not a leak (it made the slope over 100 clips flaky).
        for seconds in (3.0, *rng.uniform(0.5, 3, size=10)):
            utterance(seconds)
        xs, ys = [], []
        for i in range(utterances):
            utterance(rng.uniform(0.5, 3))
            xs.append(i + 1)
            ys.append(rss_mb())
        result |= {
            "utterances": utterances,
            "speech_rss_start_mb": ys[0],
            "speech_rss_end_mb": ys[-1],
            "mb_per_1k_utterances": _slope(xs, ys) * 1000,
        }
    result["open_files_before"] = files_before
    result["open_files_after"] = open_files()
    return result


# what each soak client does, in turn; the well-formed ones must each get an answer
WELL_FORMED = ("chat", "stream", "models", "health", "half-close")
HOSTILE = ("hang-up", "slow", "garbage", "huge", "deep", "foreign-host", "foreign-origin", "reset")
HUGE_BYTES = 9 << 20  # declared, over the 8 MB limit: refused unread (413)
SLOW_BYTE_S = 1.0  # a slow sender's pace: one byte a second, until the server's header deadline cuts it off


def _request(kind: str, port: int) -> bytes:
    """The bytes of one request of ``kind`` (see :data:`WELL_FORMED` and :data:`HOSTILE`)."""
    host = f"Host: 127.0.0.1:{port}\r\n"
    if kind in ("chat", "stream", "half-close", "hang-up", "reset", "foreign-origin", "foreign-host"):
        body = json.dumps(
            {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": 16, "stream": kind == "stream"}
        ).encode()
        if kind == "foreign-host":
            host = "Host: rebound.example\r\n"
        elif kind == "foreign-origin":
            host += "Origin: http://evil.example\r\nContent-Type: text/plain\r\n"
        head = f"POST /v1/chat/completions HTTP/1.1\r\n{host}Content-Type: application/json\r\n"
        return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    if kind == "models":
        return f"GET /v1/models HTTP/1.1\r\n{host}\r\n".encode()
    if kind == "deep":
        body = b"[" * 100_000 + b"]" * 100_000
        head = f"POST /v1/completions HTTP/1.1\r\n{host}Content-Type: application/json\r\nContent-Length: {len(body)}"
        return head.encode() + b"\r\n\r\n" + body
    if kind == "huge":
        head = f"POST /v1/completions HTTP/1.1\r\n{host}Content-Type: application/json\r\n"
        head += f"Content-Length: {HUGE_BYTES}\r\n\r\n"
        return head.encode() + b"\0" * 65536  # the first 64 KB of it
    if kind == "garbage":
        return random.randbytes(random.randint(1, 2000)) + b"\r\n\r\n"
    return f"GET /health HTTP/1.1\r\n{host}\r\n".encode()  # health, slow


def _first_line(sock: socket.socket) -> bytes:
    got = b""
    while b"\r\n" not in got and (chunk := sock.recv(4096)):
        got += chunk
    return got.split(b"\r\n", 1)[0]


def _visit(kind: str, port: int, end: float) -> str:
    """Do one ``kind`` of visit; the outcome: the status code, ``closed`` or ``sent`` (the client left)."""
    data = _request(kind, port)
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        if kind in ("hang-up", "reset"):
            if kind == "reset":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            sock.sendall(data[: len(data) * 3 // 4])
            return "sent"
        if kind == "slow":
            for byte in data[:-2]:  # never the last line break: only the deadline ends it
                sock.sendall(bytes([byte]))
                if time.monotonic() > end + 30 or not _wait_quiet(sock, SLOW_BYTE_S):
                    break
        else:
            sock.sendall(data)
        if kind == "half-close":
            sock.shutdown(socket.SHUT_WR)
        if kind in WELL_FORMED:  # read the whole answer, as a client would (a 100 Continue is skipped)
            answer = http.client.HTTPResponse(sock)
            answer.begin()
            answer.read()
            return str(answer.status)
        try:
            line = _first_line(sock)
        except ConnectionResetError:  # garbage, or an unread body, can end in a reset after the answer
            line = b""
    return line[9:12].decode() if line.startswith(b"HTTP/1.1 ") else "closed"


def _wait_quiet(sock: socket.socket, seconds: float) -> bool:
    """Sleep ``seconds`` unless the server answers or closes first; True if it stayed quiet."""
    sock.settimeout(seconds)
    try:
        sock.recv(1, socket.MSG_PEEK)
        return False  # the answer (408) or the close came
    except TimeoutError:
        return True
    finally:
        sock.settimeout(120)


def _server_stats(pid: int) -> dict:
    import psutil

    proc = psutil.Process(pid)
    return {"rss_mb": round(proc.memory_info().rss / 2**20, 1), "threads": proc.num_threads()}


def server_soak(model: Path, seconds: float, clients: int = 16, max_visits: int = 200_000) -> dict:
    """Run ``edge-run --serve --model MODEL`` on 127.0.0.1 and have ``clients`` threads visit it for
    ``seconds`` (at most ``max_visits`` visits); half the clients are hostile. Returns the figures."""
    from benchmarks.server import peak_rss_mb, start_server

    proc, url, start_s = start_server(model, None)
    port = int(url.rsplit(":", 1)[1])
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    failures: list[str] = []
    try:
        _visit("chat", port, time.monotonic() + 60)  # warm up: the first generation allocates
        before = _server_stats(proc.pid)
        samples = [before["rss_mb"]]
        end = time.monotonic() + seconds

        def client(index: int) -> None:
            kinds = WELL_FORMED if index % 2 == 0 else HOSTILE
            rng = random.Random(index)
            while time.monotonic() < end and sum(outcomes.values()) < max_visits:
                kind = rng.choice(kinds)
                try:
                    outcome = _visit(kind, port, end)
                except (OSError, http.client.HTTPException) as e:
                    outcome = f"error {type(e).__name__}: {e}"
                with lock:
                    outcomes[f"{kind}: {outcome}"] += 1
                    if kind in WELL_FORMED and not outcome.isdigit():
                        failures.append(f"{kind}: {outcome}")

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            time.sleep(1)
            samples.append(_server_stats(proc.pid)["rss_mb"])
        time.sleep(3)  # the last lingering connections close (a slow sender has had its 408 by now)
        after = _server_stats(proc.pid)
        peak = peak_rss_mb(proc.pid)  # the kernel's high-water mark: peaks between samples count too
        alive, health = proc.poll() is None, {"requests": None}
        if alive:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", "/health")
            health = json.loads(conn.getresponse().read())
            conn.close()
    finally:
        proc.terminate()
        proc.wait(30)
    well_formed = sum(n for k, n in outcomes.items() if k.split(":")[0] in WELL_FORMED)
    return {
        "model": str(model),
        "seconds": seconds,
        "clients": clients,
        "server_start_s": round(start_s, 2),
        "visits": sum(outcomes.values()),
        "outcomes": dict(sorted(outcomes.items())),
        "well_formed": well_formed,
        "well_formed_unanswered": len(failures),
        "unanswered_samples": failures[:5],
        "server_alive": alive,
        "server_requests": health["requests"],
        "rss_start_mb": before["rss_mb"],
        "rss_end_mb": after["rss_mb"],
        "rss_peak_mb": peak,
        "rss_sampled_max_mb": max(samples),
        "threads_start": before["threads"],
        "threads_end": after["threads"],
    }


def main() -> None:
    here = Path(__file__).resolve().parent
    p = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--tokens", type=int, default=20_000)
    p.add_argument("--utterances", type=int, default=500)
    p.add_argument("--text", type=Path, default=here / ".bundles" / "smollm2-135m-int4")
    p.add_argument("--speech", type=Path, default=here / ".bundles" / "whisper-tiny.en-int8")
    args = p.parse_args()
    result = soak(args.text, args.speech, args.tokens, args.utterances)
    print(json.dumps(result, indent=2))
    (here / "results" / "soak.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()


def soak_bundle() -> tuple[Path, str]:
    """The bundle a server soak runs on: the default int4, else the default fp32 bundle if built, else a
    tiny random one (built here; needs the export extra). Returns it and a line saying which."""
    from edge.cache import default_bundle_dir

    fp32 = default_bundle_dir()
    for path in (fp32.with_name(fp32.name.replace("-fp32", "-int4")), fp32):
        if (path / "edge.json").is_file():
            return path, f"the default bundle {path.name}"
    tiny = Path(__file__).resolve().parent / ".bundles" / "tiny-random-llama-fp32"
    if not (tiny / "edge.json").is_file():
        import tempfile

        from export import export_bundle
        from tests.conftest import make_hf_folder  # the test suite's tiny random model, tokenizer trained offline

        with tempfile.TemporaryDirectory() as hf:
            export_bundle(str(make_hf_folder(Path(hf), "llama")), tiny, "fp32", force=True)
    return tiny, "a tiny random llama (2 layers, 64 wide; no default bundle was built)"


def server_markdown(result: dict) -> str:
    r = result
    lines = [
        f"edge-run --serve soak: {r['bundle']}, {r['clients']} clients (half hostile) for {r['seconds'] / 60:.1f} min "
        "on 127.0.0.1",
        "",
        f"- visits: {r['visits']}; well-formed {r['well_formed']}, unanswered {r['well_formed_unanswered']}; "
        f"server alive at the end: {r['server_alive']}",
        f"- server RSS MB: start {r['rss_start_mb']}, end {r['rss_end_mb']}, peak {r['rss_peak_mb']} "
        f"(sampled max while loaded {r['rss_sampled_max_mb']})",
        f"- server threads: start {r['threads_start']}, end {r['threads_end']}",
        f"- the server's own counts: {r['server_requests']}",
        "",
        "| client: outcome | count |",
        "|---|---|",
        *(f"| {k} | {n} |" for k, n in r["outcomes"].items()),
        "",
    ]
    return "\n".join(lines)


def run_server(args) -> None:
    """``python -m benchmarks soak``: the server soak, written to results/soak-server.{json,md}."""
    from benchmarks.common import write

    model, which = (args.model, f"the bundle {args.model}") if args.model else soak_bundle()
    result = {"bundle": which} | server_soak(model, args.minutes * 60, args.clients)
    write("soak-server", result, args, server_markdown(result))
