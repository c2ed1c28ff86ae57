#!/usr/bin/env bash
# Install an edge kit on a board, offline (the kit comes from firmware-scripts/build-kit.py).
#
#   sudo ./edge-kit-<id>/install.sh                 install or upgrade, start the voice-command service
#   sudo ./edge-kit-<id>/install.sh --serve         the same, with the HTTP API and panel page service instead
#   sudo ./edge-kit-<id>/install.sh --assistant     the hands-free assistant instead (wake word, spoken replies)
#   sudo ./edge-kit-<id>/install.sh --serve --assistant   both in one service: the panel shows the assistant live
#   sudo /opt/edge/current/install.sh --rollback    go back to the release installed before
#
# What it does, each step skipped when already done (running it twice changes nothing):
#   1. checks the kit against its SHA256SUMS, and that it was built for this board's CPU and python3
#   2. builds the release in PREFIX/releases/<id>: bundles, command set and a venv with the kit's
#      wheels (pip install --no-index), then runs one token through it; a release that fails is removed
#   3. points PREFIX/current at it and PREFIX/previous at the release before (older ones are removed)
#   4. creates the service user `edge` (no login, group audio), the systemd unit edge-voice.service
#      and, when a USB microphone is known, /etc/asound.conf making it the default capture device
#   5. enables the service and restarts it when something changed
set -euo pipefail
umask 022

PREFIX=/opt/edge
PREFIX_GIVEN=0
ROOT=/
SYSTEMD=1
ROLLBACK=0
MIC=""
SERVE=0
ASSISTANT=0
WAKE=okay_nabu
PORT=8080
SERVICE=edge-voice.service
SERVICE_USER=edge
ALSA_MARKER="# Written by edge's install.sh"

usage() {
    cat <<EOF
usage: install.sh [--prefix DIR] [--mic CARD] [--serve [--port N]] [--assistant [--wake NAME]]
                  [--no-systemd] [--root DIR]
       install.sh --rollback [--prefix DIR] [--no-systemd] [--root DIR]

Install the edge kit this script belongs to, offline, and run the voice-command service (or --serve).

  --prefix DIR   where releases live (default: /opt/edge)
  --mic CARD     ALSA card id of the USB microphone (see arecord -l; default: the first USB card
                 found, or leave /etc/asound.conf alone when there is none)
  --serve        run edge-panel.service instead of edge-voice.service: edge-run --serve, the
                 OpenAI-compatible API and the panel page on http://127.0.0.1:PORT/ (loopback only:
                 for a kiosk browser on the board's screen)
  --port N       the --serve port (default: 8080)
  --assistant    run edge-assistant.service instead of edge-voice.service: edge-run --assistant, which
                 waits for the wake word, maps the request to a command or answers it, and speaks the
                 reply on the default ALSA output (the kit must be built with build-kit.py --assistant)
  --wake NAME    the assistant's wake word: okay_nabu (default), hey_jarvis, hey_mycroft or alexa
  --serve --assistant
                 one edge-assistant.service running both (edge-run --serve --assistant): the panel page
                 follows the assistant's events live and shares its state; loopback network and the
                 sound devices, nothing else; it replaces edge-voice.service and edge-panel.service
  --no-systemd   do not call systemctl (no systemd running: a chroot, a container, an image being
                 prepared); the unit is still installed and enabled for the next boot
  --root DIR     install into the root file system at DIR instead of / (for tests and images);
                 implies --no-systemd; the venv is built with this machine's python3
  --rollback     make the previous release current again (run again to undo)
  -h, --help     this help
EOF
}

say() { printf 'install.sh: %s\n' "$*"; }
die() {
    printf 'install.sh: error: %s\n' "$1" >&2
    [ -z "${2:-}" ] || printf '  fix: %s\n' "$2" >&2
    exit 1
}

