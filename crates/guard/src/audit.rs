//! Tamper-evident audit log.
//!
//! One JSON object per line (JSONL), append-only. An entry records when,
//! which request, the route, the reason codes, entity *types and counts*,
//! the destination host and byte counts — never a value, never prompt text
//! (LiteLLM's redaction flag still stored raw prompts in its database;
//! this log has no field that could hold one: reasons are policy codes,
//! types are an enum, the destination is reduced to a host name).
//!
//! ## Integrity
//! * **Hash chain.** Every record carries `prev` (the previous record's
//!   hash) and `hash = SHA-256(prev || canonical JSON of the record without
//!   hash/sig)`. The canonical form is the exact line the writer emits
//!   (fixed field order, sorted maps, no whitespace); the verifier re-encodes
//!   each parsed record and requires byte equality, so no edit can hide in
//!   an alternative encoding.
//! * **Signed checkpoints** every `checkpoint_every` entries and on close:
//!   a `checkpoint` record whose `sig` is an Ed25519 signature of its hash.
//!   Ed25519 rather than HMAC: verifying needs only the public key, so an
//!   auditor who can check the log cannot forge it, and the private key can
//!   stay in its 0600 file on the writing host.
//! * **Signed head.** `<log>.head` holds `{seq, hash, sig}` for the last
//!   record, rewritten atomically (temp file + rename) after every append.
//!   It makes deleting or truncating records *after* the last checkpoint
//!   detectable, and so is any record appended by someone else (an
//!   "unsigned tail").
//!
//! ## Threat model
//! Detected, for an attacker who can modify the log directory but cannot
//! read the signing key: any edited byte, deleted, duplicated, reordered or
//! inserted line, truncation anywhere, a forged head.
//! Not detected: (1) rollback to an earlier complete state — an old copy of
//! the log *and* its matching old head; only an external anchor (shipping
//! checkpoint hashes elsewhere) can catch that; (2) anything by someone who
//! holds the signing key (e.g. root on the writing host); (3) deletion of
//! the log *and* head together is detected only as "missing". A crash
//! between writing a line and rewriting the head leaves an unsigned tail
//! that verification reports, since it cannot be told apart from an
//! attacker's append.
//!
//! Durability: each append is one `write` of the whole line, then the head
//! is replaced; at checkpoints and on close the log and head are fsynced.
//! Appends from many threads are serialised by a mutex.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::entity::EntityType;

const ZERO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const HEAD_DOMAIN: &[u8] = b"hearth-audit-head-v1";

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("audit key file: {0}")]
    Key(&'static str),
    #[error("audit key file is readable by group or others (mode {mode:o}); it must be 0600")]
    InsecureKeyFile { mode: u32 },
    #[error("audit log line {line}: malformed record")]
    Malformed { line: usize },
    #[error("audit log line {line}: record is not in canonical form (edited)")]
    NonCanonical { line: usize },
    #[error("audit log line {line}: sequence number {found}, expected {expected}")]
    Sequence { line: usize, expected: u64, found: u64 },
    #[error("audit log line {line}: chain broken (prev does not match the previous record's hash)")]
    ChainBroken { line: usize },
    #[error("audit log line {line}: hash does not match the record")]
    HashMismatch { line: usize },
    #[error("audit log line {line}: checkpoint signature invalid or missing")]
    BadSignature { line: usize },
    #[error("audit head file missing or unreadable")]
    HeadMissing,
    #[error("audit head file malformed or its signature is invalid")]
    HeadBadSignature,
    #[error("audit head (seq {head_seq}) does not match the log's last record (seq {log_seq})")]
    HeadMismatch { head_seq: u64, log_seq: u64 },
    #[error("audit log is poisoned: a writer panicked while holding it")]
    Poisoned,
}

