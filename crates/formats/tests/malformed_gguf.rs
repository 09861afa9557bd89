//! Hostile GGUF files. Each case is built from a valid small image by one
//! mutation and must fail with a specific [`GgufError`] variant whose message
//! names the field, without panicking and without any single allocation
//! larger than [`common::ALLOC_LIMIT`] (measured by the allocator wrapper
//! below), however large the counts in the header claim to be. A second test
//! applies 10,000 random mutations; none may panic.

mod common;

use common::{peak_alloc, Rng, ALLOC_LIMIT};
use hearth_formats::{GgufError, GgufFile, GgufWriter};

#[global_allocator]
static ALLOC: common::PeakAlloc = common::PeakAlloc;

// ---- a raw image builder that can express invalid files --------------------

const T_U8: u32 = 0;
const T_U32: u32 = 4;
const T_BOOL: u32 = 7;
const T_STRING: u32 = 8;
const T_ARRAY: u32 = 9;
const T_U64: u32 = 10;
const F32: u32 = 0;
const Q8_0: u32 = 8;

#[derive(Clone)]
struct Kv {
    key: Vec<u8>,
    ty: u32,
    value: Vec<u8>,
}

#[derive(Clone)]
struct Tensor {
    name: Vec<u8>,
    n_dims: Option<u32>,
    dims: Vec<u64>,
    ty: u32,
    offset: u64,
}

#[derive(Clone)]
struct Spec {
    magic: [u8; 4],
    version: [u8; 4],
    n_tensors: Option<u64>,
    n_kv: Option<u64>,
    kvs: Vec<Kv>,
    tensors: Vec<Tensor>,
    /// Padding inserted before the data section (the spec's alignment).
    pad_to: u64,
    data: Vec<u8>,
}

fn s(x: &str) -> Vec<u8> {
    x.as_bytes().to_vec()
}

