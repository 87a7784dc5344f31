//! Sealgate's ledger: a signed, hash-chained, crash-safe event log.
//!
//! The ledger stores, proves and replays events. It speaks no protocol: no
//! MCP, no HTTP, no OTLP. See `docs/ARCHITECTURE.md` for where it sits and
//! `docs/FORMAT.md` for the exact bytes it writes.
#![deny(unsafe_code, clippy::unwrap_used)]

mod acked;
mod canonical;
mod chain;
pub mod checkpoint;
mod error;
mod event;
pub mod evidence;
mod failure;
mod keys;
mod ledger;
mod locate;
pub mod merkle;
mod projection;
mod reader;
mod schedule;
mod signer;
mod store;
mod timestamp;
mod tree;
mod verify;
mod views;
pub mod witness;
mod writer;

pub use canonical::{Object, Value};
pub use chain::{EVENT_DOMAIN, Genesis, RECORD_VERSION, RawRecord, Rotation, SealedEvent, event_hash};
pub use checkpoint::{
    Checkpoint, ConsistencyProof, HistoryKey, Included, InclusionProof, KeyHistory, Proof, RejectKind, Rejection,
};
pub use error::{Error, Result};
pub use event::{
    Actor, Correlation, Draft, ENVELOPE_VERSION, Event, EventKind, Hash, KeyId, MAX_EVENT_BYTES, MAX_NAME_LEN,
    RequestId, Subject,
};
pub use evidence::{Complete, EvidencePlan, Selection, Verified, verify_evidence};
pub use failure::{Failure, FailureKind};
pub use keys::{KeyDir, SigningKey, key_id, parse_public_key, verify_rotation_proof};
pub use ledger::{Ledger, Pending};
pub use locate::Located;
pub use projection::{Folded, Projection, Snapshots, fold_to};
pub use schedule::{KeyEntry, KeySchedule};
pub use store::{CommitStats, Head, StoreOptions};
pub use timestamp::Timestamp;
pub use verify::{Anchor, Report, VerifyOptions, verify_records};
pub use witness::{Cosigner, Refusal, WitnessLog};
pub use writer::Receipt;
