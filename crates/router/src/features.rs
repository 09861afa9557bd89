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
    // The word-problem set ([`Feature::MATH`]): cues of how many reasoning
    // steps a math word problem takes. On GSM8K (RouteLLM's strong/weak
    // results) no single one beats query length, but together with the
    // embedding they moved the cross-validated APGR from 0.59 to ~0.61
    // (docs/router.md).
    /// `ln(1 + distinct numbers)` (the same number written twice counts once).
    LogDistinctNumbers,
    /// `ln(1 + largest number)` (commas inside a number are thousands separators).
    LogMaxNumber,
    /// `ln(1 + numbers with a decimal point)`.
    LogDecimals,
    /// `ln(1 + fractions)`: `digit/digit`.
    LogFractions,
    /// `ln(1 + percentages)`: `%` signs and the word "percent".
    LogPercents,
    /// `ln(1 + sentences)`: runs ending in `.`, `!` or `?` followed by space or the end.
    LogSentences,
    /// `ln(1 + distinct lowercase words)`.
    LogDistinctWords,
    /// `ln(1 + number words)`: "one" … "twelve", "twice", "half", "double", "triple", "third", "quarter", "dozen".
    LogNumberWords,
    /// `ln(1 + rate/ratio cue words)`: each, per, every, times, twice, half, double, triple, third, quarter, percent, %.
    LogRateWords,
    /// `ln(1 + change cue words)`: remaining, left, more than, less than, longer, faster, after, before, then.
    LogChangeWords,
    /// `ln(1 + aggregate cue words)`: total, average, altogether, combined, in all.
    LogAggregateWords,
    /// `ln(1 + unit words)`: hour, minute, day, week, month, year, mile, pound, ounce, inch, feet, cent, dollar, `$`.
    LogUnitWords,
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

    /// The word-problem cues, used after [`Feature::ALL`] (`--features math`).
    pub const MATH: [Feature; 12] = [
        Feature::LogDistinctNumbers,
        Feature::LogMaxNumber,
        Feature::LogDecimals,
        Feature::LogFractions,
        Feature::LogPercents,
        Feature::LogSentences,
        Feature::LogDistinctWords,
        Feature::LogNumberWords,
        Feature::LogRateWords,
        Feature::LogChangeWords,
        Feature::LogAggregateWords,
        Feature::LogUnitWords,
    ];
}

/// Cue lists of the keyword features. Matching is by substring of the
/// lowercased text (as in the prototype the weights were chosen with), so
/// "per" also counts inside "percent" and "left" inside "leftover".
const RATE_WORDS: [&str; 12] = ["each", "per", "every", "times", "twice", "half", "double", "triple", "third", "quarter", "percent", "%"];
const CHANGE_WORDS: [&str; 9] = ["remaining", "left", "more than", "less than", "longer", "faster", "after", "before", "then"];
const AGGREGATE_WORDS: [&str; 5] = ["total", "average", "altogether", "combined", "in all"];
const UNIT_WORDS: [&str; 14] = ["hour", "minute", "day", "week", "month", "year", "mile", "pound", "ounce", "inch", "feet", "cent", "dollar", "$"];
const NUMBER_WORDS: [&str; 20] = [
    "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve", "twice", "half", "double", "triple",
    "third", "quarter", "dozen", "thrice",
];

/// The word-problem counts of [`Feature::MATH`], gathered in one pass.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MathStats {
    pub distinct_numbers: usize,
    pub max_number: f64,
    pub decimals: usize,
    pub fractions: usize,
    pub percents: usize,
    pub sentences: usize,
    pub distinct_words: usize,
    pub number_words: usize,
    pub rate_words: usize,
    pub change_words: usize,
    pub aggregate_words: usize,
    pub unit_words: usize,
}

fn count_all(hay: &str, needles: &[&str]) -> usize {
    needles.iter().map(|n| hay.matches(n).count()).sum()
}

