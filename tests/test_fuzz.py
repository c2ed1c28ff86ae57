"""Fuzzing the loaders that read what users hand edge: manifests, command sets, WAV files, ONNX graphs.

Each must either succeed or raise its own clear error, never crash with anything else. The
``@example`` seeds are the corpus kept in the repo: shapes that once mattered or easily would.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import struct
import time
import tracemalloc
import wave

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from edge.bundle import (
    MANIFEST,
    TEXT_GENERATION,
    ChatTemplate,
    CommandsInfo,
    FileEntry,
    KVCacheLayout,
    Manifest,
    Source,
    SpeechConfig,
    Tokens,
    read_manifest,
)
from edge.commands.command_set import CommandSet, CommandSetError
from edge.errors import AudioError, BundleError
from edge.jsonio import JsonInputError, load_json
from edge.onnx_files import ProtobufError, external_data_locations
from edge.speech.audio import decode_audio, load_audio

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=25,
)


def _wav(samples: np.ndarray, rate: int = 16000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())
    return buf.getvalue()


VALID_WAV = _wav((np.sin(np.arange(1600) / 5) * 8000).astype(np.int16))
DEEP = b"[" * 100_000 + b"]" * 100_000  # json.loads alone raises RecursionError on this
DEEP_OBJECT = b'{"a": ' * 100_000 + b"1" + b"}" * 100_000

# A manifest every field of which is valid (the speech block too, though a text bundle would not carry it).
VALID_MANIFEST = Manifest(
    task=TEXT_GENERATION,
    family="llama",
    precision="fp32",
    context_length=2048,
    vocab_size=400,
    tokens=Tokens(stop_ids=[2, 3], bos_id=1, pad_id=0, stop_strings=["</s>"]),
    kv_cache=KVCacheLayout(num_layers=2, num_kv_heads=2, head_dim=16),
    source=Source(kind="alias", path="x", sha256="0" * 64),
    files={"model.onnx": FileEntry("0" * 64, 10), "tokenizer.json": FileEntry("1" * 64, 5)},
    chat_template=ChatTemplate({"user": "<u>"}, {"user": "</u>"}, "<a>"),
    speech=SpeechConfig(16000, 80, 400, 160, 30.0, 1500, [1], 2, [3], [4], 224),
    commands=CommandsInfo(name="panel", sha256="a" * 64, training={"epochs": 2}),
).to_dict()
VALID_SET = {
    "name": "panel",
    "description": "A panel.",
    "commands": {
        "set_temp": {"description": "Set it.", "args": {"celsius": {"type": "integer", "minimum": 30, "maximum": 300}}},
        "set_mode": {"args": {"mode": {"enum": ["bake", "grill", 2]}}},
        "light": {"args": {"on": {"type": "boolean"}, "level": {"type": "number", "maximum": 1.5}}},
        "note": {"args": {"text": {"type": "string", "maxLength": 12}}},
        "unknown": {"description": "Not a command.", "args": {}},
    },
}
# values of every JSON type and of absurd sizes, to put where a valid value was
ABSURD = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.sampled_from([0, -1, 10**7 + 1, 10**12, 10**30, 2**63, 1e308, "", "x" * 100_000, "{layer:>999999999}"])
    | st.floats()
    | st.text(max_size=20)
    | st.lists(st.integers(), max_size=3)
    | st.dictionaries(st.text(max_size=5), st.integers(), max_size=2)
    | st.just([[[[[]]]]])
)


def _paths(value, prefix: tuple = ()) -> list[tuple]:
    """Every place in a JSON document: the keys and indexes that lead to it."""
    inner = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    return [prefix, *(p for key, v in inner for p in _paths(v, (*prefix, key)))]


def _replaced(doc, path: tuple, value):
    """A deep copy of ``doc`` with the value at ``path`` replaced by ``value``."""
    doc = copy.deepcopy(doc)
    if not path:
        return value
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return doc


@FUZZ
@given(raw=json_values)
@example(raw={"format_version": 1})
@example(raw={"format_version": 1, "tokens": None, "files": {"model.onnx": 3}})
@example(raw={"format_version": "1"})
@example(raw=[1, 2])
def test_manifest_loader_never_crashes(tmp_path, raw):
    (tmp_path / MANIFEST).write_text(json.dumps(raw))
    with contextlib.suppress(BundleError):
        read_manifest(tmp_path)


@FUZZ
@given(path=st.sampled_from(_paths(VALID_MANIFEST)[1:]), value=ABSURD)
@example(path=("kv_cache", "head_dim"), value=10**12)
@example(path=("files",), value=["model.onnx"])
@example(path=("task",), value=["text-generation"])
@example(path=("tokens", "stop_ids"), value=[])
@example(path=("vocab_size",), value=10**30)
@example(path=("kv_cache", "num_layers"), value=True)
@example(path=("kv_cache", "present_key"), value="{layer:>999999999}")
def test_manifest_with_one_field_of_another_type_or_size(tmp_path, path, value):
    (tmp_path / MANIFEST).write_text(json.dumps(_replaced(VALID_MANIFEST, path, value)))
    try:
        m = read_manifest(tmp_path)
    except BundleError as e:
        assert ("field '" in str(e) or "is newer than this edge" in str(e)) and "fix:" in str(e)
        return
    # what loads is what the runtime can size arrays and loops by
    kv = m.kv_cache
    assert 1 <= kv.num_layers <= 1024 and 1 <= kv.num_kv_heads <= 1024 and 1 <= kv.head_dim <= 4096
    assert 1 <= m.vocab_size <= 10**7 and 1 <= m.context_length <= 10**7
    assert m.tokens.stop_ids and all(0 <= i < m.vocab_size for i in m.tokens.stop_ids)
    assert all(len(name) < 200 for name in kv.names(kv.num_layers - 1))
    assert all(type(e.size) is int and e.size >= 0 for e in m.files.values())


@FUZZ
@given(data=st.binary(max_size=300))
@example(data=b"\xff\xfe{")
@example(data=b"")
@example(data=DEEP)
@example(data=DEEP_OBJECT)
@example(data=b'{"format_version": 1, "task": "\\udfff"}')
def test_manifest_loader_survives_bytes(tmp_path, data):
    (tmp_path / MANIFEST).write_bytes(data)
    with pytest.raises(BundleError):
        read_manifest(tmp_path)


command_args = st.dictionaries(
    st.text(max_size=8),
    st.dictionaries(
        st.sampled_from(["type", "enum", "minimum", "maximum", "maxLength", "x"]),
        json_values | st.sampled_from(["integer", "number", "boolean", "string", "enum"]),
        max_size=3,
    )
    | json_values,
    max_size=3,
)


@FUZZ
@given(
    raw=json_values
    | st.fixed_dictionaries(
        {
            "commands": st.dictionaries(
                st.text(max_size=10),
                st.fixed_dictionaries({"description": json_values, "args": command_args}),
                max_size=3,
            )
        }
    )
)  # noqa: E501
@example(raw={"commands": {"x": {"args": {"n": {"type": "integer", "minimum": 5, "maximum": 1}}}}})
@example(raw={"commands": {"x": {"args": {"n": {"enum": [True]}}}}})
@example(raw={"commands": {}})
def test_command_set_loader_never_crashes(raw):
    with contextlib.suppress(CommandSetError):
        _check_loaded(CommandSet.from_dict(raw))


def _check_loaded(cs: CommandSet) -> None:
    """A set that loads can always be compiled to a schema, and its own samples validate."""
    cs.json_schema()
    for command in cs.commands.values():
        sample = {"command": command.name, "args": {a.name: a.sample() for a in command.args}}
        assert cs.validate(sample) is sample


@FUZZ
@given(path=st.sampled_from(_paths(VALID_SET)), value=ABSURD)
@example(path=("commands", "set_temp", "args", "celsius", "minimum"), value=float("nan"))
@example(path=("commands", "set_temp", "args", "celsius", "maximum"), value=30.5)
@example(path=("commands", "note", "args", "text", "maxLength"), value=10**12)
@example(path=("commands", "set_mode", "args", "mode", "enum"), value=[float("inf")])
def test_command_set_with_one_field_of_another_type_or_size(path, value):
    with contextlib.suppress(CommandSetError):
        _check_loaded(CommandSet.from_dict(_replaced(VALID_SET, path, value)))


@FUZZ
@given(data=st.binary(max_size=300))
@example(data=DEEP)
@example(data=DEEP_OBJECT)
@example(data=b'{"commands": {"x": {"description": "\\ud800"}}}')
def test_command_set_file_survives_bytes(tmp_path, data):
    (tmp_path / "set.json").write_bytes(data)
    with contextlib.suppress(CommandSetError):
        _check_loaded(CommandSet.from_file(tmp_path / "set.json"))


@FUZZ
@given(data=st.binary(max_size=300) | st.text(max_size=100))
@example(data=DEEP)
@example(data=DEEP_OBJECT)
@example(data="[" * 65 + "]" * 65)
@example(data='["\\ud800"]')
@example(data="\udcff")  # a surrogate-escaped byte from argv
@example(data=b"1" * 5000)  # past Python's 4300-digit integer limit
def test_json_reader_raises_only_its_own_error(data):
    with contextlib.suppress(JsonInputError):
        load_json(data)


@FUZZ
@given(data=st.binary(max_size=400))
@example(data=b"RIFF\x00\x00\x00\x00WAVE")
@example(data=VALID_WAV[:44])  # a header and no samples
@example(data=VALID_WAV[:47])  # half a sample
@example(data=b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVEfmt " + b"\x00" * 20)
def test_wav_reader_never_crashes(tmp_path, data):
    path = tmp_path / "x.wav"
    path.write_bytes(data)
    try:
        audio = load_audio(path)
    except AudioError:
        return
    assert audio.dtype == np.float32 and np.isfinite(audio).all()


@FUZZ
@given(position=st.integers(0, len(VALID_WAV) - 1), value=st.integers(0, 255))
def test_wav_reader_survives_a_corrupted_byte(tmp_path, position, value):
    data = bytearray(VALID_WAV)
    data[position] = value
    path = tmp_path / "x.wav"
    path.write_bytes(bytes(data))
    with contextlib.suppress(AudioError):
        load_audio(path)


@FUZZ
@given(data=st.binary(max_size=300))
@example(data=b"\x3a\xff\xff\xff\xff\x0f")  # a length far past the end
@example(data=b"\x80" * 12)  # a varint that never ends
def test_onnx_reference_reader_never_crashes(tmp_path, data):
    path = tmp_path / "model.onnx"
    path.write_bytes(data)
    with contextlib.suppress(ProtobufError):
        assert isinstance(external_data_locations(path), set)


@FUZZ
@given(
    tag=st.sampled_from([1, 3, 0xFFFE, 6, 0x55]) | st.integers(0, 0xFFFF),
    channels=st.integers(0, 0xFFFF),
    rate=st.sampled_from([1, 3999, 4000, 11025, 383999, 384000, 384001]) | st.integers(0, 2**32 - 1),
    width=st.integers(0, 9),
    bits=st.integers(0, 0xFFFF),
    declared=st.sampled_from([0, 0xFFFFFFFF]) | st.integers(0, 2**32 - 1),
    payload=st.binary(max_size=400),
)
@example(tag=1, channels=1, rate=1, width=2, bits=16, declared=400, payload=bytes(400))  # used to take minutes
@example(tag=1, channels=65535, rate=16000, width=1, bits=8, declared=0xFFFFFFFF, payload=bytes(400))
@example(tag=3, channels=8, rate=383999, width=8, bits=64, declared=0xFFFFFFFF, payload=bytes(400))
def test_wav_header_declarations_load_or_fail_fast(tag, channels, rate, width, bits, declared, payload):
    fmt = struct.pack("<HHIIHH", tag, channels, rate, 0, (channels * width) & 0xFFFF, bits)
    if tag == 0xFFFE:
        fmt += struct.pack("<HHIH", 22, bits, 0, 1) + bytes(14)
    body = b"WAVEfmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", declared) + payload
    tracemalloc.start()
    start = time.perf_counter()
    try:
        audio = decode_audio(b"RIFF" + struct.pack("<I", len(body)) + body, "x.wav")
        assert audio.dtype == np.float32 and np.isfinite(audio).all()
    except AudioError:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert time.perf_counter() - start < 5 and peak < 64 << 20
