//! safetensors files from the reference Python writer, random valid files,
//! and sharded checkpoints (index + shards) including hostile indexes.

mod common;

use common::{st_image, Rng};
use hearth_formats::safetensors::{Dtype, SafetensorsFile, SafetensorsModel, ShardedError, INDEX_FILE};
use hearth_formats::{SafetensorsError, WeightFileError};
use std::path::PathBuf;

fn le_f32(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

#[test]
fn reference_writer_file_reads() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/pysafetensors.safetensors");
    let f = SafetensorsFile::open(&path).unwrap();
    assert_eq!(f.get_metadata("format"), Some("np"));
    assert_eq!(f.get_metadata("note"), Some("ünïcode"));
    assert_eq!(f.tensors().len(), 11);
    let t = |n: &str| f.tensor(n).unwrap();
    assert_eq!((t("f32").dtype, t("f32").shape.as_slice()), (Dtype::F32, &[2u64, 3][..]));
    assert_eq!(le_f32(f.tensor_bytes("f32").unwrap()), [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    let f64s: Vec<f64> = f.tensor_bytes("f64").unwrap().chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect();
    assert_eq!(f64s, [1.0, -2.0]);
    let f16s: Vec<f32> = f
        .tensor_bytes("f16")
        .unwrap()
        .chunks_exact(2)
        .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
        .collect();
    assert_eq!(f16s, [0.5, 1.5, -3.0]);
    assert_eq!(f.tensor_bytes("i64").unwrap(), (-(1i64 << 40)).to_le_bytes());
    assert_eq!((t("i32").dtype, t("i32").shape.as_slice()), (Dtype::I32, &[2u64, 1][..]));
    assert_eq!(f.tensor_bytes("i16").unwrap(), [0xf9, 0xff, 7, 0]);
    assert_eq!(f.tensor_bytes("i8").unwrap(), [0x80, 0x7f]);
    assert_eq!(f.tensor_bytes("u8").unwrap(), [255]);
    assert_eq!((t("bool").dtype, f.tensor_bytes("bool").unwrap()), (Dtype::BOOL, &[1u8, 0, 1][..]));
    assert_eq!((t("empty").shape.as_slice(), t("empty").n_bytes()), (&[0u64, 4][..], 0));
    assert_eq!(t("scalar").shape, Vec::<u64>::new());
    assert_eq!(le_f32(f.tensor_bytes("scalar").unwrap()), [3.0]);
}

#[test]
fn random_valid_files_read_back() {
    let mut rng = Rng::new(77);
    for case in 0..500 {
        let n = rng.below(6) as usize;
        let mut tensors = Vec::new();
        for i in 0..n {
            let dtype = *rng.pick(&Dtype::ALL);
            let shape: Vec<u64> = (0..rng.below(4)).map(|_| rng.below(4)).collect();
            let n_bytes = shape.iter().product::<u64>() as usize * dtype.size();
            tensors.push((format!("{}{i}", rng.string(6)), dtype, shape, rng.bytes(n_bytes)));
        }
        let meta: Vec<(String, String)> = (0..rng.below(3)).map(|i| (format!("{}{i}", rng.string(4)), rng.string(8))).collect();
        let spec: Vec<(&str, &str, &[u64], Vec<u8>)> =
            tensors.iter().map(|(n, d, s, b)| (n.as_str(), d.name(), s.as_slice(), b.clone())).collect();
        let meta_refs: Vec<(&str, &str)> = meta.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let f = SafetensorsFile::from_bytes(st_image(&spec, &meta_refs)).unwrap_or_else(|e| panic!("case {case}: {e}"));
        assert_eq!(f.tensors().len(), n);
        for (name, dtype, shape, bytes) in &tensors {
            let info = f.tensor(name).unwrap();
            assert_eq!((&info.dtype, &info.shape), (dtype, shape));
            assert_eq!(f.tensor_data(info), bytes.as_slice());
        }
        for (k, v) in &meta {
            assert_eq!(f.get_metadata(k), Some(v.as_str()));
        }
    }
}

// ---- sharded checkpoints ----------------------------------------------------

/// A scratch folder, removed on drop when `owned`.
struct Dir(PathBuf, bool);

impl Dir {
    fn new(name: &str) -> Dir {
        let p = std::env::temp_dir().join(format!("hearth-sharded-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Dir(p, true)
    }

    /// A sub-folder, removed with its parent.
    fn sub(&self, name: &str) -> Dir {
        let p = self.0.join(name);
        std::fs::create_dir_all(&p).unwrap();
        Dir(p, false)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.0.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn index(&self, weight_map: &[(&str, &str)]) -> PathBuf {
        let entries: Vec<String> =
            weight_map.iter().map(|(t, s)| format!("{}:{}", common::json_str(t), common::json_str(s))).collect();
        let json = format!("{{\"metadata\":{{\"total_size\":40}},\"weight_map\":{{{}}}}}", entries.join(","));
        self.write(INDEX_FILE, json.as_bytes())
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        if self.1 {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

const S1: &str = "model-00001-of-00002.safetensors";
const S2: &str = "model-00002-of-00002.safetensors";

/// Two shards: S1 holds `embed` and `l0.w`; S2 holds `l1.w` and `norm`.
fn two_shards(d: &Dir) {
    d.write(S1, &st_image(&[("embed", "F32", &[2, 2], vec![1; 16]), ("l0.w", "F16", &[2], vec![2; 4])], &[]));
    d.write(S2, &st_image(&[("l1.w", "BF16", &[3], vec![3; 6]), ("norm", "F32", &[1], vec![4; 4])], &[]));
}

const MAP: [(&str, &str); 4] = [("embed", S1), ("l0.w", S1), ("l1.w", S2), ("norm", S2)];

#[test]
fn sharded_checkpoint_gives_one_lookup() {
    let d = Dir::new("ok");
    two_shards(&d);
    let index = d.index(&MAP);
    for opened in [SafetensorsModel::open(&d.0).unwrap(), SafetensorsModel::open(&index).unwrap()] {
        assert_eq!(opened.n_tensors(), 4);
        assert_eq!(opened.shards().len(), 2);
        let t = opened.tensor("l1.w").unwrap();
        assert_eq!((t.shard, t.info.dtype, t.data()), (S2, Dtype::BF16, &[3u8; 6][..]));
        assert_eq!(opened.tensor_bytes("embed"), Some(&[1u8; 16][..]));
        assert!(opened.tensor("missing").is_none());
        let mut names: Vec<&str> = opened.tensors().map(|t| t.info.name.as_str()).collect();
        names.sort();
        assert_eq!(names, ["embed", "l0.w", "l1.w", "norm"]);
    }
}

#[test]
fn single_file_checkpoints_open_too() {
    let d = Dir::new("single");
    d.write("model.safetensors", &st_image(&[("w", "I8", &[2], vec![5, 6])], &[]));
    let m = SafetensorsModel::open(&d.0).unwrap();
    assert_eq!(m.tensor_bytes("w"), Some(&[5u8, 6][..]));
    let m = SafetensorsModel::open(d.0.join("model.safetensors")).unwrap();
    assert_eq!(m.n_tensors(), 1);
    let empty = Dir::new("empty");
    assert!(matches!(SafetensorsModel::open(&empty.0), Err(ShardedError::NoWeights { .. })));
}

fn open_err(d: &Dir) -> ShardedError {
    SafetensorsModel::open(&d.0).unwrap_err()
}

#[test]
fn hostile_indexes_are_refused() {
    // Each case: a folder set up by `setup`, the expected error, and words
    // the message must contain.
    type Setup = fn(&Dir);
    type Check = fn(&ShardedError) -> bool;
    let cases: Vec<(&str, Setup, Check, &[&str])> = vec![
        (
            "missing shard file",
            |d| {
                two_shards(d);
                d.index(&[("embed", S1), ("extra", "model-00003-of-00003.safetensors")]);
            },
            |e| matches!(e, ShardedError::MissingShard { .. }),
            &["extra", "model-00003-of-00003.safetensors", "does not exist"],
        ),
        (
            "parent-directory escape",
            |d| {
                two_shards(d);
                // The target exists, so only the path check can stop it.
                d.write("../outside.safetensors", &st_image(&[("x", "U8", &[1], vec![1])], &[]));
                d.index(&[("x", "../outside.safetensors")]);
            },
            |e| matches!(e, ShardedError::UnsafeShardPath { .. }),
            &["x", "../outside.safetensors", "inside the model folder"],
        ),
        (
            "nested escape",
            |d| {
                two_shards(d);
                d.index(&[("embed", S1), ("x", "sub/../../outside.safetensors")]);
            },
            |e| matches!(e, ShardedError::UnsafeShardPath { .. }),
            &["sub/../../outside.safetensors"],
        ),
        (
            "absolute path",
            |d| {
                two_shards(d);
                let abs = d.0.join(S1);
                let abs: &'static str = Box::leak(abs.to_string_lossy().into_owned().into_boxed_str());
                d.index(&[("embed", abs)]);
            },
            |e| matches!(e, ShardedError::UnsafeShardPath { .. }),
            &["embed"],
        ),
        (
            "backslash escape",
            |d| {
                two_shards(d);
                d.index(&[("embed", "..\\model.safetensors")]);
            },
            |e| matches!(e, ShardedError::UnsafeShardPath { .. }),
            &["embed"],
        ),
        (
            "empty shard name",
            |d| {
                two_shards(d);
                d.index(&[("embed", "")]);
            },
            |e| matches!(e, ShardedError::UnsafeShardPath { .. }),
            &["embed"],
        ),
        (
            "pickle shard by name",
            |d| {
                two_shards(d);
                d.index(&[("embed", "pytorch_model-00001-of-00002.bin")]);
            },
            |e| matches!(e, ShardedError::Refused(WeightFileError::PickleRefused { .. })),
            &["pytorch_model-00001-of-00002.bin", "execute arbitrary code"],
        ),
        (
            "pickle shard by content",
            |d| {
                d.write(S1, b"PK\x03\x04 a torch zip");
                d.index(&[("embed", S1)]);
            },
            |e| matches!(e, ShardedError::Refused(WeightFileError::PickleRefused { .. })),
            &["zip archive"],
        ),
        (
            "malformed shard",
            |d| {
                two_shards(d);
                let mut bad = std::fs::read(d.0.join(S2)).unwrap();
                bad.truncate(bad.len() - 1);
                d.write(S2, &bad);
                d.index(&MAP);
            },
            |e| matches!(e, ShardedError::Shard { source: SafetensorsError::OffsetsOutOfRange { .. }, .. }),
            &[S2, "norm"],
        ),
        (
            "tensor mapped to the wrong shard",
            |d| {
                two_shards(d);
                d.index(&[("embed", S1), ("l0.w", S2), ("l1.w", S2)]);
            },
            |e| matches!(e, ShardedError::TensorNotInShard { .. }),
            &["l0.w", S2],
        ),
        (
            "tensor missing from every shard",
            |d| {
                two_shards(d);
                d.index(&[("embed", S1), ("ghost", S2)]);
            },
            |e| matches!(e, ShardedError::TensorNotInShard { .. }),
            &["ghost"],
        ),
        (
            "tensor in two shards",
            |d| {
                two_shards(d);
                d.write(S2, &st_image(&[("embed", "F32", &[1], vec![0; 4])], &[]));
                d.index(&[("embed", S1), ("l0.w", S1), ("x", S2)]);
            },
            |e| matches!(e, ShardedError::TensorInTwoShards { .. }),
            &["embed", S1, S2],
        ),
        (
            "duplicate weight_map key",
            |d| {
                two_shards(d);
                d.index(&[("embed", S1), ("embed", S2)]);
            },
            |e| matches!(e, ShardedError::DuplicateIndexKey { within: "weight_map", .. }),
            &["embed", "weight_map"],
        ),
        (
            "no weight_map",
            |d| {
                two_shards(d);
                d.write(INDEX_FILE, b"{\"metadata\":{}}");
            },
            |e| matches!(e, ShardedError::IndexShape { .. }),
            &["weight_map"],
        ),
        (
            "weight_map value not a string",
            |d| {
                two_shards(d);
                d.write(INDEX_FILE, b"{\"weight_map\":{\"embed\":1}}");
            },
            |e| matches!(e, ShardedError::IndexShape { .. }),
            &["embed", "a number"],
        ),
        (
            "index not JSON",
            |d| {
                two_shards(d);
                d.write(INDEX_FILE, b"{\"weight_map\":");
            },
            |e| matches!(e, ShardedError::IndexJson { .. }),
            &[INDEX_FILE, "line 1"],
        ),
        (
            "index not UTF-8",
            |d| {
                two_shards(d);
                d.write(INDEX_FILE, b"{\"weight_map\":{\"\xff\":\"a\"}}");
            },
            |e| matches!(e, ShardedError::IndexNotUtf8 { offset: 16, .. }),
            &["UTF-8", "byte 16"],
        ),
    ];
    for (i, (name, setup, check, mentions)) in cases.into_iter().enumerate() {
        // The model sits one level down so `../` escapes stay in scratch space.
        let d = Dir::new(&format!("case{i}"));
        let model = d.sub("model");
        setup(&model);
        let e = open_err(&model);
        let msg = e.to_string();
        println!("{name:<34} {msg}");
        assert!(check(&e), "{name}: unexpected error {e:?}");
        for m in mentions {
            assert!(msg.contains(m), "{name}: {msg:?} does not mention {m:?}");
        }
    }
}

#[test]
fn oversized_index_is_refused_before_reading() {
    let d = Dir::new("big");
    let f = std::fs::File::create(d.0.join(INDEX_FILE)).unwrap();
    // A sparse file: no disk space, but its length is over the cap.
    f.set_len(hearth_formats::safetensors::MAX_HEADER_LEN + 1).unwrap();
    assert!(matches!(open_err(&d), ShardedError::IndexTooLarge { .. }));
}
