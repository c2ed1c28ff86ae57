#!/usr/bin/env python3
"""Build an offline install kit for a board, on a laptop with this project and network.

    python firmware-scripts/build-kit.py --bundle bundles/smollm2-int4 --bundle bundles/whisper \\
        --commands panel.json

The kit is one tar.gz holding everything the board needs, with no network on the board:

    edge-kit-<id>/
      install.sh        the installer (run on the board as root)
      kit.json          what the kit holds: version, target, which bundle does what
      SHA256SUMS        every other file's checksum; install.sh refuses a kit that does not match
      wheels/           edge and its dependencies, built for the board (aarch64, CPython 3.11)
      bundles/NAME/     the bundles passed with --bundle, verified before packing
      commands/FILE     the command set passed with --commands

<id> is the edge version plus a hash of the contents: the same inputs make the same id, so
install.sh recognises a kit it has installed already. The archive is written beside its final
name and renamed into place, and a ``.sha256`` file is written next to it for the copy.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))  # edge's own bundle and command-set checks, from this checkout
from edge.bundle import open_bundle, verify_files  # noqa: E402
from edge.commands.command_set import CommandSet  # noqa: E402
from edge.errors import EdgeError  # noqa: E402
from edge.files import sha256_file  # noqa: E402

KIT_FORMAT = 1
ARCHES = ("aarch64", "x86_64")
# Raspberry Pi OS bookworm (Debian 12) has CPython 3.11 and glibc 2.36.
DEFAULT_PYTHON = "3.11"
DEFAULT_GLIBC = "2.36"
PARTS = ("wheels", "bundles")  # what the summary line reports
EXTRAS = "voice"  # sounddevice (and cffi) for --listen; the board also needs libportaudio2


def extras(args) -> str:
    """The edge extras the kit installs: --assistant adds the wake-word models and Piper (edge[assistant])."""
    return f"{EXTRAS},assistant" if args.assistant else EXTRAS


class KitError(Exception):
    """A kit that cannot be built, with what to do about it."""


def platform_tags(arch: str, glibc: str) -> list[str]:
    """Every manylinux tag a board with this glibc accepts, newest first, as pip on the board would.

    pip takes --platform literally: given manylinux2014 alone it silently falls back to old releases
    (numpy 2.2, onnxruntime 1.16) whose newer versions ship manylinux_2_28 wheels only, and given
    manylinux_2_28 too it still misses llguidance >= 1.7, which ships manylinux_2_31 wheels only.
    """
    major, minor = (int(x) for x in glibc.split("."))
    if major != 2 or minor < 17:
        raise KitError(f"--glibc {glibc}: boards with glibc 2.17 or newer only")
    return [f"manylinux_2_{m}_{arch}" for m in range(minor, 16, -1)] + [f"manylinux2014_{arch}"]


def version(text: str) -> str:
    """An X.Y version argument."""
    parts = text.split(".")
    if len(parts) != 2 or not all(x.isdigit() for x in parts):
        raise argparse.ArgumentTypeError(f"expected X.Y, got {text!r}")
    return text


def log(message: str) -> None:
    print(f"build-kit: {message}", file=sys.stderr, flush=True)


def pip(*args: str) -> None:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise KitError(f"`pip {' '.join(args)}` failed:\n{r.stdout.strip()}")


def check_bundles(paths: list[str]) -> list[tuple[Path, str]]:
    """Each bundle's folder and task, after a full checksum check (a corrupt bundle never ships)."""
    seen: dict[str, Path] = {}
    bundles = []
    for raw in paths:
        try:
            bundle = open_bundle(raw, verify=False)
            verify_files(bundle.path, bundle.manifest, full=True)
        except EdgeError as e:
            raise KitError(f"--bundle {raw}: {e}") from None
        name = bundle.path.name
        if name in seen:
            raise KitError(f"--bundle {raw}: a second bundle named {name!r} (the first is {seen[name]})")
        seen[name] = bundle.path
        bundles.append((bundle.path, bundle.manifest.task))
        if bundle.manifest.task == "text-generation" and bundle.manifest.chat_template is None:
            log(f"warning: {name} has no chat template: it generates text but cannot map requests to commands")
    return bundles


def check_commands(path: str) -> Path:
    try:
        CommandSet.from_file(path)
    except EdgeError as e:
        raise KitError(f"--commands {path}: {e}") from None
    return Path(path).resolve()


def gather_wheels(
    dest: Path, arch: str, python_version: str, glibc: str, wheels_from: str | None, extras: str = EXTRAS
) -> Path:
    """Put the project's wheel and its dependencies for the board into ``dest``; return edge's wheel."""
    dest.mkdir()
    if wheels_from:
        for wheel in sorted(Path(wheels_from).glob("*.whl")):
            shutil.copy2(wheel, dest / wheel.name)
    else:
        log("building edge's wheel (pip wheel --no-deps .)")
        pip("wheel", "--quiet", "--no-deps", "--wheel-dir", str(dest), str(REPO))
    ours = sorted(dest.glob("edge-*.whl"))
    if len(ours) != 1:
        where = wheels_from or "pip wheel"
        raise KitError(f"expected one edge-*.whl from {where}, found {len(ours)}")
    if not wheels_from:
        abi = "cp" + python_version.replace(".", "")
        log(f"downloading dependencies for {arch}, CPython {python_version}, glibc {glibc} (pip download)")
        platforms = [arg for tag in platform_tags(arch, glibc) for arg in ("--platform", tag)]
        pip(
            "download", "--quiet", "--dest", str(dest), "--only-binary=:all:", *platforms,
            "--python-version", python_version, "--implementation", "cp",
            "--abi", abi, "--abi", "abi3", "--abi", "none",
            f"{ours[0]}[{extras}]",
        )  # fmt: skip
    return ours[0]


