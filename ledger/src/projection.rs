//! Projections: state folded from the log, as of any point of it.
//!
//! A [`Projection`] is a pure fold, `state' = apply(state, event)`: no
//! clock, no I/O, no randomness, so the same log always gives the same
//! state. [`Folded`] is a projection's state together with the position of
//! the log it reflects (sequence number and event hash), advanced by reading
//! the log in order. Replay checks every record's hash and link as it goes,
//! so a state always corresponds to the exact chain prefix it names; it does
//! not check signatures (that is `verify`'s job), except that [`fold_to`]
//! checks the last one it reaches, which with the links makes the prefix
//! the key's.
//!
//! [`Snapshots`] store folded states in files, stamped with the sequence
//! number and hash they cover and signed by the writer's key; a snapshot is
//! used only if its signature verifies under the log's current key and the
//! log still has that hash at that sequence number. [`fold_to`] answers "the state as of
//! sequence N": the newest usable snapshot at or before N, then the events
//! after it.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::chain::{RawRecord, SealedEvent, event_hash};
use crate::error::{Error, Result};
use crate::event::{Event, Hash, parse_hex_array};
use crate::ledger::Ledger;
use crate::schedule::KeyEntry;

/// A deterministic fold over events.
pub trait Projection: Default + Send {
    /// Stable name; snapshots are filed under it.
    const NAME: &'static str;
    /// Bump whenever `apply` or the encoding changes: snapshots of other
    /// versions are then ignored and the state is rebuilt from the log.
    const VERSION: u32;

    /// Applies one event. Events of kinds the projection does not care
    /// about, and events it cannot make sense of, must leave it unchanged
    /// or change it deterministically: this runs on every replay.
    fn apply(&mut self, event: &Event);

    /// Whether events of this kind can change the state. Replay decodes
    /// only those (every record's hash and link are checked regardless);
    /// `apply` is never called with the others.
    fn wants(kind: &str) -> bool {
        let _ = kind;
        true
    }

    /// Snapshot encoding.
    fn encode(&self) -> Vec<u8>;
    fn decode(bytes: &[u8]) -> std::result::Result<Self, String>;
}

/// Records decoded per parallel batch during replay.
const REPLAY_BATCH: usize = 2048;

/// A projection's state and the last event folded into it.
#[derive(Debug, Clone)]
pub struct Folded<P> {
    state: P,
    /// Last applied sequence number; `None` before the genesis event.
    seq: Option<u64>,
    /// Hash of that event (zero before genesis).
    hash: Hash,
    /// The sequence number of the snapshot this state was loaded from.
    snapshot: Option<u64>,
}

impl<P: Projection> Default for Folded<P> {
    fn default() -> Self {
        Folded {
            state: P::default(),
            seq: None,
            hash: Hash::ZERO,
            snapshot: None,
        }
    }
}

impl<P: Projection> Folded<P> {
    pub fn state(&self) -> &P {
        &self.state
    }

    pub fn into_state(self) -> P {
        self.state
    }

    /// The last sequence number folded in (`None`: nothing yet).
    pub fn seq(&self) -> Option<u64> {
        self.seq
    }

    /// The hash of the last event folded in.
    pub fn hash(&self) -> Hash {
        self.hash
    }

    /// The sequence number of the snapshot this state was loaded from
    /// (`None`: replayed from the log's start).
    pub fn snapshot_seq(&self) -> Option<u64> {
        self.snapshot
    }

    fn next_seq(&self) -> u64 {
        self.seq.map_or(0, |s| s + 1)
    }

