//! The relay file: a signed text header, then the body.
//!
//! ```text
//! HEADROOM-RELAY/1
//! stream: scada-north
//! sequence: 42
//! kind: readings
//! created: 2026-12-05T09:00:00.123Z
//! rows: 10000
//! body-sha256: 64 hex digits
//! algorithm: ed25519
//! key: 16 hex digits
//! signature: 128 hex digits
//! BODY
//! ```
//!
//! Every line ends with `\n`; the fields come in this order, each once. The
//! signature covers the header's bytes from its first through the `key:` line;
//! the header carries the body's SHA-256, so the signature covers the body too,
//! and a file cut short fails the digest. Text, because the devices pass plain
//! files and an operator reads them with `head`.

use std::collections::BTreeMap;
use std::fmt;

use sha2::{Digest, Sha256};

use crate::keys::{Algorithm, SIGNATURE_LEN, SigningKey, VerifyingKey};

/// The first line, naming the format and its version.
pub const MAGIC: &str = "HEADROOM-RELAY/1";

/// A relay file's extension.
pub const EXTENSION: &str = "relay";

/// A header longer than this is not a header.
const MAX_HEADER_BYTES: usize = 4096;

/// What a file carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Readings from a collector.
    Readings,
    /// Applications and their actions from the business hall.
    Applications,
    /// The service's answers to applications.
    Answers,
}

impl Kind {
    /// The name in the header.
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Readings => "readings",
            Kind::Applications => "applications",
            Kind::Answers => "answers",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        [Kind::Readings, Kind::Applications, Kind::Answers]
            .into_iter()
            .find(|k| k.as_str() == name)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a stream name is usable: 1 to 64 of `A-Z a-z 0-9 _ -` (it is part
/// of file names, so no dot and no path separator).
pub fn valid_stream_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A file's name: `STREAM.SEQUENCE.relay`, the sequence zero-padded so that
/// names sort in sequence order.
pub fn file_name(stream: &str, sequence: u64) -> String {
    format!("{stream}.{sequence:012}.{EXTENSION}")
}

/// The stream and sequence a file name states, if it is a relay file's name.
pub fn parse_file_name(name: &str) -> Option<(&str, u64)> {
    let rest = name.strip_suffix(EXTENSION)?.strip_suffix('.')?;
    let (stream, sequence) = rest.rsplit_once('.')?;
    (valid_stream_name(stream)
        && !sequence.is_empty()
        && sequence.bytes().all(|b| b.is_ascii_digit()))
    .then(|| sequence.parse().ok().map(|n| (stream, n)))
    .flatten()
}

/// A file's header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The writer's stream.
    pub stream: String,
    /// Its number in the stream, from 1.
    pub sequence: u64,
    /// What the body is.
    pub kind: Kind,
    /// When the file was sealed, ms since the epoch.
    pub created_ms: i64,
    /// Rows (readings, applications or answers) in the body.
    pub rows: u64,
    /// SHA-256 of the body.
    pub body_sha256: [u8; 32],
    /// The signature's algorithm.
    pub algorithm: Algorithm,
    /// The signing key's id.
    pub key: String,
}

impl Header {
    /// The signed part: every line before `signature:`.
    fn signed_text(&self) -> String {
        let created = chrono::DateTime::from_timestamp_millis(self.created_ms)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        format!(
            "{MAGIC}\nstream: {}\nsequence: {}\nkind: {}\ncreated: {created}\nrows: {}\nbody-sha256: {}\nalgorithm: {}\nkey: {}\n",
            self.stream,
            self.sequence,
            self.kind,
            self.rows,
            hex::encode(self.body_sha256),
            self.algorithm,
            self.key,
        )
    }
}

/// Seals `body` as file `sequence` of `stream`, signed by `key`. The same
/// arguments give the same bytes.
pub fn seal(
    stream: &str,
    sequence: u64,
    kind: Kind,
    created_ms: i64,
    rows: u64,
    body: &[u8],
    key: &SigningKey,
) -> Vec<u8> {
    let header = Header {
        stream: stream.to_owned(),
        sequence,
        kind,
        created_ms,
        rows,
        body_sha256: Sha256::digest(body).into(),
        algorithm: key.algorithm(),
        key: key.verifying_key().id().as_str().to_owned(),
    };
    let signed = header.signed_text();
    let signature = key.sign(signed.as_bytes());
    let mut file = Vec::with_capacity(signed.len() + 140 + body.len());
    file.extend_from_slice(signed.as_bytes());
    file.extend_from_slice(b"signature: ");
    file.extend_from_slice(hex::encode(signature).as_bytes());
    file.push(b'\n');
    file.extend_from_slice(body);
    file
}

/// The rule a refused file broke; its name is the first word of the `.reason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rule {
    /// The header is missing, malformed, or cut short.
    Header,
    /// The file's name disagrees with its header's stream and sequence.
    Name,
    /// The file is of another kind than the receiver takes.
    Kind,
    /// The stream is not one the receiver accepts.
    UnknownStream,
    /// No trusted key of the stream has the header's key id.
    UnknownKey,
    /// The signature is not the key's over the header.
    Signature,
    /// The body's SHA-256 is not the header's (altered or cut short).
    Digest,
    /// The body is not of the header's kind, or a row breaks its rules.
    Body,
    /// The stream and sequence were taken before with another digest.
    Conflict,
}

