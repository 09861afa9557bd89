//! Building a [`Tokenizer`] from GGUF metadata, following
//! `llama_vocab::impl::load` (src/llama-vocab.cpp) step by step: defaults per
//! model, pre-tokenizer flags, token table, special ids, the end-of-generation
//! set and the attribute fix-ups llama.cpp makes from token text and model
//! name.
//!
//! Where llama.cpp merely warns, some malformed inputs are errors here:
//! special token ids outside the vocabulary, merges that name unknown tokens
//! and duplicate token texts (the last aborts llama.cpp). Arrays longer than
//! the token list are accepted, as in llama.cpp.

use crate::bpe::{Bpe, BpeSession};
use crate::error::TokenizerError;
use crate::pretok::{PreTokenizer, PreType};
use crate::ugm::Ugm;
use crate::{rwkv, SpecialIds, TokenAttr, TokenData, Tokenizer, VocabFlags, VocabKind};
use hearth_formats::{GgufFile, MetaArray};
use std::collections::{BTreeSet, HashMap};

const KEY_MODEL: &str = "tokenizer.ggml.model";
const KEY_PRE: &str = "tokenizer.ggml.pre";
const KEY_TOKENS: &str = "tokenizer.ggml.tokens";
const KEY_SCORES: &str = "tokenizer.ggml.scores";
const KEY_TYPES: &str = "tokenizer.ggml.token_type";
const KEY_MERGES: &str = "tokenizer.ggml.merges";
const KEY_CHARSMAP: &str = "tokenizer.ggml.precompiled_charsmap";

/// GGUF `tokenizer.ggml.token_type` values (llama.h `llama_token_type`).
fn attr_from_type(t: i64) -> TokenAttr {
    match t {
        1 => TokenAttr::NORMAL,
        2 => TokenAttr::UNKNOWN,
        3 => TokenAttr::CONTROL,
        4 => TokenAttr::USER_DEFINED,
        5 => TokenAttr::UNUSED,
        6 => TokenAttr::BYTE,
        _ => TokenAttr::UNDEFINED,
    }
}

/// What `tokenizer.ggml.pre` selects, beyond the regexes.
struct PreFlags {
    pre_type: PreType,
    clean_spaces: bool,
    ignore_merges: bool,
    add_bos: bool,
    add_sep: bool,
    escape_whitespaces: bool,
    no_bos: bool,
    lowercase: Option<bool>,
}

