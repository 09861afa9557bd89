//! Code point classification as llama.cpp's `src/unicode.cpp` sees it.
//!
//! Every code point belongs to exactly one class (number, letter, separator,
//! mark, punctuation, symbol, control, undefined: the first letter of its
//! Unicode general category, `Cn` being "undefined"), and may also be
//! White_Space. The tables in `unicode_tables.rs` are generated from the
//! Unicode 15.1 database (the version llama.cpp's tables use) and were checked
//! to agree with llama.cpp's for all 0x110000 code points.
//!
//! Deliberately absent: full case folding and full normalization. llama.cpp's
//! BERT normalizer keeps only the *first* code point of each NFD
//! decomposition and uses the simple lowercase mapping, so that is all that is
//! here.

use crate::unicode_tables::{CATEGORY_RANGES, LOWERCASE, NFD_FIRST};
use std::sync::OnceLock;

/// Class bits (llama.cpp src/unicode.h `unicode_cpt_flags`).
pub(crate) const UNDEFINED: u16 = 0x0001;
pub(crate) const NUMBER: u16 = 0x0002;
pub(crate) const LETTER: u16 = 0x0004;
pub(crate) const MARK: u16 = 0x0010;
pub(crate) const PUNCTUATION: u16 = 0x0020;
pub(crate) const SYMBOL: u16 = 0x0040;
pub(crate) const CONTROL: u16 = 0x0080;
pub(crate) const CATEGORY_MASK: u16 = 0x00FF;
pub(crate) const WHITESPACE: u16 = 0x0100;

/// Unicode White_Space (PropList.txt), the set llama.cpp uses.
const WHITESPACE_CPTS: [u32; 25] = [
    0x0009, 0x000A, 0x000B, 0x000C, 0x000D, 0x0020, 0x0085, 0x00A0, 0x1680, 0x2000, 0x2001, 0x2002, 0x2003,
    0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000,
];

/// The classification of one code point; `Flags(0)` stands for "outside the
/// text" (llama.cpp's default-constructed flags), which no real code point has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Flags(pub u16);

impl Flags {
    pub const NONE: Flags = Flags(0);
    #[inline]
    pub fn is_number(self) -> bool {
        self.0 & NUMBER != 0
    }
    #[inline]
    pub fn is_letter(self) -> bool {
        self.0 & LETTER != 0
    }
    #[inline]
    pub fn is_mark(self) -> bool {
        self.0 & MARK != 0
    }
    #[inline]
    pub fn is_punctuation(self) -> bool {
        self.0 & PUNCTUATION != 0
    }
    #[inline]
    pub fn is_symbol(self) -> bool {
        self.0 & SYMBOL != 0
    }
    #[inline]
    pub fn is_control(self) -> bool {
        self.0 & CONTROL != 0
    }
    #[inline]
    pub fn is_whitespace(self) -> bool {
        self.0 & WHITESPACE != 0
    }
    /// True for every real code point (false only for `Flags::NONE`).
    #[inline]
    pub fn is_some(self) -> bool {
        self.0 != 0
    }
    #[inline]
    pub fn category(self) -> u16 {
        self.0 & CATEGORY_MASK
    }
}

/// Flags of the Basic Multilingual Plane, built once; the rest is looked up
/// by binary search in the range table.
fn bmp_table() -> &'static [u16] {
    static TABLE: OnceLock<Vec<u16>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = vec![UNDEFINED; 0x10000];
        for (i, &(start, class)) in CATEGORY_RANGES.iter().enumerate() {
            let end = CATEGORY_RANGES.get(i + 1).map_or(0x110000, |r| r.0);
            if start >= 0x10000 {
                break;
            }
            for slot in &mut t[start as usize..end.min(0x10000) as usize] {
                *slot = class as u16;
            }
        }
        for &cp in &WHITESPACE_CPTS {
            t[cp as usize] |= WHITESPACE;
        }
        t
    })
}

/// The flags of a code point (llama.cpp `unicode_cpt_flags_from_cpt`).
#[inline]
pub(crate) fn flags(cp: u32) -> Flags {
    if cp < 0x10000 {
        return Flags(bmp_table()[cp as usize]);
    }
    if cp >= 0x110000 {
        return Flags(UNDEFINED);
    }
    let i = CATEGORY_RANGES.partition_point(|r| r.0 <= cp);
    // `i >= 1` because the table starts at code point 0.
    Flags(CATEGORY_RANGES[i.saturating_sub(1)].1 as u16)
}

