//! Pattern recognizers: e-mail, phone, US SSN, payment card, IBAN, IP,
//! date of birth, medical record number, passport, API key.
//!
//! The Rust `regex` crate has no look-around, so boundaries that a regex
//! cannot express (a number glued to `ORD-`, a version's `v`) are checked on
//! the surrounding chars after the match.

use std::net::Ipv6Addr;
use std::str::FromStr;

use regex::Regex;

use super::context::Context;
use super::{next_char, prev_char};
use crate::entity::{EntityType, Finding};

pub(crate) struct Tables {
    email: Regex,
    phone: Regex,
    ssn: Regex,
    card: Regex,
    iban: Regex,
    ipv4: Regex,
    ipv6: Regex,
    date: Regex,
    id_after_kw: Regex,
    mrn_glued: Regex,
    passport_value: Regex,
    key_prefixed: Regex,
    jwt: Regex,
    generic_token: Regex,
    uuid: Regex,
}

fn re(s: &str) -> Regex {
    Regex::new(s).expect("built-in pattern regex")
}

/// Month names (en, de, fr, es, it, nl, pt), longest spellings first so the
/// alternation (leftmost-first) prefers them.
const MONTHS: &str = "january|february|march|april|may|june|july|august|september|october|november|december|\
januar|februar|märz|maerz|mai|juni|juli|oktober|dezember|\
janvier|février|fevrier|mars|avril|juin|juillet|août|aout|septembre|octobre|novembre|décembre|decembre|\
enero|febrero|marzo|abril|mayo|junio|julio|agosto|septiembre|setiembre|octubre|noviembre|diciembre|\
gennaio|febbraio|aprile|maggio|giugno|luglio|settembre|ottobre|dicembre|\
januari|februari|maart|mei|augustus|\
janeiro|fevereiro|março|maio|junho|julho|setembro|outubro|dezembro|\
sept|jan|feb|mar|apr|jun|jul|aug|sep|oct|nov|dec";

