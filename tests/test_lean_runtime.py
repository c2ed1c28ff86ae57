"""The runtime stays lean: importing edge and generating text loads no torch or transformers."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import HEAVY, ROOT

PROBE = """
import sys
import edge
model = edge.load(sys.argv[1])
print(model.generate("Paris is", max_new_tokens=4).text)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {heavy})
print("HEAVY:" + ",".join(heavy))
"""


def loaded_heavy_modules(bundle) -> list[str]:
    r = subprocess.run(
        [sys.executable, "-c", PROBE.replace("{heavy}", repr(set(HEAVY))), str(bundle)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stdout.splitlines() if x.startswith("HEAVY:"))
    return [m for m in line[len("HEAVY:") :].split(",") if m]


def test_generation_loads_no_heavy_module(tiny_bundle):
    assert loaded_heavy_modules(tiny_bundle("llama", "int4")) == []


def test_edge_never_imports_export():
    for path in (ROOT / "edge").rglob("*.py"):
        for line in path.read_text().splitlines():
            stripped = line.strip()
            assert not stripped.startswith(("import export", "from export")) or "cli.py" in path.name, path
            heavy = ("import torch", "import transformers", "from torch", "from transformers")
            assert not stripped.startswith(heavy), path


def test_serving_loads_no_heavy_module(tiny_bundle, whisper_bundle, tmp_path):
    """edge-run --serve with commands and speech, after a chat, a typed and a spoken command."""
    import json
    import signal
    import urllib.request

    import numpy as np

    from tests.conftest import LEAN_CLI
    from tests.test_audio import write_pcm

    panel = ROOT.parent / "shared" / "commands" / "appliance-panel.json"
    args = ["--serve", "--port", "0", "--model", str(tiny_bundle("llama", "int4"))]
    args += ["--commands", str(panel), "--asr-model", str(whisper_bundle("int8"))]
    proc = subprocess.Popen([sys.executable, "-c", LEAN_CLI, *args], stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        line = proc.stderr.readline()
        assert "serving" in line, line + proc.stderr.read()
        url = line.split(" on ")[1].split("/ ")[0]

        def post(path: str, data: bytes, kind: str) -> dict:
            req = urllib.request.Request(url + path, data=data, headers={"Content-Type": kind})
            with urllib.request.urlopen(req, timeout=120) as r:
                return json.loads(r.read())

        chat = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, "stream": False}
        assert post("/v1/chat/completions", json.dumps(chat).encode(), "application/json")["choices"]
        assert "command" in post("/v1/commands", b'{"text": "lights on"}', "application/json")
        wav = write_pcm(tmp_path / "silence.wav", np.zeros(8000, np.float32))
        assert "transcript" in post("/v1/commands", wav.read_bytes(), "audio/wav")
    finally:
        proc.send_signal(signal.SIGTERM)  # how systemd stops the service
        rest = proc.communicate(timeout=60)[1]
    heavy = next(line for line in rest.splitlines() if line.startswith("HEAVY:"))
    assert heavy == "HEAVY:", rest
