//! Pre-tokenization: splitting text into words before BPE, the way
//! llama.cpp's `unicode_regex_split` does (src/unicode.cpp).
//!
//! A pre-tokenizer is a list of regexes applied in turn. Each regex splits
//! every current segment into its matches *and* the gaps between them, so
//! the segments always tile the text. llama.cpp answers the most common
//! regexes (GPT-2, Llama 3, Qwen2, Qwen3.5, Kimi-K2, AFMoE digits,
//! "newline runs") with hand-written scanners; these are reproduced below
//! branch for branch, including their small departures from the regexes they
//! stand for, because those departures decide the token ids.
//!
//! Every other regex goes through `std::regex` (ECMAScript) in llama.cpp,
//! after one of two rewrites:
//! * if the regex names a Unicode category (`\p{L}`, `\p{N}`, ...), every
//!   non-ASCII code point of the text is replaced by one stand-in per class
//!   (whitespace becomes U+000B), and `\p{X}` becomes "that stand-in or the
//!   ASCII members of X" ("collapsed" mode);
//! * otherwise the regex runs on code points, non-ASCII whitespace replaced
//!   by U+000B ("wide" mode).
//!
//! In both modes `\s`, `\d`, `\w` and `\b` are ASCII-only (the C locale).
//! This module parses that ECMAScript subset, applies the same rewrite, and
//! emits an equivalent pattern with every class spelled out as explicit code
//! point ranges for `fancy-regex`, whose leftmost-first backtracking
//! semantics are ECMAScript's. `fancy-regex` was chosen over a hand-written
//! matcher because the lookahead-free parts are delegated to the `regex`
//! crate's linear-time engines, so the common cases cannot go quadratic.
//! Iteration follows `std::regex_iterator`, including its rule for empty
//! matches.
//!
//! Deliberately absent: backreferences, lookbehind and inline flags in the
//! source regexes (none of llama.cpp's pre-tokenizers use them).

use crate::error::TokenizerError;
use crate::unicode::{self, Flags};

/// The pre-tokenizer regex families llama.cpp knows
/// (`LLAMA_VOCAB_PRE_TYPE_*`). Several `tokenizer.ggml.pre` names share one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreType {
    Default,
    Llama3,
    Jais2,
    Dbrx,
    Smaug,
    DeepseekLlm,
    Deepseek3Llm,
    HunyuanDense,
    JoyaiLlm,
    HyV4,
    Spark2_5,
    Youtu,
    DeepseekCoder,
    Falcon,
    Mpt,
    Starcoder,
    Refact,
    CommandR,
    Smollm,
    Codeshell,
    Exaone,
    Minerva,
    Mellum2,
    Gpt2,
    Olmo,
    Jais,
    Trillion,
    GraniteDocling,
    Stablelm2,
    Qwen2,
    Hunyuan,
    SolarOpen,
    Qwen35,
    Poro,
    Bloom,
    Gpt3Finnish,
    Chatglm4,
    Viking,
    Tekken,
    Chameleon,
    Gpt4o,
    MinimaxM2,
    GraniteEmbMulti,
    TinyAya,
    KimiK2,
    Superbpe,
    Bailingmoe,
    SeedCoder,
    Ufakzeka,
    Grok2,
    Afmoe,
    Laguna,
    ExaoneMoe,
    Gemma4,
    SarvamMoe,
    Minicpm5,
    Whitespace,
}

const CONTRACTIONS_LLAMA3: &str = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const GPT2: &str = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
const QWEN2: &str = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const QWEN35: &str = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const NEWLINES: &str = "[^\\n]+|[\\n]+";
const DEEPSEEK3_MAIN: &str = "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+";
const CJK_KANA: &str = "[一-龥぀-ゟ゠-ヿ]+";
const BLOOM: &str = " ?[^(\\s|.,!?…。，、।۔،)]+";