impl Tables {
    pub fn new() -> Tables {
        let date = format!(
            r"(?i)\b(?:\d{{4}}[-/.]\d{{1,2}}[-/.]\d{{1,2}}|\d{{1,2}}[-/.]\d{{1,2}}[-/.](?:\d{{4}}|\d{{2}})|\d{{1,2}}(?:st|nd|rd|th|er|º)?\.?(?:\s+of|\s+de)?[\s-]+(?:{m})\.?(?:\s+de)?[\s,-]+\d{{4}}|(?:{m})\.?\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}})\b",
            m = MONTHS
        );
        Tables {
            email: re(r"(?i)[\p{L}\p{N}][\p{L}\p{N}._%+'-]*@[\p{L}\p{N}](?:[\p{L}\p{N}-]*[\p{L}\p{N}])?(?:\.[\p{L}\p{N}](?:[\p{L}\p{N}-]*[\p{L}\p{N}])?)*\.[a-z]{2,24}\b"),
            phone: re(r"(?:\+\s?\d{1,3}|\(\d{1,5}\)|\d{1,5})(?:[ \u{a0}.\-/]{1,2}\(?\d{1,10}\)?){0,6}"),
            ssn: re(r"\b\d{3}-\d{2}-\d{4}\b|\b\d{3} \d{2} \d{4}\b|\b\d{9}\b"),
            card: re(r"\b\d(?:[ -]?\d){11,18}\b"),
            iban: re(r"(?i)\b[a-z]{2}\d{2}(?:[ -]?[a-z0-9]){10,32}"),
            ipv4: re(r"\b(?:\d{1,3}\.){3}\d{1,3}\b"),
            ipv6: re(r"[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*"),
            date: re(&date),
            // An identifier right after a keyword: skip filler, then the value.
            id_after_kw: re(r"(?i)^(?:[\s:#=\x22'(.\-]|\b(?:no|nr|num|number|is|was|of|id|n[°º])\b)*([a-z]{0,4}[-/]?\d[\d\-/]{3,18}[a-z0-9]?)\b"),
            mrn_glued: re(r"\bMRN\d{5,12}\b"),
            passport_value: re(r"(?i)^(?:[\s:#=\x22'(.\-]|\b(?:no|nr|num|number|is|was|of|n[°º])\b)*([a-z0-9]{6,10})\b"),
            key_prefixed: re(r"\b(?:sk-(?:proj-|ant-)?[A-Za-z0-9_\-]{20,}|sk_(?:live|test)_[A-Za-z0-9]{16,}|rk_(?:live|test)_[A-Za-z0-9]{16,}|(?:AKIA|ASIA|AGPA|AIDA|AROA)[A-Z0-9]{16}|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}|xox[abposr]-[A-Za-z0-9\-]{10,}|AIza[A-Za-z0-9_\-]{30,}|glpat-[A-Za-z0-9_\-]{20,}|hf_[A-Za-z0-9]{30,}|npm_[A-Za-z0-9]{30,}|SG\.[A-Za-z0-9_\-]{16,}\.[A-Za-z0-9_\-]{16,}|shpat_[a-fA-F0-9]{32}|pypi-[A-Za-z0-9_\-]{40,})|-----BEGIN [A-Z ]*PRIVATE KEY-----"),
            jwt: re(r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),
            generic_token: re(r"[A-Za-z0-9+/_=\-]{20,}"),
            uuid: re(r"(?i)^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
        }
    }
}

fn push(out: &mut Vec<Finding>, entity: EntityType, start: usize, end: usize, confidence: f32) {
    out.push(Finding { entity, start, end, confidence: confidence.clamp(0.0, 1.0) });
}

pub(crate) fn scan(text: &str, ctx: &Context, t: &Tables, dates: &[(usize, usize)], out: &mut Vec<Finding>) {
    email(text, t, out);
    ip(text, t, out);
    card(text, ctx, t, out);
    iban(text, t, out);
    ssn(text, ctx, t, out);
    phone(text, ctx, t, dates, out);
    dob(text, ctx, dates, out);
    mrn(text, ctx, t, out);
    passport(text, ctx, t, out);
    api_key(text, ctx, t, out);
}

// ---------------------------------------------------------------- e-mail

fn email(text: &str, t: &Tables, out: &mut Vec<Finding>) {
    for m in t.email.find_iter(text) {
        push(out, EntityType::Email, m.start(), m.end(), 0.97);
    }
}

// ---------------------------------------------------------------- IP

fn ip(text: &str, t: &Tables, out: &mut Vec<Finding>) {
    for m in t.ipv4.find_iter(text) {
        let s = m.as_str();
        if !s.split('.').all(|o| o.parse::<u16>().is_ok_and(|v| v <= 255)) {
            continue;
        }
        // Part of a longer dotted number, or a version (v1.2.3.4).
        let p = prev_char(text, m.start());
        if matches!(p, Some('.') | Some('v') | Some('V')) || text[m.end()..].starts_with('.')
            && next_char(text, m.end() + 1).is_some_and(|c| c.is_ascii_digit())
        {
            continue;
        }
        push(out, EntityType::IpAddress, m.start(), m.end(), 0.92);
    }
    for m in t.ipv6.find_iter(text) {
        // Trim trailing separators (`[::1]:` or a sentence's full stop).
        let s = m.as_str();
        let trimmed = s.trim_end_matches(['.', ':']);
        let lead = s.len() - s.trim_start_matches('.').len();
        let cand = &trimmed[lead.min(trimmed.len())..];
        if cand.matches(':').count() < 2 || cand.chars().filter(|c| c.is_ascii_hexdigit()).count() < 2 {
            continue;
        }
        let start = m.start() + lead;
        if prev_char(text, start).is_some_and(|c| c.is_alphanumeric()) {
            continue;
        }
        let end = start + cand.len();
        if next_char(text, end).is_some_and(|c| c.is_alphanumeric() && c != '%') {
            continue;
        }
        if Ipv6Addr::from_str(cand).is_ok() {
            push(out, EntityType::IpAddress, start, end, 0.92);
        }
    }
}

// ---------------------------------------------------------------- cards

/// Luhn check over ASCII digits (ISO/IEC 7812-1 annex B).
pub(crate) fn luhn_ok(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, &d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d - b'0');
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum % 10 == 0
}