/// The `tokenizer.ggml.pre` table of llama-vocab.cpp.
fn pre_flags(pre: &str) -> Option<PreFlags> {
    use PreType::*;
    let mut f = PreFlags {
        pre_type: Default,
        clean_spaces: true,
        ignore_merges: false,
        add_bos: false,
        add_sep: false,
        escape_whitespaces: false,
        no_bos: false,
        lowercase: None,
    };
    // (families, clean_spaces, ignore_merges, add_bos)
    let (t, clean, ignore, bos) = match pre {
        "" | "default" => (Default, true, false, false),
        "minicpm5" => (Minicpm5, true, true, false),
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0" | "lfm2" | "jina-v5-nano" => {
            (Llama3, true, true, true)
        }
        "deepseek-llm" => (DeepseekLlm, false, false, false),
        "deepseek-coder" => (DeepseekCoder, false, false, false),
        "deepseek-v3" => (Deepseek3Llm, false, false, false),
        "spark2_5" => (Spark2_5, false, false, false),
        "youtu" => (Youtu, false, true, false),
        "falcon" => (Falcon, true, false, false),
        "mpt" => (Mpt, true, false, false),
        "starcoder" => (Starcoder, true, false, false),
        "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es" | "jina-v2-de" | "a.x-4.0" | "mellum"
        | "modern-bert" | "exaone4" => (Gpt2, true, false, false),
        "jais-2" => (Jais2, true, false, false),
        "gemma4" | "granite-embed-multi-311m" => {
            f.escape_whitespaces = true;
            (Gemma4, true, false, false)
        }
        "sarvam-moe" => {
            f.escape_whitespaces = true;
            (SarvamMoe, false, false, false)
        }
        "jina-v1-en" | "jina-v2-code" | "roberta-bpe" => {
            f.add_sep = true;
            (Gpt2, true, false, false)
        }
        "whitespace" => {
            f.lowercase = Some(false);
            (Whitespace, true, false, false)
        }
        "refact" => (Refact, true, false, false),
        "command-r" => (CommandR, false, false, false),
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" => (Qwen2, false, false, false),
        "megrez" => (Qwen2, true, false, false),
        "qwen35" => (Qwen35, false, false, false),
        "stablelm2" => (Stablelm2, true, false, false),
        "olmo" => (Olmo, true, false, false),
        "dbrx" => (Dbrx, true, false, false),
        "smaug-bpe" => (Smaug, true, false, false),
        "poro-chat" => (Poro, false, false, false),
        "chatglm-bpe" => {
            f.no_bos = true;
            (Chatglm4, true, false, false)
        }
        "glm4" | "glm5" => {
            f.no_bos = true;
            (Chatglm4, true, true, false)
        }
        "viking" => (Viking, false, false, false),
        "jais" => (Jais, true, false, false),
        "tekken" => (Tekken, false, true, true),
        "smollm" => (Smollm, false, false, false),
        "codeshell" => (Codeshell, true, false, false),
        "bloom" => (Bloom, true, false, false),
        "gpt3-finnish" => (Gpt3Finnish, true, false, false),
        "exaone" => (Exaone, true, false, false),
        "exaone-moe" => (ExaoneMoe, true, false, false),
        "chameleon" => (Chameleon, false, false, true),
        "minerva-7b" => (Minerva, true, false, false),
        "gpt-4o" | "llama4" | "kanana2" | "talkie" => (Gpt4o, false, false, false),
        "granite-embed-multi-97m" => (GraniteEmbMulti, false, true, false),
        "tiny_aya" | "cohere2moe" => (TinyAya, false, false, false),
        "superbpe" => (Superbpe, false, false, false),
        "trillion" => (Trillion, false, false, false),
        "granite-docling" => (GraniteDocling, false, false, false),
        "bailingmoe" | "bailingmoe2" | "llada-moe" => (Bailingmoe, false, false, false),
        "seed-coder" => (SeedCoder, false, false, false),
        "hunyuan" => (Hunyuan, false, false, false),
        "hunyuan-dense" => (HunyuanDense, false, false, false),
        "hy_v4" => (HyV4, false, false, false),
        "joyai-llm" => (JoyaiLlm, false, false, false),
        "kimi-k2" => (KimiK2, false, false, false),
        "ufakzeka" => (Ufakzeka, false, false, false),
        "grok-2" => (Grok2, false, false, false),
        "afmoe" => (Afmoe, false, false, false),
        "laguna" => (Laguna, false, false, false),
        "minimax-m2" => (MinimaxM2, false, false, false),
        "solar-open" => (SolarOpen, false, false, false),
        "mellum2" => (Mellum2, true, false, false),
        _ => return None,
    };
    f.pre_type = t;
    f.clean_spaces = clean;
    f.ignore_merges = ignore;
    f.add_bos = bos;
    Some(f)
}

fn opt_bool(g: &GgufFile, key: &str) -> Result<Option<bool>, TokenizerError> {
    Ok(g.get_bool(key)?)
}