impl Rule {
    /// The rule's name in `.reason` files.
    pub const fn as_str(self) -> &'static str {
        match self {
            Rule::Header => "header",
            Rule::Name => "name",
            Rule::Kind => "kind",
            Rule::UnknownStream => "unknown-stream",
            Rule::UnknownKey => "unknown-key",
            Rule::Signature => "signature",
            Rule::Digest => "digest",
            Rule::Body => "body",
            Rule::Conflict => "conflict",
        }
    }
}

/// Why a file is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// The rule broken.
    pub rule: Rule,
    /// In words, naming the field or line.
    pub message: String,
}

impl Rejection {
    /// A rejection under `rule`.
    pub fn new(rule: Rule, message: impl Into<String>) -> Self {
        Self {
            rule,
            message: message.into(),
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.rule.as_str(), self.message)
    }
}

/// The public keys a receiver trusts, per stream.
#[derive(Clone, Debug, Default)]
pub struct Trust {
    streams: BTreeMap<String, Vec<VerifyingKey>>,
}

impl Trust {
    /// Trusts `keys` for `stream` (in addition to any already trusted).
    pub fn add(&mut self, stream: &str, keys: impl IntoIterator<Item = VerifyingKey>) {
        self.streams
            .entry(stream.to_owned())
            .or_default()
            .extend(keys);
    }

    /// The streams accepted.
    pub fn streams(&self) -> impl Iterator<Item = &str> {
        self.streams.keys().map(String::as_str)
    }

    fn key(&self, stream: &str, id: &str) -> Result<&VerifyingKey, Rejection> {
        let keys = self.streams.get(stream).ok_or_else(|| {
            Rejection::new(
                Rule::UnknownStream,
                format!("stream `{stream}` is not one this inbox accepts"),
            )
        })?;
        keys.iter().find(|k| k.id().as_str() == id).ok_or_else(|| {
            Rejection::new(
                Rule::UnknownKey,
                format!("key `{id}` is not a trusted key of stream `{stream}`"),
            )
        })
    }
}

/// A file whose signature and digest hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opened<'a> {
    /// Its header.
    pub header: Header,
    /// Its body, as signed.
    pub body: &'a [u8],
}

fn header_error(message: impl Into<String>) -> Rejection {
    Rejection::new(Rule::Header, message)
}

/// Lowercase hex only: with upper case also read, a byte of the signature line
/// could change and the file still verify, and a damaged file would pass as whole.
fn lower_hex(text: &str, out: &mut [u8]) -> Result<(), ()> {
    if text.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(());
    }
    hex::decode_to_slice(text, out).map_err(|_| ())
}

