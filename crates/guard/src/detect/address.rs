//! STREET_ADDRESS recognizer: a street "core" (house number + street-type
//! word, or a street-type suffix/prefix + number, for English, French,
//! German/Dutch, Spanish/Portuguese/Italian, Japanese chome and Indian flat
//! formats) extended through units and up to three locality components
//! (city, state, postcode). A core without a street-type word still counts
//! when a postcode follows it, and a run after an address cue ("residing
//! at", "Address:") that holds a number counts too.
//!
//! Not handled: addresses without a house number and without a postcode,
//! PO boxes in non-English forms, and non-Latin-script addresses.

use regex::Regex;

use super::context::Context;
use super::names;
use crate::entity::{EntityType, Finding};

pub(crate) struct Tables {
    cores: Vec<(Regex, f32)>,
    unit: Regex,
    postcode: Regex,
    cue_run: Regex,
}

fn re(s: &str) -> Regex {
    Regex::new(s).expect("built-in address regex")
}

const EN_TYPES: &str = "street|st|avenue|ave|road|rd|lane|ln|drive|dr|boulevard|blvd|court|ct|close|way|place|pl|terrace|tce|circle|cir|crescent|cres|grove|hill|square|sq|parkway|pkwy|highway|hwy|row|mews|gardens|walk|rise|view|green|trail|path|alley|quay|wharf|esplanade|parade|vale|heights|loop|pike|plaza|broadway|promenade";
const SUFFIX_TYPES: &str = "straße|strasse|str\\.|weg|allee|gasse|platz|ring|damm|ufer|gracht|straat|laan|plein|kade|singel|dijk|markt|steig|pfad|chaussee|wall|graben|vej|gade|gatan|vägen|vagen|veien|gata|katu|tie|utca";
const PREFIX_TYPES: &str = "calle|c/|avenida|avda\\.?|paseo|plaza|pza\\.?|carrer|rua|viale|piazza|corso|largo|travessa|rambla|ronda|camino|carretera|praça|praca|avinguda|via";
const FR_TYPES: &str = "rue|avenue|av\\.|boulevard|bd|place|allée|allee|chemin|impasse|quai|cours|route|square|passage|faubourg";
/// Postcodes: UK, Canada, Netherlands, Japan, 5-digit (US ZIP, DE, FR,
/// ES, IT), 6-digit (IN). Four-digit codes (AU, AT, CH, BE, DK, NO) only
/// after a state/region abbreviation, see `component`: alone they are years.
pub(crate) const POSTCODE: &str = r"(?:[A-Z]{1,2}\d[A-Z\d]?\s?\d[A-Z]{2}|[A-Z]\d[A-Z]\s?\d[A-Z]\d|\d{4}\s?[A-Z]{2}\b|\d{3}-\d{4}|\d{5}(?:-\d{4})?|\d{6})";