ARGS=("$@")
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; PREFIX=$2; PREFIX_GIVEN=1; shift 2 ;;
        --root) [ $# -ge 2 ] || die "--root needs a directory"; ROOT=$2; shift 2 ;;
        --mic) [ $# -ge 2 ] || die "--mic needs an ALSA card id"; MIC=$2; shift 2 ;;
        --serve) SERVE=1; SERVICE=edge-panel.service; shift ;;
        --assistant) ASSISTANT=1; SERVICE=edge-assistant.service; shift ;;
        --wake) [ $# -ge 2 ] || die "--wake needs a wake-word name"; WAKE=$2; shift 2 ;;
        --port) [ $# -ge 2 ] || die "--port needs a number"; PORT=$2; shift 2 ;;
        --no-systemd) SYSTEMD=0; shift ;;
        --rollback) ROLLBACK=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
done

KIT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
[ "$(id -u)" -eq 0 ] || die "install.sh must run as root" "sudo $0 ${ARGS[*]}"
case "$ROOT" in /*) ;; *) die "--root must be an absolute path: $ROOT" ;; esac
[ -d "$ROOT" ] || die "--root $ROOT is not a directory"
ROOT=$(cd "$ROOT" && pwd -P)
T=${ROOT%/} # prefix for every path written; empty when installing into /
if [ -n "$T" ]; then
    SYSTEMD=0
fi
if [ "$PREFIX_GIVEN" -eq 0 ] && [ -f "$KIT/.complete" ]; then
    # run from an installed release (PREFIX/releases/<id>/install.sh): that PREFIX
    PREFIX=$(cd "$KIT/../.." && pwd -P)
    PREFIX=${PREFIX#"$T"}
fi
[[ "$PREFIX" =~ ^/[A-Za-z0-9._/-]*[A-Za-z0-9._-]$ ]] ||
    die "--prefix must be an absolute path of letters, digits and ._-/ (it goes into the unit file): $PREFIX"
if [[ ! "$PORT" =~ ^[1-9][0-9]{0,4}$ ]] || [ "$PORT" -gt 65535 ]; then
    die "--port takes a port number, 1-65535: $PORT"
fi
[ $((SERVE + ASSISTANT)) -lt 2 ] || SERVICE=edge-assistant.service # one service runs both
[[ "$WAKE" =~ ^[a-z_]+$ ]] || die "--wake takes a wake-word name such as okay_nabu: $WAKE"
[ -z "$MIC" ] || [[ "$MIC" =~ ^[A-Za-z0-9_-]+$ ]] || die "--mic takes an ALSA card id such as Device (see arecord -l): $MIC"
if [ "$SYSTEMD" -eq 1 ] && [ ! -d /run/systemd/system ]; then
    say "systemd is not running here: installing as with --no-systemd (the service starts at the next boot)"
    SYSTEMD=0
fi

BASE=$T$PREFIX
UNIT=$T/etc/systemd/system/$SERVICE
ASOUND=$T/etc/asound.conf

set_link() { # set_link NAME TARGET: point BASE/NAME at TARGET, atomically
    ln -sfn "$2" "$BASE/.$1.tmp"
    mv -Tf "$BASE/.$1.tmp" "$BASE/$1"
}

write_if_changed() { # write_if_changed FILE MODE < content; status 0 when the file changed
    local file=$1 mode=$2 new tmp
    new=$(cat && echo .) # the dot keeps trailing newlines through $(...)
    if [ -f "$file" ] && [ "$(cat "$file" && echo .)" = "$new" ]; then
        return 1 # unchanged: not even a temporary file, so the directory's mtime stays
    fi
    tmp=$(mktemp "$(dirname "$file")/.$(basename "$file").XXXXXX")
    printf '%s' "${new%.}" >"$tmp"
    chmod "$mode" "$tmp"
    mv -f "$tmp" "$file"
}

restart_service() { # every edge service installed: they all run from the current release
    local s
    [ "$SYSTEMD" -eq 1 ] || return 0
    for s in edge-voice.service edge-assistant.service edge-panel.service; do
        if [ -f "$T/etc/systemd/system/$s" ]; then
            systemctl restart "$s"
            say "restarted $s (logs: journalctl -u ${s%.service} -f)"
        fi
    done
}

rollback() {
    local cur prev
    cur=$(readlink "$BASE/current" 2>/dev/null) || die "nothing is installed in $PREFIX"
    prev=$(readlink "$BASE/previous" 2>/dev/null) || die "there is no previous release in $PREFIX to roll back to"
    [ -f "$BASE/$prev/.complete" ] || die "the previous release $BASE/$prev is incomplete"
    set_link current "$prev"
    set_link previous "$cur"
    say "rolled back: current -> $prev (previous -> $cur; --rollback again undoes this)"
    restart_service
}

[ "$ROLLBACK" -eq 0 ] || [ -d "$BASE" ] || die "nothing is installed in $PREFIX"
mkdir -p "$BASE"
exec 9<"$BASE" # a lock on the folder itself: no lock file to create
flock -n 9 || die "another install.sh is running on $PREFIX"

if [ "$ROLLBACK" -eq 1 ]; then
    rollback
    exit 0
fi

# --- 1. the kit: complete, unmodified, and made for this board ---------------------------------
[ ! -f "$KIT/.complete" ] || die "this is an installed release, not a kit" \
    "install from an unpacked kit (tar xzf edge-kit-*.tar.gz); from here only --rollback works"
if [ ! -f "$KIT/SHA256SUMS" ] || [ ! -f "$KIT/kit.json" ]; then
    die "$KIT is not an edge kit (no SHA256SUMS or kit.json)" "run the install.sh inside an unpacked kit"
fi
say "checking the kit's checksums"
(cd "$KIT" && sha256sum --quiet --strict -c SHA256SUMS) ||
    die "the kit does not match its SHA256SUMS: damaged or modified" \
        "copy the archive again and compare it with its .sha256 file (sha256sum -c)"
extra=$(cd "$KIT" && comm -23 <(find . -type f ! -name SHA256SUMS -printf '%P\n' | LC_ALL=C sort) \
    <(cut -c67- SHA256SUMS | LC_ALL=C sort))
[ -z "$extra" ] || die "the kit holds files its SHA256SUMS does not list: $extra" "unpack the kit again into an empty folder"

command -v python3 >/dev/null || die "python3 is not installed" "apt install python3 python3-venv (while online)"
# one python3 start (slow under emulation, and not free on a Pi): kit.json's fields and this system's facts
declare -A kit=()
while IFS='=' read -r key value; do kit[$key]=$value; done < <(python3 - "$KIT/kit.json" <<'PY'
import importlib.util, json, platform, sys
fields = json.load(open(sys.argv[1]))
fields["have_python"] = "%d.%d" % sys.version_info[:2]
fields["have_arch"] = platform.machine()
libc, version = platform.libc_ver()
fields["have_glibc"] = version if libc == "glibc" else "0.0"
fields["glibc_ok"] = int(tuple(map(int, fields["have_glibc"].split(".")[:2])) >= tuple(map(int, fields["glibc"].split("."))))
fields["have_venv"] = int(all(importlib.util.find_spec(m) for m in ("ensurepip", "venv")))
for key, value in fields.items():
    if isinstance(value, (str, int)) and "\n" not in str(value):
        print(f"{key}={value}")
PY
)
[ "${kit[kit_format]:-}" = 1 ] || die "kit.json: format ${kit[kit_format]:-?} is not the one this install.sh reads (1)"
ID=${kit[id]:-}
[ "$ASSISTANT" -eq 0 ] || [ "${kit[assistant]:-0}" = 1 ] ||
    die "this kit has no wake-word models (pymicro-wakeword) or Piper voice for --assistant" \
        "build the kit with build-kit.py --assistant"
[[ "$ID" =~ ^[A-Za-z0-9._+-]+$ ]] || die "kit.json: bad id: $ID"
[ "${kit[have_arch]}" = "${kit[arch]}" ] || die "the kit is for ${kit[arch]} boards; this one is ${kit[have_arch]}" \
    "build a kit with build-kit.py --arch ${kit[have_arch]}"
[ "${kit[have_python]}" = "${kit[python]}" ] ||
    die "the kit is for Python ${kit[python]}; this board's python3 is ${kit[have_python]}" \
        "build a kit with build-kit.py --python-version ${kit[have_python]}"
[ "${kit[glibc_ok]}" = 1 ] || die "the kit is for glibc ${kit[glibc]} or newer; this board has ${kit[have_glibc]}" \
    "build a kit with build-kit.py --glibc ${kit[have_glibc]}"
[ "${kit[have_venv]}" = 1 ] || die "python3 cannot create virtual environments" "apt install python3-venv (while online)"

# --- 2. the release: bundles, command set and a venv, checked before it becomes current --------
REL=releases/$ID
DIR=$BASE/$REL
if [ "$(cat "$DIR/.complete" 2>/dev/null)" = "$ID" ]; then
    say "release $ID is installed already"
else
    say "installing release $ID into $PREFIX/$REL"
    rm -rf "$DIR"
    mkdir -p "$DIR"
    trap 'rm -rf "$DIR"' EXIT # an interrupted or failed install leaves no half release
    for part in bundles commands; do
        if [ -d "$KIT/$part" ]; then cp -R "$KIT/$part" "$DIR/$part"; fi
    done
    cp "$KIT/kit.json" "$KIT/SHA256SUMS" "$KIT/install.sh" "$DIR/"
    for link in text_model:text-model asr_model:asr-model commands:commands.json; do
        target=${kit[${link%%:*}]:-}
        if [ -n "$target" ]; then
            if [[ ! "$target" =~ ^(bundles|commands)/[^/]+$ ]] || [ ! -e "$DIR/$target" ]; then
                die "kit.json: bad ${link%%:*}: $target"
            fi
            ln -s "$target" "$DIR/${link#*:}"
        fi
    done
    say "creating the venv and installing the kit's wheels (a minute or two on a Pi 4)"
    python3 -m venv "$DIR/venv"
    pip_env=(-u PIP_CONFIG_FILE)
    while IFS= read -r var; do pip_env+=(-u "$var"); done < <(compgen -e | grep '^PIP_' || true)
    env "${pip_env[@]}" PIP_CONFIG_FILE=/dev/null "$DIR/venv/bin/python" -m pip install --quiet \
        --no-index --find-links "$KIT/wheels" --only-binary=:all: --no-cache-dir --disable-pip-version-check \
        "${kit[requirement]}" || die "pip could not install the kit's wheels" "see pip's message above"
    say "checking that the release runs here"
    scratch=$(mktemp -d)
    if [ -e "$DIR/text-model" ]; then
        check=("$DIR/venv/bin/edge-run" --model "$DIR/text-model" --prompt "hello" --max-new-tokens 1 --temperature 0)
    else
        check=("$DIR/venv/bin/python" -c "import edge, onnxruntime, numpy, tokenizers, llguidance")
    fi
    status=0
    EDGE_CACHE_DIR=$scratch "${check[@]}" >"$scratch/out" 2>&1 || status=$?
    if [ "$status" -ne 0 ]; then
        cat "$scratch/out" >&2
        rm -rf "$scratch"
        why=""
        [ "$status" -ne 132 ] || why=" (illegal instruction: a wheel built for a newer CPU than this board's)"
        die "the new release does not run on this board: exit status $status$why; the current release is unchanged"
    fi
    rm -rf "$scratch"
    echo "$ID" >"$DIR/.complete"
    trap - EXIT
fi

# --- 3. current and previous ---------------------------------------------------------------------
switched=0
old=$(readlink "$BASE/current" 2>/dev/null || true)
if [ "$old" != "$REL" ]; then
    if [ -n "$old" ]; then set_link previous "$old"; fi
    set_link current "$REL"
    switched=1
    say "current -> $REL${old:+ (previous -> $old)}"
fi
keep_previous=$(readlink "$BASE/previous" 2>/dev/null || true)
for release in "$BASE"/releases/*/; do
    [ -d "$release" ] || continue
    release=releases/$(basename "$release")
    if [ "$release" != "$REL" ] && [ "$release" != "$keep_previous" ]; then
        say "removing the older release $release"
        rm -rf "${BASE:?}/$release"
    fi
