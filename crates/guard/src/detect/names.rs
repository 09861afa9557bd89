//! PERSON recognizer: gazetteer + capitalisation + context cues.
//!
//! The gazetteer (`data/gazetteer.txt`, built by `scripts/build_gazetteer.py`
//! from Faker's per-locale name lists (MIT), the US Census 1990 name files
//! (public domain, via the MIT `names` package) and SCOWL's small English
//! word list) marks each lower-cased word as a given name (g), family name
//! (s), ordinary English word (c) and/or capitalised dictionary word (p).
//!
//! A candidate is a run of name-shaped tokens (Capitalised, UPPER, or a
//! lower-case word that is a known name) joined by single spaces, with
//! particles (de, van, Ní, ...) and initials (K.) allowed inside. Ordinary
//! words break a run, so "Please welcome Olivia Smith" yields "Olivia
//! Smith". A run scores by how many of its tokens are known names, plus
//! cues before it ("Mr.", "patient", "Dear", "Account holder:", "my name
//! is") or after it ("'s", "<mail@...>", ", DOB"). Two unknown capitalised
//! words with no cue are only "uncertain".
//!
//! Not handled: names in non-Latin scripts, single-word names without a
//! title cue, names that are also ordinary words in lower case ("grace
//! young"), and organisation names that look like people ("Pemberton Rhys").

use std::collections::HashMap;

use regex::Regex;

use super::context::Context;
use super::prev_char;
use crate::entity::{EntityType, Finding};

const GAZETTEER: &str = include_str!("../../data/gazetteer.txt");

const G: u8 = 1;
const S: u8 = 2;
const C: u8 = 4;
const P: u8 = 8;

const SP_TITLE: u8 = 1;
const SP_PARTICLE: u8 = 2;
const SP_STOP: u8 = 4;

pub(crate) struct Tables {
    words: HashMap<&'static str, u8>,
    /// TITLES / PARTICLES / STOP membership, one hash lookup per token.
    special: HashMap<&'static str, u8>,
    token: Regex,
    cue_strong: Regex,
    cue_weak: Regex,
    cue_after: Regex,
}

fn re(s: &str) -> Regex {
    Regex::new(s).expect("built-in name regex")
}

impl Tables {
    pub fn new() -> Tables {
        let mut words = HashMap::with_capacity(120_000);
        for line in GAZETTEER.lines() {
            if let Some((w, f)) = line.split_once('\t') {
                let mut flags = 0u8;
                for c in f.bytes() {
                    flags |= match c {
                        b'g' => G,
                        b's' => S,
                        b'c' => C,
                        b'p' => P,
                        _ => 0,
                    };
                }
                words.insert(w, flags);
            }
        }
        let mut special: HashMap<&'static str, u8> = HashMap::new();
        for (list, bit) in [(TITLES, SP_TITLE), (PARTICLES, SP_PARTICLE), (STOP, SP_STOP)] {
            for w in list {
                *special.entry(*w).or_default() |= bit;
            }
        }
        Tables {
            words,
            special,
            token: re(r"[\p{L}\p{M}]+(?:['’\-][\p{L}\p{M}]+)*\.?"),
            cue_strong: re(r"(?i)(?:\b(?:mr|mrs|ms|miss|mx|dr|prof|sir|dame|rev|herr|frau|mme|mlle|sr|sra|srta|dott|patient|pt|client|customer|employee|applicant|claimant|tenant|landlord|guest|passenger|student|pupil|witness|defendant|plaintiff|respondent|policyholder|holder|cardholder|beneficiary|subscriber|member|kin|spouse|wife|husband|son|daughter|mother|father|guardian|colleague|name|named|called|dear|attn|attention|signed|sincerely|regards|thanks|cheers|welcome|congratulations|hi|hello|hey|i|insured|payee|recipient|sender|requester|requestor|caller|driver|contact|surname|forename|nom|nombre|nome|naam|party|cc)\.?|my\s+name\s+is|this\s+is|i\s+am|i'm|best|thank\s+you|kind\s+regards)[\s:=,;\x22'(\-]{0,4}$"),
            cue_weak: re(r"(?i)\b(?:from|by|for|with|of|to|and|or|via|per|ask|tell|call|email|text|see|meet|met|said|told)\s{0,2}$"),
            cue_after: re(r"(?i)^(?:['’]s\b|\s*<[^>\s]+@|\s*\(\s*(?:dob|ssn|mrn|age|born|aged|\d{1,3}\s?y)|,\s*(?:dob|born|aged?|ssn|mrn|\d{1,3}\s?y(?:o|rs?)?)\b|\s+(?:said|says|wrote|writes|called|joins|joined|reported|reports|asked|requested|signed|was\s+born|\(\s*[\p{L}\p{N}._%+-]+@))"),
        }
    }

