//! FOLDOC, the Free On-line Dictionary of Computing, as packaged by Debian
//! (`dict-foldoc`: `/usr/share/dictd/foldoc.dict.dz` and `foldoc.index`),
//! turned into clean entries.
//!
//! Licence: GNU Free Documentation License 1.1 or later, no invariant
//! sections, front- or back-cover texts (see
//! `/usr/share/doc/dict-foldoc/copyright`); editor Denis Howe,
//! <http://foldoc.org/>.
//!
//! Format (dictd): the `.dz` file is gzip (dictzip adds random-access data in
//! the gzip FEXTRA field, which plain gzip readers skip); the index has one
//! line per headword: `headword TAB offset TAB length`, the numbers in
//! dictd's base-64 (`A–Z a–z 0–9 + /`, most significant digit first), all
//! headwords lower-cased, several pointing at one entry. An entry is its
//! headword line(s) in original case, a blank line, then indented
//! paragraphs: the first starts with `<domain, ...>`, cross-references are
//! written `{like this}`, and entries end with a date `(YYYY-MM-DD)`.
//!
//! Deliberately absent: following cross-references, pronunciation guides,
//! and the `00-database-*` header entries (skipped).
//!
//! Debian's package appends a few entries of its own after the headword
//! `Dictionary.debian` (copyright Joey Hess and Robert D. Hilliard, under a
//! different licence: verbatim copies and derived works must carry their
//! notice and be distributed under identical terms). [`load`] drops that
//! entry and everything after its offset, so what is trained on is FOLDOC
//! proper, under the GFDL alone.

use crate::error::{io_at, DistillError, Result};
use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;

/// One dictionary entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// Headwords as the entry writes them (first is the main one).
    pub headwords: Vec<String>,
    /// Subject tags from `<...>`, e.g. `["programming", "tool"]`.
    pub domains: Vec<String>,
    /// Cleaned paragraphs: cross-reference braces removed, URLs, reference
    /// lists and dates dropped, whitespace collapsed.
    pub paragraphs: Vec<String>,
}

impl Entry {
    pub fn headword(&self) -> &str {
        &self.headwords[0]
    }

    /// The whole cleaned entry as plain text.
    pub fn text(&self) -> String {
        let mut s = self.headword().to_string();
        s.push_str("\n\n");
        s.push_str(&self.paragraphs.join("\n\n"));
        s
    }

    /// A short definition: the first paragraph without its leading
    /// parentheticals (acronym expansions, etymology) and pronunciation,
    /// cut after at most `max_sentences` sentences and about `max_chars`
    /// characters.
    pub fn short_definition(&self, max_sentences: usize, max_chars: usize) -> String {
        let p = strip_lead(self.paragraphs.first().map(String::as_str).unwrap_or(""));
        // Only the first sense of a numbered list.
        let p = p.find(" 2. ").map_or(p, |i| &p[..i]);
        let mut out = String::new();
        for (n, s) in sentences(p).into_iter().enumerate() {
            if n >= max_sentences || (!out.is_empty() && out.len() + s.len() > max_chars) {
                break;
            }
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(s);
        }
        out
    }
}

/// Splits a paragraph after `.`, `?` or `!` followed by a space and an
/// upper-case letter (a rough rule; abbreviations like "e.g. X" split too).
fn sentences(p: &str) -> Vec<&str> {
    let b = p.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    for i in 0..b.len() {
        if matches!(b[i], b'.' | b'?' | b'!') && i + 2 < b.len() && b[i + 1] == b' ' && b[i + 2].is_ascii_uppercase() {
            out.push(p[start..=i].trim());
            start = i + 2;
        }
    }
    if start < p.len() {
        out.push(p[start..].trim());
    }
    out.retain(|s| !s.is_empty());
    out
}

/// Drops leading `(...)` groups, `/pronunciation/`, sense numbers (`1.`)
/// and domain tags (`<logic>`).
fn strip_lead(mut p: &str) -> &str {
    loop {
        p = p.trim_start_matches(|c: char| c.is_whitespace() || matches!(c, '.' | ',' | ';' | ':'));
        let close = if p.starts_with('(') {
            let mut depth = 0usize;
            p.char_indices().find_map(|(i, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i);
                        }
                    }
                    _ => {}
                }
                None
            })
        } else if p.starts_with('<') {
            p.find('>')
        } else if p.as_bytes().first().is_some_and(u8::is_ascii_digit) {
            let digits = p.bytes().take_while(u8::is_ascii_digit).count();
            p[digits..].starts_with(". ").then_some(digits)
        } else if p.starts_with('/') {
            p[1..].find('/').map(|i| i + 1).filter(|&i| !p[..i].contains(' ') || i < 40)
        } else {
            None
        };
        match close {
            Some(i) if i + 1 < p.len() => p = &p[i + 1..],
            _ => return p,
        }
    }
}