/// Issuer prefixes of the major networks (IIN ranges as published by the
/// networks: Visa 4; Mastercard 51-55, 2221-2720; Amex 34/37; Discover 6011,
/// 644-649, 65; JCB 3528-3589; Diners 300-305, 36, 38; UnionPay 62).
fn known_iin(d: &[u8], len: usize) -> bool {
    let n = |k: usize| -> u32 { d[..k].iter().fold(0, |a, &c| a * 10 + u32::from(c - b'0')) };
    match d[0] {
        b'4' => matches!(len, 13 | 16 | 19),
        b'5' => (51..=55).contains(&n(2)) && len == 16,
        b'2' => (2221..=2720).contains(&n(4)) && len == 16,
        b'3' => {
            (matches!(n(2), 34 | 37) && len == 15)
                || ((3528..=3589).contains(&n(4)) && (16..=19).contains(&len))
                || ((300..=305).contains(&n(3)) || matches!(n(2), 36 | 38)) && (14..=19).contains(&len)
        }
        b'6' => (n(4) == 6011 || (644..=649).contains(&n(3)) || n(2) == 65 || n(2) == 62) && (16..=19).contains(&len),
        _ => false,
    }
}

fn card(text: &str, ctx: &Context, t: &Tables, out: &mut Vec<Finding>) {
    for m in t.card.find_iter(text) {
        let s = m.as_str();
        let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_digit).collect();
        let len = digits.len();
        if !(13..=19).contains(&len) || !luhn_ok(&digits) {
            continue;
        }
        if matches!(prev_char(text, m.start()), Some('+') | Some('-')) {
            continue;
        }
        // Grouping must look like a card's: 4-4-4-4(-3), 4-6-5/4, or none.
        let groups: Vec<usize> = s.split([' ', '-']).map(str::len).collect();
        let grouped_ok = groups.len() == 1
            || (groups[..groups.len() - 1].iter().all(|&g| g == 4) && (1..=4).contains(&groups[groups.len() - 1]))
            || (groups.len() == 3 && groups[0] == 4 && groups[1] == 6 && (4..=5).contains(&groups[2]));
        if !grouped_ok {
            continue;
        }
        let context = ctx.before(&ctx.card, m.start(), 30).is_some();
        let conf = match (known_iin(&digits, len), context) {
            (true, _) => 0.96,
            (false, true) => 0.8,
            (false, false) => 0.4,
        };
        push(out, EntityType::CreditCard, m.start(), m.end(), conf);
    }
}

// ---------------------------------------------------------------- IBAN

/// IBAN lengths by country (ISO 13616 IBAN registry).
const IBAN_LEN: &[(&str, usize)] = &[
    ("AD", 24), ("AE", 23), ("AL", 28), ("AT", 20), ("AZ", 28), ("BA", 20), ("BE", 16), ("BG", 22), ("BH", 22),
    ("BR", 29), ("BY", 28), ("CH", 21), ("CR", 22), ("CY", 28), ("CZ", 24), ("DE", 22), ("DK", 18), ("DO", 28),
    ("EE", 20), ("EG", 29), ("ES", 24), ("FI", 18), ("FO", 18), ("FR", 27), ("GB", 22), ("GE", 22), ("GI", 23),
    ("GL", 18), ("GR", 27), ("GT", 28), ("HR", 21), ("HU", 28), ("IE", 22), ("IL", 23), ("IQ", 23), ("IS", 26),
    ("IT", 27), ("JO", 30), ("KW", 30), ("KZ", 20), ("LB", 28), ("LC", 32), ("LI", 21), ("LT", 20), ("LU", 20),
    ("LV", 21), ("MC", 27), ("MD", 24), ("ME", 22), ("MK", 19), ("MR", 27), ("MT", 31), ("MU", 30), ("NL", 18),
    ("NO", 15), ("PK", 24), ("PL", 28), ("PS", 29), ("PT", 25), ("QA", 29), ("RO", 24), ("RS", 22), ("SA", 24),
    ("SC", 31), ("SE", 24), ("SI", 19), ("SK", 24), ("SM", 27), ("ST", 25), ("SV", 28), ("TL", 23), ("TN", 24),
    ("TR", 26), ("UA", 29), ("VA", 22), ("VG", 24), ("XK", 20),
];