done

# --- 4. service user, unit, ALSA --------------------------------------------------------------------
in_root=()
[ -z "$T" ] || in_root=(--root "$ROOT")
if [ ! -f "$T/etc/passwd" ] || [ ! -f "$T/etc/group" ]; then
    die "$ROOT has no /etc/passwd or /etc/group: not a root file system"
fi
if ! grep -q '^audio:' "$T/etc/group"; then
    groupadd "${in_root[@]}" --system audio
fi
if ! grep -q "^$SERVICE_USER:" "$T/etc/passwd"; then
    useradd "${in_root[@]}" --system --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin --groups audio --comment "edge voice commands" "$SERVICE_USER"
    say "created the service user $SERVICE_USER (group audio, no login)"
elif ! grep -qE "^audio:[^:]*:[^:]*:(.*,)?$SERVICE_USER(,|$)" "$T/etc/group"; then
    usermod "${in_root[@]}" -a -G audio "$SERVICE_USER"
fi

if [ "$SERVE" -eq 1 ] && [ "$ASSISTANT" -eq 1 ]; then
    run="--serve --port $PORT --assistant --wake $WAKE"
    what="edge assistant and panel: wake word -> command or spoken answer, shown live on http://127.0.0.1:$PORT/"
    # the panel's loopback network and the assistant's sound devices, nothing more
    access="IPAddressDeny=any
