//! Context cues: keyword positions found once per text, and the header of
//! the column a position sits in when the text is a delimited table
//! (CSV/TSV/pipe), so `name,dob,mrn` on line 1 gives context to line 2.

use regex::Regex;

pub(crate) struct Tables {
    pub birth: Regex,
    pub ssn: Regex,
    pub mrn: Regex,
    pub passport: Regex,
    pub phone: Regex,
    pub card: Regex,
    pub secret: Regex,
    pub hash: Regex,
    pub address: Regex,
}

fn re(s: &str) -> Regex {
    // The patterns are literals of this module; a failure is a programming
    // error caught by every test run.
    Regex::new(s).expect("built-in context regex")
}

impl Tables {
    pub fn new() -> Tables {
        Tables {
            // Multi-word keys accept `_`/`-` so JSON/CSV keys (date_of_birth) match.
            birth: re(r"(?i)(?-u:\b)(?:d\.?\s?o\.?\s?b|date[\s_-]+of[\s_-]+birth|birth[\s_-]*date|birthday|born(?:[\s_-]+on)?|geb\.|geboren(?:\s+am)?|geburtsdatum|n[ée]e?\s+le|date[\s_-]+de[\s_-]+naissance|fecha[\s_-]+de[\s_-]+nacimiento|nacid[oa](?:\s+el)?|data[\s_-]+di[\s_-]+nascita|geboortedatum|data[\s_-]+de[\s_-]+nascimento|nascid[oa](?:\s+em)?)(?-u:\b)\.?"),
            ssn: re(r"(?i)(?-u:\b)(?:ssn|social[\s_-]+security(?:[\s_-]+(?:number|no|num))?|soc\.?\s*sec|ss\s*#|ss[\s_-]+no|ss[\s_-]+number|taxpayer[\s_-]+id)(?-u:\b)"),
            mrn: re(r"(?i)(?:(?-u:\b)mrn|(?-u:\b)m\.r\.n\.|(?-u:\b)medical[\s_-]+record(?:[\s_-]+(?:number|no|num|id))?|(?-u:\b)med\.?\s*rec(?:ord)?(?:\s*(?:no|number|#))?|(?-u:\b)(?:hospital|patient|chart|case[\s_-]+note|health[\s_-]+record|ehr|emr|nhs)[\s_-]+(?:number|no|id|num)|(?-u:\b)mr\s*#|(?-u:\b)record[\s_-]+(?:number|no))(?-u:\b)"),
            passport: re(r"(?i)(?-u:\b)(?:passport|passeport|pasaporte|passaporto|reisepass|paspoort|passaporte|travel[\s_-]+document)s?(?-u:\b)"),
            phone: re(r"(?i)(?-u:\b)(?:phone|tel|telephone|mobile|mob|cell|cellphone|call|ring|text|sms|whatsapp|fax|contact|ph|landline|number|tlf|tfno|telefon|t[ée]l[ée]phone|tel[ée]fono|handy|mobil)(?-u:\b)"),
            card: re(r"(?i)(?-u:\b)(?:card|visa|mastercard|master\s+card|amex|american\s+express|discover|jcb|cc|pan|credit|debit|cardholder)(?-u:\b)"),
            secret: re(r"(?i)(?:api[\s_-]?key|(?-u:\b)key|token|secret|passw(?:or)?d|(?-u:\b)pwd|bearer|authorization|(?-u:\b)auth|credential|access[\s_-]?key)"),
            hash: re(r"(?i)(?-u:\b)(?:commit|sha\d*|md5|hash|checksum|digest|revision|rev|etag|fingerprint)(?-u:\b)"),
            address: re(r"(?i)(?-u:\b)(?:address|addr|residing\s+at|resides\s+at|resident\s+at|living\s+at|lives\s+at|live\s+at|moved\s+to|move\s+to|ship\s+to|deliver(?:ed|y)?\s+to|located\s+at|domicile|street|adresse|direcci[oó]n|indirizzo|anschrift|wohnhaft)(?-u:\b)"),
        }
    }
}

/// Keyword hits for one text.
pub(crate) struct Context<'t> {
    text: &'t str,
    pub birth: Vec<(usize, usize)>,
    pub ssn: Vec<(usize, usize)>,
    pub mrn: Vec<(usize, usize)>,
    pub passport: Vec<(usize, usize)>,
    pub phone: Vec<(usize, usize)>,
    pub card: Vec<(usize, usize)>,
    pub secret: Vec<(usize, usize)>,
    pub hash: Vec<(usize, usize)>,
    pub address: Vec<(usize, usize)>,
}

fn hits(r: &Regex, text: &str) -> Vec<(usize, usize)> {
    r.find_iter(text).map(|m| (m.start(), m.end())).collect()
}

impl<'t> Context<'t> {
    pub fn new(text: &'t str, t: &Tables) -> Context<'t> {
        Context {
            text,
            birth: hits(&t.birth, text),
            ssn: hits(&t.ssn, text),
            mrn: hits(&t.mrn, text),
            passport: hits(&t.passport, text),
            phone: hits(&t.phone, text),
            card: hits(&t.card, text),
            secret: hits(&t.secret, text),
            hash: hits(&t.hash, text),
            address: hits(&t.address, text),
        }
    }

    /// The last keyword in `kws` that ends at or before `pos` and no more
    /// than `window` bytes before it.
    pub fn before(&self, kws: &[(usize, usize)], pos: usize, window: usize) -> Option<(usize, usize)> {
        kws.iter().rev().find(|&&(_, e)| e <= pos && pos - e <= window).copied()
    }

    /// The header name of the delimited-table column that `pos` lies in, if
    /// the line holding `pos` is a row of a table whose header line (the
    /// nearest earlier line with as many delimiters and no digits) is above.
    pub fn column_header(&self, pos: usize) -> Option<&'t str> {
        let text = self.text;
        let line_start = text.get(..pos)?.rfind('\n').map_or(0, |i| i + 1);
        let line_end = text.get(pos..)?.find('\n').map_or(text.len(), |i| pos + i);
        let line = &text[line_start..line_end];
        let delim = [',', '\t', ';', '|'].into_iter().find(|d| line.contains(*d))?;
        let fields = split_fields(line, delim);
        let ncols = fields.len();
        if ncols < 2 {
            return None;
        }
        let col = fields.iter().position(|&(s, e)| line_start + s <= pos && pos < line_start + e)?;
        // Walk up at most 200 lines looking for the header: the nearest line
        // with the same delimiter and no digits.
        let mut end = line_start.checked_sub(1)?;
        for _ in 0..200 {
            let start = text[..end].rfind('\n').map_or(0, |i| i + 1);
            let l = &text[start..end];
            let f = split_fields(l, delim);
            if f.len() >= 2 && !l.chars().any(|c| c.is_ascii_digit()) {
                // Unquoted commas inside values ("Apr. 10, 1982") add fields:
                // the last field maps to the last header, the others from the left.
                let h = if col == ncols - 1 { f.len() - 1 } else { col.min(f.len() - 1) };
                let (s, e) = f[h];
                return Some(l[s..e].trim().trim_matches('"').trim());
            }
            if start == 0 {
                return None;
            }
            end = start - 1;
        }
        None
    }
}

/// Field byte ranges of a delimited line, honouring double quotes.
fn split_fields(line: &str, delim: char) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        if c == '"' {
            quoted = !quoted;
        } else if c == delim && !quoted {
            out.push((start, i));
            start = i + c.len_utf8();
        }
    }
    out.push((start, line.len()));
    out
}