impl Tables {
    pub fn new() -> Tables {
        let word = r"[\p{L}][\p{L}\p{M}'’.\-]*";
        let cap = r"[\p{Lu}][\p{L}\p{M}'’.\-]*";
        // Street types are capitalised in addresses ("Oak Street", "OAK
        // STREET"); a lower-case "gate" or "way" is an ordinary word.
        let en_types = EN_TYPES
            .split('|')
            .flat_map(|t| {
                let mut c = t.chars();
                let title = c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default();
                [title, t.to_uppercase()]
            })
            .collect::<Vec<_>>()
            .join("|");
        let num_prefix = r"(?:(?i:unit|apt|flat|suite)\s*\d{1,4}[A-Za-z]?\s*/\s*)?";
        let cores = vec![
            // 12 Oak Street / 12B Kestrel Court / Unit 5/120 George St
            (format!(r"\b{num_prefix}\d{{1,5}}[A-Za-z]?,?[ \t]+(?:{cap}[ \t]+){{0,3}}(?:{en_types})\b\.?"), 0.8),
            // 9 rue de la Paix / 76 bis rue Pasteur / 113 AVENUE VICTOR HUGO
            (format!(r"\b\d{{1,4}}(?:\s*(?i:bis|ter))?,?\s+(?i:{FR_TYPES})\s+(?:(?i:de|du|des|la|le|les|d'|l')\s*){{0,2}}{cap}(?:\s+{cap}){{0,3}}"), 0.8),
            // Bahnhofstraße 26b / Am Markt 5 / Prinsengracht 132 hs
            (format!(r"\b(?:{cap}[ \t]+){{0,2}}{word}(?i:{SUFFIX_TYPES})[ \t]+\d{{1,4}}(?:[ \t]?[a-zA-Z]\b)?"), 0.8),
            // Calle de Alcalá, 13 / Paseo de Gracia 30 / Rua Augusta 12
            (format!(r"\b(?i:{PREFIX_TYPES})\s+(?:(?i:de|del|la|las|los|da|do|dos|das|di|della|dei)\s+){{0,2}}{cap}(?:\s+(?:(?i:de|del|la|da|do|di)\s+)?{cap}){{0,3}},?\s*(?:(?i:n[º°o])\.?\s*)?\d{{1,4}}\b"), 0.75),
            // 1-2-3 Jingumae, Shibuya-ku
            (format!(r"\b\d{{1,2}}-\d{{1,2}}-\d{{1,3}}\s+{cap}(?:,\s*{cap}-(?i:ku|shi|cho|machi|gun|ken))?"), 0.8),
            // Flat 12, Lotus Apartments, Indiranagar
            (format!(r"\b(?i:flat|apt|apartment|house|h\.?\s?no\.?|plot|door\s+no\.?)\s*\d{{1,4}}[A-Za-z]?,\s*(?:{cap}\s+){{0,3}}(?i:apartments?|residency|towers?|enclave|society|complex|heights|building|bldg|block|villa|niwas|nagar|colony|mansions?|court)\b"), 0.8),
            // PO Box 123
            (r"\b(?i:p\.?\s?o\.?\s+box|post\s+office\s+box)\s+\d{1,6}\b".to_string(), 0.75),
            // Generic: number + capitalised words (needs a postcode tail)
            (format!(r"\b\d{{1,5}}[A-Za-z]?[ \t]+{cap}(?:[ \t]+{cap}){{0,2}}"), 0.3),
            // Generic: capitalised words + number (needs a postcode tail)
            (format!(r"\b{cap}(?:[ \t]+{cap}){{0,2}}[ \t]+\d{{1,4}}(?:[ \t]?[a-zA-Z]\b)?"), 0.3),
        ];
        Tables {
            cores: cores.into_iter().map(|(s, c)| (re(&s), c)).collect(),
            unit: re(r"^(?:\s+(?i:hs|bis|ter)\b|-\d{1,3}\b|,?\s*(?i:apt|apartment|suite|ste|unit|flat|fl|floor|room|piso|puerta|bus|boîte|etage|étage)\.?\s*#?\d{1,4}[A-Za-z]?\b|\s*#\d{1,5}[A-Za-z]?\b|,\s*\d{1,2}\s*[º°ª]\s*[A-Za-z]?\b)"),
            postcode: re(&format!(r"\b{POSTCODE}\b|\b[A-Z]{{2,3}}[ \t]+\d{{4}}\b")),
            cue_run: re(r"^[\s:=\x22'(\-]{0,6}([\p{L}\p{N}][^\n;!?<>()\x22]{3,90})"),
        }
    }
}