    fn flags_of(&self, w: &str) -> u8 {
        self.words.get(w).copied().unwrap_or(0)
    }

    /// Flags of a token, trying the lower-cased form, a diacritic-folded
    /// form, and (for hyphenated/apostrophe names) the parts.
    pub(crate) fn lookup(&self, token: &str) -> u8 {
        self.lookup_lower(&token.to_lowercase())
    }

    fn lookup_lower(&self, lower: &str) -> u8 {
        let mut f = self.flags_of(lower);
        let folded = if lower.is_ascii() { None } else { Some(fold(lower)) };
        if let Some(fd) = &folded {
            // "Gráinne" may be listed only as a surname, "grainne" as both
            f |= self.flags_of(fd) & (G | S);
        }
        if f & (G | S) == 0 {
            let folded = folded.unwrap_or_else(|| lower.to_string());
            if lower.contains(['-', '\'', '’']) {
                let joined: String = folded.chars().filter(|c| !matches!(c, '-' | '\'' | '’')).collect();
                f |= self.flags_of(&joined) & (G | S);
                for part in folded.split(['-', '\'', '’']) {
                    // Arabic articles and Irish O' are not names by themselves.
                    if part.len() >= 3 && !matches!(part, "al" | "el" | "abu" | "bin" | "ibn") {
                        f |= self.flags_of(part) & (G | S);
                    }
                }
            }
            if f & (G | S) == 0 {
                f |= feminine_surname(self, &folded);
            }
        }
        f
    }
}

/// Slavic feminine surnames (Kowalska <- Kowalski, Ivanova <- Ivanov) and
/// Greek feminine genitives (Nikolaidou <- Nikolaidis).
fn feminine_surname(t: &Tables, w: &str) -> u8 {
    let pairs: [(&str, &[&str]); 6] = [
        ("ska", &["ski"]),
        ("cka", &["cki"]),
        ("dzka", &["dzki"]),
        ("ova", &["ov"]),
        ("eva", &["ev"]),
        ("ou", &["os", "is", "as"]),
    ];
    for (fem, masc) in pairs {
        if let Some(stem) = w.strip_suffix(fem) {
            for m in masc {
                // Greek surnames are often genitives of given names
                // (Konstantinou <- Konstantinos), so a given-name base counts.
                if t.flags_of(&format!("{stem}{m}")) & (G | S) != 0 {
                    return S;
                }
            }
        }
    }
    0
}

/// Strips the diacritics of common Latin letters (enough for name lookups;
/// the gazetteer also holds folded forms).
pub(crate) fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let r = match c {
            'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => "a",
            'ç' | 'ć' | 'č' => "c",
            'ď' | 'đ' => "d",
            'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ė' | 'ę' | 'ě' => "e",
            'ğ' => "g",
            'ì' | 'í' | 'î' | 'ï' | 'ī' | 'ı' | 'į' => "i",
            'ł' => "l",
            'ñ' | 'ń' | 'ň' => "n",
            'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ő' => "o",
            'ř' => "r",
            'ś' | 'š' | 'ş' | 'ș' => "s",
            'ť' | 'ț' => "t",
            'ù' | 'ú' | 'û' | 'ü' | 'ū' | 'ů' | 'ű' => "u",
            'ý' | 'ÿ' => "y",
            'ź' | 'ż' | 'ž' => "z",
            'ß' => "ss",
            _ => {
                out.push(c);
                continue;
            }
        };
        out.push_str(r);
    }
    out
}

