#!/usr/bin/env python3
"""Record what llama.cpp's llama-quantize produces for the synthetic recipes.

For every recipe in crates/quantize/tests/data/recipes.json this builds the
input with synth.py, runs llama-quantize for every supported target type and
writes, per output tensor, its type, the SHA-256 of its bytes and its
reconstruction RMSE against the f32 source values (dequantized with gguf-py),
plus the SHA-256 of each input tensor (so the Rust test can tell a generator
mismatch from a quantizer mismatch) and of the whole output file. Recipes
with `"data": false` are all zeros; only their type choices are kept.

    python3 tools/quantize/make_expected.py [--llama-quantize PATH] [--out FILE]

The result, crates/quantize/tests/data/llama_quantize_expected.json, is what
crates/quantize/tests/compat.rs checks Hearth against. Needs gguf and numpy
(/work/venv/bin/python has them).
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

import gguf
from gguf import quants

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import synth  # noqa: E402

ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
DATA = os.path.join(ROOT, "crates", "quantize", "tests", "data")
TYPES = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M",
         "Q5_K_S", "Q5_K_M", "Q6_K", "F16", "BF16", "F32"]


def sha256(b) -> str:
    return hashlib.sha256(bytes(b)).hexdigest()


def tensor_bytes(t) -> bytes:
    return np.ascontiguousarray(t.data).tobytes()


def dequant(t) -> np.ndarray:
    qt = t.tensor_type
    raw = np.ascontiguousarray(t.data)
    if qt == gguf.GGMLQuantizationType.F32:
        return raw.reshape(-1).astype(np.float32)
    if qt == gguf.GGMLQuantizationType.F16:
        return raw.reshape(-1).astype(np.float32)
    return quants.dequantize(raw.view(np.uint8), qt).reshape(-1).astype(np.float32)


def source_values(r: dict) -> dict:
    """The f32 values llama-quantize starts from (F16/BF16 inputs widened)."""
    out = {}
    for name, dims, kind in synth.tensor_list(r):
        x = synth.values(r, name, dims, kind)
        if kind == "matrix" and r["input_type"] == "F16":
            x = x.astype(np.float16).astype(np.float32)
        elif kind == "matrix" and r["input_type"] == "BF16":
            x = (synth.f32_to_bf16_bits(x).astype(np.uint32) << np.uint32(16)).view(np.float32)
        out[name] = x
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llama-quantize", default="/work/llama/build/bin/llama-quantize")
    ap.add_argument("--recipes", default=os.path.join(DATA, "recipes.json"))
    ap.add_argument("--out", default=os.path.join(DATA, "llama_quantize_expected.json"))
    a = ap.parse_args()
    with open(a.recipes) as fh:
        recipes = json.load(fh)["recipes"]
    version = subprocess.run([a.llama_quantize, "--version"], capture_output=True, text=True)
    result = {"generator": "tools/quantize/make_expected.py",
              "llama_quantize_version": (version.stdout + version.stderr).strip().splitlines()[:2],
              "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for r in recipes:
            inp = os.path.join(tmp, r["name"] + ".gguf")
            synth.write(r, inp)
            has_data = r.get("data", True)
            model = {"input_tensors": {}, "types": {}}
            src = source_values(r) if has_data else None
            if has_data:
                for t in gguf.GGUFReader(inp).tensors:
                    model["input_tensors"][t.name] = sha256(tensor_bytes(t))
            for ty in TYPES:
                out = os.path.join(tmp, f"{r['name']}-{ty}.gguf")
                p = subprocess.run([a.llama_quantize, inp, out, ty, "2"], capture_output=True, text=True)
                if p.returncode != 0:
                    sys.exit(f"llama-quantize failed for {r['name']} {ty}:\n{p.stdout}\n{p.stderr}")
                fallbacks = [line.split("-")[0].replace("warning:", "").strip()
                             for line in p.stderr.splitlines() + p.stdout.splitlines() if "falling back" in line]
                tensors = {}
                for t in gguf.GGUFReader(out).tensors:
                    e = {"type": t.tensor_type.name}
                    if has_data:
                        e["sha256"] = sha256(tensor_bytes(t))
                        d = dequant(t) - src[t.name]
                        e["rmse"] = float(np.sqrt(np.mean(d.astype(np.float64) ** 2)))
                    tensors[t.name] = e
                entry = {"tensors": tensors, "fallbacks": fallbacks}
                if has_data:
                    with open(out, "rb") as fh:
                        entry["file_sha256"] = sha256(fh.read())
                    entry["file_size"] = os.path.getsize(out)
                model["types"][ty] = entry
                os.remove(out)
                print(f"{r['name']:16} {ty:7} {len(tensors)} tensors, {len(fallbacks)} fallbacks", file=sys.stderr)
            result["models"][r["name"]] = model
            os.remove(inp)
    with open(a.out, "w") as fh:
        json.dump(result, fh, indent=1, sort_keys=True)
        fh.write("\n")
    print(a.out)


if __name__ == "__main__":
    main()