impl PreType {
    /// The regexes llama.cpp applies for this family, in order
    /// (src/llama-vocab.cpp, `llm_tokenizer_bpe`'s constructor).
    pub fn regexes(self) -> &'static [&'static str] {
        use PreType::*;
        match self {
            Llama3 | Dbrx | Smaug | Chatglm4 => &[CONTRACTIONS_LLAMA3],
            Jais2 => &["(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s{512}(?!\\S)|\\s{256}(?!\\S)|\\s{128}(?!\\S)|\\s{64}(?!\\S)|\\s{32}(?!\\S)|\\s{16}(?!\\S)|\\s{8}(?!\\S)|\\s{4}(?!\\S)|\\s{1,2}(?!\\S)|\\s{1}"],
            DeepseekLlm => &[
                "[\r\n]",
                "\\s?[A-Za-z\u{B5}\u{C0}-\u{D6}\u{D8}-\u{F6}\u{F8}-\u{1BA}\u{1BC}-\u{1BF}\u{1C4}-\u{293}\u{295}-\u{2AF}\u{370}-\u{373}\u{376}\u{377}\u{37B}-\u{37D}\u{37F}\u{386}\u{388}-\u{38A}\u{38C}\u{38E}-\u{3A1}\u{3A3}-\u{3F5}\u{3F7}-\u{481}\u{48A}-\u{52F}\u{531}-\u{556}\u{10A0}-\u{10C5}\u{13A0}-\u{13F5}\u{13F8}-\u{13FD}\u{1C90}-\u{1CBA}\u{1CBD}-\u{1CBF}\u{1D00}-\u{1D2B}\u{1D6B}-\u{1D77}\u{1D79}-\u{1D9A}\u{1E00}-\u{1F15}\u{1F18}-\u{1F1D}\u{1F20}-\u{1F45}\u{1F48}-\u{1F4D}\u{1F50}-\u{1F57}\u{1F59}\u{1F5B}\u{1F5D}\u{1F5F}-\u{1F7D}\u{1F80}-\u{1FB4}\u{1FB6}-\u{1FBC}\u{1FBE}\u{1FC2}-\u{1FC4}\u{1FC6}-\u{1FCC}\u{1FD0}-\u{1FD3}\u{1FD6}-\u{1FDB}\u{1FE0}-\u{1FEC}\u{1FF2}-\u{1FF4}\u{1FF6}-\u{1FFC}\u{2102}\u{2107}\u{210A}-\u{2113}\u{2115}\u{2119}-\u{211D}\u{2124}\u{2126}\u{2128}\u{212A}-\u{212D}\u{212F}-\u{2134}\u{2139}\u{213C}-\u{213F}\u{2145}-\u{2149}\u{214E}\u{2183}\u{2184}\u{2C00}-\u{2C7B}\u{2C7E}-\u{2CE4}\u{2CEB}-\u{2CEE}\u{2CF2}\u{2CF3}\u{A640}-\u{A66D}\u{A680}-\u{A69B}\u{A722}-\u{A76F}\u{A771}-\u{A787}\u{A78B}-\u{A78E}\u{AB70}-\u{ABBF}\u{FB00}-\u{FB06}\u{FB13}-\u{FB17}\u{FF21}-\u{FF3A}\u{FF41}-\u{FF5A}\u{10400}-\u{1044F}\u{104B0}-\u{104D3}\u{104D8}-\u{104FB}\u{10C80}-\u{10CB2}\u{10CC0}-\u{10CF2}\u{118A0}-\u{118DF}\u{1E900}-\u{1E943}]+",
                "\\s?[!-/:-~！-／：-～‘-‟　-。]+",
                "\\s+$",
                "[一-龥ࠀ-一가-퟿]+",
                "\\p{N}+",
            ],
            Deepseek3Llm | HunyuanDense | JoyaiLlm | HyV4 => &["\\p{N}{1,3}", CJK_KANA, DEEPSEEK3_MAIN],
            Spark2_5 => &[
                "\\p{N}{1,3}",
                CJK_KANA,
                "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+|[\r\n]|\\s+(?!\\S)|\\s+",
                "\\p{N}",
            ],
            Youtu => &[
                "[가-힣ㄱ-ㆎ]+|[！…“”‘’—：；，、-〿︰-﹏]+|[ㄅ-ㄯ]+|[一-龥぀-ゟ゠-ヿ]+",
                "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
            ],
            DeepseekCoder => &["[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[一-龥ࠀ-一가-퟿]+", "\\p{N}"],
            Falcon => &["[\\p{P}\\$\\+<=>\\^~\\|`]+", GPT2, "[0-9][0-9][0-9]"],
            Starcoder | Refact | CommandR | Smollm | Codeshell | Exaone | Minerva | Mellum2 => &["\\p{N}", GPT2],
            Gpt2 | Mpt | Olmo | Jais | Trillion | GraniteDocling => &[GPT2],
            Stablelm2 | Qwen2 | Hunyuan | SolarOpen | Grok2 => &[QWEN2],
            Qwen35 => &[QWEN35],
            Poro | Bloom | Gpt3Finnish => &[BLOOM],
            Viking => &[BLOOM, "\\p{N}"],
            Tekken => &["[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"],
            Chameleon => &[
                "<sentinel:[0-9]+>",
                "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z",
                "([\\t\\n]|    |  )",
                "\\p{N}",
                "[\\p{P}!-/:-@\\[-`{-~]",
                GPT2,
            ],
            Gpt4o | MinimaxM2 => &["[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"],
            GraniteEmbMulti => &["[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}\\p{M}])([^a-z]))*((?=[\\p{L}\\p{M}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}\\p{M}])([^a-z]))+((?=[\\p{L}\\p{M}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"],
            TinyAya => &[
                "\\d{1,3}(?=(?:\\d{3})*\\b)",
                "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
            ],
            KimiK2 => &["\\p{Han}+"],
            Superbpe => &["\\p{N}+", "(?=(\\d{3})+(?!\\d))"],
            Bailingmoe => &["'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+"],
            SeedCoder => &["(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}| ?[^\\s\\p{L}\\p{N}\\r\\n]+|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"],
            Ufakzeka => &["[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"],
            Afmoe => &[
                "\\p{AFMoE_digits}",
                "[一-鿿㐀-䶿豈-﫿぀-ゟ゠-ヿ･-ﾟ⼀-⿟เ-๿຀-໿ក-៿က-႟ꩠ-ꩿꧠ-꧿가-힯ᄀ-ᇿ]+",
                "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
            ],
            Laguna => &[NEWLINES, QWEN2],
            ExaoneMoe => &["(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?(?:\\p{L}\\p{M}*(?: \\p{L}\\p{M}*)*)+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]?|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+"],
            Gemma4 | SarvamMoe => &[NEWLINES],
            Minicpm5 => &[
                "\\p{N}{1,3}",
                "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}+| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
            ],
            Whitespace => &["\\S+"],
            Default => &["[\\p{P}\\$\\+<=>\\^~\\|]+", GPT2, "\\p{N}+", "[0-9][0-9][0-9]"],
        }
    }

    /// Whether words are mapped through GPT-2's byte-to-unicode table before
    /// merging (false for SentencePiece-style BPE on raw UTF-8).
    pub fn byte_encode(self) -> bool {
        !matches!(self, PreType::Gemma4 | PreType::SarvamMoe | PreType::Whitespace)
    }
}

/// One step of a pre-tokenizer.
#[derive(Debug)]
enum Splitter {
    Gpt2,
    Llama3,
    Qwen2,
    Qwen35,
    KimiK2,
    AfmoeDigits,
    Newlines,
    Regex(Box<EcmaRegex>),
}

/// A compiled pre-tokenizer (one regex list).
#[derive(Debug)]
pub(crate) struct PreTokenizer {
    steps: Vec<Splitter>,
    byte_encode: bool,
}

impl PreTokenizer {
    pub fn new(pre: PreType) -> Result<PreTokenizer, TokenizerError> {
        Self::from_regexes(pre.regexes(), pre.byte_encode())
    }

    pub fn from_regexes(regexes: &[&str], byte_encode: bool) -> Result<PreTokenizer, TokenizerError> {
        let mut steps = Vec::with_capacity(regexes.len());
        for &r in regexes {
            // The same exact-string dispatch as llama.cpp's
            // `unicode_regex_split_custom`.
            let step = match r {
                GPT2 => Splitter::Gpt2,
                CONTRACTIONS_LLAMA3
                | "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+" => {
                    Splitter::Llama3
                }
                QWEN2 => Splitter::Qwen2,
                QWEN35 => Splitter::Qwen35,
                "\\p{Han}+" => Splitter::KimiK2,
                "\\p{AFMoE_digits}" | "\\d{1,3}(?=(?:\\d{3})*\\b)" => Splitter::AfmoeDigits,
                NEWLINES => Splitter::Newlines,
                other => Splitter::Regex(Box::new(EcmaRegex::new(other)?)),
            };
            steps.push(step);
        }
        Ok(PreTokenizer { steps, byte_encode })
    }

