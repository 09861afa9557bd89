//! Cheap text features appended to the sentence embedding.
//!
//! The embedding says *what* a query is about; it says little about how much
//! of it there is (mean pooling averages length away, and MiniLM stops
//! reading after 256 tokens). These features restore that: size, numbers and
//! arithmetic, structure (lines, lists, code) and question count. Each is a
//! plain count or ratio of the text, squashed with `ln(1 + x)` so that one
//! very long paste does not dominate a linear head. The set is named in the
//! router file, so a file lists exactly the features it was trained with and
//! an unknown name is a typed error.

use serde::{Deserialize, Serialize};

/// One cheap feature; the serialized name is what router files list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Feature {
    /// `ln(1 + tokens)`, the embedder's token count before truncation.
    LogTokens,
    /// `ln(1 + words)` (whitespace-separated).
    LogWords,
    /// `ln(1 + numbers)`: maximal runs of digits (with `.`/`,` inside).
    LogNumbers,
    /// Digits over non-space characters.
    DigitRatio,
    /// `ln(1 + arithmetic operators)`: `+ - * / = % ^ < >` next to a digit or space.
    LogOperators,
    /// `ln(1 + lines)`.
    LogLines,
    /// `ln(1 + question marks)`.
    LogQuestions,
    /// 1 when the text looks like code: a fenced block, or at least two of
    /// `;` `{` `}` `()` `=>` `::` `def ` `fn `.
    Code,
    /// `ln(1 + list items)`: lines starting with `-`, `*`, `•` or `N.`/`N)`.
    LogListItems,
    /// 1 when the text is multiple choice: at least two lines starting with
    /// `A.`, `B.`, `C.`, `D.` (or `A)` ...).
    MultipleChoice,
    /// Share of the text's tokens the embedder never sees (cut at its
    /// maximum length): `max(0, tokens − max) / tokens`.
    TruncatedShare,
}

impl Feature {
    /// Every feature, in a fixed order.
    pub const ALL: [Feature; 11] = [
        Feature::LogTokens,
        Feature::LogWords,
        Feature::LogNumbers,
        Feature::DigitRatio,
        Feature::LogOperators,
        Feature::LogLines,
        Feature::LogQuestions,
        Feature::Code,
        Feature::LogListItems,
        Feature::MultipleChoice,
        Feature::TruncatedShare,
    ];
}

/// Counts gathered in one pass over the text.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TextStats {
    pub words: usize,
    pub numbers: usize,
    pub digits: usize,
    pub non_space: usize,
    pub operators: usize,
    pub lines: usize,
    pub questions: usize,
    pub code: bool,
    pub list_items: usize,
    pub choice_lines: usize,
}

impl TextStats {
    pub fn of(text: &str) -> TextStats {
        let mut s = TextStats { words: text.split_whitespace().count(), ..TextStats::default() };
        let chars: Vec<char> = text.chars().collect();
        let mut in_number = false;
        for (i, &c) in chars.iter().enumerate() {
            if !c.is_whitespace() {
                s.non_space += 1;
            }
            if c.is_ascii_digit() {
                s.digits += 1;
                if !in_number {
                    s.numbers += 1;
                    in_number = true;
                }
            } else if !(in_number && (c == '.' || c == ',') && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
                in_number = false;
            }
            if c == '?' {
                s.questions += 1;
            }
            if matches!(c, '+' | '-' | '*' | '/' | '=' | '%' | '^' | '<' | '>' | '×' | '÷') {
                let near = |j: Option<usize>| j.and_then(|j| chars.get(j)).is_some_and(|d| d.is_ascii_digit() || *d == ' ');
                if near(i.checked_sub(1)) && near(Some(i + 1)) {
                    s.operators += 1;
                }
            }
        }
        let mut code_cues = 0;
        for cue in [";", "{", "}", "()", "=>", "::", "def ", "fn "] {
            if text.contains(cue) {
                code_cues += 1;
            }
        }
        s.code = text.contains("```") || code_cues >= 2;
        for line in text.lines() {
            s.lines += 1;
            let t = line.trim_start();
            if t.starts_with("- ") || t.starts_with("* ") || t.starts_with('•') || numbered(t) {
                s.list_items += 1;
            }
            let b = t.as_bytes();
            if b.len() >= 2 && matches!(b[0], b'A'..=b'D') && matches!(b[1], b'.' | b')') {
                s.choice_lines += 1;
            }
        }
        s
    }
}

/// `12. text` or `3) text`.
fn numbered(t: &str) -> bool {
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0 && digits <= 3 && matches!(t.as_bytes().get(digits), Some(b'.' | b')')) && t.as_bytes().get(digits + 1) == Some(&b' ')
}

fn ln1p(x: usize) -> f32 {
    (x as f32).ln_1p()
}

/// The value of `f` for a text with these stats, `tokens` tokens before
/// truncation and an embedder reading at most `max_tokens`.
pub fn value(f: Feature, s: &TextStats, tokens: usize, max_tokens: usize) -> f32 {
    match f {
        Feature::LogTokens => ln1p(tokens),
        Feature::LogWords => ln1p(s.words),
        Feature::LogNumbers => ln1p(s.numbers),
        Feature::DigitRatio => {
            if s.non_space == 0 {
                0.0
            } else {
                s.digits as f32 / s.non_space as f32
            }
        }
        Feature::LogOperators => ln1p(s.operators),
        Feature::LogLines => ln1p(s.lines),
        Feature::LogQuestions => ln1p(s.questions),
        Feature::Code => f32::from(u8::from(s.code)),
        Feature::LogListItems => ln1p(s.list_items),
        Feature::MultipleChoice => f32::from(u8::from(s.choice_lines >= 2)),
        Feature::TruncatedShare => {
            if tokens == 0 {
                0.0
            } else {
                tokens.saturating_sub(max_tokens) as f32 / tokens as f32
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_on_a_hand_made_text() {
        let t = "Compute 3.5 + 12 = ?\nOptions:\nA. 15.5\nB) 1,000\n- note\n12. step";
        let s = TextStats::of(t);
        // 3.5, 12, 15.5, 1,000, 12 -> five numbers.
        assert_eq!(s.numbers, 5);
        assert_eq!(s.operators, 2, "'+' and '=' between spaces/digits");
        assert_eq!((s.lines, s.questions, s.list_items, s.choice_lines), (6, 1, 2, 2));
        assert!(!s.code);
        assert_eq!(value(Feature::MultipleChoice, &s, 20, 256), 1.0);
        assert_eq!(value(Feature::TruncatedShare, &s, 20, 256), 0.0);
        assert!((value(Feature::TruncatedShare, &s, 512, 256) - 0.5).abs() < 1e-6);
        assert!((value(Feature::LogNumbers, &s, 0, 1) - 6f32.ln()).abs() < 1e-6);
        // A hyphenated word is not arithmetic.
        assert_eq!(TextStats::of("a well-known fact").operators, 0);
        assert!(TextStats::of("fn main() { let x = 1; }").code);
        assert!(TextStats::of("```\nx\n```").code);
        assert_eq!(TextStats::of(""), TextStats::default());
        assert_eq!(value(Feature::DigitRatio, &TextStats::default(), 0, 1), 0.0);
    }
}
