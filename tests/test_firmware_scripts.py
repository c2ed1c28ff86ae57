"""firmware-scripts: the offline kit, install.sh's install/upgrade/rollback, the unit and the ALSA file.

Offline and on this machine's CPU: the kits here hold a stand-in ``edge`` wheel (its edge-run
prints a command, or dies like a wheel built for a newer CPU) instead of the runtime and its
dependencies, so install.sh's logic is tested in seconds. The real runtime, from a real kit, on
emulated aarch64, is firmware-scripts/check-arm64.sh's job (CI runs it after this suite).
install.sh needs root (useradd, ownership), as on a board; without root those tests skip.
"""

from __future__ import annotations

import base64
import ctypes.util
import hashlib
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT

SCRIPTS = ROOT / "firmware-scripts"
BUILD_KIT = SCRIPTS / "build-kit.py"
PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}"
GLIBC = platform.libc_ver()[1] or "2.17"
PANEL = {
    "name": "test-panel",
    "description": "A test panel.",
    "commands": {
        "status": {"description": "Report what the appliances are doing.", "args": {}},
        "unknown": {"description": "Anything else.", "args": {}},
    },
}
FAKE_CLI = """\
import json, os, signal, sys

def main():
    if {sigill!r}:
        os.kill(os.getpid(), signal.SIGILL)  # what a wheel built for a newer CPU does on a Pi 4
    if "--commands" in sys.argv:
        print(json.dumps({{"command": "status", "args": {{}}}}))
    else:
        print("stand-in edge {version}")
    return 0
"""

ALSA_PROBE = """
import ctypes, ctypes.util, sys
lib = ctypes.CDLL(ctypes.util.find_library("asound"))
assert lib.snd_config_update() >= 0, "alsa-lib cannot parse the configuration"
top, node = ctypes.c_void_p.in_dll(lib, "snd_config"), ctypes.c_void_p()
for key in (b"pcm.edge_mic", b"pcm.default"):
    assert lib.snd_config_search(top, key, ctypes.byref(node)) == 0, key
"""

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("useradd") is None, reason="install.sh runs as root and needs useradd"
)


def fake_wheel(folder: Path, version: str, sigill: bool = False) -> Path:
    """A stand-in ``edge`` wheel: an ``edge-run`` that answers like the real one, with no dependencies."""
    info = f"edge-{version}.dist-info"
    files = {
        "edge/__init__.py": "",
        "edge/cli.py": FAKE_CLI.format(sigill=sigill, version=version),
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: edge\nVersion: {version}\nProvides-Extra: voice\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{info}/entry_points.txt": "[console_scripts]\nedge-run = edge.cli:main\n",
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(text.encode())}")
    files[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"edge-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for name, text in files.items():
            z.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), text)  # same bytes every time
    return wheel


def build_kit(tmp: Path, version: str, bundles: list[Path], commands: Path | None, *extra: str, sigill=False):
    wheels = tmp / f"wheels-{version}-{sigill}"
    fake_wheel(wheels, version, sigill)
    out = tmp / "kits" / f"kit-{version}-{sigill}.tar.gz"
    args = ["--wheels", str(wheels), "--out", str(out), "--python-version", PYTHON, "--glibc", GLIBC]
    args += ["--arch", platform.machine(), *extra]
    args += [a for b in bundles for a in ("--bundle", str(b))]
    args += ["--commands", str(commands)] if commands else []
    r = subprocess.run([sys.executable, str(BUILD_KIT), *args], capture_output=True, text=True, timeout=300)
    return r, out


def unpack(archive: Path, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="tar")
    (kit,) = dest.iterdir()
    return kit