def sha256_lines(root: Path, skip: set[str]) -> list[str]:
    """``sha256sum`` lines for every file under ``root`` (sorted, relative paths)."""
    lines = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel in skip:
            continue
        if "\n" in rel or "\\" in rel:
            raise KitError(f"{path}: file names with newlines or backslashes cannot be checksummed")
        lines.append(f"{sha256_file(path)}  {rel}")
    return lines


def build(args) -> Path:
    bundles = check_bundles(args.bundle)
    commands = check_commands(args.commands) if args.commands else None
    out_dir = Path(args.out).resolve().parent if args.out else REPO / "dist"
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".edge-kit-", dir=out_dir))
    try:
        kit = work / "kit"
        kit.mkdir()
        edge_wheel = gather_wheels(
            kit / "wheels", args.arch, args.python_version, args.glibc, args.wheels, extras(args)
        )
        edge_version = edge_wheel.name.split("-")[1]
        texts = [p.name for p, task in bundles if task == "text-generation"]
        speech = [p.name for p, task in bundles if task == "speech-recognition"]
        for path, _ in bundles:
            shutil.copytree(path, kit / "bundles" / path.name)
        if commands:
            (kit / "commands").mkdir()
            shutil.copy2(commands, kit / "commands" / commands.name)
        shutil.copy2(HERE / "install.sh", kit / "install.sh")
        (kit / "install.sh").chmod(0o755)

        payload = "".join(line + "\n" for line in sha256_lines(kit, skip=set()))
        kit_id = f"{edge_version}-{hashlib.sha256(payload.encode()).hexdigest()[:12]}"
        meta = {
            "kit_format": KIT_FORMAT,
            "id": kit_id,
            "edge_version": edge_version,
            "arch": args.arch,
            "python": args.python_version,
            "glibc": args.glibc,
            "requirement": f"edge[{extras(args)}]=={edge_version}",
            "assistant": int(args.assistant),
            # the voice-command service uses the first text and the first speech bundle
            "text_model": f"bundles/{texts[0]}" if texts else None,
            "asr_model": f"bundles/{speech[0]}" if speech else None,
            "commands": f"commands/{commands.name}" if commands else None,
            "bundles": {p.name: task for p, task in bundles},
        }
        (kit / "kit.json").write_text(json.dumps(meta, indent=2) + "\n")
        (kit / "SHA256SUMS").write_text("".join(x + "\n" for x in sha256_lines(kit, skip={"SHA256SUMS"})))

        out = Path(args.out).resolve() if args.out else out_dir / f"edge-kit-{kit_id}-{args.arch}.tar.gz"
        top = f"edge-kit-{kit_id}"

        def owned_by_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mode = 0o755 if info.isdir() or info.mode & 0o100 else 0o644
            return info

        tmp = work / out.name
        with tarfile.open(tmp, "w:gz", compresslevel=6) as tar:
            tar.add(kit, arcname=top, filter=owned_by_root)
        (work / "archive.sha256").write_text(f"{sha256_file(tmp)}  {out.name}\n")
        sizes = {part: sum(f.stat().st_size for f in (kit / part).rglob("*") if f.is_file()) for part in PARTS}
        os.replace(tmp, out)
        os.replace(work / "archive.sha256", out.with_name(out.name + ".sha256"))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    mb = lambda n: f"{n / 1e6:.1f} MB"  # noqa: E731
    log(f"kit {kit_id} for {args.arch}, CPython {args.python_version}, glibc {args.glibc}")
    log(f"  wheels {mb(sizes['wheels'])}, bundles {mb(sizes['bundles'])}, archive {mb(out.stat().st_size)}")
    service = meta["text_model"] and meta["asr_model"] and meta["commands"]
    if not service:
        log("  no voice-command service: that needs a text bundle, a speech bundle and --commands")
    print(out)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="build-kit.py",
        description="Build an offline install kit (tar.gz) for a board: wheels, bundles, command set, install.sh.",
        epilog="Then: scp KIT pi@board: && ssh pi@board 'tar xzf KIT && sudo ./edge-kit-*/install.sh'",
    )
    p.add_argument("--bundle", action="append", default=[], metavar="DIR", help="a bundle to ship (repeatable)")
    p.add_argument("--commands", metavar="FILE", help="the command set for the voice-command service")
    p.add_argument(
        "--assistant",
        action="store_true",
        help="also ship the hands-free assistant's wake-word models and Piper voice (for install.sh --assistant)",
    )
    p.add_argument("--out", metavar="FILE", help="archive path (default: dist/edge-kit-<id>-<arch>.tar.gz)")
    p.add_argument("--arch", choices=ARCHES, default="aarch64", help="board CPU (default: aarch64)")
    p.add_argument(
        "--python-version",
        type=version,
        default=DEFAULT_PYTHON,
        metavar="X.Y",
        help=f"the board's python3 (default: {DEFAULT_PYTHON}, Raspberry Pi OS bookworm; trixie has 3.13)",
    )
    p.add_argument(
        "--glibc",
        type=version,
        default=DEFAULT_GLIBC,
        metavar="X.Y",
        help=f"the board's C library, ldd --version (default: {DEFAULT_GLIBC}, bookworm; trixie has 2.41)",
    )
    p.add_argument(
        "--wheels",
        metavar="DIR",
        help="take the wheels from DIR (a previous kit's wheels/) instead of building and downloading them",
    )
    args = p.parse_args(argv)
    start = time.perf_counter()
    try:
        build(args)
    except KitError as e:
        log(f"error: {e}")
        return 1
    log(f"done in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