/// ISO 13616 / ISO 7064 mod 97-10 check over an upper-case compact IBAN.
pub(crate) fn iban_ok(compact: &[u8]) -> bool {
    if compact.len() < 5 {
        return false;
    }
    let mut rem: u32 = 0;
    for &c in compact[4..].iter().chain(&compact[..4]) {
        let v = match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            b'A'..=b'Z' => u32::from(c - b'A') + 10,
            _ => return false,
        };
        rem = if v >= 10 { (rem * 100 + v) % 97 } else { (rem * 10 + v) % 97 };
    }
    rem == 1
}

fn iban(text: &str, t: &Tables, out: &mut Vec<Finding>) {
    // The regex may run on into the next IBAN ("from X to Y"), so search
    // again right after each accepted IBAN (or one char after a rejected start).
    let mut at = 0;
    while let Some(m) = t.iban.find_at(text, at) {
        at = m.start() + text[m.start()..].chars().next().map_or(1, char::len_utf8);
        // compact chars with the byte end of each in the original text
        let mut compact = Vec::new();
        let mut ends = Vec::new();
        for (i, c) in m.as_str().char_indices() {
            if c.is_ascii_alphanumeric() {
                compact.push(c.to_ascii_uppercase() as u8);
                ends.push(m.start() + i + 1);
            }
        }
        let country = std::str::from_utf8(&compact[..2]).unwrap_or("");
        let boundary = |n: usize| !next_char(text, ends[n - 1]).is_some_and(|c| c.is_alphanumeric());
        let known = IBAN_LEN.iter().find(|(c, _)| *c == country).map(|&(_, l)| l);
        let hit = match known {
            Some(l) if compact.len() >= l && boundary(l) && iban_ok(&compact[..l]) => Some((l, 0.99)),
            Some(_) => None,
            None => (15..=compact.len().min(34)).rev().find(|&l| boundary(l) && iban_ok(&compact[..l])).map(|l| (l, 0.8)),
        };
        if let Some((l, conf)) = hit {
            push(out, EntityType::Iban, m.start(), ends[l - 1], conf);
            at = ends[l - 1];
        }
    }
}

// ---------------------------------------------------------------- SSN

fn ssn(text: &str, ctx: &Context, t: &Tables, out: &mut Vec<Finding>) {
    for m in t.ssn.find_iter(text) {
        let d: Vec<u8> = m.as_str().bytes().filter(u8::is_ascii_digit).collect();
        let area = (d[0] - b'0') as u32 * 100 + (d[1] - b'0') as u32 * 10 + (d[2] - b'0') as u32;
        // SSA: area 000, 666 and 900-999 are never issued; group 00 and serial 0000 neither.
        if area == 0 || area == 666 || area >= 900 || &d[3..5] == b"00" || &d[5..9] == b"0000" {
            continue;
        }
        if matches!(prev_char(text, m.start()), Some('-') | Some('+') | Some('#') | Some('.'))
            || matches!(next_char(text, m.end()), Some('-'))
        {
            continue;
        }
        let after = ctx.ssn.iter().any(|&(ks, _)| ks >= m.end() && ks - m.end() <= 30);
        // the keyword may sit up to 60 bytes before, if no other number
        // comes between ("SSN on file for Emily McAllister is 0560...")
        let before = ctx
            .before(&ctx.ssn, m.start(), 60)
            .is_some_and(|(_, ke)| !text[ke..m.start()].contains(|c: char| c.is_ascii_digit()));
        let context = before || after || header_is(ctx, m.start(), &["ssn", "social"]);
        let s = m.as_str();
        let conf = if s.contains('-') {
            if context { 0.99 } else { 0.85 }
        } else if s.contains(' ') {
            // 3-2-4 in spaces is no common phone or date layout
            if context { 0.95 } else { 0.55 }
        } else if context {
            0.9
        } else {
            // nine bare digits with a valid area: possibly an SSN
            0.3
        };
        push(out, EntityType::UsSsn, m.start(), m.end(), conf);
    }
}

fn header_is(ctx: &Context, pos: usize, keys: &[&str]) -> bool {
    ctx.column_header(pos).is_some_and(|h| {
        let h = h.to_ascii_lowercase();
        keys.iter().any(|k| h.contains(k))
    })
}