IPAddressAllow=localhost
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
DevicePolicy=closed
DeviceAllow=char-alsa rw"
elif [ "$SERVE" -eq 1 ]; then
    run="--serve --port $PORT"
    what="edge panel: OpenAI-compatible API and the panel page on http://127.0.0.1:$PORT/ (requests go to the journal)"
    # loopback only: the kiosk browser and programs on the board; no devices (the browser records the speech)
    access="IPAddressDeny=any
IPAddressAllow=localhost
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
DevicePolicy=closed"
else
    # the voice service and the assistant: the sound devices and no network (the assistant's audio before a
    # wake word never leaves memory)
    access="PrivateNetwork=yes
RestrictAddressFamilies=AF_UNIX
DevicePolicy=closed
DeviceAllow=char-alsa rw"
    if [ "$ASSISTANT" -eq 1 ]; then
        run="--assistant --wake $WAKE --json"
        what="edge assistant: wake word -> request -> command or spoken answer, replies on the speaker (events to the journal)"
    else
        run="--listen --json"
        what="edge voice commands: microphone -> speech -> one JSON command a line"
    fi
fi
unit_changed=0
if [ -e "$BASE/current/text-model" ] && [ -e "$BASE/current/asr-model" ] && [ -e "$BASE/current/commands.json" ]; then
    mkdir -p "$(dirname "$UNIT")"
    if write_if_changed "$UNIT" 0644 <<EOF; then
