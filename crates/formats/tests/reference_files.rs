//! Files written by independent implementations: gguf-py (llama.cpp's Python
//! writer) and the `safetensors` Python package (see tests/data/make_fixtures.py),
//! and the llama.cpp vocabulary GGUFs in testdata/vocab.

use hearth_formats::{GgmlType, GgufFile, GgufWriter, MetaArray, MetaValue};
use std::path::PathBuf;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

#[test]
fn gguf_py_file_reads_with_every_value_type() {
    let f = GgufFile::open(data("pygguf.gguf")).unwrap();
    assert_eq!(f.version(), 3);
    assert_eq!(f.get_str("general.architecture").unwrap(), Some("testarch"));
    assert_eq!(f.get("t.u8"), Some(&MetaValue::U8(200)));
    assert_eq!(f.get("t.i8"), Some(&MetaValue::I8(-100)));
    assert_eq!(f.get("t.u16"), Some(&MetaValue::U16(60000)));
    assert_eq!(f.get("t.i16"), Some(&MetaValue::I16(-30000)));
    assert_eq!(f.get("t.u32"), Some(&MetaValue::U32(4_000_000_000)));
    assert_eq!(f.get("t.i32"), Some(&MetaValue::I32(-2_000_000_000)));
    assert_eq!(f.get("t.f32"), Some(&MetaValue::F32(1.5)));
    assert_eq!(f.get("t.u64"), Some(&MetaValue::U64((1 << 63) + 5)));
    assert_eq!(f.get("t.i64"), Some(&MetaValue::I64(-(1 << 62))));
    assert_eq!(f.get("t.f64"), Some(&MetaValue::F64(-2.25)));
    assert_eq!(f.get_bool("t.bool").unwrap(), Some(true));
    assert_eq!(f.get_str("t.str").unwrap(), Some("héllo wörld ✓"));
    assert_eq!(f.get_str_array("t.arr_str").unwrap().unwrap(), ["a", "", "ü"]);
    assert_eq!(f.get_array("t.arr_i32").unwrap(), Some(&MetaArray::I32(vec![1, -2, 3])));
    assert_eq!(f.get_array("t.arr_f32").unwrap(), Some(&MetaArray::F32(vec![0.5, -0.25])));
    assert_eq!(f.get_array("t.arr_bool").unwrap(), Some(&MetaArray::Bool(vec![true, false, true])));
    assert_eq!(
        f.get_array("t.nested").unwrap(),
        Some(&MetaArray::Array(vec![
            MetaArray::I32(vec![1, 2]),
            MetaArray::I32(vec![3]),
            MetaArray::String(vec!["x".into(), "y".into()]),
        ]))
    );

    // numpy shape (3, 5) is ggml [5, 3].
    let t = f.tensor("f32").unwrap();
    assert_eq!((t.dims.as_slice(), t.ty, t.n_bytes), (&[5u64, 3][..], GgmlType::F32, 60));
    let i8s = f.tensor_bytes("i8").unwrap();
    assert_eq!(i8s, &[0xfc, 0xfd, 0xfe, 0xff, 0, 1, 2, 3]);
    let i32s: Vec<i32> =
        f.tensor_bytes("i32").unwrap().chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap())).collect();
    assert_eq!(i32s, [0, 1, 2, 3, 4, 5]);
    assert_eq!(f.tensor("i32").unwrap().dims, [3, 2, 1]);
    let q = f.tensor("q8_0").unwrap();
    assert_eq!((q.dims.as_slice(), q.ty, q.n_bytes), (&[64u64, 2][..], GgmlType::Q8_0, 136));
    let q = f.tensor("q4_k").unwrap();
    assert_eq!((q.dims.as_slice(), q.ty, q.n_bytes), (&[256u64, 1][..], GgmlType::Q4_K, 144));
}

#[test]
fn rewriting_a_gguf_py_file_is_byte_identical() {
    let bytes = std::fs::read(data("pygguf.gguf")).unwrap();
    let f = GgufFile::from_bytes(bytes.clone()).unwrap();
    let w = GgufWriter::from_gguf(&f).unwrap();
    let out = w.write(&mut Vec::new(), |info, sink| std::io::Write::write_all(sink, f.tensor_data(info))).unwrap();
    assert_eq!(out, bytes.len() as u64);
    let tensors: Vec<&[u8]> = f.tensors().iter().map(|t| f.tensor_data(t)).collect();
    assert_eq!(w.write_to_vec(&tensors).unwrap(), bytes);
}

#[test]
fn rewriting_llama_cpp_vocab_files_matches_up_to_trailing_padding() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/vocab");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("gguf") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let f = GgufFile::from_bytes(bytes.clone()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(f.tensors().is_empty());
        let out = GgufWriter::from_gguf(&f).unwrap().write_to_vec::<&[u8]>(&[]).unwrap();
        // These tensor-less files were written without padding after the
        // header; this writer always pads, as gguf.cpp's gguf_write_out does.
        assert_eq!(&out[..bytes.len()], &bytes[..], "{}", path.display());
        assert!(out[bytes.len()..].iter().all(|&b| b == 0));
        assert!(out.len() - bytes.len() < 32);
        n += 1;
    }
    assert!(n >= 8, "only {n} vocab files found");
}