    /// Folds in the events after the current position up to `to`
    /// (inclusive), or to the head when `to` is past it. Returns how many
    /// were applied. Fails, leaving the state at the last good event, if a
    /// record is missing, malformed, or does not hash and link.
    pub fn advance(&mut self, ledger: &Ledger, to: u64) -> Result<u64> {
        let to = to.min(ledger.head().seq);
        let mut applied = 0;
        let mut records = ledger.raw_records(self.next_seq())?;
        let mut batch: Vec<(u64, Box<[u8]>)> = Vec::with_capacity(REPLAY_BATCH);
        loop {
            batch.clear();
            while batch.len() < REPLAY_BATCH && self.next_seq() + (batch.len() as u64) <= to {
                match records.next() {
                    Some(record) => batch.push(record?),
                    None => break,
                }
            }
            if batch.is_empty() {
                break;
            }
            // Each record must hash, with the previous record's hash, to the
            // hash it stores: that checks its contents and its link. Only
            // records the projection wants are decoded further.
            let prevs: Vec<Hash> = std::iter::once(self.hash)
                .chain(
                    batch
                        .iter()
                        .map(|(_, bytes)| RawRecord::parse(bytes).map_or(Hash::ZERO, |r| r.hash)),
                )
                .collect();
            let first = self.next_seq();
            let checked: Vec<Result<Option<SealedEvent>>> = batch
                .par_iter()
                .enumerate()
                .map(|(i, (key, bytes))| check_record::<P>(first + i as u64, *key, bytes, &prevs[i]))
                .collect();
            // `prevs[i + 1]` is record i's stored hash (checked above).
            for (i, outcome) in checked.into_iter().enumerate() {
                let seq = self.next_seq();
                if let Some(sealed) = outcome? {
                    if sealed.event.seq != seq {
                        return Err(Error::Malformed {
                            seq,
                            reason: format!("holds seq {}", sealed.event.seq),
                        });
                    }
                    self.state.apply(&sealed.event);
                }
                self.hash = prevs[i + 1];
                self.seq = Some(seq);
                applied += 1;
            }
        }
        match self.seq {
            Some(seq) if seq >= to => Ok(applied),
            _ => Err(Error::Malformed {
                seq: self.next_seq(),
                reason: format!("missing from the log while replaying up to seq {to}"),
            }),
        }
    }
}

/// Checks that the record under `key` is event `want`, hashing with `prev`
/// to its stored hash; decodes it if `P` wants its kind.
fn check_record<P: Projection>(want: u64, key: u64, bytes: &[u8], prev: &Hash) -> Result<Option<SealedEvent>> {
    let broken = |reason: String| Error::Malformed { seq: want, reason };
    if key != want {
        return Err(broken(format!("missing: the next stored record is seq {key}")));
    }
    let raw = RawRecord::parse(bytes).map_err(broken)?;
    if event_hash(prev, raw.canonical) != raw.hash {
        return Err(broken(
            "does not hash to its stored hash with the previous event's hash (changed, or not linked)".into(),
        ));
    }
    match kind_of(raw.canonical) {
        Some(kind) if !P::wants(kind) => Ok(None),
        _ => SealedEvent::decode(bytes).map(Some).map_err(broken),
    }
}

/// The top-level `kind` of canonical event bytes, without decoding them.
/// Keys are sorted, so `kind` follows `actor`, `body`, `correlation` and
/// `key` and precedes `prev`, `seq`, `subject`, `ts` and `v`, none of which
/// can hold a `"kind":` member: the last occurrence is the top-level one. A
/// quote inside a string is escaped, so the pattern cannot start inside one.
fn kind_of(canonical: &[u8]) -> Option<&str> {
    const PATTERN: &[u8] = b"\"kind\":\"";
    let start = canonical.windows(PATTERN.len()).rposition(|w| w == PATTERN)? + PATTERN.len();
    let len = canonical[start..].iter().position(|b| *b == b'"')?;
    std::str::from_utf8(&canonical[start..start + len]).ok()
}

/// The state of `P` as of `seq` (inclusive; past the head: as of the head),
/// from the newest usable snapshot at or before it and the events after.
///
/// Replay checks every hash and link on the way; `fold_to` also checks the
/// signature of the last event it reaches, under the key valid there (the
/// key schedule checked as verification checks it). With the links, that
/// makes the events it read a prefix the log's key signed: a log rewritten
/// without the key is refused here, not shown as a state. A snapshot is
/// used only if the log's current key signed it (see [`Snapshots`]).
pub fn fold_to<P: Projection>(ledger: &Ledger, snapshots: Option<&Snapshots>, seq: u64) -> Result<Folded<P>> {
    let mut folded = match snapshots {
        Some(s) => s.newest_at_or_before::<P>(ledger, seq)?.unwrap_or_default(),
        None => Folded::default(),
    };
    if folded.seq.is_none_or(|s| s < seq) {
        folded.advance(ledger, seq)?;
    }
    if let Some(last) = folded.seq {
        ledger.check_signed(last, &folded.hash)?;
    }
    Ok(folded)
}

/// Snapshot files: `DIR/NAME/vVERSION/SEQ.snap` (SEQ zero-padded), each a
/// header line of JSON then the encoded state (FORMAT.md, "Snapshot files").
///
/// A snapshot is signed by the key that signs the log's next event (only a
/// writing handle can save one), over the ledger id, the projection, the
/// sequence number and hash it covers and its state's digest. It is used
/// only if the signature verifies under the key the log names current, and
/// the log still has that hash at that sequence number: a file written by
/// anyone without the key, or made before a key rotation, is passed over
/// and the state is replayed from the log instead.
#[derive(Debug, Clone)]
pub struct Snapshots {
    dir: PathBuf,
}

