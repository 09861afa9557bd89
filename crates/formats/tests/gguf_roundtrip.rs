//! Property test: random metadata and tensors survive write → read exactly,
//! and writing a parsed file back reproduces it byte for byte.

mod common;

use common::Rng;
use hearth_formats::gguf::{GgufWriter, MAX_ARRAY_DEPTH};
use hearth_formats::{GgmlType, GgufFile, MetaArray, MetaValue};

const CASES: u64 = 1000;

fn random_array(rng: &mut Rng, level: usize) -> MetaArray {
    let n = rng.below(6) as usize;
    // Nested arrays only while the reader's depth limit allows them.
    let kinds = if level < MAX_ARRAY_DEPTH { 13 } else { 12 };
    match rng.below(kinds) {
        0 => MetaArray::U8(rng.bytes(n)),
        1 => MetaArray::I8((0..n).map(|_| rng.next_u64() as i8).collect()),
        2 => MetaArray::U16((0..n).map(|_| rng.next_u64() as u16).collect()),
        3 => MetaArray::I16((0..n).map(|_| rng.next_u64() as i16).collect()),
        4 => MetaArray::U32((0..n).map(|_| rng.next_u64() as u32).collect()),
        5 => MetaArray::I32((0..n).map(|_| rng.next_u64() as i32).collect()),
        6 => MetaArray::F32((0..n).map(|_| f32::from_bits(rng.next_u64() as u32)).collect()),
        7 => MetaArray::Bool((0..n).map(|_| rng.chance(1, 2)).collect()),
        8 => MetaArray::String((0..n).map(|_| rng.string(12)).collect()),
        9 => MetaArray::U64((0..n).map(|_| rng.next_u64()).collect()),
        10 => MetaArray::I64((0..n).map(|_| rng.next_u64() as i64).collect()),
        11 => MetaArray::F64((0..n).map(|_| f64::from_bits(rng.next_u64())).collect()),
        _ => MetaArray::Array((0..n).map(|_| random_array(rng, level + 1)).collect()),
    }
}

fn random_value(rng: &mut Rng) -> MetaValue {
    match rng.below(13) {
        0 => MetaValue::U8(rng.next_u64() as u8),
        1 => MetaValue::I8(rng.next_u64() as i8),
        2 => MetaValue::U16(rng.next_u64() as u16),
        3 => MetaValue::I16(rng.next_u64() as i16),
        4 => MetaValue::U32(rng.next_u64() as u32),
        5 => MetaValue::I32(rng.next_u64() as i32),
        // Random bit patterns: NaNs with payloads, infinities, subnormals.
        6 => MetaValue::F32(f32::from_bits(rng.next_u64() as u32)),
        7 => MetaValue::Bool(rng.chance(1, 2)),
        8 => MetaValue::String(rng.string(40)),
        9 => MetaValue::U64(rng.next_u64()),
        10 => MetaValue::I64(rng.next_u64() as i64),
        11 => MetaValue::F64(f64::from_bits(rng.next_u64())),
        _ => MetaValue::Array(random_array(rng, 1)),
    }
}

/// Equality with floats compared by bit pattern (NaN == NaN here).
fn same_value(a: &MetaValue, b: &MetaValue) -> bool {
    match (a, b) {
        (MetaValue::F32(x), MetaValue::F32(y)) => x.to_bits() == y.to_bits(),
        (MetaValue::F64(x), MetaValue::F64(y)) => x.to_bits() == y.to_bits(),
        (MetaValue::Array(x), MetaValue::Array(y)) => same_array(x, y),
        _ => a == b,
    }
}

fn same_array(a: &MetaArray, b: &MetaArray) -> bool {
    match (a, b) {
        (MetaArray::F32(x), MetaArray::F32(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits())
        }
        (MetaArray::F64(x), MetaArray::F64(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits())
        }
        (MetaArray::Array(x), MetaArray::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_array(p, q)),
        _ => a == b,
    }
}

struct Generated {
    writer: GgufWriter,
    meta: Vec<(String, MetaValue)>,
    tensors: Vec<(String, Vec<u64>, GgmlType, Vec<u8>)>,
}

