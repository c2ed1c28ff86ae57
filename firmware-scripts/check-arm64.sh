#!/usr/bin/env bash
# Prove the runtime works on aarch64, as on a Raspberry Pi 4, on an x86-64 machine under QEMU:
# build the offline kit for aarch64, install it with install.sh into an emulated Debian bookworm
# arm64 root, run edge-run there, and run the runtime's aarch64 tests (arm64/test_arm64.py), which
# include the hands-free assistant over a 5 s session ("okay nabu, turn on the kitchen light": the
# ONNX wake word, Silero VAD and the tiny command model, through edge.assistant's library API).
#
#   sudo bash firmware-scripts/check-arm64.sh        (CI runs it from .ci/run, after the test suite)
#
# Needs root, apt-get and the network (Debian's mirror and PyPI), and the repository's .venv with
# the export extra (it builds the tiny bundles: the board has no torch). Skips, with exit status 0,
# only on a machine that cannot run it at all (not root, no apt-get, no binfmt_misc); anything
# else that goes wrong fails. Work and download caches live in firmware-scripts/.work (ignored
# by git); the arm64 root is rebuilt from the cached .debs on every run.
#
# The emulated CPU is a Cortex-A72, the Pi 4's (EDGE_ARM64_CPU=cortex-a76 for a Pi 5): QEMU's
# default `max` CPU has every newer instruction, so it would not catch a wheel that dies with an
# illegal instruction on a Pi 4, as onnxruntime 1.21.0 did (onnxruntime issue #24112).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
WORK=$REPO/firmware-scripts/.work/arm64
ROOT=$WORK/root
CPU=${EDGE_ARM64_CPU:-cortex-a72}
# the Debian mirror this machine's apt already uses (EDGE_ARM64_MIRROR overrides)
MIRROR=${EDGE_ARM64_MIRROR:-$(grep -hE '^(URIs:|deb) ' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources \
    /etc/apt/sources.list.d/*.list 2>/dev/null | grep -oE 'https?://[^ ]+' | grep -v security | head -n 1 || true)}
SUITE=bookworm
PACKAGES=python3,python3-venv,libportaudio2
BINFMT=/proc/sys/fs/binfmt_misc
BINFMT_NAME=edge-check-arm64
STEPS=7
step=0
started=$(date +%s)

say() { printf 'check-arm64: %s\n' "$*"; }
skip() {
    say "SKIPPED: $*"
    exit 0
}
fail() {
    say "FAILED: $*" >&2
    exit 1
}
stage() {
    step=$((step + 1))
    stage_started=$(date +%s)
    say "[$step/$STEPS] $*"
}
done_stage() { say "      done in $(($(date +%s) - stage_started)) s${1:+: $1}"; }

# --- what this machine must offer; lacking it is a skip, not a failure --------------------------
[ "$(id -u)" -eq 0 ] || skip "needs root (debootstrap, chroot, binfmt_misc); run it with sudo"
[ "$(uname -m)" = x86_64 ] || skip "emulates aarch64 on x86-64 hosts only; this one is $(uname -m)"
command -v apt-get >/dev/null || skip "needs apt-get (Debian or Ubuntu) to install qemu-user-static and debootstrap"
for tool in unshare chroot mount; do
    command -v "$tool" >/dev/null || skip "needs $tool (util-linux, coreutils)"
done

PY=$REPO/.venv/bin/python
[ -x "$PY" ] || fail "no $REPO/.venv: run the test command from README.md first (it makes the venv)"
"$PY" -c 'import export, torch, edge' 2>/dev/null ||
    fail "the .venv lacks the export extra (torch): pip install -e '.[export,dev]'"

mkdir -p "$WORK"
export EDGE_CACHE_DIR=$WORK/edge-cache PIP_CACHE_DIR=$WORK/pip-cache # nothing cached outside the repo

cleanup() {
    if [ -f "$BINFMT/$BINFMT_NAME" ]; then echo -1 >"$BINFMT/$BINFMT_NAME"; fi
    if [ "${mounted_binfmt:-0}" -eq 1 ]; then umount "$BINFMT" 2>/dev/null || true; fi
}
trap cleanup EXIT

# --- 1. tools --------------------------------------------------------------------------------------
stage "tools: qemu-user-static, debootstrap, shellcheck, systemd-analyze"
need=()
command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v shellcheck >/dev/null || need+=(shellcheck)
command -v systemd-analyze >/dev/null || need+=(systemd)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null ||
        fail "apt-get could not install ${need[*]}"
fi
# Debian's wrapper keeps argv[0] as the program set it (P), as a kernel would; plain QEMU otherwise
QEMU=/usr/libexec/qemu-binfmt/aarch64-binfmt-P FLAGS=FP
[ -x "$QEMU" ] || QEMU=$(command -v qemu-aarch64-static) FLAGS=F
# binfmt_misc runs aarch64 binaries through QEMU, also inside the chroot (F: QEMU is opened now)
if [ ! -f "$BINFMT/register" ]; then
    mount -t binfmt_misc binfmt_misc "$BINFMT" 2>/dev/null ||
        skip "the kernel offers no binfmt_misc here (a container without privileges?): cannot run aarch64 programs"
    mounted_binfmt=1
fi
if [ -f "$BINFMT/$BINFMT_NAME" ]; then echo -1 >"$BINFMT/$BINFMT_NAME"; fi
printf '%s' ":$BINFMT_NAME:M:0:\\x7f\\x45\\x4c\\x46\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\xb7\\x00:\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff:$QEMU:$FLAGS" \
    >"$BINFMT/register" || skip "cannot register QEMU with binfmt_misc (no permission?)"
done_stage "$(qemu-aarch64-static --version | head -n 1), emulating a $CPU"

# --- 2. lint -------------------------------------------------------------------------------------
stage "shellcheck firmware-scripts"
mapfile -t scripts < <(find "$REPO/firmware-scripts" -name '*.sh' -not -path "$REPO/firmware-scripts/.work/*" | sort)
shellcheck "${scripts[@]}" || fail "shellcheck found problems (above)"
done_stage "${#scripts[@]} scripts clean"

# --- 3. fixtures ---------------------------------------------------------------------------------
stage "tiny bundles and the host's reference results (x86-64, torch)"
FIXTURES=$WORK/fixtures
"$PY" "$REPO/firmware-scripts/arm64/make_fixtures.py" "$FIXTURES" >"$WORK/fixtures.log" 2>&1 ||
    { cat "$WORK/fixtures.log" >&2; fail "could not build the fixtures"; }
done_stage "$(tail -n 1 "$WORK/fixtures.log")"

# --- 4. the kit ------------------------------------------------------------------------------------
stage "the offline kit for aarch64 (build-kit.py: wheels from PyPI, tiny bundles, command set)"
rm -rf "$WORK/kit" && mkdir -p "$WORK/kit"
"$PY" "$REPO/firmware-scripts/build-kit.py" --arch aarch64 --out "$WORK/kit/edge-kit.tar.gz" \
    --bundle "$FIXTURES/bundles/tiny-llama-int4" --bundle "$FIXTURES/bundles/tiny-whisper-int8" \
    --commands "$FIXTURES/commands/tiny-panel.json" >/dev/null 2>"$WORK/kit.log" ||
    { cat "$WORK/kit.log" >&2; fail "build-kit.py failed"; }
grep -E 'wheels|kit ' "$WORK/kit.log" | sed 's/^build-kit: */      /'
# pytest for the emulated board, beside the kit (the kit itself ships no test tools)
rm -rf "$WORK/pytest"
"$PY" -m pip install --quiet --disable-pip-version-check --target "$WORK/pytest" --only-binary=:all: \
    --platform manylinux2014_aarch64 --python-version 3.11 --implementation cp pytest >"$WORK/pytest.log" 2>&1 ||
    { cat "$WORK/pytest.log" >&2; fail "could not download pytest for the board"; }
done_stage

# --- 5. the arm64 root -----------------------------------------------------------------------------
stage "Debian $SUITE arm64 root ($PACKAGES)"
key=$(printf '%s %s %s' "$SUITE" "$PACKAGES" "$MIRROR" | sha256sum | cut -c1-12)
DEBS=$WORK/debs-$key
if [ ! -f "$DEBS/.complete" ]; then
    say "      downloading the packages from $MIRROR (debootstrap --foreign)"
    rm -rf "$WORK/debootstrap" "$DEBS"
    debootstrap --foreign --arch=arm64 --variant=minbase --include="$PACKAGES" "$SUITE" "$WORK/debootstrap" \
        "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
        { tail -n 20 "$WORK/debootstrap.log" >&2; fail "debootstrap could not fetch the arm64 packages"; }
    mkdir -p "$DEBS.tmp"
    mv "$WORK/debootstrap"/var/cache/apt/archives/*.deb "$DEBS.tmp/"
    rm -rf "$WORK/debootstrap"
    touch "$DEBS.tmp/.complete"
    mv "$DEBS.tmp" "$DEBS"
fi
if grep -qF " $ROOT/" /proc/mounts; then
    fail "something is mounted under $ROOT (from an earlier run?); unmount it first"
fi
rm -rf "$ROOT"
mkdir -p "$ROOT"/{dev,proc,sys,tmp,run,root}
chmod 1777 "$ROOT/tmp"
# unpacked, not configured: no maintainer scripts run, so do the two that matter by hand
for deb in "$DEBS"/*.deb; do dpkg-deb -x "$deb" "$ROOT"; done
cp "$ROOT/usr/share/base-passwd/passwd.master" "$ROOT/etc/passwd"
cp "$ROOT/usr/share/base-passwd/group.master" "$ROOT/etc/group"
chroot "$ROOT" /sbin/ldconfig
# a Pi 4's /proc/cpuinfo: onnxruntime's cpuinfo reads it, and the host's x86 one makes it crash
cpuinfo=$WORK/cpuinfo
for ((i = 0; i < $(nproc --all); i++)); do
    printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n' "$i"
    printf 'CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n'
done >"$cpuinfo"
printf 'Hardware\t: BCM2835\nModel\t\t: Raspberry Pi 4 Model B (emulated)\n' >>"$cpuinfo"
mkdir -p "$ROOT/kit" "$ROOT/checks"
tar xzf "$WORK/kit/edge-kit.tar.gz" -C "$ROOT/kit"
cp -R "$FIXTURES" "$ROOT/checks/fixtures"
cp "$REPO/firmware-scripts/arm64/test_arm64.py" "$ROOT/checks/"
cp -R "$WORK/pytest" "$ROOT/checks/site"
done_stage "$(find "$DEBS" -name '*.deb' | wc -l) packages, $(du -sm "$ROOT" | cut -f1) MB"

# board COMMAND...: run COMMAND in the arm64 root, in a mount namespace of its own (gone when it ends)
board() {
    # shellcheck disable=SC2016 # the inner script expands its own arguments
    unshare --mount --propagation private -- bash -euc '
        root=$1 cpuinfo=$2 cpu=$3
        shift 3
        mount -t proc proc "$root/proc"
        mount --bind "$cpuinfo" "$root/proc/cpuinfo"
        mount --rbind /sys "$root/sys"
        mount --rbind /dev "$root/dev"
        exec env -i PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin HOME=/root LANG=C.UTF-8 \
            QEMU_CPU="$cpu" EDGE_ARM64_CPU="$cpu" EDGE_CACHE_DIR=/tmp/edge-cache chroot "$root" "$@"
    ' board "$ROOT" "$cpuinfo" "$CPU" "$@"
}
snapshot() { # what install.sh manages, to prove a second run changes nothing
    find "$ROOT/opt" "$ROOT/etc" \( -path "$ROOT/opt/edge/releases/*/venv" -prune \) -o -printf '%p %s %T@ %l\n' |
        LC_ALL=C sort
}

# --- 6. install ------------------------------------------------------------------------------------
stage "install.sh on the emulated board (--no-systemd), twice"
kit=$(basename "$(find "$ROOT/kit" -mindepth 1 -maxdepth 1 -type d)")
board bash "/kit/$kit/install.sh" --no-systemd | sed 's/^/      /' || fail "install.sh failed on the emulated board"
snapshot >"$WORK/before"
board bash "/kit/$kit/install.sh" --no-systemd >"$WORK/second-install.log" ||
    { cat "$WORK/second-install.log" >&2; fail "install.sh failed when run a second time"; }
snapshot >"$WORK/after"
diff "$WORK/before" "$WORK/after" >&2 || fail "the second install.sh run changed files (above)"
grep -q "is installed already" "$WORK/second-install.log" || fail "the second run did not recognise the release"
# the unit against the installed tree, with systemd's own units beside it (the minbase root has none)
mkdir -p "$ROOT/usr/lib/systemd"
cp -R /usr/lib/systemd/system "$ROOT/usr/lib/systemd/"
verify=$(systemd-analyze verify --root="$ROOT" /etc/systemd/system/edge-voice.service 2>&1) ||
    fail "systemd-analyze verify: $verify"
[ -z "$verify" ] || fail "systemd-analyze verify warns: $verify"
grep -q '^edge:.*/usr/sbin/nologin$' "$ROOT/etc/passwd" || fail "install.sh did not create the service user edge"
grep -q '^audio:.*\bedge\b' "$ROOT/etc/group" || fail "the service user edge is not in the audio group"
done_stage "idempotent; unit verified; release $(readlink "$ROOT/opt/edge/current")"

# --- 7. run ----------------------------------------------------------------------------------------
stage "edge on aarch64 ($CPU): edge-run from the installed kit, then arm64/test_arm64.py"
E=/opt/edge/current
out=$(board "$E/venv/bin/edge-run" --model "$E/text-model" --commands "$E/commands.json" --prompt "status report") ||
    fail "edge-run --commands failed on the emulated board"
"$PY" - "$out" "$FIXTURES/commands/tiny-panel.json" <<'PY' || fail "edge-run printed no valid command: $out"
import json, sys
from edge.commands.command_set import CommandSet
CommandSet.from_file(sys.argv[2]).validate(json.loads(sys.argv[1]))
PY
say "      edge-run --commands ... --prompt \"status report\" -> $out"
out=$(board "$E/venv/bin/edge-run" --model "$E/asr-model" --audio /checks/fixtures/audio/speech.wav --json) ||
    fail "edge-run --audio failed on the emulated board"
"$PY" -c 'import json, sys; row = json.loads(sys.argv[1]); assert row["audio_s"] > 0, row' "$out" ||
    fail "edge-run --audio printed no transcript: $out"
say "      edge-run --audio speech.wav --json -> $(printf '%s' "$out" | cut -c1-100)..."
board env PYTHONPATH=/checks/site EDGE_ARM64_FIXTURES=/checks/fixtures PYTHONDONTWRITEBYTECODE=1 \
    "$E/venv/bin/python" -m pytest -q -p no:cacheprovider /checks/test_arm64.py 2>&1 | sed 's/^/      /' ||
    fail "the runtime's aarch64 tests failed (above)"
done_stage

say "PASSED in $(($(date +%s) - started)) s: the runtime installs from the offline kit and runs on aarch64 ($CPU)"
