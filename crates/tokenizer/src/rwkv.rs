//! The RWKV "world" tokenizer (llama.cpp `llm_tokenizer_rwkv`): tokens are
//! stored escaped (`\n`, `\t`, `\r`, `\xHH`, `\\`), and text is covered by
//! the longest matching token, byte by byte.

use crate::ugm::Trie;
use crate::{TokenData, Tokenizer};

/// llama.cpp `llama_unescape_rwkv_token`.
pub(crate) fn unescape(escaped: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(escaped.len());
    let mut escaping = false;
    let mut hex_left = 0u8;
    let mut acc = 0u8;
    for &c in escaped.as_bytes() {
        if hex_left != 0 {
            let v = if c >= b'a' { c.wrapping_sub(b'a').wrapping_add(10) } else { c.wrapping_sub(b'0') };
            acc = acc.wrapping_shl(4).wrapping_add(v);
            hex_left -= 1;
            if hex_left == 0 {
                out.push(acc);
                acc = 0;
            }
            continue;
        }
        if escaping {
            match c {
                b't' => out.push(b'\t'),
                b'n' => out.push(b'\n'),
                b'r' => out.push(b'\r'),
                b'x' => hex_left = 2,
                other => out.push(other),
            }
            escaping = false;
            continue;
        }
        if c == b'\\' {
            escaping = true;
            continue;
        }
        out.push(c);
    }
    out
}

#[derive(Debug)]
pub(crate) struct Rwkv {
    trie: Trie,
}

impl Rwkv {
    pub fn new(tokens: &[TokenData]) -> Rwkv {
        let mut trie = Trie::new();
        for (id, t) in tokens.iter().enumerate() {
            trie.insert(&unescape(&t.text), id as u32);
        }
        Rwkv { trie }
    }
}

/// Greedy longest match. llama.cpp loops forever when a byte starts a token
/// path without any complete token; here that byte becomes the unknown token
/// (if any) and is skipped.
pub(crate) fn tokenize(tok: &Tokenizer, text: &str, out: &mut Vec<u32>) {
    let Some(rwkv) = &tok.rwkv else { return };
    let bytes = text.as_bytes();
    let mut pos = 0;
    while pos < bytes.len() {
        let mut node = rwkv.trie.child(Trie::ROOT, bytes[pos]);
        let mut best: Option<(u32, usize)> = None;
        let mut p = pos;
        while let Some(n) = node {
            if let Some(id) = rwkv.trie.value(n) {
                best = Some((id, p + 1));
            }
            p += 1;
            if p >= bytes.len() {
                break;
            }
            node = rwkv.trie.child(n, bytes[p]);
        }
        match best {
            Some((id, end)) => {
                out.push(id);
                pos = end;
            }
            None => {
                if let Some(unk) = tok.special.unk {
                    out.push(unk);
                }
                pos += 1;
            }
        }
    }
}
