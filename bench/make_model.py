#!/usr/bin/env python3
"""Build a random-weight GGUF with the exact shape of a real small model.

Random weights run at exactly the speed of trained ones (the kernels never
look at the values), so these files are what Hearth and llama.cpp are
benchmarked on. The tokenizer metadata comes from the real vocabulary file in
testdata/vocab/, so prompts tokenize as they would with the real model.

    python3 bench/make_model.py qwen2.5-0.5b OUT_DIR      # writes OUT_DIR/qwen2.5-0.5b-F16.gguf
    python3 bench/make_model.py llama-3.2-1b OUT_DIR

Needs: pip install gguf numpy. Quantize the F16 file with llama.cpp's
llama-quantize (bench/compare does both).
"""
import argparse
import os
import sys

import numpy as np

try:
    import gguf
except ImportError:
    sys.exit("bench/make_model.py needs the gguf package: pip install gguf numpy")

HERE = os.path.dirname(os.path.abspath(__file__))
VOCAB = os.path.join(HERE, "..", "testdata", "vocab")

# Shapes from the models' config.json files (Hugging Face).
SHAPES = {
    "qwen2.5-0.5b": dict(arch="qwen2", vocab="ggml-vocab-qwen2.gguf", n_embd=896, n_layer=24, n_head=14, n_head_kv=2,
                         n_ff=4864, n_vocab=151936, ctx=32768, rope_base=1000000.0, eps=1e-6, bias=True, tied=True),
    "llama-3.2-1b": dict(arch="llama", vocab="ggml-vocab-llama-bpe.gguf", n_embd=2048, n_layer=16, n_head=32, n_head_kv=8,
                         n_ff=8192, n_vocab=128256, ctx=131072, rope_base=500000.0, eps=1e-5, bias=False, tied=True),
}


def copy_tokenizer(w: "gguf.GGUFWriter", path: str) -> None:
    r = gguf.GGUFReader(path)
    for name, field in r.fields.items():
        if not name.startswith("tokenizer."):
            continue
        vtype = field.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            sub = field.types[1]
            if sub == gguf.GGUFValueType.STRING:
                vals = [bytes(field.parts[i]).decode("utf-8") for i in field.data]
            else:
                vals = [field.parts[i][0].item() for i in field.data]
            w.add_array(name, vals)
        elif vtype == gguf.GGUFValueType.STRING:
            w.add_string(name, bytes(field.parts[field.data[0]]).decode("utf-8"))
        elif vtype == gguf.GGUFValueType.BOOL:
            w.add_bool(name, bool(field.parts[field.data[0]][0]))
        else:
            w.add_uint32(name, int(field.parts[field.data[0]][0]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("shape", choices=sorted(SHAPES))
    ap.add_argument("out_dir")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    s = SHAPES[a.shape]
    os.makedirs(a.out_dir, exist_ok=True)
    out = os.path.join(a.out_dir, f"{a.shape}-F16.gguf")
    rng = np.random.default_rng(a.seed)
    arch = s["arch"]
    E, L, H, KV, F, V = s["n_embd"], s["n_layer"], s["n_head"], s["n_head_kv"], s["n_ff"], s["n_vocab"]
    hd = E // H
    w = gguf.GGUFWriter(out, arch)
    w.add_name(f"random-{a.shape}")
    w.add_context_length(s["ctx"])
    w.add_embedding_length(E)
    w.add_block_count(L)
    w.add_feed_forward_length(F)
    w.add_head_count(H)
    w.add_head_count_kv(KV)
    w.add_rope_freq_base(s["rope_base"])
    w.add_layer_norm_rms_eps(s["eps"])
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    if arch == "llama":
        w.add_vocab_size(V)
        w.add_rope_dimension_count(hd)
    copy_tokenizer(w, os.path.join(VOCAB, s["vocab"]))

    def mat(rows: int, cols: int) -> np.ndarray:
        # Variance-preserving uniform init; values are irrelevant to speed.
        lim = np.sqrt(3.0 / cols)
        return rng.uniform(-lim, lim, size=(rows, cols)).astype(np.float16)

    def vec(n: int, center: float = 1.0) -> np.ndarray:
        return (center + rng.uniform(-0.05, 0.05, size=n)).astype(np.float32)

    w.add_tensor("token_embd.weight", mat(V, E))
    w.add_tensor("output_norm.weight", vec(E))
    for i in range(L):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", vec(E))
        w.add_tensor(p + "attn_q.weight", mat(E, E))
        w.add_tensor(p + "attn_k.weight", mat(KV * hd, E))
        w.add_tensor(p + "attn_v.weight", mat(KV * hd, E))
        if s["bias"]:
            w.add_tensor(p + "attn_q.bias", vec(E, 0.0))
            w.add_tensor(p + "attn_k.bias", vec(KV * hd, 0.0))
            w.add_tensor(p + "attn_v.bias", vec(KV * hd, 0.0))
        w.add_tensor(p + "attn_output.weight", mat(E, E))
        w.add_tensor(p + "ffn_norm.weight", vec(E))
        w.add_tensor(p + "ffn_gate.weight", mat(F, E))
        w.add_tensor(p + "ffn_up.weight", mat(F, E))
        w.add_tensor(p + "ffn_down.weight", mat(E, F))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(out)


if __name__ == "__main__":
    main()