const SNAPSHOT_MAGIC: &str = "sealgate-snapshot-v2";
/// The unsigned format before it, recognised so it can be named.
const SNAPSHOT_MAGIC_V1: &str = "sealgate-snapshot-v1";
/// Domain tag of the digest a snapshot's signature covers.
const SNAPSHOT_DOMAIN: &[u8] = b"sealgate.snapshot.v2\0";

#[derive(serde::Serialize, serde::Deserialize)]
struct Header {
    magic: String,
    projection: String,
    version: u32,
    ledger_id: String,
    seq: u64,
    hash: String,
    state_bytes: u64,
    state_digest: String,
    /// Id of the signing key (absent in v1 files).
    #[serde(default)]
    key: Option<String>,
    /// Ed25519 signature over [`snapshot_digest`], hex (absent in v1 files).
    #[serde(default)]
    signature: Option<String>,
}

/// What a snapshot's signature covers:
/// `BLAKE3(SNAPSHOT_DOMAIN ‖ ledger id (16) ‖ len(projection) (u64 BE) ‖
/// projection ‖ version (u32 BE) ‖ seq (u64 BE) ‖ hash (32) ‖ state bytes
/// (u64 BE) ‖ state digest (32))`.
fn snapshot_digest(
    ledger_id: &[u8; 16],
    projection: &str,
    version: u32,
    seq: u64,
    hash: &Hash,
    state_bytes: u64,
    state_digest: &blake3::Hash,
) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(SNAPSHOT_DOMAIN);
    h.update(ledger_id);
    h.update(&(projection.len() as u64).to_be_bytes());
    h.update(projection.as_bytes());
    h.update(&version.to_be_bytes());
    h.update(&seq.to_be_bytes());
    h.update(&hash.0);
    h.update(&state_bytes.to_be_bytes());
    h.update(state_digest.as_bytes());
    Hash(*h.finalize().as_bytes())
}

impl Snapshots {
    pub fn new(dir: impl Into<PathBuf>) -> Snapshots {
        Snapshots { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn folder<P: Projection>(&self) -> PathBuf {
        self.dir.join(P::NAME).join(format!("v{}", P::VERSION))
    }

    /// Signs a snapshot of `folded` with the writer's key and writes it
    /// atomically (temporary file, fsync, rename, directory fsync). Returns
    /// its path. A read-only ledger cannot sign: [`Error::ReadOnly`].
    pub fn save<P: Projection>(&self, ledger: &Ledger, folded: &Folded<P>) -> Result<PathBuf> {
        let Some(seq) = folded.seq else {
            return Err(Error::InvalidRequest(
                "nothing to snapshot before the genesis event".into(),
            ));
        };
        let state = folded.state.encode();
        let state_digest = blake3::hash(&state);
        let digest = snapshot_digest(
            &ledger.ledger_id(),
            P::NAME,
            P::VERSION,
            seq,
            &folded.hash,
            state.len() as u64,
            &state_digest,
        );
        let (key, signature) = ledger.sign_statement(&digest)?;
        let folder = self.folder::<P>();
        fs::create_dir_all(&folder).map_err(|e| Error::io("cannot create snapshot dir", &folder, e))?;
        let header = Header {
            magic: SNAPSHOT_MAGIC.into(),
            projection: P::NAME.into(),
            version: P::VERSION,
            ledger_id: hex::encode(ledger.ledger_id()),
            seq,
            hash: folded.hash.to_hex(),
            state_bytes: state.len() as u64,
            state_digest: state_digest.to_hex().to_string(),
            key: Some(key.to_string()),
            signature: Some(hex::encode(signature.to_bytes())),
        };
        let mut bytes = serde_json::to_vec(&header).map_err(|e| Error::InvalidRequest(e.to_string()))?;
        bytes.push(b'\n');
        bytes.extend_from_slice(&state);
        let path = folder.join(format!("{seq:020}.snap"));
        let tmp = folder.join(format!(".{seq:020}.snap.tmp"));
        let write = || -> std::io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)?;
            fs::File::open(&folder)?.sync_all()
        };
        write().map_err(|e| Error::io("cannot write snapshot", &path, e))?;
        Ok(path)
    }

