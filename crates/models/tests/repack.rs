//! Load-time repacking of mapped weights (`Weight::repack`): the packed copy
//! is the kernels' x8 layout of exactly the file's rows, token lookups
//! (`dequantize_row`) are unchanged, `bytes()` still returns the file's
//! bytes, and in-memory (owned) images are left alone.

use hearth_formats::{GgmlType, GgufFile, GgufWriter};
use hearth_kernels::repack;
use hearth_models::weights::TensorSource;
use std::sync::Arc;

/// A GGUF with one `rows` x `cols` matrix of `ty` (pseudo-random finite
/// blocks) and a small F32 vector after it (so the matrix's pages border
/// another tensor).
fn image(ty: GgmlType, rows: usize, cols: usize) -> (GgufWriter, Vec<Vec<u8>>) {
    let mut w = GgufWriter::new();
    w.add_tensor("m.weight", &[cols as u64, rows as u64], ty).unwrap();
    w.add_tensor("v.weight", &[8], GgmlType::F32).unwrap();
    let mut x = 0x1234_5678u32;
    let vals: Vec<f32> = (0..rows * cols)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x % 2001) as f32 / 1000.0 - 1.0
        })
        .collect();
    let rb = hearth_kernels::row_bytes(ty, cols);
    let mut m = vec![0u8; rows * rb];
    for r in 0..rows {
        hearth_kernels::quantize_row_ref(ty, &vals[r * cols..(r + 1) * cols], &mut m[r * rb..(r + 1) * rb]);
    }
    let v: Vec<u8> = (0..8).flat_map(|i| (i as f32).to_le_bytes()).collect();
    (w, vec![m, v])
}

#[test]
fn mapped_weights_repack_without_changing_what_they_read() {
    let dir = std::env::temp_dir().join(format!("hearth-repack-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (ty, rows, cols) in [(GgmlType::Q4_0, 13, 64), (GgmlType::Q5_0, 24, 96), (GgmlType::Q8_0, 9, 32), (GgmlType::Q4_K, 8, 256)] {
        let (w, data) = image(ty, rows, cols);
        let path = dir.join(format!("{ty}.gguf"));
        w.write_to_path_with_data(&path, &data).unwrap();
        let file = Arc::new(GgufFile::open(&path).unwrap());
        assert!(file.is_mapped());
        let src = TensorSource::new(Arc::clone(&file));
        let orig = src.matrix("m.weight", rows, cols).unwrap();
        let mut packed = orig.clone();
        packed.repack();
        let rb = hearth_kernels::row_bytes(ty, cols);
        assert_eq!(packed.bytes(), &data[0][..], "{ty}: bytes() is still the file's");
        let expect_packed = repack::worth_packing(ty) && std::env::var_os("HEARTH_NO_REPACK").is_none();
        assert_eq!(packed.packed().is_some(), expect_packed, "{ty}");
        if let Some(p) = packed.packed() {
            let mut want = vec![0u8; repack::packed_bytes(ty, cols, rows)];
            repack::pack(ty, cols, &data[0], rows, &mut want);
            assert_eq!(p, &want[..], "{ty}");
        }
        let (mut a, mut b) = (vec![0f32; cols], vec![0f32; cols]);
        for r in 0..rows {
            orig.dequantize_row(r, &mut a);
            packed.dequantize_row(r, &mut b);
            assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()), "{ty} row {r}");
            assert_eq!(packed.row(r), &data[0][r * rb..(r + 1) * rb]);
        }
        // The neighbouring tensor still reads correctly after its pages may
        // have been released.
        assert_eq!(src.vector("v.weight", 8).unwrap(), (0..8).map(|i| i as f32).collect::<Vec<_>>());
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn owned_images_are_not_repacked() {
    let (w, data) = image(GgmlType::Q8_0, 16, 64);
    let bytes = w.write_to_vec(&data).unwrap();
    let file = Arc::new(GgufFile::from_bytes(bytes).unwrap());
    assert!(!file.is_mapped());
    let src = TensorSource::new(file);
    let mut m = src.matrix("m.weight", 16, 64).unwrap();
    m.repack();
    // The image is the only copy of the bytes: a packed copy would double
    // the memory, and its pages must never be released.
    assert!(m.packed().is_none());
    assert_eq!(m.bytes(), &data[0][..]);
}