impl MathStats {
    pub fn of(text: &str) -> MathStats {
        let lower = text.to_lowercase();
        let mut s = MathStats::default();
        // Numbers: digit runs with `.`/`,` between digits.
        let b = text.as_bytes();
        let mut numbers: Vec<&str> = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i].is_ascii_digit() {
                let start = i;
                while i < b.len() && (b[i].is_ascii_digit() || (matches!(b[i], b'.' | b',') && b.get(i + 1).is_some_and(u8::is_ascii_digit))) {
                    i += 1;
                }
                numbers.push(&text[start..i]);
            } else {
                i += 1;
            }
        }
        let mut distinct: Vec<&str> = numbers.clone();
        distinct.sort_unstable();
        distinct.dedup();
        s.distinct_numbers = distinct.len();
        s.decimals = numbers.iter().filter(|n| n.contains('.')).count();
        s.max_number = numbers
            .iter()
            .filter_map(|n| n.replace(',', "").parse::<f64>().ok())
            .filter(|v| v.is_finite())
            .fold(0.0, f64::max);
        s.fractions = b.windows(3).filter(|w| w[0].is_ascii_digit() && w[1] == b'/' && w[2].is_ascii_digit()).count();
        s.percents = text.matches('%').count() + lower.matches("percent").count();
        let chars: Vec<char> = text.chars().collect();
        s.sentences = chars
            .iter()
            .enumerate()
            .filter(|&(k, c)| matches!(c, '.' | '!' | '?') && chars.get(k + 1).is_none_or(|n| n.is_whitespace()))
            .count();
        let mut words: Vec<&str> = lower.split(|c: char| !c.is_alphabetic()).filter(|w| !w.is_empty()).collect();
        s.number_words = words.iter().filter(|w| NUMBER_WORDS.contains(w)).count();
        words.sort_unstable();
        words.dedup();
        s.distinct_words = words.len();
        s.rate_words = count_all(&lower, &RATE_WORDS);
        s.change_words = count_all(&lower, &CHANGE_WORDS);
        s.aggregate_words = count_all(&lower, &AGGREGATE_WORDS);
        s.unit_words = count_all(&lower, &UNIT_WORDS);
        s
    }
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
    value_with(f, s, None, tokens, max_tokens)
}

/// As [`value`], with the word-problem counts for [`Feature::MATH`]
/// (computed from `m`; `None` gives them 0, so callers that list math
/// features must pass them: see [`needs_math`]).
pub fn value_with(f: Feature, s: &TextStats, m: Option<&MathStats>, tokens: usize, max_tokens: usize) -> f32 {
    let m = m.copied().unwrap_or_default();
    match f {
        Feature::LogDistinctNumbers => ln1p(m.distinct_numbers),
        Feature::LogMaxNumber => m.max_number.ln_1p() as f32,
        Feature::LogDecimals => ln1p(m.decimals),
        Feature::LogFractions => ln1p(m.fractions),
        Feature::LogPercents => ln1p(m.percents),
        Feature::LogSentences => ln1p(m.sentences),
        Feature::LogDistinctWords => ln1p(m.distinct_words),
        Feature::LogNumberWords => ln1p(m.number_words),
        Feature::LogRateWords => ln1p(m.rate_words),
        Feature::LogChangeWords => ln1p(m.change_words),
        Feature::LogAggregateWords => ln1p(m.aggregate_words),
        Feature::LogUnitWords => ln1p(m.unit_words),
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

/// Whether any of `fs` needs [`MathStats`].
pub fn needs_math(fs: &[Feature]) -> bool {
    fs.iter().any(|f| Feature::MATH.contains(f))
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

    #[test]
    fn word_problem_counts() {
        let t = "Tom buys 3 apples for $1.50 each and 3 pears. Half of them are left after 2 days! What percent, 1/2 or 25%, is 1,200?";
        let m = MathStats::of(t);
        // 3, 1.50, 3, 2, 1, 2, 25, 1,200 -> distinct 3, 1.50, 2, 1, 25, 1,200.
        assert_eq!(m.distinct_numbers, 6);
        assert_eq!(m.max_number, 1200.0);
        assert_eq!(m.decimals, 1);
        assert_eq!(m.fractions, 1);
        assert_eq!(m.percents, 2, "one % and one 'percent'");
        assert_eq!(m.sentences, 3);
        assert_eq!(m.number_words, 1, "half");
        // each, half, percent, % (and "per" inside "percent").
        assert_eq!(m.rate_words, 5);
        assert_eq!(m.change_words, 2, "left, after");
        assert_eq!(m.unit_words, 3, "$, day and the \"cent\" in \"percent\"");
        assert_eq!(MathStats::of(""), MathStats::default());
        let s = TextStats::of(t);
        assert!((value_with(Feature::LogDistinctNumbers, &s, Some(&m), 0, 1) - 7f32.ln()).abs() < 1e-6);
        assert_eq!(value(Feature::LogDistinctNumbers, &s, 0, 1), 0.0, "no math stats given");
        // A number too long for f64 still gives a finite feature.
        let huge = "9".repeat(400);
        let v = value_with(Feature::LogMaxNumber, &s, Some(&MathStats::of(&huge)), 0, 1);
        assert!(v.is_finite(), "{v}");
        assert!(needs_math(&[Feature::LogTokens, Feature::LogUnitWords]) && !needs_math(&Feature::ALL));
    }
}