# $what; written by edge's install.sh.
# The journal: journalctl -u ${SERVICE%.service} -o cat -f
[Unit]
Description=$what
After=sound.target
StartLimitIntervalSec=0

[Service]
Type=exec
User=$SERVICE_USER
Group=$SERVICE_USER
SupplementaryGroups=audio
Environment=EDGE_CACHE_DIR=/var/cache/edge
ExecStart=$PREFIX/current/venv/bin/edge-run $run --commands $PREFIX/current/commands.json --model $PREFIX/current/text-model --asr-model $PREFIX/current/asr-model
# a microphone plugged in later is picked up by the next try
Restart=on-failure
RestartSec=10s
CacheDirectory=edge
CacheDirectoryMode=0700
UMask=0077

# hardening: read-only system, no privileges; the network and devices each service needs, no more
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
ReadOnlyPaths=$PREFIX
$access
CapabilityBoundingSet=
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
RemoveIPC=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM
# not MemoryDenyWriteExecute: sounddevice's cffi callbacks need executable trampolines

[Install]
WantedBy=multi-user.target
EOF
        unit_changed=1
        say "wrote /etc/systemd/system/$SERVICE"
    fi
else
    say "no ${SERVICE%.service} service: the kit needs a text bundle, a speech bundle and a command set for it"
fi

