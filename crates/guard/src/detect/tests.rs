//! Recognizer behaviour on hand-written sentences (not from the corpus
//! generator): positives in several formats and the look-alikes that must
//! not fire.

use super::*;

fn found(text: &str) -> Vec<(EntityType, String)> {
    let d = Detector::new().detect(text);
    d.entities.iter().map(|f| (f.entity, text[f.start..f.end].to_string())).collect()
}

fn has(text: &str, ty: EntityType, value: &str) {
    let f = found(text);
    assert!(f.iter().any(|(t, v)| *t == ty && v == value), "{ty} {value:?} not found in {text:?}: {f:?}");
}

fn clean(text: &str) {
    let d = Detector::new().detect(text);
    let all: Vec<String> =
        d.entities.iter().chain(&d.uncertain).map(|f| format!("{}:{:?}", f.entity, &text[f.start..f.end])).collect();
    assert!(all.is_empty(), "expected nothing in {text:?}, got {all:?}");
}

#[test]
fn emails() {
    has("reach me at Jean-Luc.Picard+work@starfleet.example.co.uk, thanks", EntityType::Email, "Jean-Luc.Picard+work@starfleet.example.co.uk");
    has("EMAIL: ANNA@EXAMPLE.DE", EntityType::Email, "ANNA@EXAMPLE.DE");
}

#[test]
fn phones_in_international_formats() {
    has("ring me on +44 7911 123456 after six", EntityType::Phone, "+44 7911 123456");
    has("US office (212) 555-0199.", EntityType::Phone, "(212) 555-0199");
    has("call 212.555.0142 today", EntityType::Phone, "212.555.0142");
    has("Tel.: 089 1234567", EntityType::Phone, "089 1234567");
    has("mobile 06 12 34 56 78", EntityType::Phone, "06 12 34 56 78");
    has("WhatsApp +91 98765 43210", EntityType::Phone, "+91 98765 43210");
    has("Japan: +81-3-1234-5678", EntityType::Phone, "+81-3-1234-5678");
    // a phone keyword names the number after it, not a later case number
    assert!(!found("phone +44 7890 213523; policy 2025-196-4702.").iter().any(|(_, v)| v == "2025-196-4702"));
}

#[test]
fn ssn_and_cards_and_ibans_are_checksummed() {
    has("my social security number is 123-45-6789", EntityType::UsSsn, "123-45-6789");
    has("SSN: 123456789", EntityType::UsSsn, "123456789");
    // never-issued area 666
    assert!(!found("id 666-12-3456").iter().any(|(t, _)| *t == EntityType::UsSsn));
    has("Visa 4111 1111 1111 1111 exp 12/29", EntityType::CreditCard, "4111 1111 1111 1111");
    has("amex 3782-822463-10005", EntityType::CreditCard, "3782-822463-10005");
    // Luhn failure: not a card
    assert!(!found("number 4111 1111 1111 1112").iter().any(|(t, _)| *t == EntityType::CreditCard));
    has("IBAN: GB82 WEST 1234 5698 7654 32.", EntityType::Iban, "GB82 WEST 1234 5698 7654 32");
    has("pay to de89370400440532013000 please", EntityType::Iban, "de89370400440532013000");
    // two IBANs in a row: the first match must not swallow the second
    let t = "Wire it from IT60X0542811101000000123456 to FR1420041010050500013M02606 today";
    has(t, EntityType::Iban, "IT60X0542811101000000123456");
    has(t, EntityType::Iban, "FR1420041010050500013M02606");
    // bad check digits
    assert!(!found("IBAN GB83 WEST 1234 5698 7654 32").iter().any(|(t, _)| *t == EntityType::Iban));
}

#[test]
fn ip_addresses() {
    has("ssh from 203.0.113.9 failed", EntityType::IpAddress, "203.0.113.9");
    has("host [2001:db8::8a2e:370:7334]:443 down", EntityType::IpAddress, "2001:db8::8a2e:370:7334");
    has("link-local fe80::1ff:fe23:4567:890a.", EntityType::IpAddress, "fe80::1ff:fe23:4567:890a");
    assert!(!found("version 1.2.3.4.5 released").iter().any(|(t, _)| *t == EntityType::IpAddress));
    assert!(!found("at 10:30:45 today").iter().any(|(t, _)| *t == EntityType::IpAddress));
    assert!(!found("octets 300.1.1.1").iter().any(|(t, _)| *t == EntityType::IpAddress));
}

