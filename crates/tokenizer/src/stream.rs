//! Incremental detokenization for generation.
//!
//! Tokens arrive one at a time and their pieces (as
//! [`Tokenizer::token_to_piece`]) are concatenated. The decoder only ever
//! hands out complete UTF-8: a multi-byte character split across byte
//! tokens is held until its last byte arrives. Bytes that can never form a
//! character (a stray continuation byte, an invalid lead byte) become U+FFFD
//! at once rather than blocking the stream.
//!
//! Stop strings may span tokens. Text that could still turn out to be the
//! beginning of a stop string is held back; when a stop string completes, the
//! text before it is emitted, the stop string itself never is, and the
//! decoder emits nothing more.
//!
//! Deliberately absent: the clean-up and leading-space removal of
//! [`Tokenizer::decode`]; a stream is the plain concatenation of pieces, as
//! llama.cpp's server streams them.

use crate::Tokenizer;

/// Which stop string ended the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StopMatch {
    /// Index into the stop strings given to [`StreamDecoder::with_stop_strings`].
    pub index: usize,
    /// The stop string.
    pub text: String,
}

/// Text released by one step of a [`StreamDecoder`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamChunk {
    /// Newly completed text (possibly empty).
    pub text: String,
    /// Set on the step where a stop string completed.
    pub stop: Option<StopMatch>,
}

/// See the module documentation.
#[derive(Debug)]
pub struct StreamDecoder<'a> {
    tok: &'a Tokenizer,
    special: bool,
    /// Bytes of an incomplete UTF-8 sequence.
    bytes: Vec<u8>,
    /// Decoded text not yet released because it may start a stop string.
    held: String,
    stops: Vec<String>,
    stopped: bool,
}

impl<'a> StreamDecoder<'a> {
    /// `special`: render control tokens as their text (as `token_to_piece`).
    pub fn new(tok: &'a Tokenizer, special: bool) -> StreamDecoder<'a> {
        StreamDecoder { tok, special, bytes: Vec::new(), held: String::new(), stops: Vec::new(), stopped: false }
    }

    /// Stop strings to watch for; empty strings are ignored.
    pub fn with_stop_strings<S: Into<String>>(mut self, stops: impl IntoIterator<Item = S>) -> StreamDecoder<'a> {
        self.stops = stops.into_iter().map(Into::into).collect();
        self
    }

    /// True once a stop string has matched.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Adds one token.
    pub fn push(&mut self, id: u32) -> StreamChunk {
        if self.stopped {
            return StreamChunk::default();
        }
        let piece = self.tok.token_to_piece(id, self.special);
        self.push_bytes(&piece)
    }

    /// Adds raw bytes (what a token's piece would contribute).
    pub fn push_bytes(&mut self, piece: &[u8]) -> StreamChunk {
        if self.stopped {
            return StreamChunk::default();
        }
        self.bytes.extend_from_slice(piece);
        let mut rest: &[u8] = &self.bytes;
        let mut decoded = String::new();
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    decoded.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (good, bad) = rest.split_at(e.valid_up_to());
                    // `good` is valid UTF-8 by construction.
                    decoded.push_str(std::str::from_utf8(good).unwrap_or_default());
                    match e.error_len() {
                        Some(n) => {
                            decoded.push('\u{FFFD}');
                            rest = &bad[n..];
                        }
                        None => {
                            rest = bad;
                            break;
                        }
                    }
                }
            }
        }
        self.bytes = rest.to_vec();
        self.held.push_str(&decoded);
        self.release(false)
    }

    /// Ends the stream: an incomplete character becomes U+FFFD and held-back
    /// text is released (unless it completes a stop string).
    pub fn finish(&mut self) -> StreamChunk {
        if self.stopped {
            return StreamChunk::default();
        }
        if !self.bytes.is_empty() {
            let tail = String::from_utf8_lossy(&self.bytes).into_owned();
            self.held.push_str(&tail);
            self.bytes.clear();
        }
        self.release(true)
    }

    fn release(&mut self, at_end: bool) -> StreamChunk {
        // The earliest stop string wins; among those starting at the same
        // place, the first listed.
        let mut found: Option<(usize, usize)> = None;
        for (i, s) in self.stops.iter().enumerate() {
            if s.is_empty() {
                continue;
            }
            if let Some(p) = self.held.find(s.as_str()) {
                if found.is_none_or(|(fp, _)| p < fp) {
                    found = Some((p, i));
                }
            }
        }
        if let Some((p, i)) = found {
            let text = self.held[..p].to_string();
            self.held.clear();
            self.bytes.clear();
            self.stopped = true;
            return StreamChunk { text, stop: Some(StopMatch { index: i, text: self.stops[i].clone() }) };
        }
        let keep = if at_end { 0 } else { self.stop_prefix_len() };
        let cut = self.held.len() - keep;
        let text = self.held[..cut].to_string();
        self.held.drain(..cut);
        StreamChunk { text, stop: None }
    }

    /// Length of the longest suffix of the held text that is a proper prefix
    /// of a stop string.
    fn stop_prefix_len(&self) -> usize {
        let h = &self.held;
        let mut best = 0;
        for s in &self.stops {
            let max = (s.len().saturating_sub(1)).min(h.len());
            for k in (best + 1..=max).rev() {
                let start = h.len() - k;
                if h.is_char_boundary(start) && s.starts_with(&h[start..]) {
                    best = k;
                    break;
                }
            }
        }
        best
    }
}
