//! Token ids back to bytes (llama.cpp `token_to_piece` and `detokenize`).

use crate::{unicode, DecodeOptions, TokenAttr, Tokenizer, VocabKind};

/// The first hex digits after `<0x` (llama.cpp `token_to_byte` reads them
/// with `strtol`, so trailing junk is ignored and no digits give 0).
fn byte_of(text: &str) -> u8 {
    let digits = text.as_bytes().get(3..).unwrap_or(&[]);
    let mut v: u32 = 0;
    for &d in digits.iter().take(2) {
        match (d as char).to_digit(16) {
            Some(x) => v = v * 16 + x,
            None => break,
        }
    }
    v as u8
}

/// llama.cpp `llama_decode_text`: byte-level BPE text back to bytes through
/// GPT-2's table; a character outside the table is spelled out as
/// `[UNK_BYTE_0x..<token text>]`.
fn decode_byte_level(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for ch in text.chars() {
        match unicode::char_to_byte(ch) {
            Some(b) => out.push(b),
            None => {
                out.extend_from_slice(b"[UNK_BYTE_0x");
                let mut buf = [0u8; 4];
                for b in ch.encode_utf8(&mut buf).bytes() {
                    out.extend_from_slice(format!("{b:02x}").as_bytes());
                }
                out.extend_from_slice(text.as_bytes());
                out.push(b']');
            }
        }
    }
    out
}

/// `token_to_piece(id, special = true)` computed from the token data; the
/// tokenizer caches this for every id.
pub(crate) fn piece_uncached(tok: &Tokenizer, id: u32) -> Vec<u8> {
    let Some(t) = tok.tokens.get(id as usize) else { return Vec::new() };
    let text = t.text.as_str();
    let verbatim = TokenAttr(TokenAttr::UNKNOWN.0 | TokenAttr::CONTROL.0 | TokenAttr::USER_DEFINED.0);
    match tok.kind {
        VocabKind::Spm | VocabKind::Wpm | VocabKind::Ugm | VocabKind::Bpe => {
            if t.attr.has(verbatim) {
                text.as_bytes().to_vec()
            } else if t.attr.has(TokenAttr::NORMAL) {
                if tok.kind != VocabKind::Bpe || tok.flags.escape_whitespaces {
                    text.replace('\u{2581}', " ").into_bytes()
                } else {
                    decode_byte_level(text)
                }
            } else if t.attr.has(TokenAttr::BYTE) {
                vec![byte_of(text)]
            } else {
                // Unused and undefined tokens are suppressed like control
                // tokens.
                Vec::new()
            }
        }
        VocabKind::Rwkv => crate::rwkv::unescape(text),
    }
}

/// llama.cpp `llama_vocab::impl::detokenize`.
pub(crate) fn detokenize(tok: &Tokenizer, mut ids: &[u32], opts: DecodeOptions) -> Vec<u8> {
    let mut remove_space = tok.flags.add_space_prefix;
    if opts.remove_special && tok.flags.add_bos {
        if let (Some(&first), Some(bos)) = (ids.first(), tok.special.bos) {
            if first == bos {
                remove_space = false;
                ids = &ids[1..];
            }
        }
    }
    if opts.remove_special && tok.flags.add_eos {
        if let (Some(&last), Some(eos)) = (ids.last(), tok.special.eos) {
            if last == eos {
                ids = &ids[..ids.len() - 1];
            }
        }
    }
    let mut text = Vec::with_capacity(ids.len() * 4);
    for &id in ids {
        let piece = tok.token_to_piece(id, opts.special);
        // Only the first piece may lose one leading space.
        let p: &[u8] = if remove_space && piece.first() == Some(&b' ') { &piece[1..] } else { &piece };
        remove_space = false;
        text.extend_from_slice(p);
    }
    if tok.flags.clean_spaces {
        clean_up_spaces(&mut text);
    }
    text
}

/// The three clean-up passes of llama.cpp's detokenizer
/// (`clean_up_tokenization_spaces`), done in place with the same index
/// arithmetic so that overlapping cases come out the same.
fn clean_up_spaces(text: &mut Vec<u8>) {
    // " ?", " !", " .", " ," lose the space.
    let n = text.len();
    let mut total = usize::from(n > 0);
    for i in 1..n {
        let x = text[i];
        if text[i - 1] == b' ' && matches!(x, b'?' | b'!' | b'.' | b',') {
            total -= 1;
        }
        text[total] = x;
        total += 1;
    }
    text.truncate(total);

    // " ' " becomes "'".
    let n = text.len();
    let mut total = usize::from(n > 0);
    let mut i = 1;
    while i < n {
        let x = text[i];
        if x == b'\'' && i + 1 < n && text[i - 1] == b' ' && text[i + 1] == b' ' {
            total -= 1;
            i += 1;
            text[i] = 0;
        }
        text[total] = x;
        total += 1;
        i += 1;
    }
    text.truncate(total);

    // " 's", " 'm", " 're", " 've" lose the space (" 't", " 'd", " 'll" keep it).
    let n = text.len();
    let mut total = usize::from(n > 0);
    for i in 1..n {
        let x = text[i];
        if text[i - 1] == b' ' && x == b'\'' && i + 1 < n {
            let x1 = text[i + 1];
            if x1 == b's' || x1 == b'm' {
                total -= 1;
            } else if x1 != b't' && x1 != b'd' && i + 2 < n {
                let x2 = text[i + 2];
                if (x1 == b'r' || x1 == b'v') && x2 == b'e' {
                    total -= 1;
                }
            }
        }
        text[total] = x;
        total += 1;
    }
    text.truncate(total);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(s: &str) -> String {
        let mut v = s.as_bytes().to_vec();
        clean_up_spaces(&mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn clean_up_matches_llama_cpp_rules() {
        assert_eq!(clean("Hello , world !"), "Hello, world!");
        assert_eq!(clean("a ' b"), "a'b");
        assert_eq!(clean("it 's I 'm we 're they 've"), "it's I'm we're they've");
        assert_eq!(clean("don 't I 'd we 'll"), "don 't I 'd we 'll");
        assert_eq!(clean(""), "");
        assert_eq!(clean(" ."), ".");
    }

    #[test]
    fn byte_tokens_parse_like_strtol() {
        assert_eq!(byte_of("<0x0A>"), 0x0A);
        assert_eq!(byte_of("<0xFF>"), 0xFF);
        assert_eq!(byte_of("<0x"), 0);
        assert_eq!(byte_of("<0xZ1>"), 0);
    }
}
