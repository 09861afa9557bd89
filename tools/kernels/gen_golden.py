#!/usr/bin/env python3
"""Generate golden bytes for hearth-kernels from llama.cpp's own ggml.

Run by hand (not in CI), after building llama.cpp's shared libraries:

    /work/venv/bin/python tools/kernels/gen_golden.py \
        [--lib-dir /work/llama/build/bin] [--out crates/kernels/tests/golden]

It loads libggml-base.so (weight quantizers, to_float) and libggml-cpu.so
(activation quantizers, vec_dot) with ctypes and writes, for R rows of N
floats each:

  src.f32              R*N little-endian f32: the input rows (seeded random
                       data plus hard cases; see make_rows()).
  extra.f32            E*N f32: more seeded random rows (gaussian, laplace,
                       uniform, outliers) so the quantizers' candidate
                       searches are exercised broadly; only <T>.extra.q is
                       stored for them, to keep the files small.
  special.f32          S*N f32 with inf/NaN/f16-overflow values, used only for
                       the F16/BF16 conversions (quantized types give
                       compiler-dependent results on NaN in C).
  <T>.q                ggml_quantize_chunk(T, src) — what llama-quantize writes
                       without an importance matrix. For Q8_1/Q8_K (not
                       accepted by ggml_quantize_chunk) quantize_row_*_ref.
  <T>.extra.q          ggml_quantize_chunk(T, extra) for the quantized types.
  <T>.deq              to_float(<T>.q) (absent for Q8_1: ggml has none, and
                       for F32, where it would be a copy).
  <T>.rnd / .rnd.deq   random block bytes (f16 fields forced finite) and
                       to_float of them: catches layout bugs the quantizer's
                       own output would not exercise.
  special.<T>.q        F16/BF16 of special.f32.
  act_<T>.q            ggml-cpu from_float(src) for T in the vec_dot types
                       (the activation quantizers as llama.cpp runs them here).
  dot_<T>.f32          R f32: ggml-cpu vec_dot(<T>.q row i, act row (i+1)%R).
  meta.txt             N, R, S, seed, library paths, CPU flags.

Everything is derived from a fixed seed, so re-running produces the same
files unless llama.cpp's arithmetic changes.
"""

import argparse
import ctypes as C
import os
import sys

import numpy as np

N = 256  # one K-quant super-block, eight legacy blocks per row
SEED = 20240611

# ggml_type ids (ggml.h enum ggml_type)
TYPES = {
    "F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q5_0": 6, "Q5_1": 7, "Q8_0": 8,
    "Q8_1": 9, "Q2_K": 10, "Q3_K": 11, "Q4_K": 12, "Q5_K": 13, "Q6_K": 14,
    "Q8_K": 15, "BF16": 30,
}
BLOCK = {"F32": (1, 4), "F16": (1, 2), "BF16": (1, 2), "Q4_0": (32, 18), "Q4_1": (32, 20),
         "Q5_0": (32, 22), "Q5_1": (32, 24), "Q8_0": (32, 34), "Q8_1": (32, 36),
         "Q2_K": (256, 84), "Q3_K": (256, 110), "Q4_K": (256, 144), "Q5_K": (256, 176),
         "Q6_K": (256, 210), "Q8_K": (256, 292)}
# Byte offsets of f16 fields inside each block (ggml-common.h), forced finite
# in the random-bytes rows; Q8_K's f32 d likewise.
F16_FIELDS = {"Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0],
              "Q8_1": [0, 2], "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2],
              "Q5_K": [0, 2], "Q6_K": [208]}
VEC_DOT_TYPE = {"F32": "F32", "F16": "F16", "BF16": "BF16", "Q4_0": "Q8_0", "Q5_0": "Q8_0",
                "Q8_0": "Q8_0", "Q4_1": "Q8_1", "Q5_1": "Q8_1", "Q2_K": "Q8_K",
                "Q3_K": "Q8_K", "Q4_K": "Q8_K", "Q5_K": "Q8_K", "Q6_K": "Q8_K"}