    /// Splits `text` into words. With byte encoding on, each word is returned
    /// in GPT-2's byte-to-unicode alphabet.
    pub fn split(&self, text: &str) -> Vec<String> {
        let cpts = unicode::cpts(text);
        let mut offsets = vec![cpts.len()];
        let mut mapped = MappedText::default();
        for step in &self.steps {
            if cpts.is_empty() {
                break;
            }
            offsets = match step {
                Splitter::Gpt2 => split_segments(&cpts, &offsets, split_gpt2),
                Splitter::Llama3 => split_segments(&cpts, &offsets, |c, a, b, out| split_llama3_like(c, a, b, out, Digits::UpTo3, false)),
                Splitter::Qwen2 => split_segments(&cpts, &offsets, |c, a, b, out| split_llama3_like(c, a, b, out, Digits::One, false)),
                Splitter::Qwen35 => split_segments(&cpts, &offsets, |c, a, b, out| split_llama3_like(c, a, b, out, Digits::One, true)),
                Splitter::KimiK2 => split_segments(&cpts, &offsets, split_kimi_k2),
                Splitter::AfmoeDigits => split_segments(&cpts, &offsets, split_afmoe_digits),
                Splitter::Newlines => split_segments(&cpts, &offsets, split_newline_runs),
                Splitter::Regex(re) => re.split(&cpts, &offsets, &mut mapped),
            };
        }
        let mut words = Vec::with_capacity(offsets.len());
        let mut start = 0usize;
        for &len in &offsets {
            let seg = &cpts[start..start + len];
            start += len;
            if seg.is_empty() {
                continue;
            }
            let mut w = String::with_capacity(len * 2);
            for &cp in seg {
                let ch = char::from_u32(cp).unwrap_or('\u{FFFD}');
                if self.byte_encode {
                    let mut buf = [0u8; 4];
                    for &b in ch.encode_utf8(&mut buf).as_bytes() {
                        w.push(unicode::byte_to_char(b));
                    }
                } else {
                    w.push(ch);
                }
            }
            words.push(w);
        }
        words
    }
}

/// Runs a scanner over every segment; the scanner appends the lengths of the
/// pieces of `cpts[start..end]` to `out`.
fn split_segments(cpts: &[u32], offsets: &[usize], mut scan: impl FnMut(&[u32], usize, usize, &mut Vec<usize>)) -> Vec<usize> {
    let mut out = Vec::with_capacity(offsets.len() * 4);
    let mut start = 0;
    for &len in offsets {
        scan(cpts, start, start + len, &mut out);
        start += len;
    }
    out
}

const OUT_OF_RANGE: u32 = 0xFFFF_FFFF;

/// A segment view with llama.cpp's out-of-segment conventions: code point
/// `OUT_OF_RANGE` and empty flags past either end.
struct Seg<'a> {
    cpts: &'a [u32],
    start: usize,
    end: usize,
    prev_end: usize,
    out: &'a mut Vec<usize>,
}

impl Seg<'_> {
    #[inline]
    fn cpt(&self, pos: usize) -> u32 {
        if pos >= self.start && pos < self.end {
            self.cpts[pos]
        } else {
            OUT_OF_RANGE
        }
    }
    #[inline]
    fn flags(&self, pos: usize) -> Flags {
        if pos >= self.start && pos < self.end {
            unicode::flags(self.cpts[pos])
        } else {
            Flags::NONE
        }
    }
    /// Ends the current piece at `end`; returns its length.
    #[inline]
    fn add(&mut self, end: usize) -> usize {
        let len = end.saturating_sub(self.prev_end);
        if len > 0 {
            self.out.push(len);
        }
        self.prev_end = end;
        len
    }

    /// `'s|'t|'re|'ve|'m|'ll|'d` at `pos`; the length matched (0, 2 or 3).
    fn contraction(&self, pos: usize, fold_case: bool) -> usize {
        if self.cpt(pos) != '\'' as u32 || pos + 1 >= self.end {
            return 0;
        }
        let low = |c: u32| if fold_case { unicode::to_lower(c) } else { c };
        let n1 = low(self.cpt(pos + 1));
        if [b's', b't', b'm', b'd'].iter().any(|&c| n1 == c as u32) {
            return 2;
        }
        if pos + 2 < self.end {
            let n2 = low(self.cpt(pos + 2));
            let pair = |a: u8, b: u8| n1 == a as u32 && n2 == b as u32;
            if pair(b'r', b'e') || pair(b'v', b'e') || pair(b'l', b'l') {
                return 3;
            }
        }
        0
    }

    /// The whitespace run at `pos`: `(length, end of its last \r or \n)`.
    fn whitespace_run(&self, pos: usize) -> (usize, usize) {
        let mut n = 0;
        let mut last_nl_end = 0;
        while self.flags(pos + n).is_whitespace() {
            let c = self.cpt(pos + n);
            if c == '\r' as u32 || c == '\n' as u32 {
                last_nl_end = pos + n + 1;
            }
            n += 1;
        }
        (n, last_nl_end)
    }
}

