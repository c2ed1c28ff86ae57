"""Architectures without a fused graph, exported through optimum-onnx.

edge's own builder (:mod:`export.families`) writes one fused graph per family, with its KV cache
in place. Any other decoder that optimum-onnx exports (``text-generation-with-past``) still
becomes a bundle: optimum writes the fp32 graph, and edge quantizes, verifies and bundles it like
any other. Its graph takes ``attention_mask`` and ``position_ids`` and returns the cache with the
new positions appended (``past_key_values.N.key`` in, ``present.N.key`` out), which the runtime
feeds through :class:`edge.text.decoder.ConcatCacheDecoder`: each step copies the whole cache, so it
decodes slower than a fused family (README: the measured factor, `python -m benchmarks decode-optimum`).
"""

from __future__ import annotations

import importlib.util
import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any

from edge.bundle import KVCacheLayout

from .errors import SourceError
from .graph import DecoderSpec, save_model

PACKAGE = "optimum-onnx==0.1.0"  # the `bench` extra; it pins transformers < 4.58
TASK = "text-generation-with-past"


def installed() -> bool:
    return (
        importlib.util.find_spec("optimum") is not None
        and importlib.util.find_spec("optimum.exporters.onnx") is not None
    )


def supports(model_type: str) -> bool:
    """Whether optimum-onnx is installed and exports ``model_type`` with its KV cache."""
    if not installed():
        return False
    import optimum.exporters.onnx.model_configs  # noqa: F401 - registers the architectures
    from optimum.exporters.tasks import TasksManager

    try:
        tasks = TasksManager.get_supported_tasks_for_model_type(
            model_type, exporter="onnx", library_name="transformers"
        )
    except KeyError:
        return False
    return TASK in tasks


def spec(config: Any) -> DecoderSpec:
    """Shape facts from a transformers config (its attribute map gives the usual names)."""
    heads = config.num_attention_heads
    return DecoderSpec(
        family=config.model_type,
        num_layers=config.num_hidden_layers,
        hidden=config.hidden_size,
        num_heads=heads,
        num_kv_heads=getattr(config, "num_key_value_heads", None) or heads,
        head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
        vocab_size=config.vocab_size,
        context_length=getattr(config, "max_position_embeddings", None) or 2048,
        eps=float(getattr(config, "rms_norm_eps", None) or getattr(config, "layer_norm_eps", None) or 1e-5),
    )


def export(folder: Path, out: Path, spec: DecoderSpec) -> KVCacheLayout:
    """Export the Hugging Face model in ``folder`` with optimum to ``out`` (weights in ``out.data``).

    Returns the bundle's cache layout, read from the graph; a graph whose inputs the runtime cannot
    feed is refused with what it has instead.
    """
    import onnx
    from optimum.exporters.onnx import main_export

    with tempfile.TemporaryDirectory(prefix="edge-optimum-") as tmp:
        quiet = logging.getLogger("optimum")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch's exporter advice, about a graph edge then verifies
                main_export(
                    str(folder), tmp, task=TASK, dtype="fp32", local_files_only=True, do_validation=False,
                    no_post_process=True, library_name="transformers",
                )  # fmt: skip
        except Exception as e:  # optimum raises anything from ValueError to its own errors
            raise SourceError(f"{folder}: optimum-onnx could not export it ({e})", "report it to optimum") from None
        finally:
            quiet.setLevel(level)
        model = onnx.load(str(Path(tmp) / "model.onnx"))
    layout = KVCacheLayout(spec.num_layers, spec.num_kv_heads, spec.head_dim, interface="concat")
    _check_interface(model, layout, folder)
    save_model(model, out)
    return layout


def _check_interface(model: Any, layout: KVCacheLayout, folder: Path) -> None:
    """Refuse a graph the runtime's ConcatCacheDecoder cannot feed, naming what differs."""
    inputs = {i.name: i for i in model.graph.input}
    outputs = {o.name for o in model.graph.output}
    expected_in = {"input_ids"} | {n for i in range(layout.num_layers) for n in layout.names(i)[:2]}
    expected_out = {"logits"} | {n for i in range(layout.num_layers) for n in layout.names(i)[2:]}
    missing = sorted((expected_in - set(inputs)) | (expected_out - outputs))
    extra = sorted(set(inputs) - expected_in - {"attention_mask", "position_ids"})
    if missing or extra:
        raise SourceError(
            f"{folder}: optimum's graph has an interface edge cannot feed "
            f"(missing {', '.join(missing[:4]) or 'nothing'}; unknown inputs {', '.join(extra[:4]) or 'none'})",
            "this architecture cannot be bundled yet",
        )
    dims = [d.dim_value or None for d in inputs[layout.names(0)[0]].type.tensor_type.shape.dim]
    if len(dims) != 4 or dims[1] not in (None, layout.num_kv_heads) or dims[3] not in (None, layout.head_dim):
        raise SourceError(
            f"{folder}: optimum's cache is shaped {dims}, not (batch, {layout.num_kv_heads} heads, positions, "
            f"{layout.head_dim})",
            "this architecture cannot be bundled yet",
        )