/// What happened to one request. Holds no free text but the request id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditEntry {
    /// Milliseconds since the Unix epoch.
    pub ts_ms: u64,
    /// The server's request id (an opaque id it generated, not user text).
    pub request_id: String,
    /// `local`, `cloud` or `blocked`.
    pub route: String,
    pub reasons: Vec<String>,
    pub entities: BTreeMap<EntityType, usize>,
    pub uncertain: BTreeMap<EntityType, usize>,
    /// Destination host (reduced with [`host_only`]); none for local.
    pub destination: Option<String>,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl AuditEntry {
    /// An entry stamped with the current time.
    pub fn now(request_id: impl Into<String>, route: impl Into<String>) -> AuditEntry {
        let ts_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        AuditEntry { ts_ms, request_id: request_id.into(), route: route.into(), ..AuditEntry::default() }
    }
}

/// Reduces a URL or `host:port` to the lower-cased host name (no scheme,
/// user info, port, path or query).
pub fn host_only(dest: &str) -> String {
    let s = dest.trim();
    let s = s.split_once("://").map_or(s, |(_, r)| r);
    let s = s.split(['/', '?', '#']).next().unwrap_or("");
    let s = s.rsplit_once('@').map_or(s, |(_, h)| h);
    let host = if let Some(r) = s.strip_prefix('[') {
        r.split(']').next().unwrap_or("")
    } else if s.matches(':').count() == 1 {
        s.split(':').next().unwrap_or("")
    } else {
        s
    };
    host.to_ascii_lowercase()
}

/// One line of the log. Field order here is the canonical order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    seq: u64,
    kind: String,
    ts_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    route: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    reasons: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    entities: BTreeMap<EntityType, usize>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    uncertain: BTreeMap<EntityType, usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    destination: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bytes_in: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bytes_out: Option<u64>,
    /// For checkpoints: entries since the log began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    entries: Option<u64>,
    prev: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sig: Option<String>,
}