/// llama.cpp `unicode_regex_split_custom_gpt2`, for
/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)`.
fn split_gpt2(cpts: &[u32], start: usize, end: usize, out: &mut Vec<usize>) {
    let mut s = Seg { cpts, start, end, prev_end: start, out };
    let mut pos = start;
    while pos < end {
        let cpt = s.cpt(pos);
        let flags = s.flags(pos);
        let n = s.contraction(pos, false);
        if n > 0 {
            pos += s.add(pos + n);
            continue;
        }
        let space = cpt == ' ' as u32;
        let mut f2 = if space { s.flags(pos + 1) } else { flags };
        if f2.is_letter() {
            pos += space as usize;
            while f2.is_letter() {
                pos += 1;
                f2 = s.flags(pos);
            }
            s.add(pos);
            continue;
        }
        if f2.is_number() {
            pos += space as usize;
            while f2.is_number() {
                pos += 1;
                f2 = s.flags(pos);
            }
            s.add(pos);
            continue;
        }
        let other = |f: Flags| !(f.is_whitespace() || f.is_letter() || f.is_number()) && f.is_some();
        if other(f2) {
            pos += space as usize;
            while other(f2) {
                pos += 1;
                f2 = s.flags(pos);
            }
            s.add(pos);
            continue;
        }
        let (n_ws, _) = s.whitespace_run(pos);
        if n_ws > 1 && s.cpt(pos + n_ws) != OUT_OF_RANGE {
            pos += n_ws - 1;
            s.add(pos);
            continue;
        }
        if n_ws > 0 {
            pos += n_ws;
            s.add(pos);
            continue;
        }
        pos += 1;
        s.add(pos);
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Digits {
    One,
    UpTo3,
}

/// llama.cpp `unicode_regex_split_custom_llama3` (digits in runs of up to
/// three), `..._qwen2` (single digits) and `..._qwen35` (letter runs also
/// take combining marks). The regex they stand for is
/// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`.
fn split_llama3_like(cpts: &[u32], start: usize, end: usize, out: &mut Vec<usize>, digits: Digits, marks: bool) {
    let mut s = Seg { cpts, start, end, prev_end: start, out };
    let wordish = |f: Flags| f.is_letter() || (marks && f.is_mark());
    let mut pos = start;
    while pos < end {
        let cpt = s.cpt(pos);
        let flags = s.flags(pos);
        let n = s.contraction(pos, true);
        if n > 0 {
            pos += s.add(pos + n);
            continue;
        }
        // [^\r\n\p{L}\p{N}]?\p{L}+
        if !(cpt == '\r' as u32 || cpt == '\n' as u32 || flags.is_number()) && (wordish(flags) || wordish(s.flags(pos + 1))) {
            pos += 1;
            while wordish(s.flags(pos)) {
                pos += 1;
            }
            s.add(pos);
            continue;
        }
        if flags.is_number() {
            match digits {
                Digits::One => {
                    pos += 1;
                    s.add(pos);
                }
                Digits::UpTo3 => {
                    let mut ini = pos;
                    while s.flags(pos).is_number() {
                        pos += 1;
                        if pos - ini >= 3 {
                            s.add(pos);
                            ini = pos;
                        }
                    }
                    s.add(pos);
                }
            }
            continue;
        }
        // ` ?[^\s\p{L}\p{N}]+[\r\n]*`; the entry test looks at the flags of
        // `pos` itself, as llama.cpp does.
        let space = cpt == ' ' as u32;
        let mut f2 = if space { s.flags(pos + 1) } else { flags };
        let other = |f: Flags| !(f.is_whitespace() || f.is_letter() || (marks && f.is_mark()) || f.is_number());
        if other(f2) && flags.is_some() {
            pos += space as usize;
            while other(f2) && f2.is_some() {
                pos += 1;
                f2 = s.flags(pos);
            }
            let mut c2 = s.cpt(pos);
            while c2 == '\r' as u32 || c2 == '\n' as u32 {
                pos += 1;
                c2 = s.cpt(pos);
            }
            s.add(pos);
            continue;
        }
        let (n_ws, last_nl_end) = s.whitespace_run(pos);
        if last_nl_end > 0 {
            pos = last_nl_end;
            s.add(pos);
            continue;
        }
        if n_ws > 1 && s.cpt(pos + n_ws) != OUT_OF_RANGE {
            pos += n_ws - 1;
            s.add(pos);
            continue;
        }
        if n_ws > 0 {
            pos += n_ws;
            s.add(pos);
            continue;
        }
        pos += 1;
        s.add(pos);
    }
}

/// llama.cpp `unicode_regex_split_custom_kimi_k2`: Han runs, then
/// Llama 3-like words that exclude Han, with trailing contractions.
fn split_kimi_k2(cpts: &[u32], start: usize, end: usize, out: &mut Vec<usize>) {
    let mut s = Seg { cpts, start, end, prev_end: start, out };
    let mut pos = start;
    while pos < end {
        let cpt = s.cpt(pos);
        let flags = s.flags(pos);
        if unicode::is_han(cpt) {
            while unicode::is_han(s.cpt(pos)) {
                pos += 1;
            }
            s.add(pos);
            continue;
        }
        let non_han_letter = |s: &Seg, p: usize| s.flags(p).is_letter() && !unicode::is_han(s.cpt(p));
        let lead_ok = !(cpt == '\r' as u32 || cpt == '\n' as u32 || flags.is_letter() || flags.is_number());
        let is_letter_pattern = (flags.is_letter() && !unicode::is_han(cpt)) || (lead_ok && non_han_letter(&s, pos + 1));
        if is_letter_pattern {
            let mut has_leading = false;
            if lead_ok {
                has_leading = true;
                pos += 1;
            }
            let mut has_letters = false;
            while non_han_letter(&s, pos) {
                has_letters = true;
                pos += 1;
            }
            if has_letters || (!has_leading && non_han_letter(&s, pos)) {
                if !has_letters {
                    pos += 1;
                }
                while non_han_letter(&s, pos) {
                    pos += 1;
                }
                if s.cpt(pos) == '\'' as u32 && pos + 1 < end {
                    let n1 = unicode::to_lower(s.cpt(pos + 1));
                    if [b's', b't', b'm', b'd'].iter().any(|&c| n1 == c as u32) {
                        pos += 2;
                    } else if pos + 2 < end {
                        let n2 = unicode::to_lower(s.cpt(pos + 2));
                        let pair = |a: u8, b: u8| n1 == a as u32 && n2 == b as u32;
                        if pair(b'r', b'e') || pair(b'v', b'e') || pair(b'l', b'l') {
                            pos += 3;
                        }
                    }
                }
                s.add(pos);
                continue;
            } else if has_leading {
                pos -= 1;
            }
        }
        if flags.is_number() {
            let mut ini = pos;
            while s.flags(pos).is_number() {
                pos += 1;
                if pos - ini >= 3 {
                    s.add(pos);
                    ini = pos;
                }
            }
            s.add(pos);
            continue;
        }
        let space = cpt == ' ' as u32;
        let mut f2 = if space { s.flags(pos + 1) } else { flags };
        let other = |f: Flags| !(f.is_whitespace() || f.is_letter() || f.is_number()) && f.is_some();
        if other(f2) {
            pos += space as usize;
            while other(f2) {
                pos += 1;
                f2 = s.flags(pos);
            }
            let mut c2 = s.cpt(pos);
            while c2 == '\r' as u32 || c2 == '\n' as u32 {
                pos += 1;
                c2 = s.cpt(pos);
            }
            s.add(pos);
            continue;
        }
        let (n_ws, last_nl_end) = s.whitespace_run(pos);
        if last_nl_end > 0 {
            pos = last_nl_end;
            s.add(pos);
            continue;
        }
        if n_ws > 1 && s.cpt(pos + n_ws) != OUT_OF_RANGE {
            pos += n_ws - 1;
            s.add(pos);
            continue;
        }
        if n_ws > 0 {
            pos += n_ws;
            s.add(pos);
            continue;
        }
        pos += 1;
        s.add(pos);
    }
}

/// llama.cpp `unicode_regex_split_custom_afmoe`: each digit run is cut into
/// groups of three counted from its end; everything else stays whole.
fn split_afmoe_digits(cpts: &[u32], start: usize, end: usize, out: &mut Vec<usize>) {
    let mut s = Seg { cpts, start, end, prev_end: start, out };
    let mut pos = start;
    while pos < end {
        if s.flags(pos).is_number() {
            let digit_start = pos;
            while pos < end && s.flags(pos).is_number() {
                pos += 1;
            }
            let count = pos - digit_start;
            let mut cur = digit_start;
            let rem = count % 3;
            if rem > 0 {
                s.add(cur + rem);
                cur += rem;
            }
            while cur < digit_start + count {
                s.add(cur + 3);
                cur += 3;
            }
            continue;
        }
        pos += 1;
    }
    if s.prev_end < end {
        s.add(end);
    }
}