pub(crate) fn from_gguf(g: &GgufFile) -> Result<Tokenizer, TokenizerError> {
    let model = g.get_str(KEY_MODEL)?.ok_or(TokenizerError::MissingKey { key: KEY_MODEL })?.to_string();
    let mut pre = g.get_str(KEY_PRE)?.unwrap_or("").to_string();

    // ---- token table ----------------------------------------------------
    let texts = g.get_str_array(KEY_TOKENS)?.ok_or(TokenizerError::MissingKey { key: KEY_TOKENS })?;
    let n = texts.len();
    if n == 0 {
        return Err(TokenizerError::EmptyVocab);
    }
    if n > u32::MAX as usize / 2 {
        return Err(TokenizerError::VocabTooLarge { n });
    }
    let scores: Option<Vec<f32>> = match g.get_array(KEY_SCORES)? {
        None => None,
        Some(a @ (MetaArray::F32(_) | MetaArray::I32(_))) => a.to_f32_vec(),
        Some(_) => return Err(TokenizerError::WrongType { key: KEY_SCORES, expected: "array of f32 or i32" }),
    };
    if let Some(s) = &scores {
        if s.len() < n {
            return Err(TokenizerError::LengthMismatch { key: KEY_SCORES, found: s.len(), n_vocab: n });
        }
    }
    let types: Option<Vec<i64>> = match g.get_array(KEY_TYPES)? {
        None => None,
        Some(a) => Some(a.to_i64_vec().ok_or(TokenizerError::WrongType { key: KEY_TYPES, expected: "array of integers" })?),
    };
    if let Some(t) = &types {
        if t.len() < n {
            return Err(TokenizerError::LengthMismatch { key: KEY_TYPES, found: t.len(), n_vocab: n });
        }
    }
    let mut tokens = Vec::with_capacity(n);
    let mut token_to_id: HashMap<String, u32> = HashMap::with_capacity(n);
    let mut max_token_len = 0;
    for (i, text) in texts.iter().enumerate() {
        let text = if text.is_empty() { format!("[EMPTY_{i}]") } else { text.clone() };
        if let Some(&first) = token_to_id.get(&text) {
            return Err(TokenizerError::DuplicateToken { text, first, second: i as u32 });
        }
        token_to_id.insert(text.clone(), i as u32);
        max_token_len = max_token_len.max(text.len());
        let attr = types.as_ref().map_or(TokenAttr::NORMAL, |t| attr_from_type(t[i]));
        tokens.push(TokenData { text, score: scores.as_ref().map_or(0.0, |s| s[i]), attr });
    }

    // ---- model defaults (llama-vocab.cpp: "determine vocab type") --------
    let mut sp;
    let mut fl = VocabFlags {
        add_space_prefix: false,
        add_bos: false,
        add_eos: false,
        add_sep: false,
        ignore_merges: false,
        clean_spaces: false,
        remove_extra_whitespaces: false,
        escape_whitespaces: true,
        treat_whitespace_as_suffix: false,
        lowercase: true,
        strip_accents: true,
    };
    let mut pre_type = PreType::Default;
    let mut bpe_session = BpeSession::Plain;
    let kind = match model.as_str() {
        "llama" => {
            sp = SpecialIds { bos: Some(1), eos: Some(2), unk: Some(0), ..SpecialIds::default() };
            fl.add_space_prefix = true;
            fl.clean_spaces = false;
            fl.add_bos = true;
            VocabKind::Spm
        }
        "bert" => {
            sp = SpecialIds { bos: Some(101), unk: Some(100), sep: Some(102), pad: Some(0), mask: Some(103), ..SpecialIds::default() };
            fl.add_space_prefix = false;
            fl.clean_spaces = true;
            fl.add_bos = true;
            fl.add_sep = true;
            VocabKind::Wpm
        }
        "gpt2" | "hybriddna" | "whitespace" | "gemma4" => {
            if model == "gemma4" {
                sp = SpecialIds::default();
                pre = "gemma4".to_string();
            } else {
                sp = SpecialIds { bos: Some(11), eos: Some(11), ..SpecialIds::default() };
            }
            bpe_session = match model.as_str() {
                "hybriddna" => BpeSession::HybridDna,
                "whitespace" => BpeSession::Whitespace,
                _ => BpeSession::Plain,
            };
            fl.add_space_prefix = false;
            fl.escape_whitespaces = false;
            let pf = pre_flags(&pre).ok_or_else(|| TokenizerError::UnknownPreTokenizer { pre: pre.clone() })?;
            pre_type = pf.pre_type;
            fl.clean_spaces = pf.clean_spaces;
            fl.ignore_merges = pf.ignore_merges;
            fl.add_bos = pf.add_bos;
            fl.add_sep = pf.add_sep;
            fl.escape_whitespaces = pf.escape_whitespaces;
            if pf.no_bos {
                sp.bos = None;
            }
            if let Some(l) = pf.lowercase {
                fl.lowercase = l;
            }
            VocabKind::Bpe
        }
        "t5" => {
            sp = SpecialIds { eos: Some(1), unk: Some(2), pad: Some(0), ..SpecialIds::default() };
            fl.add_bos = false;
            fl.add_eos = true;
            VocabKind::Ugm
        }
        "rwkv" => {
            sp = SpecialIds::default();
            VocabKind::Rwkv
        }
        other => return Err(TokenizerError::UnsupportedModel { model: other.to_string() }),
    };
    if let Some(v) = opt_bool(g, "tokenizer.ggml.add_space_prefix")? {
        fl.add_space_prefix = v;
    }
    if let Some(v) = opt_bool(g, "tokenizer.ggml.remove_extra_whitespaces")? {
        fl.remove_extra_whitespaces = v;
    }

    // ---- merges -----------------------------------------------------------
    let mut bpe = None;
    if kind == VocabKind::Bpe {
        let merges = match g.get_array(KEY_MERGES)? {
            None if pre == "kimi-k2" => &[][..],
            None => return Err(TokenizerError::MissingKey { key: KEY_MERGES }),
            Some(MetaArray::String(m)) => m.as_slice(),
            Some(_) => return Err(TokenizerError::WrongType { key: KEY_MERGES, expected: "array of strings" }),
        };
        let pretok = PreTokenizer::new(pre_type)?;
        bpe = Some(Bpe::new(merges, &token_to_id, pretok, pre_type, bpe_session)?);
    }

    // ---- special token ids -------------------------------------------------
    // A default id outside the vocabulary is dropped (llama.cpp warns); an id
    // from the file outside the vocabulary is an error.
    let in_range = |id: Option<u32>| id.filter(|&i| (i as usize) < n);
    for slot in [
        &mut sp.bos, &mut sp.eos, &mut sp.eot, &mut sp.eom, &mut sp.unk, &mut sp.sep, &mut sp.pad, &mut sp.mask,
        &mut sp.fim_pre, &mut sp.fim_suf, &mut sp.fim_mid, &mut sp.fim_pad, &mut sp.fim_rep, &mut sp.fim_sep,
    ] {
        *slot = in_range(*slot);
    }
    // llama.cpp computes the newline token before it reads the ids below.
    let default_ids = sp;
    let read = |key: &'static str, slot: &mut Option<u32>| -> Result<(), TokenizerError> {
        if let Some(v) = g.get_u64(key)? {
            if v >= n as u64 {
                return Err(TokenizerError::TokenIdOutOfRange { key, id: v, n_vocab: n });
            }
            *slot = Some(v as u32);
        }
        Ok(())
    };
    read("tokenizer.ggml.bos_token_id", &mut sp.bos)?;
    read("tokenizer.ggml.eos_token_id", &mut sp.eos)?;
    read("tokenizer.ggml.eot_token_id", &mut sp.eot)?;
    read("tokenizer.ggml.eom_token_id", &mut sp.eom)?;
    read("tokenizer.ggml.unknown_token_id", &mut sp.unk)?;
    read("tokenizer.ggml.seperator_token_id", &mut sp.sep)?;
    read("tokenizer.ggml.padding_token_id", &mut sp.pad)?;
    read("tokenizer.ggml.mask_token_id", &mut sp.mask)?;
    read("tokenizer.ggml.fim_pre_token_id", &mut sp.fim_pre)?;
    read("tokenizer.ggml.fim_suf_token_id", &mut sp.fim_suf)?;
    read("tokenizer.ggml.fim_mid_token_id", &mut sp.fim_mid)?;
    read("tokenizer.ggml.fim_pad_token_id", &mut sp.fim_pad)?;
    read("tokenizer.ggml.fim_rep_token_id", &mut sp.fim_rep)?;
    read("tokenizer.ggml.fim_sep_token_id", &mut sp.fim_sep)?;
    // deprecated spellings, read after the current ones as llama.cpp does
    read("tokenizer.ggml.prefix_token_id", &mut sp.fim_pre)?;
    read("tokenizer.ggml.suffix_token_id", &mut sp.fim_suf)?;
    read("tokenizer.ggml.middle_token_id", &mut sp.fim_mid)?;
    if let Some(v) = opt_bool(g, "tokenizer.ggml.add_bos_token")? {
        fl.add_bos = v;
    }
    if let Some(v) = opt_bool(g, "tokenizer.ggml.add_eos_token")? {
        fl.add_eos = v;
    }
    if let Some(v) = opt_bool(g, "tokenizer.ggml.add_sep_token")? {
        fl.add_sep = v;
    }
    // llama.cpp forces BOS on for Gemma 4 (ggml-org/llama.cpp#21500).
    if pre_type == PreType::Gemma4 && kind == VocabKind::Bpe {
        fl.add_bos = true;
    }
    if let Some(v) = opt_bool(g, "tokenizer.ggml.normalizer.lowercase")? {
        fl.lowercase = v;
    }
    fl.strip_accents = fl.lowercase;
    if let Some(v) = opt_bool(g, "tokenizer.ggml.normalizer.strip_accents")? {
        fl.strip_accents = v;
    }

    // hybriddna: k-mer tokens carry a reserved U+E000 suffix that keeps them
    // apart from identical BPE tokens; their displayed text drops it.
    if model == "hybriddna" {
        if let Some(&oov) = token_to_id.get("<oov>") {
            for t in tokens.iter_mut().skip(oov as usize + 1) {
                if t.text.len() > '\u{E000}'.len_utf8() && t.text.ends_with('\u{E000}') {
                    t.text.pop();
                }
            }
        }
    }
    detect_special_tokens(&mut tokens, &token_to_id, &mut sp);
    let eog = end_of_generation_set(&mut tokens, &token_to_id, &sp);

    // ---- caches -------------------------------------------------------------
    let special_attrs = TokenAttr(TokenAttr::CONTROL.0 | TokenAttr::USER_DEFINED.0 | TokenAttr::UNKNOWN.0);
    let mut special_cache: Vec<u32> = (0..n as u32).filter(|&i| tokens[i as usize].attr.has(special_attrs)).collect();
    // Longest first; llama.cpp's std::sort leaves ties in unspecified order,
    // ids ascending here.
    special_cache.sort_by(|&a, &b| tokens[b as usize].text.len().cmp(&tokens[a as usize].text.len()).then(a.cmp(&b)));

    let ugm = if kind == VocabKind::Ugm {
        let charsmap = match g.get_array(KEY_CHARSMAP)? {
            None => Vec::new(),
            Some(MetaArray::U8(v)) => v.clone(),
            Some(MetaArray::I8(v)) => v.iter().map(|&b| b as u8).collect(),
            Some(_) => return Err(TokenizerError::WrongType { key: KEY_CHARSMAP, expected: "array of u8 or i8" }),
        };
        Some(Ugm::new(&tokens, charsmap)?)
    } else {
        None
    };
    let rwkv = (kind == VocabKind::Rwkv).then(|| rwkv::Rwkv::new(&tokens));

    let mut tok = Tokenizer {
        kind,
        model,
        pre,
        pre_type,
        tokens,
        token_to_id,
        special: sp,
        flags: fl,
        eog,
        special_cache,
        special_matcher: None,
        pieces: Vec::new(),
        max_token_len,
        bpe,
        ugm,
        rwkv,
    };
    tok.pieces = (0..n as u32).map(|id| crate::decode::piece_uncached(&tok, id).into_boxed_slice()).collect();
    apply_model_attrs(&mut tok, g)?;
    let final_ids = tok.special;
    tok.special = default_ids;
    let nl = newline_token(&tok);
    tok.special = final_ids;
    tok.special.nl = nl;
    let texts: Vec<&str> = tok.special_cache.iter().map(|&id| tok.tokens[id as usize].text.as_str()).collect();
    if !texts.is_empty() {
        tok.special_matcher = aho_corasick::AhoCorasick::new(&texts).ok();
    }
    Ok(tok)
}

