//! A parser for the subset of ECMA-262 regular expressions that JSON Schema
//! `pattern` uses in practice, producing a small AST over Unicode scalar
//! values. The AST is compiled to a byte-level DFA by [`crate::dfa`].
//!
//! JSON Schema (2020-12 validation §6.3.3) says a pattern is an ECMA-262
//! regex that is *not* implicitly anchored: a string is valid when the
//! pattern matches anywhere in it. [`parse_pattern`] turns that search
//! semantics into a whole-string language by putting `Σ*` before/after every
//! top-level alternative that lacks `^`/`$`.
//!
//! Supported: literals, `.`, classes (`[a-z]`, `[^…]`, `[]`, `[^]`), the
//! shorthands `\d \D \w \W \s \S`, escapes `\n \r \t \v \f \0 \xHH \uHHHH`
//! (surrogate pairs combined), identity escapes of punctuation, groups
//! `(…)`, `(?:…)`, `(?<name>…)`, alternation, quantifiers `* + ? {n} {n,}
//! {n,m}` (lazy forms mean the same language), and `^`/`$` at the start/end
//! of a top-level alternative.
//!
//! Deliberately absent (typed error): backreferences, lookaround, word
//! boundaries, `^`/`$` elsewhere, `\p{…}`, `\cX`, inline flags.
//!
//! Where ECMA-262 and the Rust `regex` crate (which many validators use)
//! disagree, the language chosen is the *intersection*, so output valid here
//! is valid for both: `\d`/`\w` are ASCII; `\s` drops U+FEFF (not Unicode
//! White_Space); `.` excludes `\n`, `\r`, U+2028 and U+2029; negated
//! shorthands (`\D`, `\W`, `\S`, or a negated class containing a shorthand)
//! match only ASCII.

/// Largest code point; surrogates are never members of any set.
pub(crate) const MAX_CP: u32 = 0x10FFFF;
const SUR_LO: u32 = 0xD800;
const SUR_HI: u32 = 0xDFFF;
/// Bound on `{n,m}` counts: larger repetition blows up the automaton.
const MAX_REPEAT: u32 = 1000;

/// A set of Unicode scalar values as sorted, disjoint, non-adjacent ranges.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub(crate) struct CharSet {
    ranges: Vec<(u32, u32)>,
}

impl CharSet {
    pub fn empty() -> CharSet {
        CharSet { ranges: Vec::new() }
    }
    pub fn any() -> CharSet {
        CharSet::from_ranges(&[(0, MAX_CP)])
    }
    pub fn single(c: u32) -> CharSet {
        CharSet::from_ranges(&[(c, c)])
    }
    /// Builds a set from arbitrary ranges (overlaps merged, surrogates removed).
    pub fn from_ranges(rs: &[(u32, u32)]) -> CharSet {
        let mut v: Vec<(u32, u32)> = rs.iter().copied().filter(|(a, b)| a <= b).collect();
        v.sort_unstable();
        let mut out: Vec<(u32, u32)> = Vec::with_capacity(v.len());
        for (a, b) in v {
            if let Some(last) = out.last_mut() {
                if a <= last.1.saturating_add(1) {
                    last.1 = last.1.max(b);
                    continue;
                }
            }
            out.push((a, b));
        }
        // Remove the surrogate block: it is not a set of scalar values.
        let mut res = Vec::with_capacity(out.len() + 1);
        for (a, b) in out {
            if b < SUR_LO || a > SUR_HI {
                res.push((a, b));
            } else {
                if a < SUR_LO {
                    res.push((a, SUR_LO - 1));
                }
                if b > SUR_HI {
                    res.push((SUR_HI + 1, b));
                }
            }
        }
        CharSet { ranges: res }
    }
    pub fn ranges(&self) -> &[(u32, u32)] {
        &self.ranges
    }
    pub fn contains(&self, c: u32) -> bool {
        self.ranges.iter().any(|&(a, b)| a <= c && c <= b)
    }
    pub fn union(&self, o: &CharSet) -> CharSet {
        let mut v = self.ranges.clone();
        v.extend_from_slice(&o.ranges);
        CharSet::from_ranges(&v)
    }
    /// Complement within all scalar values.
    pub fn negate(&self) -> CharSet {
        let mut out = Vec::new();
        let mut next = 0u32;
        for &(a, b) in &self.ranges {
            if a > next {
                out.push((next, a - 1));
            }
            next = b + 1;
        }
        if next <= MAX_CP {
            out.push((next, MAX_CP));
        }
        CharSet::from_ranges(&out)
    }
    pub fn intersect(&self, o: &CharSet) -> CharSet {
        // A ∩ B = ¬(¬A ∪ ¬B)
        self.negate().union(&o.negate()).negate()
    }
    pub fn minus(&self, o: &CharSet) -> CharSet {
        self.intersect(&o.negate())
    }
}

