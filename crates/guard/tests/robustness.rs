//! Hostile input: random mixtures of digits, separators, keywords, non-ASCII
//! letters and emoji must never panic, and every span must lie on char
//! boundaries inside the text. Seeded, deterministic.

use hearth_api::{ChatRequest, Message, Role, Route};
use hearth_guard::{Action, Decision, Detector, Guard, Policy};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[(self.next() % xs.len() as u64) as usize]
    }
}

const PIECES: &[&str] = &[
    "0", "1", "7", "42", "555", "2024", "-", " ", "  ", "\n", "\t", ".", ",", "/", ":", "(", ")", "[", "]", "+", "@", "#",
    "=", "'", "\"", "DOB", "born", "SSN", "MRN", "passport", "Mr.", "Dr.", "patient", "Dear", "name:", "Street", "rue",
    "straße", "Calle", "Apt", "Flat", "Ó", "de", "van", "Smith", "Olivia", "MÜLLER", "Ñúñez", "ß", "İ", "ǅ", "😀", "☎",
    "\u{a0}", "\u{200b}", "é", "ł", "ẞ", "sk-", "AKIA", "ghp_", "eyJ", "::", "fe80", "192.168.", "DE89", "GB82", "4111",
    "[PERSON_1]", "](", "<", ">", "https://", "x", "Q", "zz", "ка", "Ελ", "김", "中文",
];

#[test]
fn random_text_never_panics_and_spans_are_valid() {
    let det = Detector::new();
    let guard = Guard::new(Policy::all(Action::Redact));
    let mut rng = Rng(99);
    for _ in 0..1500 {
        let n = (rng.next() % 60) as usize;
        let text: String = (0..n).map(|_| rng.pick(PIECES)).collect();
        let d = det.detect(&text);
        for f in d.entities.iter().chain(&d.uncertain) {
            assert!(f.start < f.end && f.end <= text.len(), "{text:?}");
            assert!(text.is_char_boundary(f.start) && text.is_char_boundary(f.end), "{text:?}");
        }
        let req = ChatRequest::new("m", vec![Message::new(Role::User, text.clone())]);
        if let Decision::Cloud(safe, restorer) = guard.decide(&req, Route::Cloud) {
            let sent = &safe.request().messages[0].content;
            // restoring what was sent gives back a text; streaming in odd chunks too
            let whole = restorer.restore(sent);
            let mut s = restorer.stream();
            let mut out = String::new();
            let mut rest = sent.as_str();
            while !rest.is_empty() {
                let mut k = ((rng.next() % 7) as usize + 1).min(rest.len());
                while !rest.is_char_boundary(k) {
                    k += 1;
                }
                out.push_str(&s.push(&rest[..k]));
                rest = &rest[k..];
            }
            out.push_str(&s.finish());
            assert_eq!(out, whole);
        }
    }
}