const PARTICLES: &[&str] = &[
    "de", "van", "den", "der", "von", "da", "di", "du", "le", "la", "del", "della", "dos", "das", "do", "bin", "binti",
    "ibn", "al", "el", "ter", "ten", "zu", "y", "ó", "ní", "mac", "mc", "nic", "ua", "ui", "uí", "bint", "st",
];
const TITLES: &[&str] = &[
    "mr", "mrs", "ms", "miss", "mx", "dr", "prof", "sir", "dame", "rev", "herr", "frau", "mme", "mlle", "sr", "sra",
    "srta", "dott", "mister", "madam",
];
/// Capitalised words that are never part of a name here (calendar words the
/// census also lists as surnames, and salutations).
const STOP: &[&str] = &[
    "january", "february", "march", "september", "october", "november", "december", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "hi", "hello", "dear",
    "thanks", "regards", "best", "cheers", "hey", "patient", "pt", "customer", "client", "re", "subject", "attn",
    "name", "street", "road", "avenue", "lane", "drive", "court", "unit", "flat", "apt", "suite", "calle", "rue",
    "the", "and", "team", "student", "employee", "guest", "witness", "passenger", "tenant", "applicant", "member",
    "user", "doctor", "nurse", "agent", "manager", "staff", "account", "holder", "party", "contact", "kin", "ticket",
    "order", "invoice", "case", "claim", "policy", "card", "phone", "email", "mobile", "tel", "date", "birth", "dob",
    "ssn", "mrn", "passport", "address", "ref", "reference", "note", "notes", "summary", "please", "thank", "thanks",
    "mr", "mrs", "ms", "dr", "prof", "iban", "swift", "bic",
];

/// Words that mark a capitalised run as an organisation ("Lumora Inc",
/// "Corvane Analytics", "Pemberton & Rhys LLP"): such a run is no person.
const ORG_WORDS: &[&str] = &[
    "inc", "ltd", "llc", "llp", "plc", "gmbh", "ag", "sa", "sas", "sarl", "bv", "nv", "oy", "ab", "as", "spa", "srl",
    "corp", "corporation", "co", "company", "group", "holdings", "analytics", "logistics", "traders", "trading",
    "clinic", "clinics", "dynamics", "freight", "partners", "solutions", "systems", "technologies", "technology",
    "labs", "bank", "insurance", "health", "healthcare", "hospital", "university", "college", "school",
    "foundation", "institute", "associates", "consulting", "services", "management", "property", "properties",
    "capital", "ventures", "media", "studio", "studios", "software", "networks", "pharma", "pharmaceuticals",
    "energy", "motors", "airlines", "airways", "hotel", "hotels", "restaurant", "cafe", "store", "stores", "shop",
    "market", "markets", "industries", "enterprises", "international", "global", "agency", "bureau", "council",
    "ministry", "department", "office", "center", "centre", "trust", "fund", "partnership", "cooperative",
];

/// Short English function words that census/Faker also list as names; in
/// ALL-CAPS text they would otherwise pair with a neighbour ("IN HAMBURG").
const FUNCTION_WORDS: &[&str] = &[
    "in", "to", "on", "at", "of", "by", "an", "as", "is", "it", "or", "if", "so", "no", "up", "we", "us", "my", "me",
    "be", "am", "go", "the", "and", "for", "not", "but", "you", "all", "any", "has", "was", "are", "our", "his",
    "her", "its", "out", "new", "now", "per", "via", "re", "a", "i", "with", "from", "this", "that", "they", "then",
    "than", "will", "can", "may", "see", "get", "set", "run", "did", "had", "one", "two",
];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Shape {
    Cap,
    Upper,
    Lower,
    Other,
}