/// Regex AST over scalar values.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Re {
    /// Matches the empty string.
    Empty,
    Class(CharSet),
    Concat(Vec<Re>),
    Alt(Vec<Re>),
    Repeat(Box<Re>, u32, Option<u32>),
    /// `^` / `$`; only legal at the ends of a top-level alternative, removed
    /// by [`parse_pattern`].
    Start,
    End,
}

/// Why a pattern is not supported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RegexError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, RegexError> {
    Err(RegexError(msg.into()))
}

fn ascii_digit() -> CharSet {
    CharSet::from_ranges(&[(0x30, 0x39)])
}
fn ascii_word() -> CharSet {
    CharSet::from_ranges(&[(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)])
}
/// ECMA-262 WhiteSpace + LineTerminator, minus U+FEFF (see module docs).
fn space() -> CharSet {
    CharSet::from_ranges(&[
        (0x09, 0x0D),
        (0x20, 0x20),
        (0xA0, 0xA0),
        (0x1680, 0x1680),
        (0x2000, 0x200A),
        (0x2028, 0x2029),
        (0x202F, 0x202F),
        (0x205F, 0x205F),
        (0x3000, 0x3000),
    ])
}
fn ascii() -> CharSet {
    CharSet::from_ranges(&[(0, 0x7F)])
}
/// `.`: everything but line terminators.
fn dot() -> CharSet {
    CharSet::from_ranges(&[(0x0A, 0x0A), (0x0D, 0x0D), (0x2028, 0x2029)]).negate()
}

struct Parser<'a> {
    chars: Vec<char>,
    pos: usize,
    _src: &'a str,
}

/// Parses `src` and returns the whole-string language (search semantics
/// already applied).
pub(crate) fn parse_pattern(src: &str) -> Result<Re, RegexError> {
    let mut p = Parser {
        chars: src.chars().collect(),
        pos: 0,
        _src: src,
    };
    let re = p.parse_alt(0)?;
    if p.pos < p.chars.len() {
        return err(format!("unbalanced `)` at offset {}", p.pos));
    }
    let branches = match re {
        Re::Alt(v) => v,
        other => vec![other],
    };
    let mut out = Vec::with_capacity(branches.len());
    for b in branches {
        let mut items = match b {
            Re::Concat(v) => v,
            Re::Empty => Vec::new(),
            other => vec![other],
        };
        let anchored_start = matches!(items.first(), Some(Re::Start));
        if anchored_start {
            items.remove(0);
        }
        let anchored_end = matches!(items.last(), Some(Re::End));
        if anchored_end {
            items.pop();
        }
        if items.iter().any(contains_anchor) {
            return err("`^`/`$` are supported only at the start/end of a top-level alternative");
        }
        if !anchored_start {
            items.insert(0, Re::Repeat(Box::new(Re::Class(CharSet::any())), 0, None));
        }
        if !anchored_end {
            items.push(Re::Repeat(Box::new(Re::Class(CharSet::any())), 0, None));
        }
        out.push(match items.len() {
            0 => Re::Empty,
            1 => items.pop().unwrap_or(Re::Empty),
            _ => Re::Concat(items),
        });
    }
    Ok(if out.len() == 1 {
        out.pop().unwrap_or(Re::Empty)
    } else {
        Re::Alt(out)
    })
}