VEC_DOT_FN = {"F32": "ggml_vec_dot_f32", "F16": "ggml_vec_dot_f16", "BF16": "ggml_vec_dot_bf16",
              "Q4_0": "ggml_vec_dot_q4_0_q8_0", "Q4_1": "ggml_vec_dot_q4_1_q8_1",
              "Q5_0": "ggml_vec_dot_q5_0_q8_0", "Q5_1": "ggml_vec_dot_q5_1_q8_1",
              "Q8_0": "ggml_vec_dot_q8_0_q8_0", "Q2_K": "ggml_vec_dot_q2_K_q8_K",
              "Q3_K": "ggml_vec_dot_q3_K_q8_K", "Q4_K": "ggml_vec_dot_q4_K_q8_K",
              "Q5_K": "ggml_vec_dot_q5_K_q8_K", "Q6_K": "ggml_vec_dot_q6_K_q8_K"}
ACT_FN = {"Q8_0": "quantize_row_q8_0", "Q8_1": "quantize_row_q8_1", "Q8_K": "quantize_row_q8_K",
          "F16": "ggml_cpu_fp32_to_fp16", "BF16": "ggml_cpu_fp32_to_bf16",
          "F32": "ggml_cpu_fp32_to_fp32"}


class TypeTraits(C.Structure):
    # ggml.h struct ggml_type_traits
    _fields_ = [("type_name", C.c_char_p), ("blck_size", C.c_int64),
                ("blck_size_interleave", C.c_int64), ("type_size", C.c_size_t),
                ("is_quantized", C.c_bool), ("to_float", C.c_void_p),
                ("from_float_ref", C.c_void_p)]


ROW_FN = C.CFUNCTYPE(None, C.c_void_p, C.c_void_p, C.c_int64)


def row_bytes(t, n):
    bs, ts = BLOCK[t]
    assert n % bs == 0
    return n // bs * ts