/// `[^\n]+|[\n]+` (llama.cpp `unicode_regex_split_custom_newlines`).
fn split_newline_runs(cpts: &[u32], start: usize, end: usize, out: &mut Vec<usize>) {
    let mut pos = start;
    while pos < end {
        let nl = cpts[pos] == '\n' as u32;
        let run = pos;
        while pos < end && (cpts[pos] == '\n' as u32) == nl {
            pos += 1;
        }
        out.push(pos - run);
    }
}

// ---------------------------------------------------------------------------
// ECMAScript regexes through fancy-regex
// ---------------------------------------------------------------------------

/// Stand-ins for non-ASCII code points in collapsed mode (llama.cpp
/// `k_ucat_cpt`; the values are bytes there, code points here).
const COLLAPSED_OTHER: u32 = 0xD0;
const COLLAPSED_WS: u32 = 0x0B;

fn collapsed_stand_in(class: u16) -> u32 {
    match class {
        unicode::NUMBER => 0xD1,
        unicode::LETTER => 0xD2,
        unicode::PUNCTUATION => 0xD3,
        unicode::MARK => 0xD4,
        unicode::SYMBOL => 0xD5,
        _ => COLLAPSED_OTHER,
    }
}

/// The ASCII members of each class (their Unicode general categories; the
/// same sets as llama.cpp's `k_ucat_map`).
fn ascii_members(class: u16) -> &'static [(u32, u32)] {
    match class {
        unicode::NUMBER => &[(0x30, 0x39)],
        unicode::LETTER => &[(0x41, 0x5A), (0x61, 0x7A)],
        unicode::PUNCTUATION => &[(0x21, 0x23), (0x25, 0x2A), (0x2C, 0x2F), (0x3A, 0x3B), (0x3F, 0x40), (0x5B, 0x5D), (0x5F, 0x5F), (0x7B, 0x7B), (0x7D, 0x7D)],
        unicode::SYMBOL => &[(0x24, 0x24), (0x2B, 0x2B), (0x3C, 0x3E), (0x5E, 0x5E), (0x60, 0x60), (0x7C, 0x7C), (0x7E, 0x7E)],
        _ => &[],
    }
}

/// The category names llama.cpp rewrites (`k_ucat_enum`); the mere presence
/// of one anywhere in a regex switches it to collapsed mode.
const CATEGORY_NAMES: [(&str, u16); 10] = [
    ("\\p{N}", unicode::NUMBER),
    ("\\p{L}", unicode::LETTER),
    ("\\p{P}", unicode::PUNCTUATION),
    ("\\p{M}", unicode::MARK),
    ("\\p{S}", unicode::SYMBOL),
    ("\\p{Lu}", unicode::LETTER),
    ("\\p{Ll}", unicode::LETTER),
    ("\\p{Lt}", unicode::LETTER),
    ("\\p{Lm}", unicode::LETTER),
    ("\\p{Lo}", unicode::LETTER),
];

const ASCII_SPACE: &[(u32, u32)] = &[(0x09, 0x0D), (0x20, 0x20)];
const ASCII_DIGIT: &[(u32, u32)] = &[(0x30, 0x39)];
const ASCII_WORD: &[(u32, u32)] = &[(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)];

/// A set of code points as sorted, disjoint, non-adjacent inclusive ranges.
#[derive(Clone, Debug, Default, PartialEq)]
struct CharSet(Vec<(u32, u32)>);

impl CharSet {
    fn from_ranges(r: &[(u32, u32)]) -> CharSet {
        let mut s = CharSet(r.to_vec());
        s.normalize();
        s
    }
    fn add(&mut self, lo: u32, hi: u32) {
        self.0.push((lo.min(hi), lo.max(hi)));
    }
    fn union(&mut self, other: &CharSet) {
        self.0.extend_from_slice(&other.0);
    }
    fn normalize(&mut self) {
        self.0.sort_unstable();
        let mut out: Vec<(u32, u32)> = Vec::with_capacity(self.0.len());
        for &(lo, hi) in &self.0 {
            match out.last_mut() {
                Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                _ => out.push((lo, hi)),
            }
        }
        self.0 = out;
    }
    fn complement(&self) -> CharSet {
        let mut out = Vec::new();
        let mut next = 0u32;
        for &(lo, hi) in &self.0 {
            if lo > next {
                out.push((next, lo - 1));
            }
            next = hi.saturating_add(1);
        }
        if next <= 0x10FFFF {
            out.push((next, 0x10FFFF));
        }
        CharSet(out)
    }
    /// The set as a fancy-regex class; surrogates are left out because no
    /// `char` is one.
    fn to_pattern(&self) -> String {
        let mut parts = String::new();
        for &(lo, hi) in &self.0 {
            for (a, b) in [(lo, hi.min(0xD7FF)), (lo.max(0xE000), hi.min(0x10FFFF))] {
                if a <= b {
                    if a == b {
                        parts.push_str(&format!("\\x{{{a:X}}}"));
                    } else {
                        parts.push_str(&format!("\\x{{{a:X}}}-\\x{{{b:X}}}"));
                    }
                }
            }
        }
        if parts.is_empty() {
            // Matches nothing.
            "(?!)".to_string()
        } else {
            format!("[{parts}]")
        }
    }
}

#[derive(Debug)]
enum Node {
    Set(CharSet),
    Start,
    End,
    WordBoundary(bool),
    Look { negate: bool, inner: Box<Node> },
    Group(Box<Node>),
    Concat(Vec<Node>),
    Alt(Vec<Node>),
    Repeat { inner: Box<Node>, min: u32, max: Option<u32>, greedy: bool },
}

