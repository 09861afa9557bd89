//! `POST /v1/embeddings`: the hook for an embedding model.
//!
//! The server holds an optional [`Embedder`]; without one the route answers
//! 501 with an OpenAI error. With one, the request is validated here
//! ([`crate::wire::embedding`]), the vectors computed on a blocking thread
//! and returned in OpenAI's shape (`float` arrays or `base64` of
//! little-endian f32). Deliberately absent: token-id inputs and
//! `dimensions` other than the model's own (no truncation).

use crate::error::ApiError;
use crate::wire::EmbeddingCall;
use serde_json::{json, Value};
use std::sync::Arc;

/// An embedding model the server can serve.
pub trait Embedder: Send + Sync {
    /// The id listed by `/v1/models` and echoed in responses.
    fn model_id(&self) -> &str;
    /// Length of every vector.
    fn dimensions(&self) -> usize;
    /// One vector per input, and the number of tokens read in total.
    fn embed(&self, inputs: &[String]) -> Result<(Vec<Vec<f32>>, usize), String>;
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (RFC 4648 §4).
pub fn base64(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let b = [
            c[0],
            c.get(1).copied().unwrap_or(0),
            c.get(2).copied().unwrap_or(0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub async fn respond(embedder: Arc<dyn Embedder>, call: EmbeddingCall) -> Result<Value, ApiError> {
    if let Some(d) = call.dimensions {
        if d != embedder.dimensions() {
            return Err(ApiError::unsupported(
                "dimensions",
                format!(
                    "this model's embeddings have {} dimensions; truncation is not supported",
                    embedder.dimensions()
                ),
            ));
        }
    }
    let e = Arc::clone(&embedder);
    let input = call.input;
    let (vectors, tokens) = tokio::task::spawn_blocking(move || e.embed(&input))
        .await
        .map_err(|e| ApiError::internal(format!("embedding task failed: {e}")))?
        .map_err(ApiError::internal)?;
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let emb = if call.base64 {
                json!(base64(
                    &v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>()
                ))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": emb})
        })
        .collect();
    Ok(json!({
        "object": "list",
        "data": data,
        "model": embedder.model_id(),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }
}