// ---------------------------------------------------------------- phone

fn phone(text: &str, ctx: &Context, t: &Tables, dates: &[(usize, usize)], out: &mut Vec<Finding>) {
    for m in t.phone.find_iter(text) {
        let (mut start, mut end) = (m.start(), m.end());
        let mut s = m.as_str();
        // A trailing separator or unbalanced '(' is not part of the number.
        while let Some(c) = s.chars().last().filter(|c| !c.is_ascii_digit() && *c != ')') {
            end -= c.len_utf8();
            s = &text[start..end];
        }
        if s.ends_with(')') && s.matches('(').count() < s.matches(')').count() {
            end -= 1;
            s = &text[start..end];
        }
        if s.starts_with('(') && !s.contains(')') {
            start += 1;
            s = &text[start..end];
        }
        let ndig = s.bytes().filter(u8::is_ascii_digit).count();
        if !(7..=15).contains(&ndig) {
            continue;
        }
        let prev = prev_char(text, start);
        // Glued to an identifier (ORD-404581, INV-2024-1234, v1.2), a
        // currency, a number sign, or a longer number/word.
        if prev.is_some_and(|c| c.is_alphanumeric() || matches!(c, '#' | '$' | '€' | '£' | '¥' | '.' | ',' | '_' | '/'))
        {
            continue;
        }
        if prev == Some('-') && prev_char(text, start - 1).is_some_and(|c| c.is_alphanumeric()) {
            continue;
        }
        if next_char(text, end).is_some_and(|c| c.is_alphanumeric() || matches!(c, '%' | '_' | '@'))
            || text[end..].starts_with(['.', ','])
                && next_char(text, end + 1).is_some_and(|c| c.is_ascii_digit())
        {
            continue;
        }
        if dates.iter().any(|&(ds, de)| ds < end && start < de) {
            continue;
        }
        let groups: Vec<&str> = s.split(|c: char| !c.is_ascii_digit()).filter(|g| !g.is_empty()).collect();
        // Dotted quads are IPs; dashed 3-2-4 is the SSN shape (left to the SSN recognizer).
        if s.contains('.') && groups.len() == 4 && !s.contains(' ') {
            continue;
        }
        let plus = s.starts_with('+');
        let paren = s.contains('(');
        let nanp = groups.len() == 3 && groups[0].len() == 3 && groups[1].len() == 3 && groups[2].len() == 4;
        let trunk = s.starts_with('0') && groups.len() >= 2 && (9..=12).contains(&ndig);
        // the keyword must name this number, not an earlier one
        let context = ctx.before(&ctx.phone, start, 25).is_some_and(|(_, ke)| !text[ke..start].contains(|c: char| c.is_ascii_digit()));
        let mut conf: f32 = if plus && ndig >= 8 {
            0.9
        } else if paren && ndig >= 9 {
            0.85
        } else if nanp && !s.contains('/') {
            0.8
        } else if trunk {
            0.7
        } else if groups.len() >= 2 && ndig >= 9 {
            0.2
        } else {
            0.1
        };
        if context {
            conf += 0.4;
        }
        if s.contains('/') && !trunk {
            conf -= 0.2;
        }
        push(out, EntityType::Phone, start, end, conf.min(0.97));
    }
}

// ---------------------------------------------------------------- dates

pub(crate) fn dates(text: &str, t: &Tables) -> Vec<(usize, usize)> {
    t.date.find_iter(text).filter(|m| plausible_date(m.as_str())).map(|m| (m.start(), m.end())).collect()
}

/// Calendar sanity for numeric dates (day 1-31, month 1-12, year 1900-2099
/// when four digits); month-name dates only need a day in 1-31.
fn plausible_date(s: &str) -> bool {
    let nums: Vec<u32> = s.split(|c: char| !c.is_ascii_digit()).filter_map(|x| x.parse().ok()).collect();
    let has_alpha = s.chars().any(|c| c.is_alphabetic());
    if has_alpha {
        return nums.iter().any(|&n| (1..=31).contains(&n));
    }
    if nums.len() != 3 {
        return false;
    }
    let (a, b, c) = (nums[0], nums[1], nums[2]);
    let yr = |y: u32| (1900..=2099).contains(&y);
    if s.split(|c: char| !c.is_ascii_digit()).next().is_some_and(|f| f.len() == 4) {
        yr(a) && (1..=12).contains(&b) && (1..=31).contains(&c)
    } else {
        let y_ok = if c >= 100 { yr(c) } else { true };
        y_ok && (1..=31).contains(&a) && (1..=31).contains(&b) && (a <= 12 || b <= 12)
    }
}