fn contains_anchor(r: &Re) -> bool {
    match r {
        Re::Start | Re::End => true,
        Re::Concat(v) | Re::Alt(v) => v.iter().any(contains_anchor),
        Re::Repeat(b, _, _) => contains_anchor(b),
        Re::Empty | Re::Class(_) => false,
    }
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    fn peek_at(&self, k: usize) -> Option<char> {
        self.chars.get(self.pos + k).copied()
    }
    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn parse_alt(&mut self, depth: u32) -> Result<Re, RegexError> {
        if depth > 64 {
            return err("groups nested too deeply");
        }
        let mut branches = vec![self.parse_concat(depth)?];
        while self.eat('|') {
            branches.push(self.parse_concat(depth)?);
        }
        Ok(if branches.len() == 1 {
            branches.pop().unwrap_or(Re::Empty)
        } else {
            Re::Alt(branches)
        })
    }

    fn parse_concat(&mut self, depth: u32) -> Result<Re, RegexError> {
        let mut items = Vec::new();
        while let Some(c) = self.peek() {
            if c == '|' || c == ')' {
                break;
            }
            let atom = self.parse_atom(depth)?;
            let atom = self.parse_quantifier(atom)?;
            items.push(atom);
        }
        Ok(match items.len() {
            0 => Re::Empty,
            1 => items.pop().unwrap_or(Re::Empty),
            _ => Re::Concat(items),
        })
    }

    fn parse_quantifier(&mut self, atom: Re) -> Result<Re, RegexError> {
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
            Some('{') => match self.try_braces()? {
                Some(q) => q,
                None => return Ok(atom),
            },
            _ => return Ok(atom),
        };
        // Lazy quantifiers describe the same language.
        self.eat('?');
        if matches!(atom, Re::Start | Re::End) {
            return err("quantified anchor");
        }
        if matches!(self.peek(), Some('*' | '+' | '?')) {
            return err("nothing to repeat");
        }
        Ok(Re::Repeat(Box::new(atom), min, max))
    }

    /// `{n}`, `{n,}`, `{n,m}`; anything else leaves `{` a literal (Annex B).
    fn try_braces(&mut self) -> Result<Option<(u32, Option<u32>)>, RegexError> {
        let save = self.pos;
        self.pos += 1;
        let n = self.number();
        let Some(n) = n else {
            self.pos = save;
            return Ok(None);
        };
        let q = if self.eat('}') {
            (n, Some(n))
        } else if self.eat(',') {
            if self.eat('}') {
                (n, None)
            } else {
                match self.number() {
                    Some(m) if self.eat('}') => (n, Some(m)),
                    _ => {
                        self.pos = save;
                        return Ok(None);
                    }
                }
            }
        } else {
            self.pos = save;
            return Ok(None);
        };
        if let (n, Some(m)) = q {
            if m < n {
                return err(format!("quantifier {{{n},{m}}} out of order"));
            }
        }
        if q.0 > MAX_REPEAT || q.1.is_some_and(|m| m > MAX_REPEAT) {
            return err(format!("repetition count above {MAX_REPEAT}"));
        }
        Ok(Some(q))
    }

    fn number(&mut self) -> Option<u32> {
        let start = self.pos;
        let mut v: u64 = 0;
        while let Some(d) = self.peek().and_then(|c| c.to_digit(10)) {
            v = (v * 10 + d as u64).min(u32::MAX as u64);
            self.pos += 1;
        }
        (self.pos > start).then_some(v as u32)
    }

    fn parse_atom(&mut self, depth: u32) -> Result<Re, RegexError> {
        let Some(c) = self.peek() else {
            return err("unexpected end");
        };
        self.pos += 1;
        match c {
            '^' => Ok(Re::Start),
            '$' => Ok(Re::End),
            '.' => Ok(Re::Class(dot())),
            '(' => {
                if self.eat('?') {
                    match self.peek() {
                        Some(':') => {
                            self.pos += 1;
                        }
                        Some('<') if !matches!(self.peek_at(1), Some('=' | '!')) => {
                            // Named group: skip the name.
                            self.pos += 1;
                            while let Some(ch) = self.peek() {
                                self.pos += 1;
                                if ch == '>' {
                                    break;
                                }
                            }
                        }
                        Some('=' | '!' | '<') => {
                            return err("lookaround assertions are not supported")
                        }
                        _ => return err("inline flags / unknown group syntax are not supported"),
                    }
                }
                let inner = self.parse_alt(depth + 1)?;
                if !self.eat(')') {
                    return err("missing `)`");
                }
                Ok(inner)
            }
            ')' => err("unbalanced `)`"),
            '[' => self.parse_class(),
            '\\' => self.parse_escape(false).map(|e| match e {
                Esc::Set(s) => Re::Class(s),
                Esc::Char(c) => Re::Class(CharSet::single(c)),
            }),
            '*' | '+' | '?' => err("nothing to repeat"),
            '{' => {
                // A `{` that is a valid quantifier here has nothing to repeat.
                self.pos -= 1;
                if self.try_braces()?.is_some() {
                    return err("nothing to repeat");
                }
                self.pos += 1;
                Ok(Re::Class(CharSet::single('{' as u32)))
            }
            c => Ok(Re::Class(CharSet::single(c as u32))),
        }
    }

    fn hex(&mut self, n: usize) -> Option<u32> {
        let mut v = 0u32;
        for k in 0..n {
            let d = self.peek_at(k)?.to_digit(16)?;
            v = v * 16 + d;
        }
        self.pos += n;
        Some(v)
    }

    /// After a backslash. `in_class` changes `\b` (backspace) and `-`.
    fn parse_escape(&mut self, in_class: bool) -> Result<Esc, RegexError> {
        let Some(c) = self.peek() else {
            return err("trailing backslash");
        };
        self.pos += 1;
        Ok(match c {
            'd' => Esc::Set(ascii_digit()),
            'D' => Esc::Set(ascii_digit().negate().intersect(&ascii())),
            'w' => Esc::Set(ascii_word()),
            'W' => Esc::Set(ascii_word().negate().intersect(&ascii())),
            's' => Esc::Set(space()),
            'S' => Esc::Set(space().negate().intersect(&ascii())),
            'n' => Esc::Char(0x0A),
            'r' => Esc::Char(0x0D),
            't' => Esc::Char(0x09),
            'v' => Esc::Char(0x0B),
            'f' => Esc::Char(0x0C),
            'b' if in_class => Esc::Char(0x08),
            'b' | 'B' => return err("word boundaries are not supported"),
            '0' if !self.peek().is_some_and(|d| d.is_ascii_digit()) => Esc::Char(0),
            '1'..='9' => return err("backreferences are not supported"),
            'k' => return err("named backreferences are not supported"),
            'x' => match self.hex(2) {
                Some(v) => Esc::Char(v),
                None => return err("bad \\x escape"),
            },
            'u' => {
                if self.peek() == Some('{') {
                    return err("\\u{…} needs the `u` flag, which patterns do not have");
                }
                let Some(hi) = self.hex(4) else {
                    return err("bad \\u escape");
                };
                if (0xD800..0xDC00).contains(&hi) {
                    // A surrogate pair written as two escapes is one character.
                    if self.peek() == Some('\\') && self.peek_at(1) == Some('u') {
                        self.pos += 2;
                        match self.hex(4) {
                            Some(lo) if (0xDC00..0xE000).contains(&lo) => {
                                Esc::Char(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
                            }
                            _ => return err("unpaired surrogate escape"),
                        }
                    } else {
                        return err("unpaired surrogate escape");
                    }
                } else if (0xDC00..0xE000).contains(&hi) {
                    return err("unpaired surrogate escape");
                } else {
                    Esc::Char(hi)
                }
            }
            'c' => return err("\\c control escapes are not supported"),
            'p' | 'P' => return err("Unicode property escapes are not supported"),
            '-' if in_class => Esc::Char('-' as u32),
            c if c.is_ascii_alphanumeric() => return err(format!("unknown escape \\{c}")),
            c => Esc::Char(c as u32),
        })
    }

    fn parse_class(&mut self) -> Result<Re, RegexError> {
        let negated = self.eat('^');
        let mut set = CharSet::empty();
        let mut has_shorthand = false;
        loop {
            let Some(c) = self.peek() else {
                return err("missing `]`");
            };
            if c == ']' {
                self.pos += 1;
                break;
            }
            let lo = self.class_atom(&mut has_shorthand)?;
            // A range `a-b` (a `-` before `]` is literal).
            if self.peek() == Some('-') && self.peek_at(1).is_some_and(|n| n != ']') {
                if let Esc::Char(a) = lo {
                    self.pos += 1;
                    let hi = self.class_atom(&mut has_shorthand)?;
                    match hi {
                        Esc::Char(b) if b >= a => {
                            set = set.union(&CharSet::from_ranges(&[(a, b)]));
                            continue;
                        }
                        Esc::Char(_) => return err("class range out of order"),
                        Esc::Set(_) => return err("class range with a shorthand bound"),
                    }
                } else {
                    return err("class range with a shorthand bound");
                }
            }
            match lo {
                Esc::Char(a) => set = set.union(&CharSet::single(a)),
                Esc::Set(s) => set = set.union(&s),
            }
        }
        if negated {
            set = set.negate();
            if has_shorthand {
                set = set.intersect(&ascii());
            }
        }
        Ok(Re::Class(set))
    }

    fn class_atom(&mut self, has_shorthand: &mut bool) -> Result<Esc, RegexError> {
        let Some(c) = self.peek() else {
            return err("missing `]`");
        };
        self.pos += 1;
        if c == '\\' {
            let e = self.parse_escape(true)?;
            if matches!(e, Esc::Set(_)) {
                *has_shorthand = true;
            }
            Ok(e)
        } else {
            Ok(Esc::Char(c as u32))
        }
    }
}

