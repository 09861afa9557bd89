#!/usr/bin/env python3
"""Deterministic random-weight GGUF models for the quantization tests.

A recipe (one entry of crates/quantize/tests/data/recipes.json) names an
architecture, shapes, an input type and a seed. The tensor values come from
SplitMix64 streams that crates/quantize/tests/common/synth.rs reproduces bit
for bit, so the Rust tests rebuild exactly the input this script hands to
llama-quantize; only the recipes and the expected hashes are committed.

The tokenizer is llama.cpp's llama-spm vocabulary (testdata/vocab) cut to
its first `n_vocab` tokens: <unk>, <s>, </s>, the 256 byte tokens and the
highest-ranked pieces, which is still a complete SentencePiece vocabulary
(byte fallback covers every input), so the files load and run in llama.cpp
and in Hearth.

    python3 tools/quantize/synth.py RECIPES.json NAME OUT.gguf

Values (all float32 arithmetic, in this order, so numpy and Rust agree):
  stream(name): state0 = seed XOR fnv1a64(name); draw k = mix(state0 + (k+1)*GOLDEN)
  uniform(draw) = float32(draw >> 40) / 2^24 * 2 - 1                in [-1, 1)
  matrix element j = ((u[3j] + u[3j+1]) + u[3j+2]) * std,  std = float32(1/sqrt(ne0))
  norm element j   = 1 + u[j] * 0.1
  bias element j   = ((u[3j] + u[3j+1]) + u[3j+2]) * 0.02
"""
import json
import os
import sys

import numpy as np

try:
    import gguf
except ImportError:
    sys.exit("tools/quantize/synth.py needs the gguf package: pip install gguf numpy")

HERE = os.path.dirname(os.path.abspath(__file__))
VOCAB = os.path.join(HERE, "..", "..", "testdata", "vocab", "ggml-vocab-llama-spm.gguf")

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
FILE_TYPE = {"F32": 0, "F16": 1, "BF16": 32}


def fnv1a64(s: str) -> int:
    h = 0xCBF29CE484222325
    for b in s.encode("utf-8"):
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def draws(seed: int, name: str, n: int) -> np.ndarray:
    state0 = np.uint64(seed ^ fnv1a64(name))
    with np.errstate(over="ignore"):
        z = state0 + (np.arange(1, n + 1, dtype=np.uint64) * GOLDEN)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return z


def uniform(seed: int, name: str, n: int) -> np.ndarray:
    d = draws(seed, name, n)
    return (d >> np.uint64(40)).astype(np.float32) / np.float32(1 << 24) * np.float32(2) - np.float32(1)


def normal(seed: int, name: str, n: int, std: np.float32) -> np.ndarray:
    u = uniform(seed, name, 3 * n).reshape(n, 3)
    return ((u[:, 0] + u[:, 1]) + u[:, 2]) * np.float32(std)


def f32_to_bf16_bits(x: np.ndarray) -> np.ndarray:
    # ggml-impl.h ggml_compute_fp32_to_bf16: round to nearest even; NaN kept quiet.
    u = x.view(np.uint32).astype(np.uint64)
    r = ((u + np.uint64(0x7FFF) + ((u >> np.uint64(16)) & np.uint64(1))) >> np.uint64(16)).astype(np.uint16)
    nan = (u & np.uint64(0x7FFFFFFF)) > np.uint64(0x7F800000)
    r[nan] = ((u[nan] >> np.uint64(16)) | np.uint64(64)).astype(np.uint16)
    return r


