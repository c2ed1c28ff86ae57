"""Load on ``edge-run --serve``: N concurrent clients on loopback for a bounded time, chats and commands mixed.

The server runs in its own process on a free 127.0.0.1 port with the benchmark bundles; each client
loops over a fixed cycle (streamed chat, typed command, typed command, streamed chat, spoken command)
until time is up. Reported: completed requests per second, p50/p95 latency per kind, time to the first
streamed token, errors, server peak RSS. A burst of simultaneous requests afterwards shows the queue
limit answering 429 (deliberately, so those are counted apart from errors).
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from benchmarks.common import BUNDLES, HERE, RESULTS, ensure_bundle

PANEL = HERE.parent.parent / "shared" / "commands" / "appliance-panel.json"
# none of these is from the dev set: the load test measures speed, not accuracy
CHATS = [
    "Give me one tip for cleaning an oven.",
    "How long should I bake potatoes?",
    "What does a kitchen extractor fan do?",
    "Suggest a quick dinner idea.",
]
COMMANDS = ["switch the fan to speed three", "turn off the living room light", "grill mode please", "start a timer"]
SPOKEN = ["set the fan speed to two", "turn on the hallway light"]
CYCLE = ("chat", "command", "command", "chat", "spoken")
CHAT_TOKENS = 48
BURST = 24  # simultaneous requests against a queue of 8


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))], 4)


def start_server(model: Path, asr: Path | None) -> tuple[subprocess.Popen, str, float]:
    """``edge-run --serve`` on a free loopback port with the panel's command set and speech from ``asr``
    (``asr`` None: chat only, as --commands would load the default speech bundle, building it if need be):
    (the process, its URL, seconds to start)."""
    began = time.perf_counter()
    cmd = [sys.executable, "-m", "edge.cli", "--serve", "--port", "0", "--model", str(model)]
    if asr is not None:
        cmd += ["--commands", str(PANEL), "--asr-model", str(asr)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, cwd=HERE.parent)
    line = proc.stderr.readline()
    if "serving" not in line:
        raise RuntimeError(f"the server did not start: {line}{proc.stderr.read()}")
    threading.Thread(target=proc.stderr.read, daemon=True).start()  # drain the request log
    return proc, line.split(" on ")[1].split("/ ")[0], time.perf_counter() - began


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmHWM")


class Client:
    """One connection kept alive, as the openai client does; measures each request."""

    def __init__(self, url: str):
        host, port = url.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=300)

    def chat(self, text: str) -> dict:
        body = {"messages": [{"role": "user", "content": text}], "max_tokens": CHAT_TOKENS, "stream": True}
        start = time.perf_counter()
        self.conn.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
        r = self.conn.getresponse()
        if r.status != 200:
            return {"status": r.status, "error": r.read().decode()[:200]}
        first, pieces = None, 0
        for line in r:
            if not line.startswith(b"data: ") or line.strip() == b"data: [DONE]":
                continue
            delta = json.loads(line[6:])["choices"][0]["delta"] if b'"delta"' in line else {}
            if delta.get("content"):
                pieces += 1
                first = first or time.perf_counter() - start
        return {"status": 200, "latency_s": time.perf_counter() - start, "ttft_s": first, "pieces": pieces}

    def command(self, body: bytes, kind: str) -> dict:
        start = time.perf_counter()
        self.conn.request("POST", "/v1/commands", body, {"Content-Type": kind})
        r = self.conn.getresponse()
        data = r.read()
        row = {"status": r.status, "latency_s": time.perf_counter() - start}
        return row if r.status == 200 else row | {"error": data.decode()[:200]}


def spoken_wavs(folder: Path) -> list[bytes]:
    if shutil.which("espeak-ng") is None:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    wavs = []
    for text in SPOKEN:
        path = folder / (text.replace(" ", "_") + ".wav")
        subprocess.run(["espeak-ng", "-w", str(path), text], check=True, capture_output=True)
        wavs.append(path.read_bytes())
    return wavs


def load(url: str, clients: int, seconds: float, wavs: list[bytes]) -> list[dict]:
    rows: queue.Queue[dict] = queue.Queue()
    end = time.perf_counter() + seconds

    def run(index: int) -> None:
        client, i = Client(url), index  # clients start at different points of the cycle
        while time.perf_counter() < end:
            kind = CYCLE[i % len(CYCLE)]
            if kind == "spoken" and not wavs:
                kind = "command"
            try:
                if kind == "chat":
                    row = client.chat(CHATS[i % len(CHATS)])
                elif kind == "command":
                    text = json.dumps({"text": COMMANDS[i % len(COMMANDS)]}).encode()
                    row = client.command(text, "application/json")
                else:
                    row = client.command(wavs[i % len(wavs)], "audio/wav")
            except (OSError, http.client.HTTPException) as e:
                row, client = {"status": 0, "error": repr(e)}, Client(url)
            rows.put(row | {"kind": kind, "done_at": time.perf_counter()})
            i += 1

    threads = [threading.Thread(target=run, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return list(rows.queue)


def burst(url: str) -> dict:
    """BURST typed commands at once: the queue takes 8 (plus the one running); the rest get 429 at once."""
    statuses: list[int] = []
    body = json.dumps({"text": COMMANDS[0]}).encode()
    barrier = threading.Barrier(BURST)

    def one() -> None:
        client = Client(url)
        barrier.wait()
        statuses.append(client.command(body, "application/json")["status"])

    threads = [threading.Thread(target=one) for _ in range(BURST)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"sent": BURST, "ok": statuses.count(200), "rejected_429": statuses.count(429)}


def summarize(rows: list[dict], seconds: float) -> dict:
    ok = [r for r in rows if r["status"] == 200]
    out: dict = {"requests": len(rows), "completed": len(ok), "requests_per_s": round(len(ok) / seconds, 2)}
    out["errors"] = len([r for r in rows if r["status"] not in (200, 429)])
    out["rejected_429"] = len([r for r in rows if r["status"] == 429])
    for kind in ("chat", "command", "spoken"):
        lat = [r["latency_s"] for r in ok if r["kind"] == kind]
        out[kind] = {"n": len(lat), "p50_s": percentile(lat, 0.5), "p95_s": percentile(lat, 0.95)}
    ttft = [r["ttft_s"] for r in ok if r["kind"] == "chat" and r["ttft_s"] is not None]
    out["chat"] |= {"ttft_p50_s": percentile(ttft, 0.5), "ttft_p95_s": percentile(ttft, 0.95)}
    pieces = sum(r["pieces"] for r in ok if r["kind"] == "chat")
    out["chat"]["streamed_pieces_per_s"] = round(pieces / seconds, 1)
    out["error_samples"] = [r["error"] for r in rows if r["status"] not in (200, 429)][:5]
    return out


def markdown(result: dict) -> str:
    s = result["summary"]
    ms = lambda v: "-" if v is None else f"{v * 1000:.0f}"  # noqa: E731
    lines = [
        f"edge-run --serve, {result['precision']} text bundle + whisper-tiny.en int8, {result['clients']} clients, "
        f"{result['seconds']:.0f} s, {result['cpus']} CPUs",
        "",
        "| kind | requests | p50 ms | p95 ms | time to first token p50 / p95 ms |",
        "|---|---|---|---|---|",
    ]
    for kind in ("chat", "command", "spoken"):
        k = s[kind]
        ttft = f"{ms(k['ttft_p50_s'])} / {ms(k['ttft_p95_s'])}" if kind == "chat" else ""
        lines.append(f"| {kind} | {k['n']} | {ms(k['p50_s'])} | {ms(k['p95_s'])} | {ttft} |")
    b = result["burst"]
    lines += [
        "",
        f"throughput {s['requests_per_s']} requests/s ({s['chat']['streamed_pieces_per_s']} streamed chat pieces/s); "
        f"errors {s['errors']}, 429 {s['rejected_429']}; server start {result['start_s']:.1f} s, "
        f"peak RSS {result['server_peak_rss_mb']:.0f} MB; burst of {b['sent']}: {b['ok']} answered, "
        f"{b['rejected_429']} refused with 429",
        "",
    ]
    return "\n".join(lines)


def run(args) -> None:
    if args.stacks:
        from benchmarks import server_stacks

        rows = server_stacks.compare()
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "server_stacks.json").write_text(json.dumps(rows, indent=2) + "\n")
        (RESULTS / "server_stacks.md").write_text(table := server_stacks.markdown(rows))
        print(table)
        return
    model = ensure_bundle(args.precision)
    asr = BUNDLES / "whisper-tiny.en-int8"
    if not (asr / "edge.json").is_file():
        from benchmarks.asr import ensure_bundle as ensure_whisper

        asr = ensure_whisper("int8")
    seconds = 6.0 if args.quick else args.seconds
    wavs = spoken_wavs(HERE / ".audio" / "server")
    proc, url, start_s = start_server(model, asr)
    try:
        Client(url).command(json.dumps({"text": "warm up"}).encode(), "application/json")
        began = time.perf_counter()
        rows = load(url, args.clients, seconds, wavs)
        elapsed = time.perf_counter() - began
        result = {
            "precision": args.precision,
            "clients": args.clients,
            "seconds": elapsed,
            "cpus": os.cpu_count(),
            "start_s": round(start_s, 2),
            "summary": summarize(rows, elapsed),
            "burst": burst(url),
            "server_peak_rss_mb": peak_rss_mb(proc.pid),
        }
    finally:
        proc.terminate()
        proc.wait(30)
    RESULTS.mkdir(exist_ok=True)
    name = "server" if (args.precision, args.clients) == ("fp32", 4) else f"server-{args.precision}-{args.clients}c"
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    (RESULTS / f"{name}.md").write_text(table)
    print(table)
    if result["summary"]["errors"]:
        print("errors:", result["summary"]["error_samples"], file=sys.stderr)
