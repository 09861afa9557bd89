//! Prints a GGUF file's metadata (arrays summarised) and tensor table.
//! Usage: cargo run -p hearth-formats --example gguf_dump -- FILE.gguf
fn main() {
    let path = std::env::args().nth(1).expect("usage: gguf_dump FILE.gguf");
    let f = match hearth_formats::GgufFile::open(&path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    println!("{f:?}");
    for (k, v) in f.metadata() {
        match v {
            hearth_formats::MetaValue::Array(a) => println!("{k}: array[{}] of type {}", a.len(), a.elem_type_id()),
            hearth_formats::MetaValue::String(s) if s.chars().count() > 80 => {
                // Not floor_char_boundary: that needs Rust 1.91, the MSRV is 1.85.
                println!("{k}: {:?}...", s.chars().take(80).collect::<String>())
            }
            v => println!("{k}: {v:?}"),
        }
    }
    for t in f.tensors() {
        println!("{} {:?} {} off={} bytes={}", t.name, t.dims, t.ty, t.offset, t.n_bytes);
    }
}