/// Marks a token control (llama.cpp does this, with a warning, for tokens
/// whose text says they are special).
fn make_control(tokens: &mut [TokenData], id: u32) {
    let a = &mut tokens[id as usize].attr;
    a.0 |= TokenAttr::CONTROL.0;
}

/// Finds EOT, EOM and FIM tokens by their text when the metadata does not
/// name them (llama-vocab.cpp "auto-detect special tokens by text").
fn detect_special_tokens(tokens: &mut [TokenData], token_to_id: &HashMap<String, u32>, sp: &mut SpecialIds) {
    let detect = |tokens: &mut [TokenData], slot: &mut Option<u32>, names: &[&str]| {
        if slot.is_some() {
            return;
        }
        // llama.cpp takes the first candidate in hash-map order; the highest
        // id is used here (see `Tokenizer::eot`).
        if let Some(id) = names.iter().filter_map(|n| token_to_id.get(*n).copied()).max() {
            *slot = Some(id);
            make_control(tokens, id);
        }
    };
    detect(
        tokens,
        &mut sp.eot,
        &["<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>", "<end_of_utterance>"],
    );
    detect(tokens, &mut sp.eom, &["<|eom_id|>"]);
    detect(tokens, &mut sp.fim_pre, &["<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>", "<|code_prefix|>", "<|prefix|>"]);
    detect(tokens, &mut sp.fim_suf, &["<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>", "<|code_suffix|>", "<|suffix|>"]);
    detect(tokens, &mut sp.fim_mid, &["<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>", "<|code_middle|>", "<|middle|>"]);
    detect(tokens, &mut sp.fim_pad, &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"]);
    detect(tokens, &mut sp.fim_rep, &["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"]);
    detect(tokens, &mut sp.fim_sep, &["<|file_sep|>"]);

    // Control tokens whose text contains "unused" are unused.
    for t in tokens.iter_mut() {
        if t.attr.has(TokenAttr::CONTROL) && t.text.contains("unused") {
            t.attr.0 |= TokenAttr::UNUSED.0;
        }
    }
}

/// Token texts that end generation (llama-vocab.cpp "maintain a list of
/// tokens that cause end-of-generation").
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

fn end_of_generation_set(tokens: &mut [TokenData], token_to_id: &HashMap<String, u32>, sp: &SpecialIds) -> BTreeSet<u32> {
    let mut eog = BTreeSet::new();
    for id in [sp.fim_pad, sp.fim_rep, sp.fim_sep].into_iter().flatten() {
        eog.insert(id);
    }
    for name in EOG_TEXTS {
        if let Some(&id) = token_to_id.get(*name) {
            eog.insert(id);
            make_control(tokens, id);
        }
    }
    // gpt-oss: these are always rendered.
    for name in ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"] {
        if let Some(&id) = token_to_id.get(name) {
            tokens[id as usize].attr = TokenAttr::USER_DEFINED;
        }
    }
    for id in [sp.eos, sp.eot, sp.eom].into_iter().flatten() {
        eog.insert(id);
    }
    let text_of = |tokens: &[TokenData], id: u32| tokens[id as usize].text.clone();
    // o200k_harmony and solar-open: "<|end|>" separates messages there and is
    // not end of generation.
    let texts: Vec<(u32, String)> = eog.iter().map(|&id| (id, text_of(tokens, id))).collect();
    let has = |t: &str| texts.iter().any(|(_, x)| x == t);
    if let Some(&(end_id, _)) = texts.iter().find(|(_, x)| x == "<|end|>") {
        let has_call = has("<|call|>") || has("<|calls|>");
        if has_call && (has("<|return|>") || has("<|flush|>")) {
            eog.remove(&end_id);
            tokens[end_id as usize].attr = TokenAttr::USER_DEFINED;
        }
    }
    // Gemma 4 and PLaMo have an ordinary "</s>".
    if has("<|tool_response>") || has("<|plamo:eos|>") {
        if let Some(&(s_id, _)) = texts.iter().find(|(_, x)| x == "</s>") {
            eog.remove(&s_id);
            tokens[s_id as usize].attr = TokenAttr::NORMAL;
        }
    }
    eog
}