fn v_str(x: &[u8]) -> Vec<u8> {
    let mut v = (x.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(x);
    v
}

fn v_u32(x: u32) -> Vec<u8> {
    x.to_le_bytes().to_vec()
}

fn v_array(elem_ty: u32, count: u64, elems: &[u8]) -> Vec<u8> {
    let mut v = elem_ty.to_le_bytes().to_vec();
    v.extend_from_slice(&count.to_le_bytes());
    v.extend_from_slice(elems);
    v
}

fn kv(key: &str, ty: u32, value: Vec<u8>) -> Kv {
    Kv { key: s(key), ty, value }
}

fn tensor(name: &str, dims: &[u64], ty: u32, offset: u64) -> Tensor {
    Tensor { name: s(name), n_dims: None, dims: dims.to_vec(), ty, offset }
}

/// Byte positions of interesting points in a built image.
#[derive(Default, Debug)]
struct Marks {
    version: usize,
    n_tensors: usize,
    n_kv: usize,
    /// Per kv: (key start, type, value start).
    kvs: Vec<(usize, usize, usize)>,
    /// Per tensor: (name, n_dims, dims, type, offset).
    tensors: Vec<(usize, usize, usize, usize, usize)>,
    infos_end: usize,
    data: usize,
}

fn build(spec: &Spec) -> (Vec<u8>, Marks) {
    let mut b = Vec::new();
    let mut m = Marks::default();
    b.extend_from_slice(&spec.magic);
    m.version = b.len();
    b.extend_from_slice(&spec.version);
    m.n_tensors = b.len();
    b.extend_from_slice(&spec.n_tensors.unwrap_or(spec.tensors.len() as u64).to_le_bytes());
    m.n_kv = b.len();
    b.extend_from_slice(&spec.n_kv.unwrap_or(spec.kvs.len() as u64).to_le_bytes());
    for kv in &spec.kvs {
        let k = b.len();
        b.extend_from_slice(&v_str(&kv.key));
        let t = b.len();
        b.extend_from_slice(&kv.ty.to_le_bytes());
        let v = b.len();
        b.extend_from_slice(&kv.value);
        m.kvs.push((k, t, v));
    }
    for t in &spec.tensors {
        let name = b.len();
        b.extend_from_slice(&v_str(&t.name));
        let nd = b.len();
        b.extend_from_slice(&t.n_dims.unwrap_or(t.dims.len() as u32).to_le_bytes());
        let dims = b.len();
        for d in &t.dims {
            b.extend_from_slice(&d.to_le_bytes());
        }
        let ty = b.len();
        b.extend_from_slice(&t.ty.to_le_bytes());
        let off = b.len();
        b.extend_from_slice(&t.offset.to_le_bytes());
        m.tensors.push((name, nd, dims, ty, off));
    }
    m.infos_end = b.len();
    while (b.len() as u64) % spec.pad_to > 0 {
        b.push(0);
    }
    m.data = b.len();
    b.extend_from_slice(&spec.data);
    (b, m)
}

/// A valid image: four key/values (string, u32 alignment, string array,
/// bool) and two tensors (F32 [4, 2] and Q8_0 [32]).
fn base() -> Spec {
    Spec {
        magic: *b"GGUF",
        version: 3u32.to_le_bytes(),
        n_tensors: None,
        n_kv: None,
        kvs: vec![
            kv("general.architecture", T_STRING, v_str(b"llama")),
            kv("general.alignment", T_U32, v_u32(32)),
            kv("tokenizer.ggml.tokens", T_ARRAY, v_array(T_STRING, 2, &[v_str(b"a"), v_str(b"bc")].concat())),
            kv("some.flag", T_BOOL, vec![1]),
        ],
        tensors: vec![tensor("tok_embd", &[4, 2], F32, 0), tensor("output", &[32], Q8_0, 32)],
        pad_to: 32,
        // 32 bytes of F32 data, padding to 32, 34 bytes of Q8_0, padding.
        data: (0..96u8).collect(),
    }
}

fn with(f: impl FnOnce(&mut Spec)) -> Vec<u8> {
    let mut spec = base();
    f(&mut spec);
    build(&spec).0
}

fn set_u64(mut b: Vec<u8>, at: usize, v: u64) -> Vec<u8> {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
    b
}

fn set_u32(mut b: Vec<u8>, at: usize, v: u32) -> Vec<u8> {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    b
}

fn cut(mut b: Vec<u8>, len: usize) -> Vec<u8> {
    b.truncate(len);
    b
}

fn variant(e: &GgufError) -> &'static str {
    match e {
        GgufError::Io { .. } => "Io",
        GgufError::BadMagic { .. } => "BadMagic",
        GgufError::BigEndian => "BigEndian",
        GgufError::UnsupportedVersion { .. } => "UnsupportedVersion",
        GgufError::Truncated { .. } => "Truncated",
        GgufError::CountTooLarge { .. } => "CountTooLarge",
        GgufError::InvalidUtf8 { .. } => "InvalidUtf8",
        GgufError::UnknownValueType { .. } => "UnknownValueType",
        GgufError::NestingTooDeep { .. } => "NestingTooDeep",
        GgufError::EmptyKey { .. } => "EmptyKey",
        GgufError::InvalidBool { .. } => "InvalidBool",
        GgufError::DuplicateKey { .. } => "DuplicateKey",
        GgufError::BadAlignment { .. } => "BadAlignment",
        GgufError::TooManyDims { .. } => "TooManyDims",
        GgufError::UnsupportedType { .. } => "UnsupportedType",
        GgufError::DimOverflow { .. } => "DimOverflow",
        GgufError::PartialBlock { .. } => "PartialBlock",
        GgufError::DuplicateTensor { .. } => "DuplicateTensor",
        GgufError::MisalignedTensor { .. } => "MisalignedTensor",
        GgufError::TensorOutOfBounds { .. } => "TensorOutOfBounds",
        GgufError::OverlappingTensors { .. } => "OverlappingTensors",
        GgufError::MissingKey { .. } => "MissingKey",
        GgufError::WrongType { .. } => "WrongType",
        GgufError::OutOfRange { .. } => "OutOfRange",
    }
}

struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    variant: &'static str,
    /// Fragments the message must contain (the field, the value...).
    mentions: &'static [&'static str],
}

