"""Fuzzing the loaders that read what users hand edge: manifests, command sets, WAV files, ONNX graphs.

Each must either succeed or raise its own clear error, never crash with anything else. The
``@example`` seeds are the corpus kept in the repo: shapes that once mattered or easily would.
"""

from __future__ import annotations

import contextlib
import io
import json
import struct
import wave

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from edge.audio import load_audio
from edge.bundle import MANIFEST, read_manifest
from edge.commands import CommandSet, CommandSetError
from edge.errors import AudioError, BundleError
from edge.onnx_files import ProtobufError, external_data_locations

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
@given(data=st.binary(max_size=300))
@example(data=b"\xff\xfe{")
@example(data=b"")
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
    try:
        cs = CommandSet.from_dict(raw)
    except CommandSetError:
        return
    cs.json_schema()  # a set that loads can always be compiled to a schema
    for command in cs.commands.values():
        sample = {"command": command.name, "args": {a.name: a.sample() for a in command.args}}
        assert cs.validate(sample) is sample


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