def make_rows(rng):
    """Rows of N f32: random data and the hard cases the quantizers branch on."""
    rows = []
    g = lambda: rng.standard_normal(N).astype(np.float32)
    rows.append(np.zeros(N, np.float32))                       # all zero: d = 0 paths
    rows.append(g())                                           # plain gaussian
    rows.append(g() * np.float32(1e-3))                        # small
    rows.append(g() * np.float32(1e-20))                       # d underflows f16
    r = np.zeros(N, np.float32); r[37] = 1e4; rows.append(r)   # single huge value
    r = g(); r[200] = -300.0; rows.append(r)                   # outlier in noise
    rows.append(rng.random(N).astype(np.float32))              # all positive (min clamp)
    rows.append(-rng.random(N).astype(np.float32))             # all negative
    rows.append(np.full(N, 0.5, np.float32))                   # constant: max == min
    # Half-integer grid: many x*id land exactly on .5 (rounding ties).
    rows.append((((np.arange(N) * 7) % 31) - 15).astype(np.float32) / np.float32(2))
    rows.append((np.arange(N) % 16 - 7.5).astype(np.float32))  # exact .5 everywhere
    rows.append((g() ** 3).astype(np.float32))                 # heavy tails
    sgn = np.where(np.arange(N) % 2 == 0, 1, -1).astype(np.float32)
    rows.append(sgn * np.power(10.0, rng.uniform(-6, 3, N)).astype(np.float32))
    scale = np.power(10.0, (np.arange(N) // 32) % 7 - 3).astype(np.float32)
    rows.append(g() * scale)                                   # per-block scales
    rows.append(g() * np.float32(2e5))                         # d overflows f16 for some types
    rows.append(g() * np.float32(1e-40))                       # f32 subnormals
    r = g(); r[::16] = 0.0; rows.append(r)                     # sprinkled zeros
    r = np.round(g() * 4) / 4; rows.append(r.astype(np.float32))  # quarter grid
    rows.append(g() * np.float32(0.02))                        # typical weight scale
    rows.append(np.abs(g()) + np.float32(3))                   # positive offset (min > 0)
    return np.stack(rows).astype(np.float32)


def make_extra(rng, count=64):
    rows = []
    for i in range(count):
        kind = i % 4
        scale = np.float32(10.0 ** rng.uniform(-4, 2))
        if kind == 0:
            r = rng.standard_normal(N)
        elif kind == 1:
            r = rng.laplace(size=N)
        elif kind == 2:
            r = rng.uniform(-1, 1, N) + rng.uniform(-1, 1)
        else:
            r = rng.standard_normal(N)
            r[rng.integers(0, N, 3)] *= 20
        rows.append((r * scale).astype(np.float32))
    return np.stack(rows)


def make_special():
    s = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 65504, 65519.99, 65520,
                  -65520, 6e-8, 3e-8, 1e-45, 3.4e38, -3.4e38, 1.0 + 2**-11,
                  1.0 + 3 * 2**-11, 1.0 + 2**-8, 1.0 + 3 * 2**-8], np.float64)
    row = np.zeros(N, np.float32)
    row[:len(s)] = s.astype(np.float32)
    # A signalling-NaN bit pattern and a NaN with payload.
    row.view(np.uint32)[len(s)] = 0x7F800001
    row.view(np.uint32)[len(s) + 1] = 0xFFC12345
    rng = np.random.default_rng(SEED + 1)
    # Random bit patterns cover rounding of every exponent range.
    row.view(np.uint32)[64:] = rng.integers(0, 2**32, N - 64, dtype=np.uint64).astype(np.uint32)
    return row[None, :]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib-dir", default="/work/llama/build/bin")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "../../crates/kernels/tests/golden"))
    args = ap.parse_args()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)

    base = C.CDLL(os.path.join(args.lib_dir, "libggml-base.so"))
    cpu = C.CDLL(os.path.join(args.lib_dir, "libggml-cpu.so"))
    cpu.ggml_cpu_init()

    base.ggml_quantize_chunk.restype = C.c_size_t
    base.ggml_quantize_chunk.argtypes = [C.c_int, C.c_void_p, C.c_void_p, C.c_int64, C.c_int64,
                                         C.c_int64, C.c_void_p]
    base.ggml_get_type_traits.restype = C.POINTER(TypeTraits)
    base.ggml_get_type_traits.argtypes = [C.c_int]

    def buf(nbytes):
        return (C.c_uint8 * nbytes)()  # zero-initialised

    def to_float(t, q, nrows):
        if t == "Q8_K":
            fn = ROW_FN(C.cast(base.dequantize_row_q8_K, C.c_void_p).value)
        elif t == "F32":
            return np.frombuffer(bytes(q), np.float32).copy()
        else:
            tr = base.ggml_get_type_traits(TYPES[t]).contents
            if not tr.to_float:
                return None
            fn = ROW_FN(tr.to_float)
        y = np.zeros(nrows * N, np.float32)
        fn(C.cast(q, C.c_void_p), y.ctypes.data, nrows * N)
        return y

    def quantize(t, x):
        nrows = x.shape[0]
        rb = row_bytes(t, N)
        q = buf(nrows * rb)
        xs = np.ascontiguousarray(x, np.float32)
        if t in ("Q8_1", "Q8_K"):
            fn = getattr(base, "quantize_row_%s_ref" % t.lower().replace("_k", "_K"))
            fn.argtypes = [C.c_void_p, C.c_void_p, C.c_int64]
            for i in range(nrows):
                fn(xs[i].ctypes.data, C.addressof(q) + i * rb, N)
        else:
            got = base.ggml_quantize_chunk(TYPES[t], xs.ctypes.data, q, 0, nrows, N, None)
            assert got == nrows * rb, (t, got)
        return q

    rng = np.random.default_rng(SEED)
    src = make_rows(rng)
    special = make_special()
    extra = make_extra(rng)
    extra.tofile(os.path.join(out, "extra.f32"))
    R = src.shape[0]
    src.tofile(os.path.join(out, "src.f32"))
    special.tofile(os.path.join(out, "special.f32"))

    quants = {}
    for t in TYPES:
        q = quantize(t, src)
        quants[t] = q
        if t not in ("F32", "F16", "BF16"):
            open(os.path.join(out, t + ".extra.q"), "wb").write(bytes(quantize(t, extra)))
        open(os.path.join(out, t + ".q"), "wb").write(bytes(q))
        deq = to_float(t, q, R) if t != "F32" else None  # F32 to_float is a copy
        if deq is not None:
            deq.tofile(os.path.join(out, t + ".deq"))
        if t in F16_FIELDS or t == "Q8_K":
            nb = 4
            rb = row_bytes(t, N)
            raw = bytearray(rng.integers(0, 256, nb * rb, dtype=np.uint8).tobytes())
            bs, ts = BLOCK[t]
            for blk in range(nb * rb // ts):
                o = blk * ts
                if t == "Q8_K":
                    raw[o:o + 4] = np.float32(rng.standard_normal() * 1e-2).tobytes()
                    continue
                for f in F16_FIELDS[t]:
                    # Finite f16 in [-4, 4], sign and magnitude random.
                    raw[o + f:o + f + 2] = np.float16(rng.uniform(-4, 4)).tobytes()
            rq = buf(len(raw))
            C.memmove(rq, bytes(raw), len(raw))
            open(os.path.join(out, t + ".rnd"), "wb").write(bytes(raw))
            deq = to_float(t, rq, nb)
            if deq is not None:
                deq.tofile(os.path.join(out, t + ".rnd.deq"))
    for t in ("F16", "BF16"):
        q = quantize(t, special)
        open(os.path.join(out, "special.%s.q" % t), "wb").write(bytes(q))
        to_float(t, q, 1).tofile(os.path.join(out, "special.%s.deq" % t))

    acts = {}
    for t, fname in ACT_FN.items():
        fn = getattr(cpu, fname)
        fn.argtypes = [C.c_void_p, C.c_void_p, C.c_int64]
        rb = row_bytes(t, N)
        q = buf(R * rb)
        xs = np.ascontiguousarray(src)
        for i in range(R):
            fn(xs[i].ctypes.data, C.addressof(q) + i * rb, N)
        acts[t] = q
        open(os.path.join(out, "act_%s.q" % t), "wb").write(bytes(q))

    for t, fname in VEC_DOT_FN.items():
        fn = getattr(cpu, fname)
        fn.argtypes = [C.c_int, C.POINTER(C.c_float), C.c_size_t, C.c_void_p, C.c_size_t,
                       C.c_void_p, C.c_size_t, C.c_int]
        at = VEC_DOT_TYPE[t]
        wb, ab = row_bytes(t, N), row_bytes(at, N)
        res = np.zeros(R, np.float32)
        for i in range(R):
            j = (i + 1) % R
            s = C.c_float(0)
            fn(N, C.byref(s), 0, C.addressof(quants[t]) + i * wb, 0, C.addressof(acts[at]) + j * ab, 0, 1)
            res[i] = s.value
        res.tofile(os.path.join(out, "dot_%s.f32" % t))

    flags = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags"):
                flags = " ".join(f for f in line.split() if f.startswith(("avx", "f16c", "fma")))
                break
    except OSError:
        pass
    with open(os.path.join(out, "meta.txt"), "w") as f:
        f.write("N=%d\nR=%d\nE=%d\nS=%d\nseed=%d\n" % (N, R, extra.shape[0], special.shape[0], SEED))
        f.write("generator=tools/kernels/gen_golden.py\nlibs=%s\ncpu_flags=%s\n" % (args.lib_dir, flags))
    total = sum(os.path.getsize(os.path.join(out, p)) for p in os.listdir(out))
    print("wrote %d files, %d bytes to %s" % (len(os.listdir(out)), total, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