fn b64_number(s: &str) -> Option<usize> {
    const DIGITS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut v: usize = 0;
    for c in s.bytes() {
        let d = DIGITS.iter().position(|&x| x == c)?;
        v = v.checked_mul(64)?.checked_add(d)?;
    }
    Some(v)
}

/// Index headword (lower-cased) of the Debian appendix; see the module docs.
const DEBIAN_APPENDIX: &str = "dictionary.debian";

/// Reads the dictionary: `dict` is the `.dict.dz` (or uncompressed `.dict`)
/// file, `index` its `.index`. Entries come in file order.
pub fn load(dict: &Path, index: &Path) -> Result<Vec<Entry>> {
    let raw = std::fs::read(dict).map_err(io_at(dict))?;
    let data = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..]).read_to_end(&mut out).map_err(io_at(dict))?;
        out
    } else {
        raw
    };
    let index_text = std::fs::read_to_string(index).map_err(io_at(index))?;
    let mut spans = BTreeSet::new();
    let mut debian_start = usize::MAX;
    for (i, line) in index_text.lines().enumerate() {
        let f: Vec<&str> = line.split('\t').collect();
        let bad = || DistillError::Corpus(format!("{}: line {}: expected `word TAB offset TAB length`", index.display(), i + 1));
        if f.len() != 3 {
            return Err(bad());
        }
        if f[0].starts_with("00-database") || f[0].starts_with("00database") {
            continue;
        }
        let (off, len) = (b64_number(f[1]).ok_or_else(bad)?, b64_number(f[2]).ok_or_else(bad)?);
        if off.checked_add(len).is_none_or(|e| e > data.len()) {
            return Err(DistillError::Corpus(format!("{}: line {}: entry lies outside the dictionary", index.display(), i + 1)));
        }
        if f[0] == DEBIAN_APPENDIX {
            debian_start = debian_start.min(off);
        }
        spans.insert((off, len));
    }
    let mut entries = Vec::with_capacity(spans.len());
    for (off, len) in spans.into_iter().filter(|&(off, _)| off < debian_start) {
        let text = String::from_utf8_lossy(&data[off..off + len]);
        if let Some(e) = parse_entry(&text) {
            entries.push(e);
        }
    }
    Ok(entries)
}

/// Parses one entry's text; `None` for entries with no usable body.
pub fn parse_entry(text: &str) -> Option<Entry> {
    let mut lines = text.lines();
    let mut headwords = Vec::new();
    for l in lines.by_ref() {
        if l.trim().is_empty() {
            break;
        }
        headwords.push(l.trim().to_string());
    }
    if headwords.is_empty() {
        return None;
    }
    let mut paras: Vec<String> = Vec::new();
    let mut cur = String::new();
    for l in lines {
        if l.trim().is_empty() {
            if !cur.is_empty() {
                paras.push(std::mem::take(&mut cur));
            }
        } else {
            if !cur.is_empty() {
                cur.push(' ');
            }
            cur.push_str(l.trim());
        }
    }
    if !cur.is_empty() {
        paras.push(cur);
    }
    let mut domains = Vec::new();
    let mut paragraphs = Vec::new();
    for (i, p) in paras.iter().enumerate() {
        let mut p = collapse_ws(p);
        if i == 0 && p.starts_with('<') {
            if let Some(end) = p.find('>') {
                domains = p[1..end].split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
                p = p[end + 1..].trim().to_string();
            }
        }
        // Dates, reference lists and link-only paragraphs carry no prose.
        let is_date = p.len() == 12 && p.starts_with('(') && p.ends_with(')') && p[1..11].bytes().all(|b| b.is_ascii_digit() || b == b'-');
        if p.is_empty() || is_date || (p.starts_with('[') && p.ends_with(']')) || p.contains("://") || p.contains("E-mail") {
            continue;
        }
        let p = strip_braces(&p);
        if !p.is_empty() {
            paragraphs.push(p);
        }
    }
    if paragraphs.is_empty() {
        return None;
    }
    Some(Entry { headwords, domains, paragraphs })
}