fn generate(rng: &mut Rng) -> Generated {
    let mut writer = GgufWriter::new();
    let mut meta = Vec::new();
    let n_kv = rng.below(12);
    for i in 0..n_kv {
        // Keys are random too, made unique (and non-empty) by a suffix.
        let key = format!("{}#{i}", rng.string(10));
        let value = random_value(rng);
        writer.add_meta(key.clone(), value.clone()).unwrap();
        meta.push((key, value));
    }
    if rng.chance(1, 3) {
        let alignment = 1u32 << rng.below(9);
        writer.set_alignment(alignment).unwrap();
        meta.push(("general.alignment".into(), MetaValue::U32(alignment)));
    }
    let mut tensors = Vec::new();
    for i in 0..rng.below(7) {
        let ty = *rng.pick(&GgmlType::ALL);
        let n_dims = rng.range(1, 4) as usize;
        let mut dims = vec![ty.block_size() as u64 * rng.below(4)];
        for _ in 1..n_dims {
            dims.push(rng.below(4));
        }
        let name = format!("{}.{i}", rng.string(8));
        let n_bytes = ty.row_bytes(dims.iter().product()).unwrap();
        let data = rng.bytes(n_bytes as usize);
        writer.add_tensor(name.clone(), &dims, ty).unwrap();
        tensors.push((name, dims, ty, data));
    }
    Generated { writer, meta, tensors }
}

#[test]
fn random_files_round_trip() {
    let mut rng = Rng::new(0x5eed_6775_6600);
    let mut types_seen = std::collections::HashSet::new();
    let mut value_types_seen = std::collections::HashSet::new();
    for case in 0..CASES {
        let g = generate(&mut rng);
        let data: Vec<&[u8]> = g.tensors.iter().map(|t| t.3.as_slice()).collect();
        let bytes = g.writer.write_to_vec(&data).unwrap();
        let layout = g.writer.layout().unwrap();
        assert_eq!(bytes.len() as u64, layout.file_len, "case {case}");

        let f = GgufFile::from_bytes(bytes.clone()).unwrap_or_else(|e| panic!("case {case}: {e}"));
        assert_eq!(f.version(), 3);
        assert_eq!(f.alignment(), layout.alignment);
        assert_eq!(f.data_offset(), layout.data_offset);
        assert_eq!(f.metadata().len(), g.meta.len(), "case {case}");
        for ((k, v), (k2, v2)) in g.meta.iter().zip(f.metadata()) {
            assert_eq!(k, k2, "case {case}");
            assert!(same_value(v, v2), "case {case}: key {k:?}: wrote {v:?}, read {v2:?}");
            assert!(same_value(v, f.get(k).unwrap()));
            value_types_seen.insert(v.type_id());
        }
        assert_eq!(f.tensors().len(), g.tensors.len());
        for ((name, dims, ty, data), (info, planned)) in g.tensors.iter().zip(f.tensors().iter().zip(&layout.tensors)) {
            assert_eq!(&info.name, name);
            assert_eq!(&info.dims, dims);
            assert_eq!(info.ty, *ty);
            assert_eq!(info, planned);
            assert_eq!(f.tensor_data(info), data.as_slice(), "case {case}: tensor {name:?}");
            assert_eq!(f.tensor_bytes(name), Some(data.as_slice()));
            types_seen.insert(*ty);
        }

        // Optional dump for checking the files with llama.cpp's own reader
        // (gguf.cpp rejects arrays of arrays, so those cases are skipped).
        if let Some(dir) = std::env::var_os("HEARTH_FORMATS_DUMP") {
            let nested = g.meta.iter().any(|(_, v)| matches!(v, MetaValue::Array(MetaArray::Array(_))));
            if !nested {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(std::path::Path::new(&dir).join(format!("case{case:04}.gguf")), &bytes).unwrap();
            }
        }

        // Read → write reproduces the file exactly.
        let again = GgufWriter::from_gguf(&f).unwrap();
        let data2: Vec<&[u8]> = f.tensors().iter().map(|t| f.tensor_data(t)).collect();
        assert_eq!(again.write_to_vec(&data2).unwrap(), bytes, "case {case}: rewrite differs");
    }
    // The generator really covered every type.
    assert_eq!(types_seen.len(), GgmlType::ALL.len());
    assert_eq!(value_types_seen.len(), 13);
}

#[test]
fn streaming_in_small_chunks_equals_writing_whole_buffers() {
    let mut rng = Rng::new(42);
    for _ in 0..50 {
        let g = generate(&mut rng);
        let data: Vec<&[u8]> = g.tensors.iter().map(|t| t.3.as_slice()).collect();
        let whole = g.writer.write_to_vec(&data).unwrap();
        let mut streamed = Vec::new();
        let mut i = 0;
        let n = g
            .writer
            .write(&mut streamed, |info, sink| {
                use std::io::Write;
                let d = data[i];
                i += 1;
                assert_eq!(sink.remaining(), info.n_bytes);
                for chunk in d.chunks(7) {
                    sink.write_all(chunk)?;
                }
                assert_eq!(sink.remaining(), 0);
                Ok(())
            })
            .unwrap();
        assert_eq!(n as usize, streamed.len());
        assert_eq!(streamed, whole);
    }
}