    /// Sequence numbers of the stored snapshots of `P`, ascending.
    pub fn list<P: Projection>(&self) -> Result<Vec<u64>> {
        let folder = self.folder::<P>();
        let entries = match fs::read_dir(&folder) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("cannot list snapshots", &folder, e)),
        };
        let mut seqs: Vec<u64> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".snap"))
                    .and_then(|n| n.parse().ok())
            })
            .collect();
        seqs.sort_unstable();
        Ok(seqs)
    }

    /// The newest snapshot of `P` at or before `seq` that belongs to this
    /// ledger, is intact, and whose hash the log still has at its sequence
    /// number. Unusable snapshots are skipped with a warning, never trusted.
    pub fn newest_at_or_before<P: Projection>(&self, ledger: &Ledger, seq: u64) -> Result<Option<Folded<P>>> {
        let candidates: Vec<u64> = self.list::<P>()?.into_iter().rev().filter(|s| *s <= seq).collect();
        if candidates.is_empty() {
            return Ok(None);
        }
        // The key every candidate must be signed by, read once.
        let current = current_key(ledger);
        for at in candidates {
            let path = self.folder::<P>().join(format!("{at:020}.snap"));
            match self.load::<P>(ledger, &current, &path, at) {
                Ok(folded) => return Ok(Some(folded)),
                Err(reason) => tracing::warn!(path = %path.display(), "snapshot not used: {reason}"),
            }
        }
        Ok(None)
    }

    fn load<P: Projection>(
        &self,
        ledger: &Ledger,
        current: &std::result::Result<KeyEntry, String>,
        path: &Path,
        at: u64,
    ) -> std::result::Result<Folded<P>, String> {
        let bytes = fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
        let split = bytes.iter().position(|b| *b == b'\n').ok_or("no header line")?;
        let header: Header = serde_json::from_slice(&bytes[..split]).map_err(|e| format!("bad header: {e}"))?;
        let state = &bytes[split + 1..];
        if header.magic == SNAPSHOT_MAGIC_V1 {
            return Err(format!(
                "it is in the unsigned format {SNAPSHOT_MAGIC_V1}, made before snapshots were signed"
            ));
        }
        if header.magic != SNAPSHOT_MAGIC || header.projection != P::NAME || header.version != P::VERSION {
            return Err(format!(
                "it is {} {} v{}, not {SNAPSHOT_MAGIC} {} v{}",
                header.magic,
                header.projection,
                header.version,
                P::NAME,
                P::VERSION
            ));
        }
        if header.seq != at {
            return Err(format!("it says seq {} but is filed as {at}", header.seq));
        }
        if header.ledger_id != hex::encode(ledger.ledger_id()) {
            return Err(format!("it belongs to ledger {}", header.ledger_id));
        }
        let state_digest = blake3::hash(state);
        if header.state_bytes != state.len() as u64 || header.state_digest != state_digest.to_hex().as_str() {
            return Err("state does not match its digest".into());
        }
        let event = ledger
            .get(at)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("the log has no event at seq {at}"))?;
        if event.hash.to_hex() != header.hash {
            return Err(format!(
                "the log's event at seq {at} has hash {}, the snapshot covers {}",
                event.hash, header.hash
            ));
        }
        let digest = snapshot_digest(
            &ledger.ledger_id(),
            P::NAME,
            P::VERSION,
            at,
            &event.hash,
            header.state_bytes,
            &state_digest,
        );
        check_snapshot_signature(current, &header, &digest)?;
        let state = P::decode(state).map_err(|e| format!("cannot decode state: {e}"))?;
        Ok(Folded {
            state,
            seq: Some(at),
            hash: event.hash,
            snapshot: Some(at),
        })
    }
}

/// The key the log names current (the last its genesis and rotations
/// introduced, checked as verification checks them): the key the writer
/// signs with now.
fn current_key(ledger: &Ledger) -> std::result::Result<KeyEntry, String> {
    let schedule = ledger
        .checked_key_schedule()
        .map_err(|e| e.to_string())?
        .map_err(|f| format!("the log's keys do not hold: {f}"))?;
    schedule
        .entries()
        .last()
        .cloned()
        .ok_or_else(|| "the log names no key".into())
}

/// That a snapshot is signed, over `digest`, by the log's current key. A
/// snapshot signed by an earlier key (made before a rotation) is not used,
/// since the rotation may have been made because that key was exposed.
fn check_snapshot_signature(
    current: &std::result::Result<KeyEntry, String>,
    header: &Header,
    digest: &Hash,
) -> std::result::Result<(), String> {
    let (Some(key), Some(signature)) = (&header.key, &header.signature) else {
        return Err("it is not signed".into());
    };
    let current = current.as_ref().map_err(Clone::clone)?;
    if *key != current.id.to_string() {
        return Err(format!(
            "it is signed by key {key}, not by {}, the log's current key (a snapshot made before a key rotation is not used)",
            current.id
        ));
    }
    let signature = parse_hex_array::<64>(signature)
        .map(|b| ed25519_dalek::Signature::from_bytes(&b))
        .map_err(|e| format!("bad signature: {e}"))?;
    current
        .key
        .verify_strict(&digest.0, &signature)
        .map_err(|_| format!("its signature does not verify under key {}", current.id))
}
