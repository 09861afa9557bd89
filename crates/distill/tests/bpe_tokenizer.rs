//! A tokenizer trained here loads through `hearth_tokenizer::Tokenizer::from_gguf`,
//! round-trips held-out text, splits like the trainer's own encoder, and
//! treats the ChatML tokens as single control tokens.

use hearth_distill::bpe::{self, Bpe, BpeConfig, CHATML_TEMPLATE};
use hearth_tokenizer::{DecodeOptions, EncodeOptions, Tokenizer};

const SPECIALS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

fn trained() -> (Bpe, Tokenizer) {
    let train_text = [include_str!("../../../ARCHITECTURE.md"), include_str!("../src/trainer.rs"), include_str!("../src/optim.rs")];
    let cfg = BpeConfig { vocab_size: 1024, min_frequency: 2, special_tokens: SPECIALS.iter().map(|s| s.to_string()).collect() };
    let bpe = bpe::train(train_text, &cfg).unwrap();
    let meta = bpe.gguf_metadata("<|endoftext|>", "<|im_end|>", "<|endoftext|>", CHATML_TEMPLATE).unwrap();
    let file = Bpe::vocab_gguf(&meta).unwrap();
    let tok = Tokenizer::from_gguf(&file).unwrap();
    (bpe, tok)
}

fn held_out() -> Vec<String> {
    vec![
        include_str!("../src/exec.rs").to_string(),
        "naïve café – 東京 😀 \t tabs\n\n  two spaces,   three; trailing   ".to_string(),
        "It's 2024: we'll see. DON'T shout! x=1.5e-3 <tag attr=\"v\"> \r\n end".to_string(),
        String::from_utf8_lossy(&(0u8..=127).collect::<Vec<u8>>()).into_owned(),
    ]
}

#[test]
fn held_out_text_round_trips() {
    let (bpe, tok) = trained();
    assert_eq!(tok.n_vocab(), bpe.tokens.len());
    assert_eq!(tok.n_vocab(), 1024);
    let plain = EncodeOptions { add_special: true, parse_special: false };
    for text in held_out() {
        let ids = tok.encode(&text, plain);
        assert!(!ids.is_empty());
        assert_eq!(tok.decode(&ids, DecodeOptions::default()), text);
        // Merges do compress: well under one token per byte on code.
        if text.len() > 10_000 {
            let ratio = text.len() as f64 / ids.len() as f64;
            assert!(ratio > 2.0, "only {ratio:.2} bytes per token");
        }
    }
}

#[test]
fn hearth_encoding_matches_the_trainers_merges() {
    let (bpe, tok) = trained();
    let plain = EncodeOptions { add_special: false, parse_special: false };
    for text in held_out() {
        let want: Vec<u32> = bpe::pretokenize(&text).iter().flat_map(|p| bpe.encode_piece(p)).collect();
        assert_eq!(tok.encode(&text, plain), want, "{:?}", &text[..text.len().min(60)]);
    }
}

#[test]
fn chatml_tokens_are_single_control_tokens() {
    let (bpe, tok) = trained();
    let text = "<|im_start|>user\nWhat is RAM?<|im_end|>\n<|im_start|>assistant\n";
    let ids = tok.encode(text, EncodeOptions { add_special: true, parse_special: true });
    let start = bpe.token_id("<|im_start|>").unwrap();
    let end = bpe.token_id("<|im_end|>").unwrap();
    assert_eq!(ids[0], start);
    assert_eq!(ids.iter().filter(|&&i| i == start).count(), 2);
    assert_eq!(ids.iter().filter(|&&i| i == end).count(), 1);
    assert!(tok.is_eog(end));
    assert_eq!(tok.eos(), Some(end));
    assert!(!tok.add_bos());
    // Without parse_special the markers are ordinary text.
    let as_text = tok.encode(text, EncodeOptions { add_special: false, parse_special: false });
    assert!(!as_text.contains(&start));
    assert_eq!(tok.decode(&ids, DecodeOptions { remove_special: false, special: true }), text);
}