#[test]
fn dates_of_birth_need_birth_context() {
    has("D.O.B.: 14/02/1987", EntityType::DateOfBirth, "14/02/1987");
    has("she was born on 3rd of March 1990 in Leeds", EntityType::DateOfBirth, "3rd of March 1990");
    has("Geburtsdatum 12. März 1980", EntityType::DateOfBirth, "12. März 1980");
    has("{\"date_of_birth\": \"1975-07-30\"}", EntityType::DateOfBirth, "1975-07-30");
    has("id,birthdate\n7,1966-01-02", EntityType::DateOfBirth, "1966-01-02");
    // same dates without birth context are not entities
    clean("The meeting moved to 14/02/1987 and then to 3 March 1990.");
    // a date long after the birth keyword, past another date, is not a DOB
    let f = found("DOB 1980-01-01; appointment booked for 2025-03-04.");
    assert!(f.contains(&(EntityType::DateOfBirth, "1980-01-01".into())));
    assert!(!f.iter().any(|(_, v)| v == "2025-03-04"), "{f:?}");
}

#[test]
fn mrn_and_passport_need_context() {
    has("Medical record number: 00482913", EntityType::MedicalRecordNumber, "00482913");
    has("hospital no. K-2231-9981 attached", EntityType::MedicalRecordNumber, "K-2231-9981");
    has("Passport number: X12345678", EntityType::Passport, "X12345678");
    has("her passport is 533380006, valid", EntityType::Passport, "533380006");
    clean("Ticket 00482913 was closed; reference X12345678.");
}

#[test]
fn api_keys_by_prefix_and_entropy() {
    has("OPENAI_API_KEY=sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z", EntityType::ApiKey, "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z");
    has("token ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8", EntityType::ApiKey, "ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8");
    has("aws AKIAIOSFODNN7EXAMPLE", EntityType::ApiKey, "AKIAIOSFODNN7EXAMPLE");
    has("secret=wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY", EntityType::ApiKey, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY");
    // a git commit hash and a UUID are not secrets
    clean("see commit 3f9a2b7c1d4e5f60718293a4b5c6d7e8f9012345 for the fix");
    clean("request id 550e8400-e29b-41d4-a716-446655440000 failed");
}

#[test]
fn names_with_cues_and_gazetteer() {
    has("Please ask Dr. Okonkwo to call back.", EntityType::Person, "Okonkwo");
    has("My name is Ingrid Johansson and I need help.", EntityType::Person, "Ingrid Johansson");
    has("Forwarded by María José Fernández yesterday", EntityType::Person, "María José Fernández");
    has("Attendees: Kowalska, Agnieszka; others TBD", EntityType::Person, "Kowalska, Agnieszka");
    has("Dear MR. NOWAK,", EntityType::Person, "NOWAK");
    has("cc: Pieter van der Berg", EntityType::Person, "Pieter van der Berg");
}

#[test]
fn addresses_in_several_countries() {
    has("Send it to 1600 Pennsylvania Avenue NW, Washington, DC 20500 by Friday", EntityType::StreetAddress, "1600 Pennsylvania Avenue NW, Washington, DC 20500");
    has("Lieferadresse: Königstraße 12a, 70173 Stuttgart.", EntityType::StreetAddress, "Königstraße 12a, 70173 Stuttgart");
    has("flat at 221B Baker Street, London NW1 6XE.", EntityType::StreetAddress, "221B Baker Street, London NW1 6XE");
    has("envoyez à 8 rue du Faubourg, 75008 Paris", EntityType::StreetAddress, "8 rue du Faubourg, 75008 Paris");
}

#[test]
fn look_alikes_are_not_pii() {
    clean("Order ORD-404581 shipped on 2024-03-05; invoice INV-2024-1234 totals $1,234.56.");
    clean("Release v2.14.3 fixes the crash; port 8443 and 5432 are open.");
    clean("Refund to the card ending 4242, expiry 08/27.");
    clean("Case 2023-123-4567 was filed; claim CLM-884512 and ticket #1234567.");
    clean("Flight BA 2490 departs 14:35 from gate B12, seat 32A.");
    clean("Reminder: the Finance team meeting moves to Tuesday at 10:00. Agenda: budget freeze.");
    clean("The Northwind Traders contract was renewed with Kestrel Dynamics.");
    clean("CPU at 93% for 12 minutes; autoscaler added 4 nodes.");
}

#[test]
fn spans_are_char_boundaries_and_non_overlapping() {
    let t = "Ünïcode Ünsinn: Straße 5, 10115 Berlin — Jörg Müller ☎ +49 30 1234567 — ✉ jörg@example.de";
    let d = Detector::new().detect(t);
    let mut last = 0;
    for f in d.entities.iter().chain(&d.uncertain) {
        assert!(t.is_char_boundary(f.start) && t.is_char_boundary(f.end));
        let _ = &t[f.start..f.end];
    }
    for f in &d.entities {
        assert!(f.start >= last);
        last = f.end;
    }
}