/// Attribute fix-ups llama.cpp derives from the model and pre-tokenizer names
/// (llama-vocab.cpp "Handle per token attributes"). They run after the piece
/// and special-token caches are built, as there.
fn apply_model_attrs(tok: &mut Tokenizer, g: &GgufFile) -> Result<(), TokenizerError> {
    let name = g.get_str("general.name")?.unwrap_or("").to_lowercase();
    let arch = g.get_str("general.architecture")?.unwrap_or("");
    let pre = g.get_str(KEY_PRE)?.unwrap_or("");
    let set = |tok: &mut Tokenizer, text: &str, attr: TokenAttr, on: bool| {
        if let Some(&id) = tok.token_to_id.get(text) {
            let a = &mut tok.tokens[id as usize].attr;
            a.0 = if on { a.0 | attr.0 } else { a.0 & !attr.0 };
        }
    };
    if ["jina-v2-de", "jina-v2-es", "jina-v2-code"].iter().any(|s| pre.contains(s))
        || ["nomic-bert-moe", "jina-bert-v3"].iter().any(|s| arch.contains(s))
    {
        set(tok, "<mask>", TokenAttr::LSTRIP, true);
    } else if name.contains("phi-3") || name.contains("phi3") {
        for i in 0..tok.special_cache.len() {
            let id = tok.special_cache[i];
            tok.tokens[id as usize].attr.0 |= TokenAttr::RSTRIP.0;
        }
        set(tok, "</s>", TokenAttr::RSTRIP, true);
        for t in ["<unk>", "<s>", "<|endoftext|>"] {
            set(tok, t, TokenAttr::RSTRIP, false);
        }
    } else if name.contains("modern-bert") {
        set(tok, "[MASK]", TokenAttr::LSTRIP, true);
    }
    Ok(())
}

/// llama.cpp's `linefeed_id`: the byte token for '\n' (SentencePiece), the
/// padding token (WordPiece), or the first token of "\n".
fn newline_token(tok: &Tokenizer) -> Option<u32> {
    match tok.kind {
        VocabKind::Spm => tok.byte_token(b'\n').or(tok.special.pad),
        VocabKind::Wpm => tok.special.pad,
        _ => {
            let mut out = Vec::new();
            match tok.kind {
                VocabKind::Bpe => crate::bpe::tokenize_text(tok, "\n", &mut out),
                VocabKind::Ugm => crate::ugm::tokenize(tok, "\n", &mut out),
                _ => crate::rwkv::tokenize(tok, "\n", &mut out),
            }
            out.first().copied().or(tok.special.pad)
        }
    }
}