#[derive(Clone, Copy, Debug)]
struct Tok {
    start: usize,
    /// End of the word (without a trailing '.').
    end: usize,
    dot: bool,
    shape: Shape,
    flags: u8,
    kind: Kind,
    len_chars: usize,
    /// First word of a sentence/line/field (capitalisation says little).
    sentence_start: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// Can be a name word; `value` is its evidence.
    Core,
    Particle,
    Initial,
    Title,
    Break,
}

fn shape(w: &str) -> Shape {
    let mut chars = w.chars().filter(|c| c.is_alphabetic());
    let Some(first) = chars.next() else { return Shape::Other };
    let (mut n, mut upper, mut lower) = (0usize, 0usize, 0usize);
    for c in chars {
        n += 1;
        upper += usize::from(c.is_uppercase());
        lower += usize::from(c.is_lowercase());
    }
    if first.is_uppercase() {
        if upper == n {
            if n == 0 { Shape::Cap } else { Shape::Upper }
        } else if upper <= 2 {
            // McAllister, DeShawn, O'Brien
            Shape::Cap
        } else {
            Shape::Other
        }
    } else if lower == n {
        Shape::Lower
    } else {
        Shape::Other
    }
}

fn value(t: &Tok) -> f32 {
    let gs = t.flags & (G | S) != 0;
    let common = t.flags & C != 0;
    if gs && t.shape == Shape::Upper && t.len_chars <= 3 {
        // LI, WU, ED, KYC: as likely an acronym as a name
        0.5
    } else if gs && !common {
        1.0
    } else if gs && t.shape == Shape::Cap && !t.sentence_start {
        // A capitalised ordinary word mid-sentence ("... to Yuna Lee") is
        // most likely the name it also is.
        0.8
    } else if gs {
        0.5
    } else {
        0.35
    }
}

/// Acronyms are not names; an unknown all-caps word of 4 letters without a
/// vowel (HTTP) is not either.
fn acronym(w: &str) -> bool {
    let n = w.chars().count();
    n <= 3 || (n == 4 && !w.chars().any(|c| "AEIOUY".contains(c)))
}