/// Reads and checks a file: header, trusted key, signature, digest.
pub fn open<'a>(bytes: &'a [u8], trust: &Trust) -> Result<Opened<'a>, Rejection> {
    let mut lines = Vec::with_capacity(10);
    let mut at = 0;
    while lines.len() < 10 {
        let rest = &bytes[at..];
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            return Err(header_error(format!(
                "the header ends after {} of its 10 lines (the file is cut short or not a relay file)",
                lines.len()
            )));
        };
        let line = std::str::from_utf8(&rest[..end])
            .map_err(|_| header_error(format!("header line {} is not UTF-8", lines.len() + 1)))?;
        lines.push(line);
        at += end + 1;
        if at > MAX_HEADER_BYTES {
            return Err(header_error(format!(
                "the header is longer than {MAX_HEADER_BYTES} bytes"
            )));
        }
    }
    if lines[0] != MAGIC {
        return Err(header_error(format!(
            "line 1 must be `{MAGIC}`, found `{}`",
            lines[0].chars().take(40).collect::<String>()
        )));
    }
    let field = |i: usize, name: &str| -> Result<&str, Rejection> {
        lines[i]
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(": "))
            .ok_or_else(|| header_error(format!("line {} must be the `{name}` field", i + 1)))
    };
    let stream = field(1, "stream")?;
    if !valid_stream_name(stream) {
        return Err(header_error(format!(
            "`stream` \"{stream}\" must be 1 to 64 of A-Z a-z 0-9 _ -"
        )));
    }
    let number = |i: usize, name: &str| -> Result<u64, Rejection> {
        let text = field(i, name)?;
        text.parse()
            .map_err(|_| header_error(format!("`{name}` \"{text}\" is not a whole number")))
    };
    let sequence = number(2, "sequence")?;
    if sequence == 0 {
        return Err(header_error("`sequence` starts at 1"));
    }
    let kind_text = field(3, "kind")?;
    let kind = Kind::parse(kind_text).ok_or_else(|| {
        header_error(format!(
            "`kind` \"{kind_text}\" is none of readings, applications, answers"
        ))
    })?;
    let created_text = field(4, "created")?;
    let created_ms = chrono::DateTime::parse_from_rfc3339(created_text)
        .map_err(|e| header_error(format!("`created` \"{created_text}\": {e}")))?
        .timestamp_millis();
    let rows = number(5, "rows")?;
    let mut body_sha256 = [0; 32];
    lower_hex(field(6, "body-sha256")?, &mut body_sha256)
        .map_err(|_| header_error("`body-sha256` must be 64 lowercase hex digits"))?;
    let algorithm_text = field(7, "algorithm")?;
    let algorithm = Algorithm::parse(algorithm_text).ok_or_else(|| {
        header_error(format!(
            "`algorithm` \"{algorithm_text}\" is neither ed25519 nor sm2"
        ))
    })?;
    let key_id = field(8, "key")?;
    let mut signature = [0; SIGNATURE_LEN];
    lower_hex(field(9, "signature")?, &mut signature)
        .map_err(|_| header_error("`signature` must be 128 lowercase hex digits"))?;
    let header = Header {
        stream: stream.to_owned(),
        sequence,
        kind,
        created_ms,
        rows,
        body_sha256,
        algorithm,
        key: key_id.to_owned(),
    };

    let key = trust.key(stream, key_id)?;
    if key.algorithm() != algorithm {
        return Err(Rejection::new(
            Rule::Signature,
            format!(
                "the header says {algorithm} but key `{key_id}` is an {} key",
                key.algorithm()
            ),
        ));
    }
    let signed_len = lines[..9].iter().map(|l| l.len() + 1).sum::<usize>();
    if !key.verify(&bytes[..signed_len], &signature) {
        return Err(Rejection::new(
            Rule::Signature,
            format!(
                "the signature is not key `{key_id}`'s over this header (altered, or signed by another key)"
            ),
        ));
    }
    let body = &bytes[at..];
    if <[u8; 32]>::from(Sha256::digest(body)) != body_sha256 {
        return Err(Rejection::new(
            Rule::Digest,
            format!(
                "the body's {} bytes do not have the header's SHA-256 (altered or cut short)",
                body.len()
            ),
        ));
    }
    Ok(Opened { header, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(algorithm: Algorithm, seed: u8) -> SigningKey {
        SigningKey::from_seed(algorithm, [seed; 32]).unwrap()
    }

    fn trust(key: &SigningKey) -> Trust {
        let mut trust = Trust::default();
        trust.add("scada", [key.verifying_key().clone()]);
        trust
    }

    #[test]
    fn names_sort_by_sequence_and_parse_back() {
        assert_eq!(file_name("scada", 42), "scada.000000000042.relay");
        assert_eq!(
            parse_file_name("scada.000000000042.relay"),
            Some(("scada", 42))
        );
        assert_eq!(parse_file_name("scada-b.7.relay"), Some(("scada-b", 7)));
        for bad in [
            "scada.relay",
            ".scada.1.relay.tmp",
            "a.b.1.relay",
            "s.x1.relay",
            "s.1.csv",
        ] {
            assert_eq!(parse_file_name(bad), None, "{bad}");
        }
        assert!(file_name("s", 9) < file_name("s", 10));
    }

    /// Every way a file can be wrong, for both algorithms: each is refused under
    /// its own rule, and the untouched file opens.
    #[test]
    fn a_file_opens_only_whole_and_signed_by_a_trusted_key() {
        for algorithm in [Algorithm::Ed25519, Algorithm::Sm2] {
            let signer = key(algorithm, 1);
            let body = b"ts,asset,quantity,value,quality,source\n";
            let file = seal(
                "scada",
                7,
                Kind::Readings,
                1_780_000_000_123,
                0,
                body,
                &signer,
            );
            let trusted = trust(&signer);
            let opened = open(&file, &trusted).unwrap();
            assert_eq!(opened.header.sequence, 7);
            assert_eq!(opened.header.created_ms, 1_780_000_000_123);
            assert_eq!(opened.header.algorithm, algorithm);
            assert_eq!(opened.body, body);
            assert_eq!(
                file,
                seal(
                    "scada",
                    7,
                    Kind::Readings,
                    1_780_000_000_123,
                    0,
                    body,
                    &signer
                )
            );

            let rule = |bytes: &[u8], trust: &Trust| open(bytes, trust).unwrap_err().rule;
            // Signed by a key the inbox does not know.
            let stranger = key(algorithm, 2);
            let foreign = seal("scada", 7, Kind::Readings, 0, 0, body, &stranger);
            assert_eq!(rule(&foreign, &trusted), Rule::UnknownKey, "{algorithm}");
            // A key trusted for another stream only.
            let mut elsewhere = Trust::default();
            elsewhere.add("ami", [signer.verifying_key().clone()]);
            assert_eq!(rule(&file, &elsewhere), Rule::UnknownStream);
            // Signed by the stranger but naming the trusted key: the signature fails.
            let text = String::from_utf8(file.clone()).unwrap();
            let forged = String::from_utf8(foreign.clone()).unwrap().replace(
                &format!("key: {}", stranger.verifying_key().id()),
                &format!("key: {}", signer.verifying_key().id()),
            );
            assert_eq!(
                rule(forged.as_bytes(), &trusted),
                Rule::Signature,
                "{algorithm}"
            );
            // A tampered header: a later sequence, same signature.
            let tampered = text.replacen("sequence: 7", "sequence: 8", 1);
            assert_eq!(
                rule(tampered.as_bytes(), &trusted),
                Rule::Signature,
                "{algorithm}"
            );
            // A tampered body: one byte changed.
            let mut altered = file.clone();
            *altered.last_mut().unwrap() = b'x';
            assert_eq!(rule(&altered, &trusted), Rule::Digest, "{algorithm}");
            // Truncated in the body, and in the header.
            assert_eq!(rule(&file[..file.len() - 3], &trusted), Rule::Digest);
            assert_eq!(rule(&file[..60], &trusted), Rule::Header);
            // A flipped bit of the signature.
            let signature_at = text.find("signature: ").unwrap() + 11;
            let mut bad_signature = file.clone();
            bad_signature[signature_at] = if bad_signature[signature_at] == b'0' {
                b'1'
            } else {
                b'0'
            };
            assert_eq!(
                rule(&bad_signature, &trusted),
                Rule::Signature,
                "{algorithm}"
            );
            // Every byte counts: the signature in upper case is not the same line.
            let hex_signature = &text[signature_at..signature_at + 128];
            let upper = text.replacen(hex_signature, &hex_signature.to_uppercase(), 1);
            assert_ne!(upper, text);
            assert_eq!(
                rule(upper.as_bytes(), &trusted),
                Rule::Header,
                "{algorithm}"
            );
        }
    }

    #[test]
    fn a_header_names_its_broken_field() {
        let signer = key(Algorithm::Ed25519, 1);
        let file = String::from_utf8(seal("scada", 7, Kind::Readings, 0, 0, b"", &signer)).unwrap();
        let message = |text: String| {
            open(text.as_bytes(), &trust(&signer))
                .unwrap_err()
                .to_string()
        };
        assert!(message(file.replacen("HEADROOM-RELAY/1", "PK", 1)).contains("line 1 must be"));
        assert!(
            message(file.replacen("kind: readings", "kind: meters", 1))
                .contains("`kind` \"meters\"")
        );
        assert!(message(file.replacen("sequence: 7", "sequence: 0", 1)).contains("starts at 1"));
        assert!(
            message(file.replacen("rows: 0", "row: 0", 1))
                .contains("line 6 must be the `rows` field")
        );
        assert!(message(file.replacen("stream: scada", "stream: ../x", 1)).contains("`stream`"));
    }
}