fn cases() -> Vec<Case> {
    let (b, m) = build(&base());
    let (k_arch, _, v_arch) = m.kvs[0];
    let (_, _, v_align) = m.kvs[1];
    let (_, t_tokens, v_tokens) = m.kvs[2];
    let (k_flag, t_flag, v_flag) = m.kvs[3];
    // The same image with the string-valued key moved last.
    let (arch_last, arch_last_value) = {
        let mut spec = base();
        spec.kvs.rotate_left(1);
        let (bytes, marks) = build(&spec);
        (bytes, marks.kvs[3].2)
    };
    // A tensor with zero bytes, and a file that ends right after the infos,
    // off the alignment grid: the data section would start past the end.
    let no_data_section = (0..32)
        .map(|pad| {
            let mut spec = base();
            spec.tensors = vec![tensor("empty", &[0], F32, 0)];
            spec.kvs[0].value = v_str("x".repeat(pad).as_bytes());
            spec.pad_to = 1;
            spec.data.clear();
            build(&spec)
        })
        .find(|(_, marks)| marks.infos_end % 32 != 0)
        .map(|(bytes, _)| bytes)
        .unwrap();
    let (t0_name, t0_nd, t0_dims, t0_ty, t0_off) = m.tensors[0];
    let (_, _, _, _, t1_off) = m.tensors[1];
    let c = |name, bytes, variant, mentions| Case { name, bytes, variant, mentions };
    let deep = {
        // 64 levels of array-of-array, each claiming one element.
        let mut v = Vec::new();
        for _ in 0..64 {
            v.extend_from_slice(&T_ARRAY.to_le_bytes());
            v.extend_from_slice(&1u64.to_le_bytes());
        }
        v.extend_from_slice(&T_U8.to_le_bytes());
        v.extend_from_slice(&0u64.to_le_bytes());
        v
    };
    vec![
        // --- header -----------------------------------------------------
        c("empty file", vec![], "Truncated", &["magic"]),
        c("truncated in magic", cut(b.clone(), 2), "Truncated", &["magic"]),
        c("wrong magic", [b"GGML".as_slice(), &b[4..]].concat(), "BadMagic", &["magic"]),
        c("truncated in version", cut(b.clone(), m.version + 2), "Truncated", &["version"]),
        c("version 1", set_u32(b.clone(), m.version, 1), "UnsupportedVersion", &["version 1"]),
        c("version 4", set_u32(b.clone(), m.version, 4), "UnsupportedVersion", &["version 4"]),
        c("version 0", set_u32(b.clone(), m.version, 0), "UnsupportedVersion", &["version 0"]),
        c("big-endian file", with(|s| s.version = 3u32.to_be_bytes()), "BigEndian", &["big-endian"]),
        c("truncated in tensor count", cut(b.clone(), m.n_tensors + 5), "Truncated", &["tensor count"]),
        c("truncated in metadata count", cut(b.clone(), m.n_kv + 1), "Truncated", &["metadata count"]),
        c("n_tensors = 2^63", set_u64(b.clone(), m.n_tensors, 1 << 63), "CountTooLarge", &["tensor count", "9223372036854775808"]),
        c("n_kv = 2^64-1", set_u64(b.clone(), m.n_kv, u64::MAX), "CountTooLarge", &["metadata count", "18446744073709551615"]),
        c("n_kv one more than present", set_u64(b.clone(), m.n_kv, 5), "CountTooLarge", &["tensor #0 name", "string length"]),
        // The padding and data are then read as a third tensor info.
        c("n_tensors one more than present", set_u64(b.clone(), m.n_tensors, 3), "UnsupportedType", &["unknown tensor type"]),
        // --- keys and values ----------------------------------------------
        // Truncations early in the file are caught by the up-front count
        // check; the ones below target the last key/value so each reaches
        // the read it names.
        c("truncated right after the counts", cut(b.clone(), m.n_kv + 8 + 10), "CountTooLarge", &["metadata count", "count 4"]),
        c("truncated in key length", cut(b.clone(), k_flag + 3), "Truncated", &["metadata key #3"]),
        c("truncated in key bytes", cut(b.clone(), k_flag + 8 + 4), "CountTooLarge", &["metadata key #3", "string length"]),
        c("truncated before value type", cut(b.clone(), t_flag + 2), "Truncated", &["type of metadata \"some.flag\""]),
        c("truncated in string value", cut(arch_last.clone(), arch_last_value + 8 + 2), "CountTooLarge", &["general.architecture", "string length"]),
        c("truncated in u32 value", cut(b.clone(), v_align + 2), "Truncated", &["general.alignment"]),
        c("truncated in array element type", cut(b.clone(), v_tokens + 2), "Truncated", &["tokenizer.ggml.tokens", "element type"]),
        c("truncated in array count", cut(b.clone(), v_tokens + 7), "Truncated", &["tokenizer.ggml.tokens", "length"]),
        c("truncated in array elements", cut(b.clone(), v_tokens + 12 + 9 + 4), "CountTooLarge", &["tokenizer.ggml.tokens"]),
        c("truncated in bool value", cut(b.clone(), v_flag), "Truncated", &["some.flag"]),
        c("string length past end of file", set_u64(b.clone(), v_arch, 1 << 20), "CountTooLarge", &["general.architecture", "string length"]),
        c("string length 2^63", set_u64(b.clone(), v_arch, 1 << 63), "CountTooLarge", &["general.architecture", "9223372036854775808"]),
        c("key length 2^64-1", set_u64(b.clone(), k_arch, u64::MAX), "CountTooLarge", &["metadata key #0"]),
        c(
            "array count 2^62 of u64",
            with(|s| s.kvs[2] = kv("tokenizer.ggml.tokens", T_ARRAY, v_array(T_U64, 1 << 62, &[0; 16]))),
            "CountTooLarge",
            &["tokenizer.ggml.tokens", "4611686018427387904"],
        ),
        c("string array count 2^61", set_u64(b.clone(), v_tokens + 4, 1 << 61), "CountTooLarge", &["tokenizer.ggml.tokens", "length"]),
        c(
            "array-of-arrays count 2^60",
            with(|s| s.kvs[2] = kv("tokenizer.ggml.tokens", T_ARRAY, v_array(T_ARRAY, 1 << 60, &[0; 24]))),
            "CountTooLarge",
            &["tokenizer.ggml.tokens"],
        ),
        c("unknown value type", set_u32(b.clone(), t_tokens, 13), "UnknownValueType", &["tokenizer.ggml.tokens", "13"]),
        c("unknown array element type", set_u32(b.clone(), v_tokens, 0xdead), "UnknownValueType", &["tokenizer.ggml.tokens", "57005"]),
        c("non-UTF-8 key", with(|s| s.kvs[0].key = b"general.\xffarch".to_vec()), "InvalidUtf8", &["metadata key #0"]),
        c("non-UTF-8 string value", with(|s| s.kvs[0].value = v_str(b"lla\xc3")), "InvalidUtf8", &["general.architecture"]),
        c("non-UTF-8 string in array", with(|s| s.kvs[2].value = v_array(T_STRING, 1, &v_str(b"\xed\xa0\x80"))), "InvalidUtf8", &["tokenizer.ggml.tokens", "element 0"]),
        c("empty key", with(|s| s.kvs[3].key = vec![]), "EmptyKey", &["#3"]),
        c("bool byte = 7", with(|s| s.kvs[3].value = vec![7]), "InvalidBool", &["some.flag", "7"]),
        c("bool array element = 2", with(|s| s.kvs[3] = kv("some.flag", T_ARRAY, v_array(T_BOOL, 3, &[1, 0, 2]))), "InvalidBool", &["some.flag", "element 2"]),
        c("nested array depth bomb", with(|s| s.kvs[2] = kv("bomb", T_ARRAY, deep.clone())), "NestingTooDeep", &["bomb"]),
        c("duplicate key", with(|s| s.kvs[3].key = s.kvs[0].key.clone()), "DuplicateKey", &["general.architecture"]),
        // --- alignment ----------------------------------------------------
        c("zero alignment", set_u32(b.clone(), v_align, 0), "BadAlignment", &["general.alignment", "0"]),
        c("odd alignment (3)", set_u32(b.clone(), v_align, 3), "BadAlignment", &["general.alignment", "3"]),
        c("alignment as a string", with(|s| s.kvs[1] = kv("general.alignment", T_STRING, v_str(b"32"))), "WrongType", &["general.alignment", "string"]),
        c("alignment as a u64", with(|s| s.kvs[1] = kv("general.alignment", T_U64, 32u64.to_le_bytes().to_vec())), "WrongType", &["general.alignment", "u64"]),
        // --- tensor infos -------------------------------------------------
        c("truncated in tensor name", cut(b.clone(), t0_name + 8 + 3), "CountTooLarge", &["tensor #0 name"]),
        c("truncated in n_dims", cut(b.clone(), t0_nd + 1), "Truncated", &["tok_embd", "n_dims"]),
        c("truncated in dims", cut(b.clone(), t0_dims + 12), "Truncated", &["tok_embd", "dim 1"]),
        c("truncated in tensor type", cut(b.clone(), t0_ty + 3), "Truncated", &["tok_embd", "type"]),
        c("truncated in tensor offset", cut(b.clone(), t0_off + 4), "Truncated", &["tok_embd", "offset"]),
        c("non-UTF-8 tensor name", with(|s| s.tensors[1].name = b"out\x80put".to_vec()), "InvalidUtf8", &["tensor #1 name"]),
        c("n_dims = 5", with(|s| s.tensors[0].dims = vec![1, 1, 1, 1, 8]), "TooManyDims", &["tok_embd", "5"]),
        c("n_dims = 2^32-1", set_u32(b.clone(), t0_nd, u32::MAX), "TooManyDims", &["tok_embd", "4294967295"]),
        c("unknown tensor type", set_u32(b.clone(), t0_ty, 9999), "UnsupportedType", &["tok_embd", "9999"]),
        c("i-quant tensor type", set_u32(b.clone(), t0_ty, 23), "UnsupportedType", &["tok_embd", "IQ4_XS"]),
        c("removed type Q4_2 (id 4)", set_u32(b.clone(), t0_ty, 4), "UnsupportedType", &["tok_embd", "id 4"]),
        c("dimension product overflow", with(|s| s.tensors[0].dims = vec![1 << 32, 1 << 32]), "DimOverflow", &["tok_embd"]),
        c("dimension beyond i64 hidden by a zero", with(|s| s.tensors[0].dims = vec![0, u64::MAX]), "DimOverflow", &["tok_embd"]),
        // 2^62 elements pass the i64 limit, but 2^62 F64s are 2^65 bytes.
        c("byte size overflow", with(|s| {
            s.tensors[0].dims = vec![1 << 62];
            s.tensors[0].ty = 28;
        }), "DimOverflow", &["tok_embd"]),
        c("partial quant block", with(|s| s.tensors[1].dims = vec![33]), "PartialBlock", &["output", "33", "Q8_0"]),
        c("duplicate tensor names", with(|sp| sp.tensors[1].name = s("tok_embd")), "DuplicateTensor", &["tok_embd"]),
        // --- data section -------------------------------------------------
        c("misaligned offset", set_u64(b.clone(), t1_off, 33), "MisalignedTensor", &["output", "33"]),
        c("offset + size past end", set_u64(b.clone(), t1_off, 64), "TensorOutOfBounds", &["output"]),
        c("offset overflowing u64", set_u64(b.clone(), t1_off, u64::MAX - 31), "TensorOutOfBounds", &["output", "18446744073709551584"]),
        c("truncated in tensor data", cut(b.clone(), m.data + 40), "TensorOutOfBounds", &["output"]),
        c("truncated in padding before data", cut(b.clone(), m.infos_end + 3), "Truncated", &["padding before the tensor data"]),
        c("overlapping tensors", set_u64(b.clone(), t1_off, 0), "OverlappingTensors", &["tok_embd", "output"]),
        c("zero-byte tensor and no data section", no_data_section, "Truncated", &["padding before the tensor data"]),
        c(
            "alignment 2^31 puts the data past the end",
            with(|s| {
                s.kvs[1].value = v_u32(1 << 31);
                s.tensors.truncate(1);
            }),
            "Truncated",
            &["padding before the tensor data"],
        ),
    ]
}