impl Node {
    fn emit(&self, out: &mut String) {
        match self {
            Node::Set(s) => out.push_str(&s.to_pattern()),
            Node::Start => out.push('^'),
            Node::End => out.push('$'),
            Node::WordBoundary(positive) => {
                // ECMAScript's \b with ASCII \w, spelled with lookarounds.
                let w = CharSet::from_ranges(ASCII_WORD).to_pattern();
                let b = format!("(?:(?<={w})(?!{w})|(?<!{w})(?={w}))");
                if *positive {
                    out.push_str(&b);
                } else {
                    out.push_str(&format!("(?!{b})"));
                }
            }
            Node::Look { negate, inner } => {
                out.push_str(if *negate { "(?!" } else { "(?=" });
                inner.emit(out);
                out.push(')');
            }
            Node::Group(inner) => {
                out.push_str("(?:");
                inner.emit(out);
                out.push(')');
            }
            Node::Concat(items) => {
                for it in items {
                    it.emit(out);
                }
            }
            Node::Alt(items) => {
                out.push_str("(?:");
                for (i, it) in items.iter().enumerate() {
                    if i > 0 {
                        out.push('|');
                    }
                    it.emit(out);
                }
                out.push(')');
            }
            Node::Repeat { inner, min, max, greedy } => {
                out.push_str("(?:");
                inner.emit(out);
                out.push(')');
                match (min, max) {
                    (0, None) => out.push('*'),
                    (1, None) => out.push('+'),
                    (0, Some(1)) => out.push('?'),
                    (n, None) => out.push_str(&format!("{{{n},}}")),
                    (n, Some(m)) => out.push_str(&format!("{{{n},{m}}}")),
                }
                if !greedy {
                    out.push('?');
                }
            }
        }
    }
}

/// Parser for the ECMAScript regex subset llama.cpp's pre-tokenizers use.
struct Parser<'a> {
    src: &'a str,
    chars: Vec<char>,
    pos: usize,
    collapsed: bool,
}

impl Parser<'_> {
    fn err(&self, reason: &str) -> TokenizerError {
        TokenizerError::BadRegex { regex: self.src.to_string(), reason: format!("{reason} at character {}", self.pos) }
    }
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn starts_with(&self, s: &str) -> bool {
        s.chars().enumerate().all(|(i, c)| self.chars.get(self.pos + i) == Some(&c))
    }

    fn disjunction(&mut self) -> Result<Node, TokenizerError> {
        let mut alts = vec![self.alternative()?];
        while self.eat('|') {
            alts.push(self.alternative()?);
        }
        Ok(if alts.len() == 1 { alts.pop().unwrap_or(Node::Concat(Vec::new())) } else { Node::Alt(alts) })
    }

    fn alternative(&mut self) -> Result<Node, TokenizerError> {
        let mut items = Vec::new();
        while let Some(c) = self.peek() {
            if c == '|' || c == ')' {
                break;
            }
            let atom = self.term()?;
            let atom = self.quantified(atom)?;
            items.push(atom);
        }
        Ok(Node::Concat(items))
    }

    fn quantified(&mut self, atom: Node) -> Result<Node, TokenizerError> {
        let (min, max) = match self.peek() {
            Some('*') => {
                self.pos += 1;
                (0, None)
            }
            Some('+') => {
                self.pos += 1;
                (1, None)
            }
            Some('?') => {
                self.pos += 1;
                (0, Some(1))
            }
            Some('{') => match self.braces() {
                Some(q) => q,
                None => return Ok(atom),
            },
            _ => return Ok(atom),
        };
        if matches!(atom, Node::Start | Node::End | Node::WordBoundary(_)) {
            return Err(self.err("quantifier after an assertion"));
        }
        let greedy = !self.eat('?');
        Ok(Node::Repeat { inner: Box::new(atom), min, max, greedy })
    }

    /// `{n}`, `{n,}` or `{n,m}`; `None` (nothing consumed) if the brace does
    /// not start a quantifier, in which case it is a literal.
    fn braces(&mut self) -> Option<(u32, Option<u32>)> {
        let save = self.pos;
        self.pos += 1;
        let num = |p: &mut Self| -> Option<u32> {
            let st = p.pos;
            while p.peek().is_some_and(|c| c.is_ascii_digit()) {
                p.pos += 1;
            }
            p.chars[st..p.pos].iter().collect::<String>().parse().ok()
        };
        let res = (|| {
            let min = num(self)?;
            let max = if self.eat(',') { if self.peek() == Some('}') { None } else { Some(num(self)?) } } else { Some(min) };
            if !self.eat('}') {
                return None;
            }
            Some((min, max))
        })();
        if res.is_none() {
            self.pos = save;
        }
        res
    }

    fn term(&mut self) -> Result<Node, TokenizerError> {
        let Some(c) = self.peek() else { return Err(self.err("unexpected end")) };
        match c {
            '^' => {
                self.pos += 1;
                Ok(Node::Start)
            }
            '$' => {
                self.pos += 1;
                Ok(Node::End)
            }
            '(' => {
                let look = if self.starts_with("(?=") {
                    Some(false)
                } else if self.starts_with("(?!") {
                    Some(true)
                } else {
                    None
                };
                if let Some(negate) = look {
                    self.pos += 3;
                    let inner = self.disjunction()?;
                    if !self.eat(')') {
                        return Err(self.err("unclosed group"));
                    }
                    return Ok(Node::Look { negate, inner: Box::new(inner) });
                }
                if self.starts_with("(?:") {
                    self.pos += 3;
                } else if self.starts_with("(?") {
                    return Err(self.err("unsupported group kind"));
                } else {
                    self.pos += 1;
                }
                let inner = self.disjunction()?;
                if !self.eat(')') {
                    return Err(self.err("unclosed group"));
                }
                Ok(Node::Group(Box::new(inner)))
            }
            '[' => self.class(),
            '.' => {
                self.pos += 1;
                // ECMAScript: anything but a line terminator.
                Ok(Node::Set(CharSet::from_ranges(&[(0x0A, 0x0A), (0x0D, 0x0D), (0x2028, 0x2029)]).complement()))
            }
            '\\' => {
                self.pos += 1;
                match self.peek() {
                    Some('b') => {
                        self.pos += 1;
                        Ok(Node::WordBoundary(true))
                    }
                    Some('B') => {
                        self.pos += 1;
                        Ok(Node::WordBoundary(false))
                    }
                    Some(d) if d.is_ascii_digit() && d != '0' => Err(self.err("backreferences are not supported")),
                    _ => Ok(Node::Set(self.escape(false)?)),
                }
            }
            '*' | '+' | '?' => Err(self.err("nothing to repeat")),
            ')' => Err(self.err("unmatched parenthesis")),
            _ => {
                self.pos += 1;
                self.literal(c as u32)
            }
        }
    }

    fn literal(&self, cp: u32) -> Result<Node, TokenizerError> {
        if self.collapsed && cp >= 0x80 {
            // llama.cpp refuses regexes mixing categories and non-ASCII.
            return Err(self.err("Unicode categories together with non-ASCII characters"));
        }
        Ok(Node::Set(CharSet(vec![(cp, cp)])))
    }

    /// The escape after a backslash (already consumed), as a set. In a class,
    /// `\b` is a backspace.
    fn escape(&mut self, in_class: bool) -> Result<CharSet, TokenizerError> {
        let Some(c) = self.peek() else { return Err(self.err("trailing backslash")) };
        self.pos += 1;
        let single = |cp: u32| CharSet(vec![(cp, cp)]);
        Ok(match c {
            'd' => CharSet::from_ranges(ASCII_DIGIT),
            'D' => CharSet::from_ranges(ASCII_DIGIT).complement(),
            's' => CharSet::from_ranges(ASCII_SPACE),
            'S' => CharSet::from_ranges(ASCII_SPACE).complement(),
            'w' => CharSet::from_ranges(ASCII_WORD),
            'W' => CharSet::from_ranges(ASCII_WORD).complement(),
            't' => single(0x09),
            'n' => single(0x0A),
            'v' => single(0x0B),
            'f' => single(0x0C),
            'r' => single(0x0D),
            '0' => single(0),
            'b' if in_class => single(0x08),
            'x' | 'u' => {
                let n = if c == 'x' { 2 } else { 4 };
                let hex: String = self.chars.iter().skip(self.pos).take(n).collect();
                match (hex.len() == n).then(|| u32::from_str_radix(&hex, 16).ok()).flatten() {
                    Some(v) => {
                        self.pos += n;
                        single(v)
                    }
                    None => single(c as u32),
                }
            }
            'p' => {
                self.pos -= 2;
                let rest: String = self.chars[self.pos..].iter().take(12).collect();
                let Some(&(name, class)) = CATEGORY_NAMES.iter().find(|(n, _)| rest.starts_with(n)) else {
                    return Err(self.err("unknown Unicode property"));
                };
                if !self.collapsed {
                    return Err(self.err("Unicode property outside collapsed mode"));
                }
                self.pos += name.chars().count();
                let mut set = CharSet::from_ranges(ascii_members(class));
                set.add(collapsed_stand_in(class), collapsed_stand_in(class));
                set.normalize();
                set
            }
            other => {
                if self.collapsed && other as u32 >= 0x80 {
                    return Err(self.err("Unicode categories together with non-ASCII characters"));
                }
                single(other as u32)
            }
        })
    }

    fn class(&mut self) -> Result<Node, TokenizerError> {
        self.pos += 1; // '['
        let negated = self.eat('^');
        let mut set = CharSet::default();
        loop {
            let Some(c) = self.peek() else { return Err(self.err("unclosed class")) };
            if c == ']' {
                self.pos += 1;
                break;
            }
            let (lo, lo_single) = self.class_atom()?;
            // A range needs single characters on both sides; otherwise '-' is
            // a literal (ECMAScript Annex B).
            if self.peek() == Some('-') && self.chars.get(self.pos + 1).is_some_and(|&c| c != ']') {
                if let Some(a) = lo_single {
                    let save = self.pos;
                    self.pos += 1;
                    let (hi, hi_single) = self.class_atom()?;
                    if let Some(b) = hi_single {
                        if b < a {
                            return Err(self.err("range out of order"));
                        }
                        set.add(a, b);
                        continue;
                    }
                    // `x-\s`: keep both atoms and the dash.
                    self.pos = save + 1;
                    set.union(&lo);
                    set.add('-' as u32, '-' as u32);
                    set.union(&hi);
                    continue;
                }
            }
            set.union(&lo);
        }
        set.normalize();
        Ok(Node::Set(if negated { set.complement() } else { set }))
    }

    /// One class member: its set, and the character if it is a single one.
    fn class_atom(&mut self) -> Result<(CharSet, Option<u32>), TokenizerError> {
        let Some(c) = self.peek() else { return Err(self.err("unclosed class")) };
        if c == '\\' {
            self.pos += 1;
            let class_escape = matches!(self.peek(), Some('d' | 'D' | 's' | 'S' | 'w' | 'W' | 'p'));
            let set = self.escape(true)?;
            let single = if class_escape { None } else { set.0.first().map(|r| r.0) };
            return Ok((set, single));
        }
        self.pos += 1;
        if self.collapsed && c as u32 >= 0x80 {
            return Err(self.err("Unicode categories together with non-ASCII characters"));
        }
        Ok((CharSet(vec![(c as u32, c as u32)]), Some(c as u32)))
    }
}

