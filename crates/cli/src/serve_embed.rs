//! The bridge between `hearth-embed` (MiniLM) and the server's
//! [`hearth_server::Embedder`] hook, so `POST /v1/embeddings` is served by
//! the same encoder the router uses. Lives in the binary because neither
//! library should depend on the other.

use hearth_embed::Embedder as MiniLm;
use hearth_server::Embedder;
use std::path::Path;

pub struct ServedEmbedder {
    id: String,
    inner: MiniLm,
}

impl ServedEmbedder {
    /// Loads the sentence encoder in `dir`; the served model id is the
    /// folder's name (e.g. `all-MiniLM-L6-v2`).
    pub fn load(dir: &Path, threads: usize) -> anyhow::Result<ServedEmbedder> {
        let opts = hearth_embed::EmbedderOptions { threads, ..Default::default() };
        let inner = MiniLm::load_with(dir, &opts)?;
        let id = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "embedding".to_string());
        Ok(ServedEmbedder { id, inner })
    }
}

impl Embedder for ServedEmbedder {
    fn model_id(&self) -> &str {
        &self.id
    }

    fn dimensions(&self) -> usize {
        self.inner.dim()
    }

    fn embed(&self, inputs: &[String]) -> Result<(Vec<Vec<f32>>, usize), String> {
        // Tokenize once: the ids (special tokens added, truncated to the
        // encoder's window) are both what usage reports and what is embedded.
        // Single-segment texts have all-zero token types, which is what
        // `embed_ids` assumes.
        let ids = inputs.iter().map(|t| self.inner.tokenize(t)).collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())?;
        let tokens = ids.iter().map(Vec::len).sum();
        let refs: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
        let v = self.inner.embed_ids(&refs).map_err(|e| e.to_string())?;
        Ok((v, tokens))
    }
}