#[test]
fn base_image_is_valid() {
    let (b, m) = build(&base());
    let f = GgufFile::from_bytes(b).unwrap();
    assert_eq!(f.data_offset(), m.data as u64);
    assert_eq!(f.tensors().len(), 2);
    assert_eq!(f.tensor_bytes("output").unwrap(), &(32..66u8).collect::<Vec<_>>()[..]);
    assert_eq!(f.get_str_array("tokenizer.ggml.tokens").unwrap().unwrap(), ["a", "bc"]);
    // The writer produces the same image from the same content.
    let mut w = GgufWriter::new();
    w.add_meta("general.architecture", "llama").unwrap();
    w.set_alignment(32).unwrap();
    w.add_meta("tokenizer.ggml.tokens", vec!["a", "bc"]).unwrap();
    w.add_meta("some.flag", true).unwrap();
    w.add_tensor("tok_embd", &[4, 2], hearth_formats::GgmlType::F32).unwrap();
    w.add_tensor("output", &[32], hearth_formats::GgmlType::Q8_0).unwrap();
    let data: Vec<u8> = (0..96u8).collect();
    let mut out = Vec::new();
    w.write(&mut out, |t, sink| {
        std::io::Write::write_all(sink, &data[t.offset as usize..(t.offset + t.n_bytes) as usize])
    })
    .unwrap();
    // Identical except for the padding bytes, which the writer zeroes.
    let (b, _) = build(&base());
    assert_eq!(&out[..m.data + 32], &b[..m.data + 32]);
    assert_eq!(&out[m.data + 32..m.data + 66], &b[m.data + 32..m.data + 66]);
}

