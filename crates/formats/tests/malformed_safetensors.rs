//! Hostile safetensors files: each case must fail with its specific
//! [`SafetensorsError`] variant, a message naming the field, no panic, and
//! no single allocation above [`common::ALLOC_LIMIT`]. Then 10,000 random
//! mutations, none of which may panic.

mod common;

use common::{peak_alloc, st_image, st_raw, Rng, ALLOC_LIMIT};
use hearth_formats::safetensors::{Dtype, SafetensorsError, SafetensorsFile, MAX_HEADER_LEN};

#[global_allocator]
static ALLOC: common::PeakAlloc = common::PeakAlloc;

/// `a`: F32 [2, 2] at [0, 16); `b`: I8 [3] at [16, 19).
fn base() -> Vec<u8> {
    st_image(
        &[("a", "F32", &[2, 2], (0..16).collect()), ("b", "I8", &[3], vec![0xff, 0, 1])],
        &[("format", "pt")],
    )
}

const A: &str = r#""a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}"#;
const B: &str = r#""b":{"dtype":"I8","shape":[3],"data_offsets":[16,19]}"#;

/// The base layout with entry `b` replaced by `b_entry` (verbatim JSON).
fn with_b(b_entry: &str) -> Vec<u8> {
    st_raw(&format!("{{{A},{b_entry}}}"), &data(19))
}

fn data(n: usize) -> Vec<u8> {
    (0..n as u8).collect()
}

fn variant(e: &SafetensorsError) -> &'static str {
    match e {
        SafetensorsError::Io { .. } => "Io",
        SafetensorsError::TooShort { .. } => "TooShort",
        SafetensorsError::HeaderTooLarge { .. } => "HeaderTooLarge",
        SafetensorsError::HeaderPastEnd { .. } => "HeaderPastEnd",
        SafetensorsError::HeaderNotUtf8 { .. } => "HeaderNotUtf8",
        SafetensorsError::InvalidJson { .. } => "InvalidJson",
        SafetensorsError::HeaderNotObject { .. } => "HeaderNotObject",
        SafetensorsError::DuplicateTensor { .. } => "DuplicateTensor",
        SafetensorsError::MetadataNotObject { .. } => "MetadataNotObject",
        SafetensorsError::DuplicateMetadataKey { .. } => "DuplicateMetadataKey",
        SafetensorsError::MetadataNotString { .. } => "MetadataNotString",
        SafetensorsError::TensorNotObject { .. } => "TensorNotObject",
        SafetensorsError::DuplicateField { .. } => "DuplicateField",
        SafetensorsError::MissingField { .. } => "MissingField",
        SafetensorsError::WrongFieldType { .. } => "WrongFieldType",
        SafetensorsError::NegativeNumber { .. } => "NegativeNumber",
        SafetensorsError::NotAnInteger { .. } => "NotAnInteger",
        SafetensorsError::UnknownDtype { .. } => "UnknownDtype",
        SafetensorsError::UnsupportedDtype { .. } => "UnsupportedDtype",
        SafetensorsError::BadOffsetCount { .. } => "BadOffsetCount",
        SafetensorsError::ShapeOverflow { .. } => "ShapeOverflow",
        SafetensorsError::ReversedOffsets { .. } => "ReversedOffsets",
        SafetensorsError::SizeMismatch { .. } => "SizeMismatch",
        SafetensorsError::OffsetsOutOfRange { .. } => "OffsetsOutOfRange",
        SafetensorsError::OverlappingTensors { .. } => "OverlappingTensors",
        SafetensorsError::Gap { .. } => "Gap",
        SafetensorsError::TrailingData { .. } => "TrailingData",
    }
}

struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    variant: &'static str,
    mentions: &'static [&'static str],
}

/// `{"a":1}` with the `a` replaced by a lone 0xff byte (file offset 10).
fn not_utf8() -> Vec<u8> {
    let mut b = st_raw("{\"a\":1}", &[]);
    b[10] = 0xff;
    b
}