fn collapse_ws(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `{cross reference}` → `cross reference`.
fn strip_braces(s: &str) -> String {
    collapse_ws(&s.replace(['{', '}'], ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAM: &str = "random-access memory\nRAM\n\n   <storage> (RAM) (Previously \"direct-access memory\").  A data\n   storage device for which the order of access to different\n   locations does not affect the speed of access.  This is in\n   contrast to, say, a {magnetic disk}.\n\n   See also {ROM}.\n\n   [{Jargon File}]\n\n   {Home (http://example.com/)}.\n\n   (1995-11-20)\n";

    #[test]
    fn entries_are_cleaned() {
        let e = parse_entry(RAM).unwrap();
        assert_eq!(e.headwords, vec!["random-access memory", "RAM"]);
        assert_eq!(e.domains, vec!["storage"]);
        assert_eq!(e.paragraphs.len(), 2);
        assert!(e.paragraphs[0].starts_with("(RAM) (Previously \"direct-access memory\"). A data storage device"));
        assert!(e.paragraphs[0].ends_with("contrast to, say, a magnetic disk."));
        assert_eq!(e.paragraphs[1], "See also ROM.");
        assert_eq!(
            e.short_definition(2, 300),
            "A data storage device for which the order of access to different locations does not affect the speed of access. This is in contrast to, say, a magnetic disk."
        );
        let linux = Entry { headwords: vec!["Linux".into()], domains: vec![], paragraphs: vec!["(\"Linus Unix\") /li'nuks/ (but see below) An implementation of the Unix kernel.".into()] };
        assert_eq!(linux.short_definition(1, 100), "An implementation of the Unix kernel.");
        let proof = Entry { headwords: vec!["proof".into()], domains: vec![], paragraphs: vec!["1. <logic> A finite sequence. 2. <jargon> More.".into()] };
        assert_eq!(proof.short_definition(1, 100), "A finite sequence.");
        assert!(e.text().starts_with("random-access memory\n\n(RAM)"));
    }

    #[test]
    fn dictd_numbers_decode() {
        assert_eq!(b64_number("A"), Some(0));
        assert_eq!(b64_number("BA"), Some(64));
        assert_eq!(b64_number("Pfw2"), Some(15 * 64 * 64 * 64 + 31 * 64 * 64 + 48 * 64 + 54));
        assert_eq!(b64_number("*"), None);
    }

    #[test]
    fn bodiless_entries_are_skipped() {
        assert!(parse_entry("word\n\n   (2001-01-01)\n").is_none());
        assert!(parse_entry("\n\n").is_none());
    }

    fn b64(mut v: usize) -> String {
        const DIGITS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = vec![DIGITS[v % 64]];
        v /= 64;
        while v > 0 {
            out.push(DIGITS[v % 64]);
            v /= 64;
        }
        out.reverse();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn debian_appendix_is_dropped() {
        let parts = [
            ("byte", "byte\n\n   <unit> Eight bits, usually.\n\n"),
            ("dictionary.debian", "Dictionary.debian\n\n  The following definitions are Copyright Somebody Else.\n\n"),
            ("orphan", "orphan\n\n   <Debian> A Debian package without a maintainer.\n\n"),
            ("word", "word\n\n   <unit> A fixed-size group of bits.\n\n"),
        ];
        // "word" is stored before the appendix in the file but indexed last;
        // "orphan" comes after it and must go.
        let order = [0usize, 3, 1, 2];
        let mut data = String::new();
        let mut index = Vec::new();
        for &k in &order {
            let (hw, text) = parts[k];
            index.push(format!("{hw}\t{}\t{}", b64(data.len()), b64(text.len())));
            data.push_str(text);
        }
        index.sort();
        let dir = std::env::temp_dir().join(format!("hearth-foldoc-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (d, i) = (dir.join("t.dict"), dir.join("t.index"));
        std::fs::write(&d, &data).unwrap();
        std::fs::write(&i, index.join("\n") + "\n").unwrap();
        let entries = load(&d, &i).unwrap();
        let words: Vec<&str> = entries.iter().map(|e| e.headword()).collect();
        assert_eq!(words, vec!["byte", "word"]);
        std::fs::remove_dir_all(&dir).ok();
    }
}