#[test]
fn allocation_tracker_sees_large_allocations() {
    // Guards the guard: if the wrapper were not installed, every peak below
    // would read as zero and the limit would prove nothing.
    let (v, peak) = peak_alloc(|| vec![1u8; 80 << 20]);
    assert_eq!(v.len(), 80 << 20);
    assert!(peak >= 80 << 20);
    let (_, peak) = peak_alloc(|| 1 + 1);
    assert_eq!(peak, 0);
}

#[test]
fn malformed_corpus_yields_specific_errors() {
    let cases = cases();
    assert!(cases.len() >= 30, "only {} cases", cases.len());
    let mut names = std::collections::HashSet::new();
    let mut worst = (0usize, "");
    let mut failures = Vec::new();
    let dump = std::env::var_os("HEARTH_FORMATS_DUMP").map(std::path::PathBuf::from);
    for (i, case) in cases.iter().enumerate() {
        assert!(names.insert(case.name), "duplicate case name {}", case.name);
        if let Some(dir) = &dump {
            // For comparing verdicts with llama.cpp's gguf.cpp.
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(dir.join(format!("{i:02}-{}.gguf", case.name.replace([' ', '/'], "_"))), &case.bytes).unwrap();
        }
        let bytes = case.bytes.clone();
        let (result, peak) = peak_alloc(move || GgufFile::from_bytes(bytes));
        let err = match result {
            Ok(f) => panic!("{}: parsed successfully: {f:?}", case.name),
            Err(e) => e,
        };
        let msg = err.to_string();
        println!("{:<40} {:<20} peak {:>6} B  {msg}", case.name, variant(&err), peak);
        if variant(&err) != case.variant {
            failures.push(format!("{}: expected {}, got {msg}", case.name, case.variant));
        }
        for m in case.mentions {
            if !msg.contains(m) {
                failures.push(format!("{}: message {msg:?} does not mention {m:?}", case.name));
            }
        }
        assert!(peak < ALLOC_LIMIT, "{}: allocated {peak} bytes at once", case.name);
        if peak > worst.0 {
            worst = (peak, case.name);
        }
    }
    println!("{} cases; largest single allocation {} bytes ({})", cases.len(), worst.0, worst.1);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn malformed_files_on_disk_fail_the_same_way() {
    // `open` goes through the memory map; the empty file takes another path.
    let dir = std::env::temp_dir().join(format!("hearth-malformed-gguf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for case in cases() {
        let path = dir.join("case.gguf");
        std::fs::write(&path, &case.bytes).unwrap();
        let err = GgufFile::open(&path).unwrap_err();
        assert_eq!(variant(&err), case.variant, "{}", case.name);
    }
    let err = GgufFile::open(dir.join("missing.gguf")).unwrap_err();
    assert_eq!(variant(&err), "Io");
    assert!(err.to_string().contains("missing.gguf"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Applies 1–3 random mutations: byte overwrites, extreme u64/u32 values at
/// random positions, truncation, insertion or deletion of a byte run.
fn mutate(rng: &mut Rng, mut b: Vec<u8>) -> Vec<u8> {
    const EXTREMES: [u64; 9] = [0, 1, 2, 3, 5, 1 << 31, 1 << 62, 1 << 63, u64::MAX];
    for _ in 0..rng.range(1, 3) {
        if b.is_empty() {
            break;
        }
        let at = rng.below(b.len() as u64) as usize;
        match rng.below(7) {
            0 | 1 => b[at] = rng.next_u64() as u8,
            2 => b[at] ^= 1 << rng.below(8),
            3 if at + 8 <= b.len() => b[at..at + 8].copy_from_slice(&rng.pick(&EXTREMES).to_le_bytes()),
            4 if at + 4 <= b.len() => b[at..at + 4].copy_from_slice(&(*rng.pick(&EXTREMES) as u32).to_le_bytes()),
            5 => b.truncate(at),
            _ => {
                if rng.chance(1, 2) {
                    let n = rng.range(1, 16) as usize;
                    let ins = rng.bytes(n);
                    b.splice(at..at, ins);
                } else {
                    let end = (at + rng.range(1, 16) as usize).min(b.len());
                    b.drain(at..end);
                }
            }
        }
    }
    b
}

#[test]
fn ten_thousand_random_mutations_never_panic() {
    // A third seed whose only tensor is empty: truncations then produce
    // files whose data section would start past the end.
    let empty_tensor = {
        let mut w = GgufWriter::new();
        w.add_meta("general.architecture", "x").unwrap();
        w.add_tensor("empty", &[0, 4], hearth_formats::GgmlType::Q4_K).unwrap();
        w.write_to_vec(&[[0u8; 0]]).unwrap()
    };
    let seeds = [
        build(&base()).0,
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/pygguf.gguf")).unwrap(),
        empty_tensor,
    ];
    let mut rng = Rng::new(0xbad_f11e);
    let (mut ok, mut worst) = (0, 0usize);
    for i in 0..10_000 {
        let bytes = mutate(&mut rng, seeds[i % seeds.len()].clone());
        let copy = bytes.clone();
        let (result, peak) = peak_alloc(move || GgufFile::from_bytes(copy));
        worst = worst.max(peak);
        assert!(peak < ALLOC_LIMIT, "mutation {i}: allocated {peak} bytes at once");
        let Ok(f) = result else { continue };
        ok += 1;
        // Whatever parses must be usable: every accessor, every tensor's
        // bytes, and a write-back that reads back the same.
        for (k, _) in f.metadata() {
            let _ = (f.get_str(k), f.get_u32(k), f.get_u64(k), f.get_f32(k), f.get_bool(k), f.get_str_array(k));
        }
        let mut total = 0usize;
        for t in f.tensors() {
            total += f.tensor_data(t).len();
            assert_eq!(t.ty.row_bytes(t.n_elements()), Some(t.n_bytes));
            let _ = (t.row_len(), t.n_rows());
        }
        assert!(total <= bytes.len());
        let w = GgufWriter::from_gguf(&f).unwrap_or_else(|e| panic!("mutation {i}: accepted but not writable: {e}"));
        let data: Vec<&[u8]> = f.tensors().iter().map(|t| f.tensor_data(t)).collect();
        let again = GgufFile::from_bytes(w.write_to_vec(&data).unwrap()).unwrap();
        assert_eq!(again.metadata().len(), f.metadata().len());
        for (a, b) in again.tensors().iter().zip(f.tensors()) {
            assert_eq!((&a.name, &a.dims, a.ty), (&b.name, &b.dims, b.ty));
            assert_eq!(again.tensor_data(a), f.tensor_data(b));
        }
    }
    println!("10000 mutations: {ok} still parsed; largest single allocation {worst} bytes");
    // The mutations must not be so destructive that nothing parses, nor so
    // mild that everything does.
    assert!(ok > 100 && ok < 9_000, "{ok} of 10000 mutations parsed");
}
