//! Deciding whether a weight file may be opened at all.
//!
//! PyTorch's `.bin`/`.pt`/`.pth`/`.ckpt` checkpoints and `.pkl` files are
//! Python pickles (bare, or inside a zip archive since PyTorch 1.6).
//! Unpickling runs arbitrary code chosen by whoever made the file, so Hearth
//! never loads them — not even "just to look". [`check_weight_file`] refuses
//! them by extension, without touching the file, and refuses any other file
//! whose first bytes are a pickle protocol 2+ header (`0x80 0x02..=0x05`) or a
//! zip local-file header (`PK\x03\x04`, also `PK\x05\x06` for an empty
//! archive), whatever it is called.
//!
//! Deliberately absent: any attempt to parse pickles "safely" (restricted
//! unpicklers have a long record of bypasses), detection of protocol 0/1
//! pickles without a pickle extension (their first byte is an ordinary ASCII
//! opcode and cannot be told apart from text), and exceptions for old
//! GGML-era `.bin` files (that format is not supported either).

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Extensions of pickle-based checkpoints, compared case-insensitively.
pub const PICKLE_EXTENSIONS: &[&str] = &["bin", "pt", "pth", "ckpt", "pkl", "pickle"];

/// What a weight file was recognised as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightFormat {
    Gguf,
    Safetensors,
}

/// Why a file was judged to be a pickle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PickleEvidence {
    /// The file name ends in a pickle checkpoint extension.
    Extension(String),
    /// The file starts with a pickle protocol header.
    PickleHeader { protocol: u8 },
    /// The file is a zip archive (PyTorch's checkpoint container).
    ZipArchive,
}

impl fmt::Display for PickleEvidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PickleEvidence::Extension(e) => write!(f, "its .{e} extension marks a PyTorch/pickle checkpoint"),
            PickleEvidence::PickleHeader { protocol } => write!(f, "it starts with a pickle protocol {protocol} header"),
            PickleEvidence::ZipArchive => f.write_str("it is a zip archive, the container of PyTorch checkpoints"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WeightFileError {
    #[error(
        "refusing to load {path}: {evidence}. Pickle-based checkpoints (.bin, .pt, .pth, .ckpt, .pkl) can \
         execute arbitrary code when loaded, so Hearth never opens them. Use the model's .safetensors or \
         GGUF weights instead (most Hugging Face repositories publish safetensors; convert elsewhere, with \
         a tool you trust, if they do not)."
    )]
    PickleRefused { path: PathBuf, evidence: PickleEvidence },
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is neither GGUF nor safetensors (first bytes {head:02x?})")]
    Unrecognized { path: PathBuf, head: Vec<u8> },
}

/// Refuses pickle-based checkpoints (see the module docs) and recognises
/// GGUF and safetensors files by their first bytes. Reads at most 9 bytes;
/// a refusal by extension reads nothing.
pub fn check_weight_file(path: impl AsRef<Path>) -> Result<WeightFormat, WeightFileError> {
    let path = path.as_ref();
    if let Some(ext) = pickle_extension(path) {
        return Err(WeightFileError::PickleRefused { path: path.to_path_buf(), evidence: PickleEvidence::Extension(ext) });
    }
    let io = |source| WeightFileError::Io { path: path.to_path_buf(), source };
    let mut head = Vec::with_capacity(9);
    std::fs::File::open(path).map_err(io)?.take(9).read_to_end(&mut head).map_err(io)?;
    sniff(&head).map_err(|e| match e {
        Sniffed::Pickle(evidence) => WeightFileError::PickleRefused { path: path.to_path_buf(), evidence },
        Sniffed::Unknown => WeightFileError::Unrecognized { path: path.to_path_buf(), head },
    })
}

/// The pickle extension of `path`, lower-cased, if it has one.
pub fn pickle_extension(path: &Path) -> Option<String> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    PICKLE_EXTENSIONS.contains(&ext.as_str()).then_some(ext)
}

enum Sniffed {
    Pickle(PickleEvidence),
    Unknown,
}

fn sniff(head: &[u8]) -> Result<WeightFormat, Sniffed> {
    match head {
        // pickle PROTO opcode (0x80) and a protocol number; 5 is the newest.
        [0x80, p @ 2..=5, ..] => Err(Sniffed::Pickle(PickleEvidence::PickleHeader { protocol: *p })),
        [b'P', b'K', 3, 4, ..] | [b'P', b'K', 5, 6, ..] => Err(Sniffed::Pickle(PickleEvidence::ZipArchive)),
        [b'G', b'G', b'U', b'F', ..] => Ok(WeightFormat::Gguf),
        // safetensors: an 8-byte little-endian header length within the
        // reference limit, then the JSON object's opening brace.
        [l0, l1, l2, l3, l4, l5, l6, l7, b'{', ..]
            if u64::from_le_bytes([*l0, *l1, *l2, *l3, *l4, *l5, *l6, *l7]) <= crate::safetensors::MAX_HEADER_LEN =>
        {
            Ok(WeightFormat::Safetensors)
        }
        _ => Err(Sniffed::Unknown),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("hearth-weights-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn pickle_extensions_are_refused_without_reading() {
        // The files do not exist: the refusal must not depend on I/O.
        for name in ["pytorch_model.bin", "model.PT", "x.pth", "sd.ckpt", "obj.pkl", "a.b.Pickle"] {
            let e = check_weight_file(Path::new("/nonexistent").join(name)).unwrap_err();
            let WeightFileError::PickleRefused { evidence: PickleEvidence::Extension(_), .. } = &e else {
                panic!("{name}: {e}")
            };
            let msg = e.to_string();
            assert!(msg.contains("execute arbitrary code") && msg.contains("safetensors") && msg.contains("GGUF"), "{msg}");
        }
    }

    #[test]
    fn content_is_sniffed_whatever_the_name() {
        let dir = scratch();
        let cases: &[(&str, &[u8], Result<WeightFormat, &str>)] = &[
            ("p2.safetensors", b"\x80\x02}q\x00(X", Err("pickle protocol 2")),
            ("p5.gguf", b"\x80\x05\x95\x00", Err("pickle protocol 5")),
            ("zip.safetensors", b"PK\x03\x04\x14\x00\x00\x00", Err("zip archive")),
            ("empty-zip.model", b"PK\x05\x06\x00\x00", Err("zip archive")),
            ("ok.gguf", b"GGUF\x03\x00\x00\x00", Ok(WeightFormat::Gguf)),
            ("ok.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":1}", Ok(WeightFormat::Safetensors)),
            ("text.txt", b"hello world", Err("neither GGUF nor safetensors")),
            ("short", b"GG", Err("neither GGUF nor safetensors")),
            ("huge-len.safetensors", b"\xff\xff\xff\xff\xff\xff\xff\xff{", Err("neither GGUF nor safetensors")),
        ];
        for (name, bytes, want) in cases {
            let path = dir.join(name);
            std::fs::write(&path, bytes).unwrap();
            match (check_weight_file(&path), want) {
                (Ok(got), Ok(w)) => assert_eq!(got, *w, "{name}"),
                (Err(e), Err(fragment)) => assert!(e.to_string().contains(fragment), "{name}: {e}"),
                (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
        let e = check_weight_file(dir.join("missing.gguf")).unwrap_err();
        assert!(matches!(e, WeightFileError::Io { .. }));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
