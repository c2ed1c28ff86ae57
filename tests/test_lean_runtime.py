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