pub(crate) fn scan(
    text: &str,
    _ctx: &Context,
    t: &Tables,
    existing: &[Finding],
    dates: &[(usize, usize)],
    out: &mut Vec<Finding>,
) {
    // Text already claimed by a confident non-name finding (an e-mail's
    // local part, an address's street) is not searched for names.
    let claimed = |s: usize, e: usize| existing.iter().any(|f| f.confidence >= 0.5 && f.overlaps(s, e));
    let letters = text.chars().filter(|c| c.is_alphabetic()).count().max(1);
    let shouted = text.chars().filter(|c| c.is_uppercase()).count() * 10 > letters * 7;
    let mut toks: Vec<Tok> = Vec::new();
    for m in t.token.find_iter(text) {
        let raw = m.as_str();
        let mut w = raw.trim_end_matches('.');
        // possessive: "Wu's desk" is the name "Wu"
        for poss in ["'s", "’s", "'S", "’S"] {
            if w.len() > poss.len() + 1 && w.ends_with(poss) {
                w = &w[..w.len() - poss.len()];
            }
        }
        let dot = raw.len() == w.len() + 1 && raw.ends_with('.');
        let (start, end) = (m.start(), m.start() + w.len());
        let before = text[..start].trim_end_matches([' ', '\t', '"', '\'', '(']);
        let sentence_start = before.is_empty() || before.ends_with(['.', '!', '?', ':', '\n', '-', ';', '>', ']', ')']);
        // Month names inside a date ("Dec. 14, 2025", "12 June 2024") are no
        // names; outside one, April, June or Jan may well be.
        let in_date = dates.iter().any(|&(ds, de)| ds < end && start < de);
        if in_date || claimed(start, end) || prev_char(text, start).is_some_and(|c| c.is_ascii_digit() || c == '@' || c == '_') {
            toks.push(Tok { start, end, dot, shape: Shape::Other, flags: 0, kind: Kind::Break, len_chars: 0, sentence_start });
            continue;
        }
        let lower = w.to_lowercase();
        let sh = shape(w);
        let flags = t.lookup_lower(&lower);
        let special = t.special.get(lower.as_str()).copied().unwrap_or(0);
        let known = flags & (G | S) != 0;
        let unknown = flags & (G | S | C | P) == 0;
        let nchars = w.chars().count();
        let kind = if special & SP_TITLE != 0 && sh != Shape::Lower {
            Kind::Title
        } else if nchars == 1 && dot && sh != Shape::Other {
            Kind::Initial
        } else if special & SP_PARTICLE != 0 && !(sh != Shape::Lower && flags & S != 0) {
            Kind::Particle
        } else if special & SP_STOP != 0
            || sh == Shape::Other
            || nchars < 2
            || lower.rsplit_once(['\'', '’']).is_some_and(|(_, x)| matches!(x, "t" | "m" | "re" | "ll" | "ve" | "d"))
        {
            Kind::Break
        } else if !known && !unknown {
            // an ordinary word or a place that is not also a name
            Kind::Break
        } else if sh == Shape::Upper && (!known && acronym(w) || FUNCTION_WORDS.contains(&lower.as_str()))
            || sh == Shape::Lower && !(known && flags & C == 0) && !unknown
        {
            // acronyms and all-caps function words; lower-case ordinary words
            Kind::Break
        } else {
            Kind::Core
        };
        toks.push(Tok { start, end, dot, shape: sh, flags, kind, len_chars: nchars, sentence_start });
    }

    // Runs of tokens joined by a single space (or ". " after an initial).
    let joined = |a: &Tok, b: &Tok| -> bool {
        let gap = &text[a.end..b.start];
        gap == " " || (a.dot && a.kind == Kind::Initial && gap == ". ") || gap == "\u{a0}"
    };
    // In lower-case text a name that is also an ordinary word ("wei sun",
    // "grace whitaker") counts next to a name that is not one.
    let plain_lower_name = |t: &Tok| t.kind == Kind::Core && t.shape == Shape::Lower && t.flags & (G | S) != 0 && t.flags & C == 0;
    let common_lower_name = |t: &Tok, role: u8| {
        t.kind == Kind::Break
            && t.shape == Shape::Lower
            && t.flags & role != 0
            && t.flags & C != 0
            && !FUNCTION_WORDS.contains(&text[t.start..t.end].to_lowercase().as_str())
    };
    for i in 1..toks.len() {
        let (p, t) = (toks[i - 1], toks[i]);
        if !joined(&p, &t) {
            continue;
        }
        if common_lower_name(&t, S) && plain_lower_name(&p) {
            toks[i].kind = Kind::Core;
        } else if common_lower_name(&p, G) && plain_lower_name(&t) {
            toks[i - 1].kind = Kind::Core;
        }
    }
    // A short all-caps word with a vowel right before a known all-caps
    // name is a name too (AOI TAKAHASHI), not an acronym.
    for i in 0..toks.len().saturating_sub(1) {
        let (t, n) = (toks[i], toks[i + 1]);
        let w = &text[t.start..t.end];
        if t.kind == Kind::Break
            && t.shape == Shape::Upper
            && t.flags & (G | S | C | P) == 0
            && w.chars().any(|c| "AEIOUY".contains(c))
            && n.kind == Kind::Core
            && n.shape == Shape::Upper
            && n.flags & (G | S) != 0
            && n.flags & C == 0
            && joined(&t, &n)
        {
            toks[i].kind = Kind::Core;
        }
    }
    // A capitalised particle opening a run is a name word (Vietnamese Do,
    // Le; Dutch "Van Dijk" at the start of a line).
    for i in 0..toks.len() {
        if toks[i].kind == Kind::Particle
            && toks[i].shape != Shape::Lower
            && toks.get(i + 1).is_some_and(|n| n.kind == Kind::Core && joined(&toks[i], n))
            && (i == 0 || !joined(&toks[i - 1], &toks[i]) || toks[i - 1].kind != Kind::Core)
        {
            toks[i].kind = Kind::Core;
            toks[i].flags |= S;
        }
    }
    let mut i = 0;
    let mut runs: Vec<(usize, usize)> = Vec::new(); // [i, j) token ranges of Core/Particle/Initial
    while i < toks.len() {
        if toks[i].kind != Kind::Core {
            i += 1;
            continue;
        }
        // A run keeps one case style: lower-case words never join
        // capitalised ones ("policyholder Juliana Silva").
        let lower_run = toks[i].shape == Shape::Lower;
        let mut j = i + 1;
        while j < toks.len()
            && matches!(toks[j].kind, Kind::Core | Kind::Particle | Kind::Initial)
            && joined(&toks[j - 1], &toks[j])
            && (toks[j].kind != Kind::Core || (toks[j].shape == Shape::Lower) == lower_run)
        {
            j += 1;
        }
        // trim trailing particles/initials; a capitalised particle closing
        // a run after a name is itself a name (Anh Do, Linh Le)
        while j > i + 1 && toks[j - 1].kind != Kind::Core {
            let t = &toks[j - 1];
            if t.kind == Kind::Particle && t.shape != Shape::Lower {
                toks[j - 1].kind = Kind::Core;
                toks[j - 1].flags |= S;
                break;
            }
            j -= 1;
        }
        // lower-case particles just before the run belong to it ("de Groot")
        let mut s0 = i;
        while s0 > 0 && toks[s0 - 1].kind == Kind::Particle && joined(&toks[s0 - 1], &toks[s0]) {
            s0 -= 1;
        }
        runs.push((s0, j));
        i = j.max(i + 1);
    }

    let mut k = 0;
    while k < runs.len() {
        let (i, j) = runs[k];
        let core: Vec<&Tok> = toks[i..j].iter().filter(|t| t.kind == Kind::Core).collect();
        let start = toks[i].start;
        let mut end = toks[j - 1].end;
        let before = &text[super::floor_boundary(text, start.saturating_sub(40))..start];
        let title = i > 0 && toks[i - 1].kind == Kind::Title && {
            let gap = &text[toks[i - 1].end..start];
            gap.trim_start_matches('.').trim().is_empty() && gap.len() <= 3
        };
        let strong = title || t.cue_strong.is_match(before) || line_label_above(text, start);
        let weak = t.cue_weak.is_match(before);
        let after_cue = t.cue_after.is_match(&text[end..]);
        // Lower-case unknown words count only beside a lower-case known name.
        let lower_unknown = core.iter().filter(|t| t.shape == Shape::Lower && t.flags == 0).count();
        let lower_known = core.iter().filter(|t| t.shape == Shape::Lower && t.flags & (G | S) != 0).count();
        if lower_unknown > 0 && lower_known == 0 {
            k += 1;
            continue;
        }

        // An organisation name is no person: a run holding or followed by
        // an organisation word (Inc, Ltd, Analytics, Clinics, ...).
        let next_word = text[end..]
            .trim_start_matches(' ')
            .split(|c: char| !c.is_alphanumeric())
            .next()
            .unwrap_or("")
            .to_lowercase();
        let org = ORG_WORDS.contains(&next_word.as_str())
            || text[end..].starts_with(" &")
            || text[..start].ends_with("& ")
            || toks[i..j].iter().any(|t| ORG_WORDS.contains(&text[t.start..t.end].to_lowercase().as_str()));
        if org {
            k += 1;
            continue;
        }
        let mut score: f32;
        // "Last, First" (Hughes, Olivia; de Groot, Femke; Ó Súilleabháin, Pádraig)
        if core.len() <= 2 && k + 1 < runs.len() {
            let c0 = core[core.len() - 1];
            {
                let (i2, j2) = runs[k + 1];
                let c1: Vec<&Tok> = toks[i2..j2].iter().filter(|t| t.kind == Kind::Core).collect();
                let gap = &text[end..toks[i2].start];
                let (f0, f1) = (c0.flags, c1[0].flags);
                let last_ok = f0 & (G | S) != 0 && (f0 & C == 0 || f1 & G != 0 && f1 & C == 0) || f0 == 0;
                let first_ok = f1 & G != 0 && (f1 & C == 0 || c1[0].shape == Shape::Cap)
                    || f1 & S != 0 && f1 & C == 0 && f0 & (G | S) != 0
                    || f1 == 0 && f0 & (G | S) != 0 && f0 & C == 0;
                if c1.len() == 1
                    && gap == ", "
                    && last_ok
                    && first_ok
                    && c0.shape == c1[0].shape
                    && !(c0.shape == Shape::Lower && (f0 == 0 || f1 == 0))
                {
                    end = toks[j2 - 1].end;
                    score = if f0 & (G | S) != 0 && f1 & G != 0 { 0.7 } else { 0.5 };
                    score += if strong { 0.25 } else if weak { 0.1 } else { 0.0 };
                    out.push(Finding { entity: EntityType::Person, start, end, confidence: score.min(0.97) });
                    k += 2;
                    continue;
                }
            }
        }
        if core.len() == 1 {
            let c0 = core[0];
            let known = c0.flags & (G | S) != 0 && c0.flags & C == 0;
            score = if title && c0.shape != Shape::Lower {
                0.85
            } else if known && (strong || after_cue) && (c0.shape == Shape::Cap || c0.len_chars > 3) {
                0.6
            } else {
                0.0
            };
        } else {
            let n_strong = core.iter().filter(|t| value(t) >= 0.8).count();
            let n_weak = core.iter().filter(|t| value(t) == 0.5).count();
            let n_unk = core.len() - n_strong - n_weak;
            score = if n_strong >= 2 {
                0.9
            } else if n_strong == 1 && n_weak + n_unk >= 1 {
                0.7
            } else if n_weak >= 2 {
                // two words that are names but also ordinary words ("Grace
                // Young", "Flight EK"): needs a cue
                0.2
            } else if n_weak == 1 {
                0.35
            } else {
                0.25
            };
            if core.iter().all(|t| t.shape == Shape::Lower) && !strong {
                score -= 0.2;
            }
            if core.len() > 4 {
                score -= 0.2;
            }
            // In all-caps text capitalisation carries no signal.
            if shouted && n_strong < 2 {
                score -= 0.1;
            }
            if strong {
                score += 0.35;
            } else if weak {
                score += 0.1;
            }
            if after_cue {
                score += 0.25;
            }
        }
        if score > 0.0 {
            out.push(Finding { entity: EntityType::Person, start, end, confidence: score.min(0.97) });
        }
        k += 1;
    }
}