if [ -z "$MIC" ] && [ -z "$T" ] && [ -r /proc/asound/cards ]; then
    # " 1 [Device         ]: USB-Audio - USB PnP Sound Device" -> Device
    MIC=$(sed -n '/\]: USB-Audio/ { s/^ *[0-9]* \[\([^] ]*\) *\]: USB-Audio.*/\1/p; q; }' /proc/asound/cards)
    [ -z "$MIC" ] || say "found the USB microphone $MIC"
fi
asound_changed=0
if [ -n "$MIC" ]; then
    if [ -f "$ASOUND" ] && ! head -n 1 "$ASOUND" | grep -qF "$ALSA_MARKER"; then
        say "left $ASOUND alone (not written by install.sh); make $MIC the default capture device there"
    elif write_if_changed "$ASOUND" 0644 <<EOF; then
$ALSA_MARKER (--mic $MIC); delete this file to undo.
# Capture from the USB microphone through ALSA's plug, which converts its rate and channels to the
# 16 kHz mono edge records; playback stays on the system's default card.
pcm.!default {
    type asym
    capture.pcm "edge_mic"
    playback.pcm "sysdefault"
}
pcm.edge_mic {
    type plug
    slave.pcm "hw:CARD=$MIC,DEV=0"
}
EOF
        asound_changed=1
        say "wrote /etc/asound.conf: the USB microphone $MIC is the default capture device"
    fi
elif [ ! -f "$ASOUND" ]; then
    say "no USB microphone found: plug one in and run install.sh again, or pass --mic CARD (see arecord -l)"
fi

# --- 5. the service ----------------------------------------------------------------------------------
# the voice-command service and the assistant both record the microphone, and a panel and an assistant that
# serves both listen on the port: the one installed now replaces the other
serves() { grep -q -- "edge-run --serve" "$T/etc/systemd/system/$1" 2>/dev/null; }
others=()
case $SERVICE in
    edge-voice.service) others=(edge-assistant.service) ;;
    edge-assistant.service)
        others=(edge-voice.service)
        if [ "$SERVE" -eq 1 ]; then others+=(edge-panel.service); fi
        ;;
    edge-panel.service)
        if serves edge-assistant.service; then others=(edge-assistant.service); fi
        ;;
esac
for other in "${others[@]}"; do
    if [ -f "$UNIT" ] && [ -f "$T/etc/systemd/system/$other" ]; then
        [ "$SYSTEMD" -eq 0 ] || systemctl disable --now --quiet "$other" || true
        rm -f "$T/etc/systemd/system/multi-user.target.wants/$other" "$T/etc/systemd/system/$other"
        case $SERVICE:$other in
            *:edge-panel.service) say "removed $other: the assistant serves the panel now" ;;
            edge-panel.service:*) say "removed $other: it served the panel on the same port" ;;
            *) say "removed $other: it records the microphone too" ;;
        esac
    fi
done
if [ -f "$UNIT" ]; then
    if [ "$SYSTEMD" -eq 1 ]; then
        [ "$unit_changed" -eq 0 ] || systemctl daemon-reload
        systemctl is-enabled --quiet "$SERVICE" 2>/dev/null || systemctl enable --quiet "$SERVICE"
        if [ $((switched + unit_changed + asound_changed)) -gt 0 ] || ! systemctl is-active --quiet "$SERVICE"; then
            restart_service
        fi
    else
        wants=$T/etc/systemd/system/multi-user.target.wants
        if [ ! -L "$wants/$SERVICE" ]; then
            mkdir -p "$wants"
            ln -s "/etc/systemd/system/$SERVICE" "$wants/$SERVICE"
            say "enabled $SERVICE for the next boot"
        fi
    fi
fi

say "done: $PREFIX/current -> $(readlink "$BASE/current")"
if [ -e "$BASE/current/text-model" ] && [ -e "$BASE/current/commands.json" ]; then
    say "try: $PREFIX/current/venv/bin/edge-run --model $PREFIX/current/text-model --commands $PREFIX/current/commands.json --prompt \"status report\""
fi
if [ "$SERVE" -eq 1 ]; then
    say "panel: http://127.0.0.1:$PORT/ (on the board's screen: chromium --kiosk http://127.0.0.1:$PORT/)"
fi
