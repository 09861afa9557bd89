//! StreamDecoder: complete UTF-8 only, and stop strings across tokens.

mod common;

use hearth_tokenizer::{EncodeOptions, StopMatch, Tokenizer};

fn stream_all(tok: &Tokenizer, ids: &[u32], stops: &[&str]) -> (Vec<String>, Option<StopMatch>) {
    let mut d = tok.stream_decoder(false).with_stop_strings(stops.iter().copied());
    let mut chunks = Vec::new();
    let mut stop = None;
    for &id in ids {
        let c = d.push(id);
        chunks.push(c.text);
        if c.stop.is_some() {
            stop = c.stop;
        }
    }
    let c = d.finish();
    chunks.push(c.text);
    stop = stop.or(c.stop);
    (chunks, stop)
}

#[test]
fn multibyte_characters_split_over_byte_tokens_are_held_back() {
    // The SentencePiece vocabulary has no 🦙: it becomes four <0xXX> tokens.
    let tok = common::load("llama-spm");
    let ids = tok.encode("🦙!", EncodeOptions::default());
    assert_eq!(ids.len(), 6, "{ids:?}"); // ▁ <0xF0> <0x9F> <0xA6> <0x99> !
    let (chunks, stop) = stream_all(&tok, &ids, &[]);
    assert_eq!(chunks, [" ", "", "", "", "🦙", "!", ""]);
    assert!(stop.is_none());

    // Byte-level BPE splits it over tokens whose pieces are partial UTF-8.
    let tok = common::load("gpt-2");
    let ids = tok.encode("a🦙b", EncodeOptions::default());
    assert!(ids.len() >= 4, "{ids:?}");
    let (chunks, _) = stream_all(&tok, &ids, &[]);
    assert_eq!(chunks.concat(), "a🦙b");
    assert_eq!(chunks.first().map(String::as_str), Some("a"));
    let llama_at = chunks.iter().position(|c| c.contains('🦙')).unwrap();
    // Nothing of the character appears before its last byte arrives.
    assert!(chunks[1..llama_at].iter().all(|c| c.is_empty()), "{chunks:?}");
}

#[test]
fn streamed_text_equals_lossy_decoding_of_all_pieces() {
    for name in common::VOCABS {
        let tok = common::load(name);
        for (text, _) in common::cases(name) {
            let ids = tok.encode(&text, EncodeOptions { add_special: true, parse_special: false });
            let (chunks, _) = stream_all(&tok, &ids, &[]);
            let pieces: Vec<u8> = ids.iter().flat_map(|&id| tok.token_to_piece(id, false).into_owned()).collect();
            assert_eq!(chunks.concat(), String::from_utf8_lossy(&pieces), "{name}: {text:?}");
        }
    }
}

#[test]
fn stop_string_spanning_tokens_is_never_emitted() {
    let tok = common::load("qwen2");
    let text = "Hello world, this is the END of it";
    let ids = tok.encode(text, EncodeOptions::default());
    // The stop string covers parts of several tokens.
    let (chunks, stop) = stream_all(&tok, &ids, &["s the EN"]);
    assert_eq!(chunks.concat(), "Hello world, this i");
    assert_eq!(stop, Some(StopMatch { index: 0, text: "s the EN".into() }));
    assert!(chunks.iter().all(|c| !c.contains("s the")));

    // Once stopped, nothing more comes out.
    let mut d = tok.stream_decoder(false).with_stop_strings(["world"]);
    let mut out = String::new();
    for &id in &ids {
        out.push_str(&d.push(id).text);
    }
    out.push_str(&d.finish().text);
    assert_eq!(out, "Hello ");
    assert!(d.is_stopped());
}

#[test]
fn possible_stop_prefixes_are_held_then_released() {
    let tok = common::load("qwen2");
    let ids = tok.encode("Hello world, bye", EncodeOptions::default());
    let mut d = tok.stream_decoder(false).with_stop_strings([" world!"]);
    let mut seen = Vec::new();
    for &id in &ids {
        seen.push(d.push(id).text);
    }
    seen.push(d.finish().text);
    assert_eq!(seen.concat(), "Hello world, bye");
    // " world" could have started " world!", so it was not released with
    // its own token but with the next one.
    let world_tok = ids.iter().position(|&id| tok.token_to_piece(id, false).as_ref() == b" world").unwrap();
    assert_eq!(seen[world_tok], "");
    assert!(seen[world_tok + 1].starts_with(" world"));

    // At the end of the stream held text is released.
    let mut d = tok.stream_decoder(false).with_stop_strings(["bye!"]);
    let mut out = String::new();
    for &id in &ids {
        out.push_str(&d.push(id).text);
    }
    assert_eq!(out, "Hello world, ");
    assert_eq!(d.finish().text, "bye");
}

#[test]
fn earliest_stop_string_wins() {
    let tok = common::load("gpt-2");
    let ids = tok.encode("one two three four", EncodeOptions::default());
    let (chunks, stop) = stream_all(&tok, &ids, &["four", "two", "three"]);
    assert_eq!(chunks.concat(), "one ");
    assert_eq!(stop.map(|s| s.index), Some(1));
}

#[test]
fn invalid_and_truncated_bytes() {
    let tok = common::load("gpt-2");
    let mut d = tok.stream_decoder(false);
    // A lone continuation byte can never become a character.
    assert_eq!(d.push_bytes(&[0x80]).text, "\u{FFFD}");
    assert_eq!(d.push_bytes(&[b'a', 0xF0, 0x9F]).text, "a");
    assert_eq!(d.push_bytes(&[0xA6]).text, "");
    assert_eq!(d.push_bytes(&[0x99, b'z']).text, "🦙z");
    // A character cut off by the end of the stream.
    assert_eq!(d.push_bytes(&[0xE4, 0xBD]).text, "");
    assert_eq!(d.finish().text, "\u{FFFD}");
}

#[test]
fn control_tokens_render_only_when_asked() {
    let tok = common::load("qwen2");
    let ids = tok.encode("<|im_start|>user", EncodeOptions { add_special: false, parse_special: true });
    let plain: String = ids.iter().map(|&id| tok.stream_decoder(false).push(id).text).collect();
    assert_eq!(plain, "user");
    let mut d = tok.stream_decoder(true);
    let special: String = ids.iter().map(|&id| d.push(id).text).collect();
    assert_eq!(special, "<|im_start|>user");
}