/// A value on the line after a label line ("Name:\nOlivia Smith", "Ship
/// to:\nOlivia Smith") or in a table column headed "name".
fn line_label_above(text: &str, start: usize) -> bool {
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    if !text[line_start..start].trim().is_empty() || line_start == 0 {
        return false;
    }
    let prev = text[..line_start - 1].rsplit('\n').next().unwrap_or("").trim().to_lowercase();
    prev.ends_with(':')
        && ["name", "to", "patient", "from", "client", "customer", "contact", "attn", "holder", "guest", "passenger"]
            .iter()
            .any(|k| prev.trim_end_matches(':').trim().ends_with(k))
        || prev.ends_with(',') && ["thanks", "regards", "best", "cheers", "sincerely", "wishes"].iter().any(|k| prev.ends_with(&format!("{k},")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_folds_and_splits() {
        let t = Tables::new();
        assert_ne!(t.lookup("Smith") & S, 0);
        assert_ne!(t.lookup("O'Brien") & S, 0);
        assert_ne!(t.lookup("NGUYEN") & S, 0);
        assert_eq!(t.lookup("Customer") & (G | S), 0);
        assert_ne!(t.lookup("Customer") & C, 0);
    }

    #[test]
    fn fold_strips_common_diacritics() {
        assert_eq!(fold("łódź"), "lodz");
        assert_eq!(fold("müller"), "muller");
    }
}