/// Which rewrite of the text a regex runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Collapsed,
    Wide,
}

/// The text rewritten for one mode: a `String` plus, for every byte offset
/// of a code point start, its code point index.
#[derive(Default)]
struct MappedText {
    collapsed: Option<(String, Vec<usize>, Vec<u32>)>,
    wide: Option<(String, Vec<usize>, Vec<u32>)>,
}

impl MappedText {
    /// `(text, byte offset of each code point (+ end), code point index of
    /// each byte offset (only valid at boundaries))`.
    fn get(&mut self, mode: Mode, cpts: &[u32]) -> (&str, &[usize], &[u32]) {
        let slot = match mode {
            Mode::Collapsed => &mut self.collapsed,
            Mode::Wide => &mut self.wide,
        };
        let (s, starts, index) = slot.get_or_insert_with(|| {
            let mut s = String::with_capacity(cpts.len() * 2);
            let mut starts = Vec::with_capacity(cpts.len() + 1);
            for &cp in cpts {
                starts.push(s.len());
                let f = unicode::flags(cp);
                let m = if cp < 0x80 {
                    cp
                } else if f.is_whitespace() {
                    COLLAPSED_WS
                } else if mode == Mode::Collapsed {
                    collapsed_stand_in(f.category())
                } else {
                    cp
                };
                s.push(char::from_u32(m).unwrap_or('\u{FFFD}'));
            }
            starts.push(s.len());
            let mut index = vec![0u32; s.len() + 1];
            for (i, &b) in starts.iter().enumerate() {
                index[b] = i as u32;
            }
            (s, starts, index)
        });
        (s.as_str(), starts.as_slice(), index.as_slice())
    }
}

/// A regex run the way `std::regex` runs it in llama.cpp.
pub(crate) struct EcmaRegex {
    mode: Mode,
    re: fancy_regex::Regex,
}

impl std::fmt::Debug for EcmaRegex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EcmaRegex").field("mode", &self.mode).field("pattern", &self.re.as_str()).finish()
    }
}

/// fancy-regex gives up after this many backtracking steps in one search;
/// the rest of the segment is then left unsplit rather than hanging.
const BACKTRACK_LIMIT: usize = 10_000_000;

