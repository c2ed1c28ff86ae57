"""python -m benchmarks startup: a fresh-process run per variant of a tiny int4 bundle, as the table reads it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from benchmarks import startup


def test_every_variant_starts_and_gives_the_same_tokens(tiny_bundle):
    int4 = tiny_bundle("llama", "int4")
    ids = [1, 5, 9, 12]
    rows = {}
    for variant in ("edge", "bundle-tokenizer", "no-repack"):
        run = startup.measure(int4, variant, 1, ids)
        assert set(run["stages_s"]) == set(startup.STAGES) and all(t >= 0 for t in run["stages_s"].values())
        assert run["start_to_first_token_s"] == pytest.approx(sum(run["stages_s"].values()), abs=1e-6)
        assert run["peak_rss_mb"]["first_token"] >= run["peak_rss_mb"]["tokenizer"] > 0
        rows[variant] = {**startup.summarise(("int4", variant, 1), [run]), "same_as_edge": True}
    assert len({tuple(r["tokens"]) for r in rows.values()}) == 1
    table = startup.markdown(list(rows.values()), 1, len(ids))
    assert table.count("\n| int4 |") == 3 and "start->1st token" in table


def test_the_subcommand_is_registered():
    out = subprocess.run([sys.executable, "-m", "benchmarks", "startup", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--variants" in out.stdout