/// Simple lowercase mapping (llama.cpp `unicode_tolower`).
pub(crate) fn to_lower(cp: u32) -> u32 {
    if cp < 0x80 {
        return if (b'A' as u32..=b'Z' as u32).contains(&cp) { cp + 32 } else { cp };
    }
    match LOWERCASE.binary_search_by_key(&cp, |p| p.0) {
        Ok(i) => LOWERCASE[i].1,
        Err(_) => cp,
    }
}

/// The first code point of the NFD decomposition (what llama.cpp's
/// `unicode_cpts_normalize_nfd` keeps).
pub(crate) fn nfd_first(cp: u32) -> u32 {
    if cp < 0xC0 {
        return cp;
    }
    match NFD_FIRST.binary_search_by_key(&cp, |p| p.0) {
        Ok(i) => NFD_FIRST[i].1,
        Err(_) => cp,
    }
}

/// llama.cpp `unicode_cpt_is_han`: the CJK ideograph blocks.
pub(crate) fn is_han(cp: u32) -> bool {
    matches!(cp,
        0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0x20000..=0x2A6DF | 0x2A700..=0x2B73F | 0x2B740..=0x2B81F
        | 0x2B820..=0x2CEAF | 0x2CEB0..=0x2EBEF | 0xF900..=0xFAFF | 0x2F800..=0x2FA1F)
}

/// The code points of a string.
pub(crate) fn cpts(s: &str) -> Vec<u32> {
    s.chars().map(|c| c as u32).collect()
}

/// GPT-2's byte-to-unicode table: printable Latin-1 bytes map to themselves,
/// the other 68 bytes to U+0100.. in byte order (OpenAI's `bytes_to_unicode`,
/// llama.cpp `unicode_byte_to_utf8_map`).
pub(crate) fn byte_to_char(b: u8) -> char {
    static TABLE: OnceLock<[char; 256]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = ['\0'; 256];
        let mut n = 0u32;
        for (b, slot) in t.iter_mut().enumerate() {
            let printable = (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
            let cp = if printable {
                b as u32
            } else {
                n += 1;
                255 + n
            };
            *slot = char::from_u32(cp).unwrap_or('\u{FFFD}');
        }
        t
    })[b as usize]
}

/// Inverse of [`byte_to_char`]: `None` for characters outside the table.
pub(crate) fn char_to_byte(c: char) -> Option<u8> {
    static TABLE: OnceLock<[Option<u8>; 0x144]> = OnceLock::new();
    let t = TABLE.get_or_init(|| {
        let mut t = [None; 0x144];
        for b in 0..=255u8 {
            t[byte_to_char(b) as usize] = Some(b);
        }
        t
    });
    t.get(c as usize).copied().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_of_known_code_points() {
        assert!(flags('a' as u32).is_letter());
        assert!(flags('7' as u32).is_number());
        assert!(flags(' ' as u32).is_whitespace());
        assert!(flags(0x3000).is_whitespace());
        assert!(flags(0x0301).is_mark());
        assert!(flags('!' as u32).is_punctuation());
        assert!(flags('$' as u32).is_symbol());
        assert!(flags(0x4E00).is_letter());
        assert!(flags(0x1F999).is_symbol()); // 🦙
        assert!(flags(0x2EBF0).is_letter()); // CJK Extension I (Unicode 15.1)
        assert_eq!(flags(0x0378).category(), UNDEFINED);
        assert_eq!(flags(0x10FFFF).category(), UNDEFINED);
        assert!(flags(0x110000).is_some());
    }

    #[test]
    fn case_and_nfd() {
        assert_eq!(to_lower('Q' as u32), 'q' as u32);
        assert_eq!(to_lower(0x0130), 0x0069);
        assert_eq!(to_lower(0x0416), 0x0436); // Ж -> ж
        assert_eq!(nfd_first(0x00E9), 'e' as u32);
        assert_eq!(nfd_first(0xD55C), 0x1112); // Hangul syllable -> first jamo
        assert_eq!(nfd_first('x' as u32), 'x' as u32);
    }

    #[test]
    fn byte_table_round_trips() {
        for b in 0..=255u8 {
            assert_eq!(char_to_byte(byte_to_char(b)), Some(b));
        }
        assert_eq!(byte_to_char(b' '), '\u{120}'); // Ġ
        assert_eq!(byte_to_char(b'\n'), '\u{10A}'); // Ċ
        assert_eq!(char_to_byte('\u{144}'), None);
    }
}