enum Esc {
    Char(u32),
    Set(CharSet),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charset_ops() {
        let a = CharSet::from_ranges(&[(10, 20), (15, 30), (40, 50)]);
        assert_eq!(a.ranges(), &[(10, 30), (40, 50)]);
        let n = a.negate();
        assert!(
            n.contains(0)
                && !n.contains(10)
                && n.contains(35)
                && !n.contains(45)
                && n.contains(0x10FFFF)
        );
        assert!(!n.contains(0xD800), "surrogates are never members");
        assert_eq!(
            a.intersect(&CharSet::from_ranges(&[(25, 45)])).ranges(),
            &[(25, 30), (40, 45)]
        );
        assert_eq!(
            a.minus(&CharSet::from_ranges(&[(12, 48)])).ranges(),
            &[(10, 11), (49, 50)]
        );
    }

    #[test]
    fn anchors_and_search_semantics() {
        let r = parse_pattern("^ab$").unwrap();
        assert_eq!(
            r,
            Re::Concat(vec![
                Re::Class(CharSet::single('a' as u32)),
                Re::Class(CharSet::single('b' as u32))
            ])
        );
        // Unanchored: Σ* on both sides.
        match parse_pattern("ab").unwrap() {
            Re::Concat(v) => {
                assert_eq!(v.len(), 4);
                assert!(matches!(&v[0], Re::Repeat(_, 0, None)));
                assert!(matches!(&v[3], Re::Repeat(_, 0, None)));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rejects_unsupported() {
        for p in [
            "(a)\\1", "a(?=b)", "a(?!b)", "(?<=a)b", "\\bword", "a^b", "\\p{L}", "(?i)abc", "a**",
            "(ab", "ab)",
        ] {
            assert!(parse_pattern(p).is_err(), "{p} should be rejected");
        }
    }

    #[test]
    fn classes_and_escapes() {
        match parse_pattern("^[^a-c\\d]$").unwrap() {
            Re::Class(s) => {
                assert!(
                    !s.contains('a' as u32) && !s.contains('5' as u32) && s.contains('z' as u32)
                );
                assert!(
                    !s.contains(0xE9),
                    "negated class with a shorthand is ASCII-only"
                );
            }
            other => panic!("{other:?}"),
        }
        match parse_pattern("^\\uD83D\\uDE00$").unwrap() {
            Re::Class(s) => assert!(s.contains(0x1F600)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_pattern("^a{2,3}$").unwrap(),
            Re::Repeat(_, 2, Some(3))
        ));
        // `{` that is not a quantifier is a literal.
        assert!(parse_pattern("^a{x$").is_ok());
        assert!(parse_pattern("^a{3,2}$").is_err());
    }
}