impl EcmaRegex {
    pub fn new(src: &str) -> Result<EcmaRegex, TokenizerError> {
        let collapsed = CATEGORY_NAMES.iter().any(|(n, _)| src.contains(n));
        let mut p = Parser { src, chars: src.chars().collect(), pos: 0, collapsed };
        let ast = p.disjunction()?;
        if p.pos != p.chars.len() {
            return Err(p.err("unexpected character"));
        }
        let mut pattern = String::new();
        ast.emit(&mut pattern);
        let re = fancy_regex::RegexBuilder::new(&pattern)
            .backtrack_limit(BACKTRACK_LIMIT)
            .build()
            .map_err(|e| TokenizerError::BadRegex { regex: src.to_string(), reason: e.to_string() })?;
        Ok(EcmaRegex { mode: if collapsed { Mode::Collapsed } else { Mode::Wide }, re })
    }

    /// llama.cpp `unicode_regex_split_stl`: every segment becomes its
    /// matches plus the gaps between them.
    fn split(&self, cpts: &[u32], offsets: &[usize], mapped: &mut MappedText) -> Vec<usize> {
        let (text, starts, index) = mapped.get(self.mode, cpts);
        let mut out = Vec::with_capacity(offsets.len() * 2);
        let mut seg_start = 0usize;
        for &len in offsets {
            let b0 = starts[seg_start];
            let b1 = starts[seg_start + len];
            let hay = &text[b0..b1];
            let cp_at = |byte: usize| index[b0 + byte] as usize - seg_start;
            let mut last_end = 0usize; // code points, relative to the segment
            for (ms, me) in self.matches(hay) {
                let (s, e) = (cp_at(ms), cp_at(me));
                if s > last_end {
                    out.push(s - last_end);
                }
                // Empty matches leave a zero-length segment in llama.cpp,
                // which yields no word; dropping it changes nothing.
                if e > s {
                    out.push(e - s);
                }
                last_end = e;
            }
            if len > last_end {
                out.push(len - last_end);
            }
            seg_start += len;
        }
        out
    }

    /// Byte ranges of the successive matches in `hay`, following
    /// `std::regex_iterator`: after an empty match at `p`, a non-empty match
    /// must start exactly at `p`, otherwise the search resumes at the next
    /// character.
    fn matches(&self, hay: &str) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let mut pos = 0usize;
        let mut prev_empty = false;
        loop {
            let found = if prev_empty {
                if pos >= hay.len() {
                    break;
                }
                match self.find(hay, pos) {
                    Some((s, e)) if s == pos && e > s => Some((s, e)),
                    _ => {
                        pos += hay[pos..].chars().next().map_or(1, char::len_utf8);
                        self.find(hay, pos)
                    }
                }
            } else {
                self.find(hay, pos)
            };
            let Some((s, e)) = found else { break };
            out.push((s, e));
            prev_empty = s == e;
            pos = e;
            if pos > hay.len() {
                break;
            }
        }
        out
    }

    fn find(&self, hay: &str, pos: usize) -> Option<(usize, usize)> {
        if pos > hay.len() {
            return None;
        }
        match self.re.find_from_pos(hay, pos) {
            Ok(Some(m)) => Some((m.start(), m.end())),
            // No match, or the backtracking budget ran out.
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(regexes: &[&str], text: &str) -> Vec<String> {
        PreTokenizer::from_regexes(regexes, false).unwrap().split(text)
    }

    #[test]
    fn gpt2_scanner_splits_like_the_regex() {
        assert_eq!(words(&[GPT2], "Hello world's  end!!\n"), ["Hello", " world", "'s", " ", " end", "!!", "\n"]);
    }

    #[test]
    fn llama3_scanner_groups_digits_by_three() {
        assert_eq!(words(&[CONTRACTIONS_LLAMA3], "1234567 ab"), ["123", "456", "7", " ab"]);
        assert_eq!(words(&[QWEN2], "123"), ["1", "2", "3"]);
    }

    #[test]
    fn collapsed_regex_matches_category_stand_ins() {
        // \p{N}+ on text with non-ASCII digits (U+0663 ARABIC-INDIC THREE).
        assert_eq!(words(&["\\p{N}+"], "ab١٢3cd"), ["ab", "١٢3", "cd"]);
        // \p{L} includes non-ASCII letters via the stand-in.
        assert_eq!(words(&["\\s?\\p{L}+"], "héllo wörld"), ["héllo", " wörld"]);
    }

    #[test]
    fn wide_regex_and_lookahead() {
        assert_eq!(words(&["[一-龥]+"], "ab中文cd"), ["ab", "中文", "cd"]);
        assert_eq!(words(&["\\s+(?!\\S)|\\s+"], "a   b"), ["a", "  ", " ", "b"]);
    }

    #[test]
    fn empty_matches_follow_std_regex_iterator() {
        // superbpe's digit grouping: a pure lookahead splits 1234567 as
        // 1|234|567, exactly where std::regex reports empty matches.
        assert_eq!(words(&["\\p{N}+", "(?=(\\d{3})+(?!\\d))"], "x1234567"), ["x", "1", "234", "567"]);
    }

    #[test]
    fn mixing_categories_and_non_ascii_is_rejected() {
        assert!(EcmaRegex::new("[\\p{L}é]").is_err());
        assert!(EcmaRegex::new("\\p{Foo}").is_err());
        assert!(EcmaRegex::new("(a").is_err());
    }

    #[test]
    fn every_known_pre_type_compiles() {
        use PreType::*;
        for p in [
            Default, Llama3, Jais2, Dbrx, Smaug, DeepseekLlm, Deepseek3Llm, HunyuanDense, JoyaiLlm, HyV4, Spark2_5, Youtu,
            DeepseekCoder, Falcon, Mpt, Starcoder, Refact, CommandR, Smollm, Codeshell, Exaone, Minerva, Mellum2, Gpt2, Olmo,
            Jais, Trillion, GraniteDocling, Stablelm2, Qwen2, Hunyuan, SolarOpen, Qwen35, Poro, Bloom, Gpt3Finnish, Chatglm4,
            Viking, Tekken, Chameleon, Gpt4o, MinimaxM2, GraniteEmbMulti, TinyAya, KimiK2, Superbpe, Bailingmoe, SeedCoder,
            Ufakzeka, Grok2, Afmoe, Laguna, ExaoneMoe, Gemma4, SarvamMoe, Minicpm5, Whitespace,
        ] {
            let pt = PreTokenizer::new(p).unwrap_or_else(|e| panic!("{p:?}: {e}"));
            // Splitting never loses or invents text.
            let text = "Hello, y'all! 3333 中文 ١٢ e\u{301} \n\n  x";
            let joined: String = pt.split(text).concat();
            if !p.byte_encode() {
                assert_eq!(joined, text, "{p:?}");
            }
        }
    }
}