fn dob(text: &str, ctx: &Context, dates: &[(usize, usize)], out: &mut Vec<Finding>) {
    for (i, &(s, e)) in dates.iter().enumerate() {
        let prev_date_end = if i > 0 { dates[i - 1].1 } else { 0 };
        let kw = ctx.before(&ctx.birth, s, 32).filter(|&(_, ke)| ke >= prev_date_end);
        let by_kw = kw.is_some_and(|(_, ke)| text[ke..s].matches('\n').count() <= 1);
        let by_header = header_is(ctx, s, &["dob", "birth", "born"]);
        if by_kw || by_header {
            push(out, EntityType::DateOfBirth, s, e, 0.95);
        }
    }
}

// ---------------------------------------------------------------- MRN, passport

fn mrn(text: &str, ctx: &Context, t: &Tables, out: &mut Vec<Finding>) {
    for m in t.mrn_glued.find_iter(text) {
        push(out, EntityType::MedicalRecordNumber, m.start(), m.end(), 0.95);
    }
    for &(_, ke) in &ctx.mrn {
        if let Some(c) = t.id_after_kw.captures(&text[ke..]).and_then(|c| c.get(1)) {
            if c.start() > 24 {
                continue;
            }
            let v = c.as_str();
            if v.bytes().filter(u8::is_ascii_digit).count() < 5 {
                continue;
            }
            push(out, EntityType::MedicalRecordNumber, ke + c.start(), ke + c.end(), 0.9);
        }
    }
    id_in_table(text, ctx, t, &["mrn", "medical record", "record number", "patient id", "hospital number"], EntityType::MedicalRecordNumber, out);
}

fn id_in_table(text: &str, ctx: &Context, t: &Tables, keys: &[&str], entity: EntityType, out: &mut Vec<Finding>) {
    if !text.contains('\n') {
        return;
    }
    for m in t.generic_id().find_iter(text) {
        if header_is(ctx, m.start(), keys) {
            push(out, entity, m.start(), m.end(), 0.85);
        }
    }
}

impl Tables {
    fn generic_id(&self) -> &Regex {
        static R: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
        R.get_or_init(|| re(r"\b[A-Za-z]{0,4}[-/]?\d[\d\-/]{3,18}[A-Za-z0-9]?\b"))
    }
}

fn passport(text: &str, ctx: &Context, t: &Tables, out: &mut Vec<Finding>) {
    for &(_, ke) in &ctx.passport {
        // Skip up to three ordinary words ("passport number is", "passport scan of").
        let mut pos = ke;
        for _ in 0..4 {
            if let Some(c) = t.passport_value.captures(&text[pos..]).and_then(|c| c.get(1)) {
                let v = c.as_str();
                let digits = v.bytes().filter(u8::is_ascii_digit).count();
                // German passports may hold one digit or none: accept an
                // all-capitals 8-10 char code right after the keyword too.
                let caps_code = v.len() >= 8
                    && v.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
                    && pos == ke
                    && (digits >= 1 || !shouted(text));
                if (digits >= 2 || caps_code) && pos + c.start() - ke <= 40 {
                    push(out, EntityType::Passport, pos + c.start(), pos + c.end(), 0.9);
                    break;
                }
            }
            // advance past the next word
            let rest = &text[pos..];
            let skip = rest.find(|c: char| c.is_alphanumeric()).and_then(|a| {
                rest[a..].find(|c: char| !c.is_alphanumeric()).map(|b| a + b)
            });
            match skip {
                Some(n) if pos + n - ke <= 40 && !rest[..n].contains(['.', '\n', ';']) || skip.is_some_and(|n| rest[..n].trim_start().starts_with(|c: char| c.is_alphanumeric()) && !rest[..n].contains(['\n', ';']) && pos + n - ke <= 40) => pos += n,
                _ => break,
            }
        }
    }
    id_in_table(text, ctx, t, &["passport"], EntityType::Passport, out);
}

