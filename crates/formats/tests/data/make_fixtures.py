"""Regenerates the reference files in this folder with the upstream Python
writers (gguf-py from llama.cpp, and the `safetensors` package), so the Rust
reader and writer are checked against independent implementations.

    /work/venv/bin/python crates/formats/tests/data/make_fixtures.py

The expected values are asserted in tests/reference_files.rs; keep the two in
step.
"""
import pathlib

import numpy as np
import gguf
from safetensors.numpy import save_file

HERE = pathlib.Path(__file__).parent


def make_gguf():
    w = gguf.GGUFWriter(HERE / "pygguf.gguf", arch="testarch")
    w.add_uint8("t.u8", 200)
    w.add_int8("t.i8", -100)
    w.add_uint16("t.u16", 60000)
    w.add_int16("t.i16", -30000)
    w.add_uint32("t.u32", 4000000000)
    w.add_int32("t.i32", -2000000000)
    w.add_float32("t.f32", 1.5)
    w.add_uint64("t.u64", 2**63 + 5)
    w.add_int64("t.i64", -(2**62))
    w.add_float64("t.f64", -2.25)
    w.add_bool("t.bool", True)
    w.add_string("t.str", "héllo wörld ✓")
    w.add_string("t.empty", "")
    w.add_array("t.arr_str", ["a", "", "ü"])
    w.add_array("t.arr_i32", [1, -2, 3])
    w.add_array("t.arr_f32", [0.5, -0.25])
    w.add_array("t.arr_bool", [True, False, True])
    w.add_array("t.nested", [[1, 2], [3], ["x", "y"]])
    rng = np.random.default_rng(7)
    w.add_tensor("f32", rng.standard_normal((3, 5)).astype(np.float32))
    w.add_tensor("f16", rng.standard_normal((7,)).astype(np.float16))
    w.add_tensor("i8", np.arange(-4, 4, dtype=np.int8).reshape(2, 2, 2))
    w.add_tensor("i32", np.arange(6, dtype=np.int32).reshape(1, 2, 3))
    # Quantized tensors as raw blocks: 2 rows of 64 Q8_0 values = 2*2*34 bytes.
    q8 = rng.integers(0, 256, size=(2, 68), dtype=np.uint8)
    w.add_tensor("q8_0", q8, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    q4k = rng.integers(0, 256, size=(1, 144), dtype=np.uint8)
    w.add_tensor("q4_k", q4k, raw_dtype=gguf.GGMLQuantizationType.Q4_K)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def make_safetensors():
    t = {
        "f64": np.array([1.0, -2.0], dtype=np.float64),
        "f32": np.arange(6, dtype=np.float32).reshape(2, 3),
        "f16": np.array([0.5, 1.5, -3.0], dtype=np.float16),
        "i64": np.array([-(2**40)], dtype=np.int64),
        "i32": np.array([[1], [2]], dtype=np.int32),
        "i16": np.array([-7, 7], dtype=np.int16),
        "i8": np.array([-128, 127], dtype=np.int8),
        "u8": np.array([255], dtype=np.uint8),
        "bool": np.array([True, False, True]),
        "empty": np.zeros((0, 4), dtype=np.float32),
        "scalar": np.array(3.0, dtype=np.float32),
    }
    save_file(t, HERE / "pysafetensors.safetensors", metadata={"format": "np", "note": "ünïcode"})


make_gguf()
make_safetensors()