def tensor_list(r: dict) -> list:
    """(name, dims in ggml order, kind) in file order; kind is matrix/norm/bias."""
    E, L, H, KV, F, V = r["n_embd"], r["n_layer"], r["n_head"], r["n_head_kv"], r["n_ff"], r["n_vocab"]
    hd = E // H
    t = [("token_embd.weight", [E, V], "matrix"), ("output_norm.weight", [E], "norm")]
    if not r["tied"]:
        t.append(("output.weight", [E, V], "matrix"))
    for i in range(L):
        p = f"blk.{i}."
        t.append((p + "attn_norm.weight", [E], "norm"))
        t.append((p + "attn_q.weight", [E, H * hd], "matrix"))
        t.append((p + "attn_k.weight", [E, KV * hd], "matrix"))
        t.append((p + "attn_v.weight", [E, KV * hd], "matrix"))
        if r["bias"]:
            t.append((p + "attn_q.bias", [H * hd], "bias"))
            t.append((p + "attn_k.bias", [KV * hd], "bias"))
            t.append((p + "attn_v.bias", [KV * hd], "bias"))
        t.append((p + "attn_output.weight", [H * hd, E], "matrix"))
        t.append((p + "ffn_norm.weight", [E], "norm"))
        t.append((p + "ffn_gate.weight", [E, F], "matrix"))
        t.append((p + "ffn_up.weight", [E, F], "matrix"))
        t.append((p + "ffn_down.weight", [F, E], "matrix"))
    return t


def values(r: dict, name: str, dims: list, kind: str) -> np.ndarray:
    n = int(np.prod(dims))
    if not r.get("data", True):
        return np.zeros(n, dtype=np.float32)
    seed = r["seed"]
    if kind == "matrix":
        return normal(seed, name, n, np.float32(1.0 / np.sqrt(dims[0])))
    if kind == "norm":
        return np.float32(1) + uniform(seed, name, n) * np.float32(0.1)
    return normal(seed, name, n, np.float32(0.02))


def write(r: dict, out: str) -> None:
    arch = r["arch"]
    E, H = r["n_embd"], r["n_head"]
    w = gguf.GGUFWriter(out, arch)
    w.add_name(r["name"])
    w.add_context_length(r["n_ctx"])
    w.add_embedding_length(E)
    w.add_block_count(r["n_layer"])
    w.add_feed_forward_length(r["n_ff"])
    w.add_head_count(H)
    w.add_head_count_kv(r["n_head_kv"])
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(FILE_TYPE[r["input_type"]])
    if arch == "llama":
        w.add_vocab_size(r["n_vocab"])
        w.add_rope_dimension_count(E // H)
    add_vocab(w, r["n_vocab"])
    for name, dims, kind in tensor_list(r):
        x = values(r, name, dims, kind)
        shape = list(reversed(dims))
        if kind != "matrix" or r["input_type"] == "F32":
            w.add_tensor(name, x.reshape(shape))
        elif r["input_type"] == "F16":
            w.add_tensor(name, x.astype(np.float16).reshape(shape))
        else:
            bits = f32_to_bf16_bits(x)
            w.add_tensor(name, bits.reshape(shape), raw_shape=shape, raw_dtype=gguf.GGMLQuantizationType.BF16)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def add_vocab(w: "gguf.GGUFWriter", n: int) -> None:
    v = gguf.GGUFReader(VOCAB)
    f = v.fields
    toks = f["tokenizer.ggml.tokens"]
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list([bytes(toks.parts[i]).decode("utf-8") for i in toks.data[:n]])
    w.add_token_scores([float(f["tokenizer.ggml.scores"].parts[i][0]) for i in f["tokenizer.ggml.scores"].data[:n]])
    w.add_token_types([int(f["tokenizer.ggml.token_type"].parts[i][0]) for i in f["tokenizer.ggml.token_type"].data[:n]])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)


def load_recipe(path: str, name: str) -> dict:
    with open(path) as fh:
        recipes = json.load(fh)["recipes"]
    for r in recipes:
        if r["name"] == name:
            return r
    sys.exit(f"no recipe {name!r} in {path}; have {[r['name'] for r in recipes]}")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    write(load_recipe(sys.argv[1], sys.argv[2]), sys.argv[3])