fn shouted(text: &str) -> bool {
    let letters = text.chars().filter(|c| c.is_alphabetic()).count().max(1);
    text.chars().filter(|c| c.is_uppercase()).count() * 10 > letters * 7
}

// ---------------------------------------------------------------- API keys

/// Shannon entropy in bits per char.
fn entropy(s: &str) -> f32 {
    let mut counts = [0u32; 256];
    for b in s.bytes() {
        counts[b as usize] += 1;
    }
    let n = s.len() as f32;
    counts.iter().filter(|&&c| c > 0).map(|&c| {
        let p = c as f32 / n;
        -p * p.log2()
    }).sum()
}

fn api_key(text: &str, ctx: &Context, t: &Tables, out: &mut Vec<Finding>) {
    for m in t.key_prefixed.find_iter(text) {
        push(out, EntityType::ApiKey, m.start(), m.end(), 0.98);
    }
    for m in t.jwt.find_iter(text) {
        push(out, EntityType::ApiKey, m.start(), m.end(), 0.95);
    }
    for m in t.generic_token.find_iter(text) {
        // `name=value`: the value starts after the last '=' that is not padding.
        let raw = m.as_str();
        let body_end = raw.trim_end_matches('=').len();
        let from = raw[..body_end].rfind('=').map_or(0, |i| i + 1);
        let lead = raw[from..].len() - raw[from..].trim_start_matches(['-', '/', '+']).len();
        let start = m.start() + from + lead;
        let end = m.end();
        let s = text[start..end].trim_end_matches('=');
        if s.len() < 20 || t.uuid.is_match(s) {
            continue;
        }
        if prev_char(text, start).is_some_and(|c| c == '@' || c == '.' || c == ':' && !text[..start].ends_with("Bearer:")) {
            continue;
        }
        if next_char(text, end).is_some_and(|c| c == '@' || c == '.' && next_char(text, end + 1).is_some_and(|c| c.is_alphanumeric())) {
            continue;
        }
        let lower = s.bytes().any(|b| b.is_ascii_lowercase());
        let upper = s.bytes().any(|b| b.is_ascii_uppercase());
        let digit = s.bytes().filter(u8::is_ascii_digit).count();
        let classes = lower as u8 + upper as u8 + (digit > 0) as u8;
        let hex = s.bytes().all(|b| b.is_ascii_hexdigit());
        let h = entropy(s);
        let context = ctx.before(&ctx.secret, start, 30).is_some();
        let hashy = ctx.before(&ctx.hash, start, 30).is_some();
        // Long random strings: hex of key-like length, or mixed-class base64.
        let mut conf: f32 = if hex && matches!(s.len(), 32 | 40 | 64) && digit >= 3 && h >= 3.0 {
            0.7
        } else if classes == 3 && s.len() >= 32 && h >= 4.2 {
            if s.contains('/') && h < 4.6 { 0.3 } else { 0.8 }
        } else if classes >= 2 && digit >= 2 && h >= 3.5 {
            0.3
        } else {
            0.0
        };
        if context && conf > 0.0 {
            conf += 0.3;
        }
        if hashy {
            conf = conf.min(0.2);
        }
        if conf > 0.0 {
            push(out, EntityType::ApiKey, start, end, conf.min(0.95));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_and_iban_checksums() {
        assert!(luhn_ok(b"4111111111111111"));
        assert!(!luhn_ok(b"4111111111111112"));
        assert!(iban_ok(b"DE89370400440532013000"));
        assert!(iban_ok(b"GB82WEST12345698765432"));
        assert!(!iban_ok(b"GB82WEST12345698765433"));
        assert!(!iban_ok(b"GB8"));
    }

    #[test]
    fn dates_are_calendar_checked() {
        assert!(plausible_date("1970-12-07"));
        assert!(plausible_date("23.05.1970"));
        assert!(!plausible_date("1970-13-07"));
        assert!(!plausible_date("40/40/1970"));
        assert!(plausible_date("3 March 1970"));
    }
}
