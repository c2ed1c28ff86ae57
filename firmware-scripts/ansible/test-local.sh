#!/usr/bin/env bash
# Run the playbook for real against this machine (ansible_connection=local), into a root file
# system in firmware-scripts/.work/ansible (install.sh --root, no systemd), with real kits for this
# machine's CPU built from tiny bundles:
#   1. syntax check
#   2. kit A (a chat model): installs, the health check answers with a command
#   3. kit A again: nothing changes (changed=0)
#   4. kit B (a base model without a chat template: it generates, so install.sh's own check
#      passes, but it cannot map requests to commands): the health check fails, the board is
#      rolled back to A, and the play fails
#
#   sudo bash firmware-scripts/ansible/test-local.sh
#
# Needs root (install.sh), the repository's .venv with the export extra, and PyPI (ansible-core
# goes into a venv of its own in .work, never into the project's dependencies; kit A downloads
# wheels). Skips (exit 0) without root.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
REPO=$(cd "$HERE/../.." && pwd -P)
WORK=$REPO/firmware-scripts/.work/ansible
PY=$REPO/.venv/bin/python
say() { printf 'ansible test: %s\n' "$*"; }
fail() {
    say "FAILED: $*" >&2
    exit 1
}

[ "$(id -u)" -eq 0 ] || {
    say "SKIPPED: install.sh needs root"
    exit 0
}
[ -x "$PY" ] || fail "no $REPO/.venv (run README's test command first)"
mkdir -p "$WORK"
export EDGE_CACHE_DIR=$WORK/edge-cache PIP_CACHE_DIR=$WORK/pip-cache

if [ ! -x "$WORK/venv/bin/ansible-playbook" ]; then
    say "installing ansible-core into $WORK/venv"
    python3 -m venv "$WORK/venv"
    "$WORK/venv/bin/pip" install --quiet --disable-pip-version-check ansible-core
fi
PLAYBOOK=("$WORK/venv/bin/ansible-playbook")
say "$("${PLAYBOOK[@]}" --version | head -n 1)"

say "1. syntax check"
"${PLAYBOOK[@]}" --syntax-check -i "$HERE/inventory.example.ini" "$HERE/playbook.yml"

say "building tiny bundles and two kits for $(uname -m)"
rm -rf "$WORK/bundles" "$WORK/kits" "$WORK/root" "$WORK/board"
cd "$REPO"
"$PY" - "$WORK/bundles" <<'PY' >"$WORK/bundles.log" 2>&1 || { cat "$WORK/bundles.log"; fail "bundles"; }
import json, sys
from pathlib import Path
sys.path.insert(0, ".")
from export import export_bundle
from tests.conftest import make_hf_folder, make_whisper_folder
out = Path(sys.argv[1])
quiet = lambda _: None
export_bundle(str(make_hf_folder(out / "hf-llama", "llama")), out / "chat-model", "int4", progress=quiet)
export_bundle(str(make_hf_folder(out / "hf-gpt2", "gpt2")), out / "base-model", "fp32", progress=quiet)
export_bundle(str(make_whisper_folder(out / "hf-whisper")), out / "whisper", "int8", progress=quiet)
panel = {"name": "test", "description": "A test panel.", "commands": {
    "status": {"description": "Report what the appliances are doing.", "args": {}},
    "unknown": {"description": "Anything else.", "args": {}}}}
(out / "panel.json").write_text(json.dumps(panel))
PY
"$PY" firmware-scripts/build-kit.py --arch "$(uname -m)" --out "$WORK/kits/a.tar.gz" \
    --bundle "$WORK/bundles/chat-model" --bundle "$WORK/bundles/whisper" --commands "$WORK/bundles/panel.json"
mkdir -p "$WORK/wheels" && rm -f "$WORK"/wheels/*.whl
tar xzf "$WORK/kits/a.tar.gz" -C "$WORK/wheels" --strip-components=2 --wildcards '*/wheels/*.whl'
"$PY" firmware-scripts/build-kit.py --arch "$(uname -m)" --wheels "$WORK/wheels" --out "$WORK/kits/b.tar.gz" \
    --bundle "$WORK/bundles/base-model" --bundle "$WORK/bundles/whisper" --commands "$WORK/bundles/panel.json"

mkdir -p "$WORK/root/etc"
printf 'root:x:0:0:root:/root:/bin/bash\n' >"$WORK/root/etc/passwd"
printf 'root:x:0:\naudio:x:29:\n' >"$WORK/root/etc/group"
printf '[boards]\nthis-machine ansible_connection=local ansible_python_interpreter=%s\n' \
    "$WORK/venv/bin/python" >"$WORK/inventory.ini"
play() { # play KIT: the playbook into the test root, without sudo or systemd
    "${PLAYBOOK[@]}" -i "$WORK/inventory.ini" "$HERE/playbook.yml" -e "edge_kit=$1" -e edge_become=false \
        -e "edge_root=$WORK/root" -e edge_systemd=false -e "edge_kit_dir=$WORK/board"
}
release() { readlink "$WORK/root/opt/edge/$1"; }

say "2. kit A: install and health check"
play "$WORK/kits/a.tar.gz" | tee "$WORK/run-a.log"
grep -q '"msg": "status report -> {' "$WORK/run-a.log" || fail "no health check answer in the output"
a=$(release current)

say "3. kit A again: nothing changes"
play "$WORK/kits/a.tar.gz" | tee "$WORK/run-a2.log"
grep -Eq 'this-machine +: ok=[0-9]+ +changed=0 +unreachable=0 +failed=0' "$WORK/run-a2.log" ||
    fail "the second run changed something or failed"

say "4. kit B: the health check fails, the board is rolled back"
if play "$WORK/kits/b.tar.gz" | tee "$WORK/run-b.log"; then
    fail "the play passed with a kit whose health check must fail"
fi
grep -q 'rolled back to the previous release' "$WORK/run-b.log" || fail "no rollback reported"
[ "$(release current)" = "$a" ] || fail "current is $(release current), not kit A's $a"
say "current -> $(release current) (kit A), previous -> $(release previous) (kit B)"
say "PASSED"