pub(crate) fn scan(
    text: &str,
    ctx: &Context,
    t: &Tables,
    nt: &names::Tables,
    dates: &[(usize, usize)],
    out: &mut Vec<Finding>,
) {
    let mut found: Vec<Finding> = Vec::new();
    for (r, base) in &t.cores {
        for m in r.find_iter(text) {
            let (start, mut end) = (m.start(), m.end());
            let core_text = m.as_str();
            // Generic cores must not be dates ("15 Aug 2022").
            if core_text.chars().filter(|c| c.is_alphabetic()).count() < 2
                || *base < 0.5 && dates.iter().any(|&(ds, de)| ds < m.end() && m.start() < de)
            {
                continue;
            }
            // Units and locality components.
            if let Some(u) = t.unit.find(&text[end..]) {
                end += u.end();
            }
            // Up to three locality components; they are kept up to the last
            // one holding a postcode, or, with no postcode anywhere, while
            // they are comma-separated and do not open with an ordinary word.
            let mut comps: Vec<(usize, bool)> = Vec::new(); // (end, has postcode)
            let mut pos = end;
            while comps.len() < 3 {
                let Some((sep_end, comp_end, stop)) = component(text, pos, &t.postcode) else { break };
                let sep = &text[pos..sep_end];
                let val = &text[sep_end..comp_end];
                let line_end = text[sep_end..].find('\n').map_or(text.len(), |i| sep_end + i);
                // a date is no locality ("on 20 AUG 2024")
                if dates.iter().any(|&(ds, de)| ds < comp_end && sep_end < de) {
                    break;
                }
                let has_pc = t.postcode.is_match(val);
                // A new line or a bare space continues only into a line
                // that holds a postcode.
                if (sep.contains('\n') || !sep.contains(',')) && !t.postcode.is_match(&text[sep_end..line_end]) {
                    break;
                }
                comps.push((comp_end, has_pc));
                pos = comp_end;
                if stop || has_pc && postcode_ends(val, &t.postcode) {
                    break;
                }
            }
            let postcode = comps.iter().any(|c| c.1);
            if let Some(last_pc) = comps.iter().rposition(|c| c.1) {
                end = comps[last_pc].0;
            } else {
                let mut p = end;
                for (k, &(ce, _)) in comps.iter().enumerate().take(2) {
                    let (s0, _, _) = component(text, p, &t.postcode).unwrap_or((p, p, false));
                    let first_word = text[s0..ce].split_whitespace().next().unwrap_or("");
                    let f = nt.lookup(first_word.trim_end_matches(['.', ',']));
                    if f & 4 != 0 && f & 3 == 0 || k > 0 && !text[p..s0].contains(',') {
                        break;
                    }
                    end = ce;
                    p = ce;
                }
            }
            let comps = comps.len();
            let conf = if *base < 0.5 {
                if postcode && comps >= 1 { 0.75 } else { continue }
            } else if postcode {
                base + 0.15
            } else {
                *base
            };
            found.push(Finding { entity: EntityType::StreetAddress, start, end, confidence: conf });
        }
    }
    // After an address cue: the rest of the clause, if it has a number.
    for &(_, ke) in &ctx.address {
        let Some(c) = t.cue_run.captures(&text[ke..]) else { continue };
        let Some(v) = c.get(1) else { continue };
        let mut s = v.as_str();
        // stop at a sentence end, a dash clause, or a following clause word
        for stop in [". ", " - ", " – ", ", and ", " and ", " for ", " between ", " but ", " - "] {
            if let Some(i) = s.find(stop) {
                s = &s[..i];
            }
        }
        let s = s.trim_end_matches(['.', ',', ' ']);
        let start = ke + v.start();
        let end = start + s.len();
        if found.iter().any(|f| f.overlaps(start, end)) {
            continue;
        }
        let has_digit = s.chars().any(|c| c.is_ascii_digit());
        let words = s.split_whitespace().count();
        if has_digit && words >= 2 && s.starts_with(|c: char| c.is_ascii_digit() || c.is_uppercase()) {
            let conf = if t.postcode.is_match(s) { 0.6 } else { 0.4 };
            found.push(Finding { entity: EntityType::StreetAddress, start, end, confidence: conf });
        }
    }
    out.extend(found);
}

/// One locality component after byte `pos`: returns (start of the
/// component after its separator, its end, whether a sentence ended in it).
/// A component is up to five words, each starting with an upper-case
/// letter (York, YO10, NSW) or a digit (postcode halves: 4MM, 3065,
/// 530-0001); a lower-case word, a bracket or a second comma ends it.
fn component(text: &str, pos: usize, pc: &Regex) -> Option<(usize, usize, bool)> {
    let rest = &text[pos..];
    let b = rest.as_bytes();
    let mut i = 0;
    if b.first() == Some(&b',') {
        i += 1;
    }
    let mut newlines = 0;
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        newlines += usize::from(b[i] == b'\n');
        i += 1;
    }
    if i == 0 || newlines > 1 {
        return None;
    }
    let comp_start = pos + i;
    let mut end = comp_start;
    let mut words = 0;
    let mut stop = false;
    let mut j = i;
    while words < 5 && j < rest.len() {
        let w_end = rest[j..].find(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | '(' | ')' | '"' | '<' | '>')).map_or(rest.len(), |k| j + k);
        let word = &rest[j..w_end];
        let first = word.chars().next()?;
        let bare = word.trim_end_matches(['.', '\'', '"', '’', '”', ']', '!', '?', ':']);
        let ok = first.is_uppercase() && bare.chars().all(|c| c.is_alphanumeric() || matches!(c, '-' | '\'' | '’' | '.'))
            || first.is_ascii_digit() && bare.len() <= 8 && bare.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !ok || word.is_empty() {
            break;
        }
        let trimmed = bare;
        end = pos + j + trimmed.len();
        words += 1;
        if trimmed.len() != word.len() {
            stop = true;
            break;
        }
        // a component ends with its postcode ("NAGOYA 460-0008 SINCE ...")
        // (a leading postcode is followed by its city: "44000 Nantes")
        if words > 1 && first.is_ascii_digit() && postcode_ends(&text[comp_start..end], pc) {
            stop = true;
            break;
        }
        // next word: only across spaces/tabs
        let mut k = w_end;
        while k < rest.len() && matches!(rest.as_bytes()[k], b' ' | b'\t') {
            k += 1;
        }
        if k == w_end || k >= rest.len() {
            break;
        }
        j = k;
    }
    (words > 0).then_some((comp_start, end, stop))
}

/// Whether the component ends with a postcode (then the address is complete).
fn postcode_ends(v: &str, pc: &Regex) -> bool {
    pc.find_iter(v).last().is_some_and(|m| m.end() == v.trim_end().len())
}