fn set_len(mut b: Vec<u8>, len: u64) -> Vec<u8> {
    b[..8].copy_from_slice(&len.to_le_bytes());
    b
}

fn cases() -> Vec<Case> {
    let b = base();
    let c = |name, bytes, variant, mentions| Case { name, bytes, variant, mentions };
    vec![
        // --- framing ------------------------------------------------------
        c("empty file", vec![], "TooShort", &["0 bytes"]),
        c("7-byte file", vec![1; 7], "TooShort", &["7 bytes"]),
        c("header length 2^64-1", set_len(b.clone(), u64::MAX), "HeaderTooLarge", &["18446744073709551615"]),
        c("header length just over the cap", set_len(b.clone(), MAX_HEADER_LEN + 1), "HeaderTooLarge", &["100000001"]),
        c("header length beyond the file", set_len(b.clone(), 4096), "HeaderPastEnd", &["4096"]),
        c("header cut short", set_len(b.clone(), 40), "InvalidJson", &["line 1"]),
        c("header not UTF-8", not_utf8(), "HeaderNotUtf8", &["UTF-8", "offset 10"]),
        c("header is an array", st_raw("[1,2]", &[]), "HeaderNotObject", &["an array"]),
        c("header is a string", st_raw("\"{}\"", &[]), "HeaderNotObject", &["a string"]),
        c("header padded with NULs", st_raw("{}\0\0\0\0\0\0", &[]), "InvalidJson", &["trailing"]),
        c("JSON nesting bomb", st_raw(&format!("{{\"a\":{}}}", "[".repeat(5000)), &[]), "InvalidJson", &["recursion limit"]),
        // --- duplicates -----------------------------------------------------
        c("duplicate tensor names", st_raw(&format!("{{{A},{}}}", A), &data(16)), "DuplicateTensor", &["\"a\""]),
        c("two __metadata__ objects", st_raw(&format!("{{\"__metadata__\":{{}},{A},\"__metadata__\":{{}}}}"), &data(16)), "DuplicateTensor", &["__metadata__"]),
        c("duplicate metadata key", st_raw(&format!("{{\"__metadata__\":{{\"k\":\"1\",\"k\":\"2\"}},{A}}}"), &data(16)), "DuplicateMetadataKey", &["\"k\""]),
        c("duplicate field in a tensor", with_b(r#""b":{"dtype":"I8","shape":[3],"data_offsets":[16,19],"dtype":"F16"}"#), "DuplicateField", &["\"b\"", "dtype"]),
        // --- metadata -------------------------------------------------------
        c("metadata value not a string", st_raw(&format!("{{\"__metadata__\":{{\"n\":5}},{A}}}"), &data(16)), "MetadataNotString", &["\"n\"", "a number"]),
        c("metadata is an array", st_raw(&format!("{{\"__metadata__\":[\"x\"],{A}}}"), &data(16)), "MetadataNotObject", &["__metadata__", "an array"]),
        // --- tensor entries -------------------------------------------------
        c("tensor entry not an object", with_b(r#""b":[16,19]"#), "TensorNotObject", &["\"b\"", "an array"]),
        c("missing dtype", with_b(r#""b":{"shape":[3],"data_offsets":[16,19]}"#), "MissingField", &["\"b\"", "dtype"]),
        c("missing shape", with_b(r#""b":{"dtype":"I8","data_offsets":[16,19]}"#), "MissingField", &["\"b\"", "shape"]),
        c("missing data_offsets", with_b(r#""b":{"dtype":"I8","shape":[3]}"#), "MissingField", &["\"b\"", "data_offsets"]),
        c("dtype not a string", with_b(r#""b":{"dtype":8,"shape":[3],"data_offsets":[16,19]}"#), "WrongFieldType", &["\"b\"", "dtype", "a number"]),
        c("shape not an array", with_b(r#""b":{"dtype":"I8","shape":3,"data_offsets":[16,19]}"#), "WrongFieldType", &["\"b\"", "shape"]),
        c("shape entry a string", with_b(r#""b":{"dtype":"I8","shape":["3"],"data_offsets":[16,19]}"#), "WrongFieldType", &["\"b\"", "shape[0]", "a string"]),
        c("data_offsets an object", with_b(r#""b":{"dtype":"I8","shape":[3],"data_offsets":{"0":16}}"#), "WrongFieldType", &["\"b\"", "data_offsets"]),
        c("negative dimension", with_b(r#""b":{"dtype":"I8","shape":[-3],"data_offsets":[16,19]}"#), "NegativeNumber", &["\"b\"", "shape[0]", "-3"]),
        c("negative offset", with_b(r#""b":{"dtype":"I8","shape":[3],"data_offsets":[-1,19]}"#), "NegativeNumber", &["\"b\"", "data_offsets[0]", "-1"]),
        c("fractional dimension", with_b(r#""b":{"dtype":"I8","shape":[1.5,2],"data_offsets":[16,19]}"#), "NotAnInteger", &["\"b\"", "shape[0]", "1.5"]),
        c("offset beyond u64", with_b(r#""b":{"dtype":"I8","shape":[3],"data_offsets":[16,18446744073709551616]}"#), "NotAnInteger", &["\"b\"", "data_offsets[1]"]),
        c("unknown dtype", with_b(r#""b":{"dtype":"F128","shape":[3],"data_offsets":[16,19]}"#), "UnknownDtype", &["\"b\"", "F128"]),
        c("lower-case dtype", with_b(r#""b":{"dtype":"i8","shape":[3],"data_offsets":[16,19]}"#), "UnknownDtype", &["\"b\"", "i8"]),
        // Otherwise valid (the reference implementation accepts it).
        c("unsupported dtype U32", st_raw(&format!("{{{A},{}}}", r#""b":{"dtype":"U32","shape":[3],"data_offsets":[16,28]}"#), &data(28)), "UnsupportedDtype", &["\"b\"", "U32"]),
        c("unsupported dtype F8_E8M0", with_b(r#""b":{"dtype":"F8_E8M0","shape":[3],"data_offsets":[16,19]}"#), "UnsupportedDtype", &["\"b\"", "F8_E8M0"]),
        c("three data_offsets", with_b(r#""b":{"dtype":"I8","shape":[3],"data_offsets":[16,19,19]}"#), "BadOffsetCount", &["\"b\"", "3 entries"]),
        c("one data_offset", with_b(r#""b":{"dtype":"I8","shape":[3],"data_offsets":[16]}"#), "BadOffsetCount", &["\"b\"", "1 entries"]),
        // --- sizes and layout -----------------------------------------------
        c("shape product overflow", with_b(r#""b":{"dtype":"I8","shape":[4294967296,4294967296],"data_offsets":[16,19]}"#), "ShapeOverflow", &["\"b\""]),
        c("byte size overflow", with_b(r#""b":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[16,19]}"#), "ShapeOverflow", &["\"b\"", "F64"]),
        c("reversed offsets", with_b(r#""b":{"dtype":"I8","shape":[3],"data_offsets":[19,16]}"#), "ReversedOffsets", &["\"b\"", "[19, 16]"]),
        c("size differs from shape", with_b(r#""b":{"dtype":"I16","shape":[3],"data_offsets":[16,19]}"#), "SizeMismatch", &["\"b\"", "6 bytes", "span 3"]),
        c("offsets past the data", with_b(r#""b":{"dtype":"I8","shape":[3],"data_offsets":[17,20]}"#), "OffsetsOutOfRange", &["\"b\"", "19-byte"]),
        c("huge offsets past the data", with_b(r#""b":{"dtype":"I8","shape":[3],"data_offsets":[18446744073709551612,18446744073709551615]}"#), "OffsetsOutOfRange", &["\"b\""]),
        c("overlapping tensors", st_raw(&format!("{{{A},{}}}", r#""b":{"dtype":"I8","shape":[3],"data_offsets":[14,17]}"#), &data(17)), "OverlappingTensors", &["\"a\"", "\"b\""]),
        c("empty tensor inside another", st_raw(&format!("{{{A},{B},{}}}", r#""e":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}"#), &data(19)), "OverlappingTensors", &["\"a\"", "\"e\""]),
        c("gap between tensors", st_raw(&format!("{{{A},{}}}", r#""b":{"dtype":"I8","shape":[3],"data_offsets":[20,23]}"#), &data(23)), "Gap", &["\"b\"", "[16, 20)"]),
        c("gap at the start", st_raw(r#"{"b":{"dtype":"I8","shape":[3],"data_offsets":[2,5]}}"#, &data(5)), "Gap", &["\"b\"", "[0, 2)"]),
        c("trailing bytes", [b.clone(), vec![0; 5]].concat(), "TrailingData", &["[19, 24)"]),
        c("data but no tensors", st_raw("{}", &data(3)), "TrailingData", &["[0, 3)"]),
    ]
}

#[test]
fn base_image_is_valid() {
    let f = SafetensorsFile::from_bytes(base()).unwrap();
    assert_eq!(f.get_metadata("format"), Some("pt"));
    let a = f.tensor("a").unwrap();
    assert_eq!((a.dtype, a.shape.as_slice(), a.data_offsets), (Dtype::F32, &[2u64, 2][..], (0, 16)));
    assert_eq!(f.tensor_data(a), &data(16)[..]);
    assert_eq!(f.tensor_bytes("b"), Some(&[0xff, 0, 1][..]));
    assert_eq!(f.data_offset() % 8, 0);
    // The verbatim-header helper builds the same layout.
    let raw = SafetensorsFile::from_bytes(st_raw(&format!("{{{A},{B}}}"), &data(19))).unwrap();
    assert_eq!(raw.tensors().len(), 2);
}

#[test]
fn malformed_corpus_yields_specific_errors() {
    let cases = cases();
    assert!(cases.len() >= 20, "only {} cases", cases.len());
    let dump = std::env::var_os("HEARTH_FORMATS_DUMP").map(std::path::PathBuf::from);
    let mut names = std::collections::HashSet::new();
    let mut failures = Vec::new();
    let mut worst = (0usize, "");
    for (i, case) in cases.iter().enumerate() {
        assert!(names.insert(case.name), "duplicate case name {}", case.name);
        if let Some(dir) = &dump {
            // For comparing verdicts with the reference implementation.
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(dir.join(format!("{i:02}-{}.safetensors", case.name.replace(' ', "_"))), &case.bytes).unwrap();
        }
        let bytes = case.bytes.clone();
        let (result, peak) = peak_alloc(move || SafetensorsFile::from_bytes(bytes));
        let err = match result {
            Ok(f) => panic!("{}: parsed successfully: {f:?}", case.name),
            Err(e) => e,
        };
        let msg = err.to_string();
        println!("{:<32} {:<22} peak {:>6} B  {msg}", case.name, variant(&err), peak);
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
    let dir = std::env::temp_dir().join(format!("hearth-malformed-st-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("case.safetensors");
    for case in cases() {
        std::fs::write(&path, &case.bytes).unwrap();
        let err = SafetensorsFile::open(&path).unwrap_err();
        assert_eq!(variant(&err), case.variant, "{}", case.name);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn edge_cases_that_are_valid() {
    // No tensors at all; null metadata; zero-size and scalar tensors;
    // unknown fields ignored; whitespace around the JSON.
    for (header, data_len) in [
        ("{}", 0),
        ("  {\"__metadata__\": null}  \n\t", 0),
        (r#"{"e":{"dtype":"F32","shape":[0,3],"data_offsets":[0,0]},"s":{"dtype":"F64","shape":[],"data_offsets":[0,8]}}"#, 8),
        (r#"{"x":{"dtype":"BF16","shape":[2],"data_offsets":[0,4],"extra":{"anything":[1]}}}"#, 4),
        (r#"{"z":{"dtype":"BOOL","shape":[1],"data_offsets":[1,2]},"y":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}}"#, 2),
    ] {
        let f = SafetensorsFile::from_bytes(st_raw(header, &data(data_len)))
            .unwrap_or_else(|e| panic!("{header}: {e}"));
        let total: u64 = f.tensors().iter().map(|t| t.n_bytes()).sum();
        assert_eq!(total, data_len as u64);
    }
    let f = SafetensorsFile::from_bytes(st_raw(
        r#"{"z":{"dtype":"BOOL","shape":[1],"data_offsets":[1,2]},"y":{"dtype":"F8_E5M2","shape":[1],"data_offsets":[0,1]}}"#,
        &[7, 9],
    ))
    .unwrap();
    // Header order is kept; data follows the offsets.
    assert_eq!(f.tensors()[0].name, "z");
    assert_eq!(f.tensor_bytes("z"), Some(&[9u8][..]));
    assert_eq!(f.tensor("y").unwrap().dtype, Dtype::F8_E5M2);
}

fn mutate(rng: &mut Rng, mut b: Vec<u8>) -> Vec<u8> {
    const EXTREMES: [u64; 8] = [0, 1, 7, 8, 1 << 31, 1 << 63, u64::MAX, MAX_HEADER_LEN];
    for _ in 0..rng.range(1, 3) {
        if b.is_empty() {
            break;
        }
        let at = rng.below(b.len() as u64) as usize;
        match rng.below(8) {
            0 => b[at] = rng.next_u64() as u8,
            1 => b[at] ^= 1 << rng.below(8),
            // JSON-aware: swap a digit for another, so numbers change but
            // the header still parses more often than not.
            2 | 3 => {
                let digits: Vec<usize> = b.iter().enumerate().filter(|(_, c)| c.is_ascii_digit()).map(|(i, _)| i).collect();
                if !digits.is_empty() {
                    let i = *rng.pick(&digits);
                    b[i] = b'0' + rng.below(10) as u8;
                }
            }
            4 => {
                let n = 8.min(b.len());
                let v = rng.pick(&EXTREMES).to_le_bytes();
                b[..n].copy_from_slice(&v[..n]);
            }
            5 => b.truncate(at),
            6 => {
                let ins = rng.pick(&[&b"-"[..], b"1", b"0", b",", b"\"", b"[", b"]", b"e9", b".5", b"99999999999999999999"]).to_vec();
                b.splice(at..at, ins);
            }
            _ => {
                let end = (at + rng.range(1, 8) as usize).min(b.len());
                b.drain(at..end);
            }
        }
    }
    b
}

#[test]
fn ten_thousand_random_mutations_never_panic() {
    let seeds = [
        base(),
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/pysafetensors.safetensors")).unwrap(),
    ];
    let mut rng = Rng::new(0x5afe_7e45);
    let (mut ok, mut worst) = (0, 0usize);
    let mut kinds = std::collections::HashSet::new();
    for i in 0..10_000 {
        let bytes = mutate(&mut rng, seeds[i % seeds.len()].clone());
        let copy = bytes.clone();
        let (result, peak) = peak_alloc(move || SafetensorsFile::from_bytes(copy));
        worst = worst.max(peak);
        assert!(peak < ALLOC_LIMIT, "mutation {i}: allocated {peak} bytes at once");
        match result {
            Err(e) => {
                kinds.insert(variant(&e));
            }
            Ok(f) => {
                ok += 1;
                let mut total = 0u64;
                for t in f.tensors() {
                    assert_eq!(f.tensor_data(t).len() as u64, t.n_bytes());
                    assert_eq!(t.n_elements() * t.dtype.size() as u64, t.n_bytes());
                    total += t.n_bytes();
                }
                assert_eq!(total, bytes.len() as u64 - f.data_offset());
            }
        }
    }
    println!("10000 mutations: {ok} still parsed; {} distinct errors; largest single allocation {worst} bytes", kinds.len());
    assert!(ok > 100 && ok < 9_000, "{ok} of 10000 mutations parsed");
    // The mutations reach deep into validation, not just the JSON parser.
    assert!(kinds.len() >= 8, "only {kinds:?}");
}