impl Record {
    fn compute_hash(&self) -> String {
        let mut body = self.clone();
        body.hash = None;
        body.sig = None;
        // Serialising this struct cannot fail (no maps with non-string keys,
        // no floats); an empty body would still chain on `prev`.
        let canon = serde_json::to_string(&body).unwrap_or_default();
        let mut h = Sha256::new();
        h.update(self.prev.as_bytes());
        h.update(canon.as_bytes());
        hex(&h.finalize())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Head {
    seq: u64,
    hash: String,
    sig: String,
}

fn head_message(seq: u64, hash: &str) -> Vec<u8> {
    let mut m = HEAD_DOMAIN.to_vec();
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(hash.as_bytes());
    m
}

fn hex(b: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for &x in b {
        s.push(H[(x >> 4) as usize] as char);
        s.push(H[(x & 15) as usize] as char);
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() & 1 != 0 || !s.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok()).collect()
}

/// The head file that belongs to a log.
pub fn head_path(log: &Path) -> PathBuf {
    let mut p = log.as_os_str().to_owned();
    p.push(".head");
    PathBuf::from(p)
}

// ------------------------------------------------------------------ keys

/// Generates a signing key from the caller's cryptographic RNG.
pub fn generate_key<R: rand_core::CryptoRng + rand_core::RngCore>(rng: &mut R) -> SigningKey {
    let mut seed = [0u8; 32];
    rng.fill_bytes(&mut seed);
    SigningKey::from_bytes(&seed)
}

/// Writes a new key file (hex seed) with mode 0600; refuses to overwrite.
pub fn write_key_file(path: &Path, key: &SigningKey) -> Result<(), AuditError> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(hex(&key.to_bytes()).as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    Ok(())
}

/// Reads a key file; refuses one that group or others can access.
pub fn read_key_file(path: &Path) -> Result<SigningKey, AuditError> {
    let f = File::open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = f.metadata()?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(AuditError::InsecureKeyFile { mode });
        }
    }
    let mut s = String::new();
    f.take(256).read_to_string(&mut s)?;
    let bytes = unhex(s.trim()).ok_or(AuditError::Key("not a hex seed"))?;
    let seed: [u8; 32] = bytes.try_into().map_err(|_| AuditError::Key("seed is not 32 bytes"))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// The public key as hex (for auditors).
pub fn verifying_key_hex(key: &VerifyingKey) -> String {
    hex(key.as_bytes())
}

pub fn verifying_key_from_hex(s: &str) -> Result<VerifyingKey, AuditError> {
    let b = unhex(s.trim()).ok_or(AuditError::Key("not hex"))?;
    let a: [u8; 32] = b.try_into().map_err(|_| AuditError::Key("public key is not 32 bytes"))?;
    VerifyingKey::from_bytes(&a).map_err(|_| AuditError::Key("invalid public key"))
}

// ------------------------------------------------------------------ writer

struct Inner {
    file: File,
    seq: u64,
    last_hash: String,
    entries: u64,
    since_checkpoint: u64,
    closed: bool,
}

pub struct AuditLog {
    path: PathBuf,
    key: SigningKey,
    checkpoint_every: u64,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").field("path", &self.path).finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Opens (or creates) a log. An existing log is verified first; a log
    /// that does not verify is not appended to.
    pub fn open(path: &Path, key: SigningKey, checkpoint_every: u64) -> Result<AuditLog, AuditError> {
        let (seq, last_hash, entries, since) = if path.exists() && std::fs::metadata(path)?.len() > 0 {
            let r = verify(path, &key.verifying_key())?;
            (r.last_seq, r.last_hash, r.entries, r.entries_since_checkpoint)
        } else {
            (0, ZERO_HASH.to_string(), 0, 0)
        };
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(AuditLog {
            path: path.to_path_buf(),
            key,
            checkpoint_every: checkpoint_every.max(1),
            inner: Mutex::new(Inner { file, seq, last_hash, entries, since_checkpoint: since, closed: false }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends an entry; returns its sequence number.
    pub fn append(&self, e: &AuditEntry) -> Result<u64, AuditError> {
        let mut g = self.inner.lock().map_err(|_| AuditError::Poisoned)?;
        let rec = Record {
            seq: g.seq + 1,
            kind: "entry".into(),
            ts_ms: e.ts_ms,
            request_id: Some(e.request_id.clone()),
            route: Some(e.route.clone()),
            reasons: e.reasons.clone(),
            entities: e.entities.clone(),
            uncertain: e.uncertain.clone(),
            destination: e.destination.as_deref().map(host_only),
            bytes_in: Some(e.bytes_in),
            bytes_out: Some(e.bytes_out),
            entries: None,
            prev: g.last_hash.clone(),
            hash: None,
            sig: None,
        };
        self.write_record(&mut g, rec, false)?;
        g.entries += 1;
        g.since_checkpoint += 1;
        let seq = g.seq;
        if g.since_checkpoint >= self.checkpoint_every {
            self.checkpoint_locked(&mut g, e.ts_ms)?;
        }
        Ok(seq)
    }

    /// Writes a signed checkpoint now (and fsyncs).
    pub fn checkpoint(&self) -> Result<(), AuditError> {
        let mut g = self.inner.lock().map_err(|_| AuditError::Poisoned)?;
        let ts = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        self.checkpoint_locked(&mut g, ts)
    }

    /// Final checkpoint and fsync. Also done (errors ignored) on drop.
    pub fn close(&self) -> Result<(), AuditError> {
        let mut g = self.inner.lock().map_err(|_| AuditError::Poisoned)?;
        if g.closed {
            return Ok(());
        }
        if g.since_checkpoint > 0 {
            let ts = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
            self.checkpoint_locked(&mut g, ts)?;
        }
        g.closed = true;
        Ok(())
    }

    fn checkpoint_locked(&self, g: &mut Inner, ts_ms: u64) -> Result<(), AuditError> {
        let rec = Record {
            seq: g.seq + 1,
            kind: "checkpoint".into(),
            ts_ms,
            request_id: None,
            route: None,
            reasons: Vec::new(),
            entities: BTreeMap::new(),
            uncertain: BTreeMap::new(),
            destination: None,
            bytes_in: None,
            bytes_out: None,
            entries: Some(g.entries),
            prev: g.last_hash.clone(),
            hash: None,
            sig: None,
        };
        self.write_record(g, rec, true)?;
        g.since_checkpoint = 0;
        g.file.sync_data()?;
        Ok(())
    }

    fn write_record(&self, g: &mut Inner, mut rec: Record, sign: bool) -> Result<(), AuditError> {
        if g.closed {
            // Reopened after close: keep chaining, the close was only a checkpoint.
            g.closed = false;
        }
        let hash = rec.compute_hash();
        if sign {
            rec.sig = Some(hex(&self.key.sign(hash.as_bytes()).to_bytes()));
        }
        rec.hash = Some(hash.clone());
        let mut line = serde_json::to_string(&rec).map_err(|_| AuditError::Malformed { line: 0 })?;
        line.push('\n');
        g.file.write_all(line.as_bytes())?;
        g.file.flush()?;
        g.seq = rec.seq;
        g.last_hash = hash;
        self.write_head(g.seq, &g.last_hash, sign)
    }

    fn write_head(&self, seq: u64, hash: &str, durable: bool) -> Result<(), AuditError> {
        let sig = hex(&self.key.sign(&head_message(seq, hash)).to_bytes());
        let head = Head { seq, hash: hash.to_string(), sig };
        let text = serde_json::to_string(&head).map_err(|_| AuditError::HeadBadSignature)?;
        let hp = head_path(&self.path);
        let mut tmp = hp.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        {
            let mut f = File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            if durable {
                f.sync_all()?;
            }
        }
        std::fs::rename(&tmp, &hp)?;
        Ok(())
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

// ------------------------------------------------------------------ verify

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    pub entries: u64,
    pub checkpoints: u64,
    pub last_seq: u64,
    pub last_hash: String,
    /// Sequence number of the last signed checkpoint (0: none).
    pub signed_through: u64,
    /// Entries after the last checkpoint (covered by the signed head).
    pub entries_since_checkpoint: u64,
}

/// Verifies a log and its head file against the public key.
pub fn verify(log_path: &Path, key: &VerifyingKey) -> Result<VerifyReport, AuditError> {
    let data = std::fs::read(log_path)?;
    let mut rep = VerifyReport {
        entries: 0,
        checkpoints: 0,
        last_seq: 0,
        last_hash: ZERO_HASH.to_string(),
        signed_through: 0,
        entries_since_checkpoint: 0,
    };
    if !data.is_empty() && data.last() != Some(&b'\n') {
        // a truncated final line
        let line = data.iter().filter(|&&b| b == b'\n').count() + 1;
        return Err(AuditError::Malformed { line });
    }
    let body = data.strip_suffix(b"\n").unwrap_or(&data);
    let lines: Vec<&[u8]> = if body.is_empty() { Vec::new() } else { body.split(|&b| b == b'\n').collect() };
    for (i, raw) in lines.into_iter().enumerate() {
        let line = i + 1;
        let text = std::str::from_utf8(raw).map_err(|_| AuditError::Malformed { line })?;
        let rec: Record = serde_json::from_str(text).map_err(|_| AuditError::Malformed { line })?;
        if serde_json::to_string(&rec).ok().as_deref() != Some(text) {
            return Err(AuditError::NonCanonical { line });
        }
        if rec.seq != rep.last_seq + 1 {
            return Err(AuditError::Sequence { line, expected: rep.last_seq + 1, found: rec.seq });
        }
        if rec.prev != rep.last_hash {
            return Err(AuditError::ChainBroken { line });
        }
        let hash = rec.compute_hash();
        if rec.hash.as_deref() != Some(hash.as_str()) {
            return Err(AuditError::HashMismatch { line });
        }
        match rec.kind.as_str() {
            "entry" => {
                if rec.sig.is_some() || rec.entries.is_some() {
                    return Err(AuditError::Malformed { line });
                }
                rep.entries += 1;
                rep.entries_since_checkpoint += 1;
            }
            "checkpoint" => {
                let sig = rec
                    .sig
                    .as_deref()
                    .and_then(unhex)
                    .and_then(|b| <[u8; 64]>::try_from(b).ok())
                    .map(|b| Signature::from_bytes(&b))
                    .ok_or(AuditError::BadSignature { line })?;
                key.verify(hash.as_bytes(), &sig).map_err(|_| AuditError::BadSignature { line })?;
                if rec.entries != Some(rep.entries) {
                    return Err(AuditError::Malformed { line });
                }
                rep.checkpoints += 1;
                rep.signed_through = rec.seq;
                rep.entries_since_checkpoint = 0;
            }
            _ => return Err(AuditError::Malformed { line }),
        }
        rep.last_seq = rec.seq;
        rep.last_hash = hash;
    }
    // The signed head must name exactly the last record.
    let head_text = std::fs::read_to_string(head_path(log_path)).map_err(|_| AuditError::HeadMissing)?;
    let head: Head = serde_json::from_str(&head_text).map_err(|_| AuditError::HeadBadSignature)?;
    let sig = unhex(&head.sig)
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .map(|b| Signature::from_bytes(&b))
        .ok_or(AuditError::HeadBadSignature)?;
    key.verify(&head_message(head.seq, &head.hash), &sig).map_err(|_| AuditError::HeadBadSignature)?;
    if head.seq != rep.last_seq || head.hash != rep.last_hash {
        return Err(AuditError::HeadMismatch { head_seq: head.seq, log_seq: rep.last_seq });
    }
    Ok(rep)
}

impl AuditEntry {
    /// An entry for a guard decision: types, counts and reason codes from
    /// the summary (never values).
    pub fn from_summary(
        request_id: impl Into<String>,
        route: impl Into<String>,
        summary: &crate::guard::Summary,
        destination: Option<&str>,
        bytes_out: u64,
    ) -> AuditEntry {
        let mut e = AuditEntry::now(request_id, route);
        e.reasons = summary.reasons.clone();
        e.entities = summary.counts.clone();
        e.uncertain = summary.uncertain.clone();
        e.destination = destination.map(host_only);
        e.bytes_in = summary.bytes_in as u64;
        e.bytes_out = bytes_out;
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SplitMix64: a seeded generator for the tampering test.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }
    impl rand_core::RngCore for Rng {
        fn next_u32(&mut self) -> u32 {
            self.next() as u32
        }
        fn next_u64(&mut self) -> u64 {
            self.next()
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            for b in dest {
                *b = self.next() as u8;
            }
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }
    // Test-only: a deterministic stand-in for the OS RNG.
    impl rand_core::CryptoRng for Rng {}

    fn key() -> SigningKey {
        generate_key(&mut Rng(7))
    }

    fn entry(i: u64) -> AuditEntry {
        let mut e = AuditEntry {
            ts_ms: 1_700_000_000_000 + i,
            request_id: format!("req-{i}"),
            route: if matches!(i % 3, 0) { "cloud".into() } else { "local".into() },
            reasons: vec![format!("pii.keep_local:{}", EntityType::Person)],
            destination: matches!(i % 3, 0).then(|| "https://user:pw@API.Example.com:443/v1/chat?x=1".to_string()),
            bytes_in: 100 + i,
            bytes_out: 7 * i,
            ..AuditEntry::default()
        };
        e.entities.insert(EntityType::Email, (i % 4) as usize);
        e
    }

    fn write_log(dir: &Path, n: u64, every: u64) -> PathBuf {
        let p = dir.join("audit.jsonl");
        let log = AuditLog::open(&p, key(), every).unwrap();
        for i in 0..n {
            log.append(&entry(i)).unwrap();
        }
        log.close().unwrap();
        p
    }

    #[test]
    fn host_only_strips_everything_but_the_host() {
        assert_eq!(host_only("https://user:pw@API.Example.com:443/v1/chat?x=1"), "api.example.com");
        assert_eq!(host_only("api.openai.com"), "api.openai.com");
        assert_eq!(host_only("http://[2001:db8::1]:8080/x"), "2001:db8::1");
        assert_eq!(host_only("localhost:11434"), "localhost");
    }

    #[test]
    fn untampered_log_verifies_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_log(dir.path(), 500, 64);
        let r = verify(&p, &key().verifying_key()).unwrap();
        assert_eq!(r.entries, 500);
        assert_eq!(r.checkpoints, 500 / 64 + 1); // periodic + close
        assert_eq!(r.entries_since_checkpoint, 0);
        // reopen and continue the chain
        let log = AuditLog::open(&p, key(), 64).unwrap();
        log.append(&entry(999)).unwrap();
        drop(log);
        let r = verify(&p, &key().verifying_key()).unwrap();
        assert_eq!(r.entries, 501);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains("\"destination\":\"api.example.com\""));
        assert!(!text.contains("pw@") && !text.contains("/v1/chat"));
    }

    #[test]
    fn a_different_key_does_not_verify() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_log(dir.path(), 10, 4);
        let other = generate_key(&mut Rng(8)).verifying_key();
        assert!(matches!(verify(&p, &other), Err(AuditError::BadSignature { .. })));
    }

    /// Re-hash a record as an attacker without the key can.
    fn rehash(mut rec: Record, prev: &str) -> (Record, String) {
        rec.prev = prev.to_string();
        rec.hash = None;
        let h = rec.compute_hash();
        rec.hash = Some(h.clone());
        (rec, h)
    }

    fn tamper(rng: &mut Rng, log: &[u8], head: &[u8]) -> (Vec<u8>, Vec<u8>, &'static str) {
        let text = std::str::from_utf8(log).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        let n = lines.len();
        let join = |l: &[String]| -> Vec<u8> {
            let mut s = l.join("\n");
            if !l.is_empty() {
                s.push('\n');
            }
            s.into_bytes()
        };
        match rng.below(9) {
            0 => {
                let mut l = log.to_vec();
                let i = rng.below(l.len());
                l[i] ^= 1 + rng.below(255) as u8;
                (l, head.to_vec(), "flip")
            }
            1 => {
                lines.remove(rng.below(n));
                (join(&lines), head.to_vec(), "delete")
            }
            2 => {
                let i = rng.below(n);
                let j = rng.below(n + 1);
                let l = lines[i].clone();
                lines.insert(j, l);
                (join(&lines), head.to_vec(), "duplicate")
            }
            3 => {
                let i = rng.below(n);
                let mut j = rng.below(n);
                if i == j {
                    j = (i + 1) % n;
                }
                lines.swap(i, j);
                (join(&lines), head.to_vec(), "swap")
            }
            4 => {
                // forged entry with a correct hash, chained to its predecessor, inserted
                let i = rng.below(n);
                let prev: Record = serde_json::from_str(&lines[i]).unwrap();
                let mut forged = prev.clone();
                forged.seq = prev.seq + 1;
                forged.kind = "entry".into();
                forged.sig = None;
                forged.entries = None;
                forged.reasons = vec!["route.local".into()];
                let (forged, _) = rehash(forged, prev.hash.as_deref().unwrap());
                lines.insert(i + 1, serde_json::to_string(&forged).unwrap());
                (join(&lines), head.to_vec(), "insert")
            }
            5 => {
                let cut = rng.below(log.len());
                (log[..cut].to_vec(), head.to_vec(), "truncate")
            }
            6 => {
                let mut h = head.to_vec();
                let i = rng.below(h.len());
                h[i] ^= 1 + rng.below(255) as u8;
                (log.to_vec(), h, "head-flip")
            }
            7 => {
                // edit one entry and re-chain everything after it (no key)
                let i = rng.below(n);
                let mut prev_hash =
                    if i == 0 { ZERO_HASH.to_string() } else { serde_json::from_str::<Record>(&lines[i - 1]).unwrap().hash.unwrap() };
                for (k, line) in lines.iter_mut().enumerate().skip(i) {
                    let mut r: Record = serde_json::from_str(line).unwrap();
                    if k == i {
                        r.bytes_out = Some(r.bytes_out.unwrap_or(0) + 1);
                        r.ts_ms += 1;
                    }
                    let (r, h) = rehash(r, &prev_hash);
                    prev_hash = h;
                    *line = serde_json::to_string(&r).unwrap();
                }
                (join(&lines), head.to_vec(), "rechain")
            }
            _ => {
                // drop the tail after some line, re-sealing nothing
                let keep = rng.below(n);
                lines.truncate(keep);
                (join(&lines), head.to_vec(), "truncate-lines")
            }
        }
    }

    #[test]
    fn a_thousand_random_tamperings_are_all_detected() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_log(dir.path(), 120, 16);
        let vk = key().verifying_key();
        verify(&p, &vk).unwrap();
        let log = std::fs::read(&p).unwrap();
        let head = std::fs::read(head_path(&p)).unwrap();
        let mut rng = Rng(2024);
        let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
        let tp = dir.path().join("t.jsonl");
        for round in 0..1000 {
            let (l, h, kind) = tamper(&mut rng, &log, &head);
            if l == log && h == head {
                continue; // e.g. swapping identical lines cannot happen; defensive
            }
            *kinds.entry(kind).or_default() += 1;
            std::fs::write(&tp, &l).unwrap();
            std::fs::write(head_path(&tp), &h).unwrap();
            assert!(verify(&tp, &vk).is_err(), "round {round}: {kind} not detected");
        }
        assert!(kinds.values().sum::<usize>() >= 990, "{kinds:?}");
        assert!(kinds.len() == 9, "{kinds:?}");
    }

    #[test]
    fn concurrent_appends_are_serialised() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit.jsonl");
        let log = std::sync::Arc::new(AuditLog::open(&p, key(), 50).unwrap());
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for i in 0..100 {
                        log.append(&entry(t * 1000 + i)).unwrap();
                    }
                })
            })
            .collect();
        for th in threads {
            th.join().unwrap();
        }
        log.close().unwrap();
        let r = verify(&p, &key().verifying_key()).unwrap();
        assert_eq!(r.entries, 800);
    }

    #[test]
    fn key_file_is_0600_and_insecure_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let kp = dir.path().join("audit.key");
        let k = key();
        write_key_file(&kp, &k).unwrap();
        assert!(write_key_file(&kp, &k).is_err(), "must not overwrite");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&kp).unwrap().permissions().mode() & 0o777, 0o600);
            assert_eq!(read_key_file(&kp).unwrap().to_bytes(), k.to_bytes());
            std::fs::set_permissions(&kp, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(read_key_file(&kp), Err(AuditError::InsecureKeyFile { mode: 0o644 })));
        }
        let vk = verifying_key_from_hex(&verifying_key_hex(&k.verifying_key())).unwrap();
        assert_eq!(vk, k.verifying_key());
    }

    #[test]
    fn an_unsigned_tail_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_log(dir.path(), 5, 100);
        // simulate a crash after the line was written but before the head
        let head = std::fs::read(head_path(&p)).unwrap();
        let log = AuditLog::open(&p, key(), 100).unwrap();
        log.append(&entry(6)).unwrap();
        std::mem::forget(log); // no close: no checkpoint, head not restored
        std::fs::write(head_path(&p), head).unwrap();
        assert!(matches!(verify(&p, &key().verifying_key()), Err(AuditError::HeadMismatch { .. })));
        assert!(AuditLog::open(&p, key(), 100).is_err(), "a log that does not verify is not appended to");
    }
}