def install(kit: Path, root: Path, *args: str) -> subprocess.CompletedProcess:
    # python3 on PATH is this interpreter, so the kit's --python-version matches
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    cmd = ["bash", str(kit / "install.sh"), "--root", str(root), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def new_root(folder: Path) -> Path:
    """A root file system with just what install.sh reads: the user database, and systemd's units to verify."""
    (folder / "etc").mkdir(parents=True)
    (folder / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (folder / "etc" / "group").write_text("root:x:0:\naudio:x:29:\n")
    if Path("/usr/lib/systemd/system").is_dir():
        shutil.copytree("/usr/lib/systemd/system", folder / "usr" / "lib" / "systemd" / "system", symlinks=True)
    return folder


def verify_unit(root: Path, name: str) -> None:
    """systemd-analyze verify finds nothing wrong with the unit (where systemd is installed)."""
    if shutil.which("systemd-analyze") and (root / "usr/lib/systemd/system").is_dir():
        verify = subprocess.run(
            ["systemd-analyze", "verify", f"--root={root}", f"/etc/systemd/system/{name}"],
            capture_output=True,
            text=True,
        )
        assert (verify.returncode, verify.stdout + verify.stderr) == (0, "")


def snapshot(root: Path) -> list[tuple]:
    """Every path install.sh manages, with size, mtime and link target (venv internals left out)."""
    rows = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not (d == "venv" and Path(dirpath).parent.name == "releases")]
        for name in [*dirnames, *filenames]:
            p = Path(dirpath) / name
            st = p.lstat()
            rows.append((str(p), st.st_size, st.st_mtime_ns, os.readlink(p) if p.is_symlink() else None))
    return sorted(rows)


def current(root: Path) -> tuple[str | None, str | None]:
    base = root / "opt" / "edge"
    link = lambda name: os.readlink(base / name) if (base / name).is_symlink() else None  # noqa: E731
    return link("current"), link("previous")


@pytest.fixture(scope="module")
def commands_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("commands") / "panel.json"
    path.write_text(json.dumps(PANEL))
    return path


@pytest.fixture(scope="module")
def bundles(tiny_bundle, whisper_bundle) -> list[Path]:
    return [tiny_bundle("llama", "int4"), whisper_bundle("int8")]


def test_scripts_pass_shellcheck():
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck; check-arm64.sh runs it in CI)")
    scripts = sorted(p for p in SCRIPTS.rglob("*.sh") if ".work" not in p.parts)
    r = subprocess.run(["shellcheck", *map(str, scripts)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


def test_kit_is_one_verified_archive_with_a_content_id(tmp_path, bundles, commands_file):
    r, out = build_kit(tmp_path, "0.1.0", bundles, commands_file)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(out), r.stdout
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name, out.name + ".sha256"]  # no temporaries
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    assert out.with_name(out.name + ".sha256").read_text() == f"{digest}  {out.name}\n"
    kit = unpack(out, tmp_path / "unpacked")
    meta = json.loads((kit / "kit.json").read_text())
    assert kit.name == f"edge-kit-{meta['id']}" and meta["id"].startswith("0.1.0-")
    assert meta["text_model"] == f"bundles/{bundles[0].name}" and meta["asr_model"] == f"bundles/{bundles[1].name}"
    assert meta["commands"] == "commands/panel.json" and meta["requirement"] == "edge[voice]==0.1.0"
    check = subprocess.run(["sha256sum", "--strict", "-c", "SHA256SUMS"], cwd=kit, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    listed = {line.split("  ", 1)[1] for line in (kit / "SHA256SUMS").read_text().splitlines()}
    assert listed == {p.relative_to(kit).as_posix() for p in kit.rglob("*") if p.is_file()} - {"SHA256SUMS"}
    # the same inputs make the same kit id
    again = tmp_path / "again"
    again.mkdir()
    r2, out2 = build_kit(again, "0.1.0", bundles, commands_file)
    assert r2.returncode == 0, r2.stderr
    assert json.loads((unpack(out2, again / "u") / "kit.json").read_text())["id"] == meta["id"]


def test_kit_refuses_a_corrupt_bundle(tmp_path, bundles):
    broken = tmp_path / "broken"
    shutil.copytree(bundles[0], broken)
    data = broken / "tokenizer.json"
    data.write_bytes(data.read_bytes().replace(b"<|im_end|>", b"<|im_END|>", 1))
    r, out = build_kit(tmp_path, "0.1.0", [broken], None)
    assert r.returncode == 1 and "--bundle" in r.stderr and "checksum mismatch" in r.stderr
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_platform_tags_cover_every_glibc_the_board_accepts():
    spec = importlib.util.spec_from_file_location("build_kit", BUILD_KIT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tags = module.platform_tags("aarch64", "2.36")
    assert tags[0] == "manylinux_2_36_aarch64" and "manylinux_2_31_aarch64" in tags  # llguidance >= 1.7
    assert "manylinux_2_28_aarch64" in tags and tags[-2:] == ["manylinux_2_17_aarch64", "manylinux2014_aarch64"]


@needs_root
def test_install_upgrade_rollback(tmp_path, bundles, commands_file):
    root = new_root(tmp_path / "root")
    r, kit_a = build_kit(tmp_path, "0.1.0", bundles, commands_file)
    assert r.returncode == 0, r.stderr
    a = unpack(kit_a, tmp_path / "a")
    id_a = json.loads((a / "kit.json").read_text())["id"]

    r = install(a, root)
    assert r.returncode == 0, r.stdout + r.stderr
    assert current(root) == (f"releases/{id_a}", None)
    base = root / "opt" / "edge" / "current"
    ask = [str(base / "venv/bin/edge-run"), "--model", str(base / "text-model"), "--commands"]
    ask += [str(base / "commands.json"), "--prompt", "status report"]
    assert json.loads(subprocess.run(ask, capture_output=True, text=True, check=True).stdout)["command"] == "status"
    passwd = (root / "etc" / "passwd").read_text()
    assert "\nedge:" in passwd and passwd.rstrip().endswith(":/nonexistent:/usr/sbin/nologin")
    assert "audio:x:29:edge" in (root / "etc" / "group").read_text()
    unit = root / "etc/systemd/system/edge-voice.service"
    assert (root / "etc/systemd/system/multi-user.target.wants/edge-voice.service").is_symlink()
    text = unit.read_text()
    assert "ExecStart=/opt/edge/current/venv/bin/edge-run --listen --json --commands /opt/edge/current/" in text
    for setting in ("Restart=on-failure", "User=edge", "NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes"):
        assert setting in text
    verify_unit(root, "edge-voice.service")

    # twice: nothing changes
    before = snapshot(root)
    r = install(a, root)
    assert r.returncode == 0 and "installed already" in r.stdout, r.stdout + r.stderr
    assert snapshot(root) == before

    # upgrade keeps the previous release; rollback swaps back; a third release drops the oldest
    r, kit_b = build_kit(tmp_path, "0.1.1", bundles, commands_file)
    b = unpack(kit_b, tmp_path / "b")
    id_b = json.loads((b / "kit.json").read_text())["id"]
    r = install(b, root)
    assert r.returncode == 0, r.stdout + r.stderr
    assert current(root) == (f"releases/{id_b}", f"releases/{id_a}")
    r = install(b, root, "--rollback")
    assert r.returncode == 0 and current(root) == (f"releases/{id_a}", f"releases/{id_b}"), r.stderr
    assert subprocess.run([str(base / "venv/bin/edge-run")], capture_output=True, text=True).stdout == (
        "stand-in edge 0.1.0\n"
    )
    r, kit_c = build_kit(tmp_path, "0.1.2", bundles, commands_file)
    c = unpack(kit_c, tmp_path / "c")
    id_c = json.loads((c / "kit.json").read_text())["id"]
    r = install(c, root)
    assert r.returncode == 0, r.stdout + r.stderr
    assert current(root) == (f"releases/{id_c}", f"releases/{id_a}")
    assert sorted(p.name for p in (root / "opt/edge/releases").iterdir()) == sorted([id_a, id_c])

    # the installed copy rolls back without the kit, and finds its prefix itself
    cmd = ["bash", str(base / "install.sh"), "--root", str(root), "--rollback"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0 and current(root) == (f"releases/{id_a}", f"releases/{id_c}"), r.stderr


@needs_root
def test_serve_installs_the_panel_service_on_loopback(tmp_path, bundles, commands_file):
    root = new_root(tmp_path / "root")
    r, kit = build_kit(tmp_path, "0.1.0", bundles, commands_file)
    assert r.returncode == 0, r.stderr
    r = install(unpack(kit, tmp_path / "kit"), root, "--serve", "--port", "8090")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "http://127.0.0.1:8090/" in r.stdout
    assert not (root / "etc/systemd/system/edge-voice.service").exists()
    assert (root / "etc/systemd/system/multi-user.target.wants/edge-panel.service").is_symlink()
    text = (root / "etc/systemd/system/edge-panel.service").read_text()
    assert "ExecStart=/opt/edge/current/venv/bin/edge-run --serve --port 8090 --commands /opt/edge/current/" in text
    assert "IPAddressAllow=localhost" in text and "IPAddressDeny=any" in text and "PrivateNetwork" not in text
    assert "DeviceAllow" not in text and "NoNewPrivileges=yes" in text
    verify_unit(root, "edge-panel.service")
    r = install(unpack(kit, tmp_path / "kit2"), root, "--serve", "--port", "99999")
    assert r.returncode == 1 and "--port takes a port number" in r.stderr


@needs_root
def test_a_release_that_does_not_run_never_becomes_current(tmp_path, bundles, commands_file):
    root = new_root(tmp_path / "root")
    r, good = build_kit(tmp_path, "0.1.0", bundles, commands_file)
    assert install(unpack(good, tmp_path / "good"), root).returncode == 0
    before = current(root)
    r, bad = build_kit(tmp_path, "0.1.1", bundles, commands_file, sigill=True)
    r = install(unpack(bad, tmp_path / "bad"), root)
    assert r.returncode == 1
    assert "illegal instruction" in r.stderr and "the current release is unchanged" in r.stderr
    assert current(root) == before
    assert [p.name for p in (root / "opt/edge/releases").iterdir()] == [before[0].split("/")[1]]


@needs_root
def test_install_refuses_a_modified_or_foreign_kit(tmp_path, bundles, commands_file):
    r, archive = build_kit(tmp_path, "0.1.0", bundles, commands_file)
    kit = unpack(archive, tmp_path / "kit")
    root = new_root(tmp_path / "root")
    extra = kit / "wheels" / "numpy-9.9.9-py3-none-any.whl"
    extra.write_bytes(b"not listed")
    r = install(kit, root)
    assert r.returncode == 1 and "does not list" in r.stderr and "wheels/numpy-9.9.9" in r.stderr
    extra.unlink()
    tokenizer = kit / "bundles" / bundles[0].name / "tokenizer.json"
    tokenizer.write_bytes(tokenizer.read_bytes() + b" ")
    r = install(kit, root)
    assert r.returncode == 1 and "does not match its SHA256SUMS" in r.stderr
    assert not (root / "opt" / "edge" / "releases").exists()

    other = "aarch64" if platform.machine() != "aarch64" else "x86_64"
    r, archive = build_kit(tmp_path / "other", "0.1.0", bundles, commands_file, "--arch", other)
    r = install(unpack(archive, tmp_path / "other-kit"), root)
    assert r.returncode == 1 and f"the kit is for {other} boards" in r.stderr and "--arch" in r.stderr


@needs_root
def test_alsa_config_selects_the_usb_microphone_and_spares_a_foreign_one(tmp_path, bundles, commands_file):
    r, archive = build_kit(tmp_path, "0.1.0", bundles, commands_file)
    kit = unpack(archive, tmp_path / "kit")
    root = new_root(tmp_path / "root")
    assert install(kit, root, "--mic", "Device").returncode == 0
    conf = root / "etc" / "asound.conf"
    text = conf.read_text()
    assert 'slave.pcm "hw:CARD=Device,DEV=0"' in text and 'capture.pcm "edge_mic"' in text
    if ctypes.util.find_library("asound") and Path("/usr/share/alsa/alsa.conf").is_file():
        # alsa-lib reads it: edge_mic and the default device are defined (opening them needs the card)
        env = {**os.environ, "ALSA_CONFIG_PATH": f"/usr/share/alsa/alsa.conf:{conf}"}
        r = subprocess.run([sys.executable, "-c", ALSA_PROBE], env=env, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    conf.write_text("pcm.!default { type hw card 0 }\n")  # the maker's own file
    r = install(kit, root, "--mic", "Other")
    assert r.returncode == 0 and "left" in r.stdout and conf.read_text() == "pcm.!default { type hw card 0 }\n"
    r = install(kit, root, "--mic", "bad card")
    assert r.returncode == 1 and "--mic" in r.stderr


@needs_root
def test_assistant_installs_its_service_in_place_of_the_voice_one(tmp_path, bundles, commands_file):
    root = new_root(tmp_path / "root")
    r, plain = build_kit(tmp_path, "0.1.0", bundles, commands_file)
    assert r.returncode == 0, r.stderr
    r = install(unpack(plain, tmp_path / "plain"), root, "--assistant")
    assert r.returncode == 1 and "build-kit.py --assistant" in r.stderr  # no wake-word models in that kit
    assert install(unpack(plain, tmp_path / "plain2"), root).returncode == 0  # the voice service first
    units = root / "etc/systemd/system"
    assert (units / "edge-voice.service").is_file()

    r, kit = build_kit(tmp_path, "0.2.0", bundles, commands_file, "--assistant")
    assert r.returncode == 0, r.stderr
    assert json.loads((unpack(kit, tmp_path / "look") / "kit.json").read_text())["requirement"].startswith(
        "edge[voice,assistant]"
    )
    r = install(unpack(kit, tmp_path / "kit"), root, "--assistant", "--wake", "hey_jarvis")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "removed edge-voice.service" in r.stdout  # both record the microphone: one replaces the other
    assert not (units / "edge-voice.service").exists()
    assert not (units / "multi-user.target.wants/edge-voice.service").exists()
    assert (units / "multi-user.target.wants/edge-assistant.service").is_symlink()
    text = (units / "edge-assistant.service").read_text()
    assert "edge-run --assistant --wake hey_jarvis --json --commands /opt/edge/current/commands.json" in text
    assert "PrivateNetwork=yes" in text and "DeviceAllow=char-alsa rw" in text and "NoNewPrivileges=yes" in text
    verify_unit(root, "edge-assistant.service")
    r = install(unpack(kit, tmp_path / "kit2"), root, "--assistant", "--wake", "Hey Jarvis; rm -rf /")
    assert r.returncode == 1 and "--wake takes a wake-word name" in r.stderr


@needs_root
def test_serve_and_assistant_run_as_one_service(tmp_path, bundles, commands_file):
    """--serve --assistant: one unit with the panel's loopback network and the assistant's sound devices, in place
    of a panel service on the same port; and the panel alone replaces it again."""
    root = new_root(tmp_path / "root")
    r, kit = build_kit(tmp_path, "0.2.0", bundles, commands_file, "--assistant")
    assert r.returncode == 0, r.stderr
    assert install(unpack(kit, tmp_path / "kit"), root, "--serve", "--port", "8090").returncode == 0
    units = root / "etc/systemd/system"
    assert (units / "edge-panel.service").is_file()

    r = install(unpack(kit, tmp_path / "kit2"), root, "--serve", "--assistant", "--port", "8090")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "removed edge-panel.service: the assistant serves the panel now" in r.stdout
    assert not (units / "edge-panel.service").exists()
    assert not (units / "multi-user.target.wants/edge-panel.service").exists()
    assert (units / "multi-user.target.wants/edge-assistant.service").is_symlink()
    text = (units / "edge-assistant.service").read_text()
    assert "edge-run --serve --port 8090 --assistant --wake okay_nabu --commands /opt/edge/current/" in text
    assert "IPAddressAllow=localhost" in text and "IPAddressDeny=any" in text and "PrivateNetwork" not in text
    assert "DeviceAllow=char-alsa rw" in text and "NoNewPrivileges=yes" in text
    verify_unit(root, "edge-assistant.service")

    r = install(unpack(kit, tmp_path / "kit3"), root, "--serve", "--port", "8090")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "removed edge-assistant.service: it served the panel on the same port" in r.stdout
    assert (units / "edge-panel.service").is_file() and not (units / "edge-assistant.service").exists()
