"""Which HTTP stack for edge-run --serve: the standard library's ThreadingHTTPServer vs uvicorn + starlette.

Each stack serves the same tiny JSON endpoint from a fresh process (``python -m benchmarks.server_stacks
STACK``); measured: import time of the stack, process RSS once serving and after 500 requests on one
keep-alive connection, and those requests' rate. Models are not loaded: this is the stack's own cost.
"""

from __future__ import annotations

import http.client
import json
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

STACKS = ("stdlib", "uvicorn")
REQUESTS = 500


def serve(stack: str, port: int) -> None:
    """Worker: import the stack, print its import time, then serve /health on ``port``."""
    start = time.perf_counter()
    if stack == "stdlib":
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        print(json.dumps({"import_s": time.perf_counter() - start}), flush=True)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # as edge's server: no 40 ms delayed-ACK stall per response

            def do_GET(self):
                body = json.dumps({"status": "ok"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
    else:
        import uvicorn
        from starlette.applications import Starlette
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        print(json.dumps({"import_s": time.perf_counter() - start}), flush=True)
        app = Starlette(routes=[Route("/health", lambda request: JSONResponse({"status": "ok"}))])
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _rss_of(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS:"))


def measure(stack: str) -> dict:
    with socket.socket() as s:  # a free port for the worker
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "benchmarks.server_stacks", stack, str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        imported = json.loads(proc.stdout.readline())["import_s"]
        for _ in range(200):
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                conn.request("GET", "/health")
                conn.getresponse().read()
                break
            except ConnectionRefusedError:
                time.sleep(0.05)
        ready = _rss_of(proc.pid)
        start = time.perf_counter()
        for _ in range(REQUESTS):
            conn.request("GET", "/health")
            conn.getresponse().read()
        rate = REQUESTS / (time.perf_counter() - start)
        after = _rss_of(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)
    return {"import_s": imported, "rss_ready_mb": ready, "rss_after_mb": after, "requests_per_s": rate}


def compare(runs: int = 3) -> list[dict]:
    """Medians of ``runs`` fresh processes per stack; a stack that is not installed is skipped by name."""
    rows = []
    for stack in STACKS:
        try:
            samples = [measure(stack) for _ in range(runs)]
        except (json.JSONDecodeError, KeyError, OSError):
            print(f"server_stacks: {stack} did not start (for uvicorn: pip install uvicorn starlette)", file=sys.stderr)
            continue
        row = {"stack": stack} | {k: round(statistics.median(s[k] for s in samples), 3) for k in samples[0]}
        rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        "| stack | import ms | RSS serving MB | RSS after 500 requests MB | requests/s (1 keep-alive client) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['stack']} | {r['import_s'] * 1000:.0f} | {r['rss_ready_mb']:.1f} | {r['rss_after_mb']:.1f} "
            f"| {r['requests_per_s']:.0f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
