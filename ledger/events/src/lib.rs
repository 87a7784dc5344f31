//! The body of every event kind that the gateway and governance write: one
//! Rust type per kind, used by the code that writes the event and by every
//! fold and reader of it. `docs/EVENTS.md` is the same catalogue in words,
//! with the OpenTelemetry and OCSF names each field maps to.
//!
//! **Architecture invariant:** this crate is data. It knows the kinds'
//! shapes and nothing of MCP traffic, storage or I/O; the ledger does not
//! depend on it.
//!
//! Evolving a body: a later version may add optional fields (readers ignore
//! fields they do not know, so old readers keep folding new logs); a field
//! removed, renamed, retyped, given another meaning, or a new value in a
//! closed set (the enums here) is a new kind or a new body version. The
//! golden files (`tests/data/events/`) hold an event of every kind as this
//! version writes it and a log written by an earlier version; every later
//! version must still decode and fold both.
#![deny(unsafe_code, clippy::unwrap_used)]

mod alerts;
mod checkpoints;
mod codec;
mod gateway;
mod governance;

pub use alerts::*;
pub use checkpoints::*;
pub use codec::{from_ledger_value, to_ledger_value};
pub use gateway::*;
pub use governance::*;

use ledger::{Event, EventKind, Object};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A typed event body: the kinds it is the body of.
pub trait Body: Serialize + DeserializeOwned {
    /// Never empty; the first is the kind a new event of this body gets
    /// unless its writer says otherwise.
    const KINDS: &'static [EventKind];

    fn kind() -> EventKind {
        Self::KINDS[0].clone()
    }
}

/// A body that could not be built or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The event's body does not have its kind's shape.
    #[error("seq {seq} ({kind}): body: {message}")]
    Decode { seq: u64, kind: String, message: String },
    /// The event is not of a kind this body type describes.
    #[error("seq {seq}: a {found} event is not a {wanted}")]
    WrongKind { seq: u64, found: String, wanted: String },
    /// A body could not be turned into signed data.
    #[error("{kind} body: {message}")]
    Encode { kind: String, message: String },
}

/// The ledger body of `body`.
pub fn encode<B: Body>(body: &B) -> Result<Object, Error> {
    let kind = || B::kind().to_string();
    let json = serde_json::to_value(body).map_err(|e| Error::Encode {
        kind: kind(),
        message: e.to_string(),
    })?;
    match to_ledger_value(&json) {
        ledger::Value::Object(o) => Ok(o),
        other => Err(Error::Encode {
            kind: kind(),
            message: format!("expected an object, found {}", other.type_name()),
        }),
    }
}

/// `event`'s body as `B`; an error if the event is of another kind or its
/// body lacks a field `B` requires or holds one of another type. Fields
/// `B` does not know are ignored (written by a later version).
pub fn decode<B: Body>(event: &Event) -> Result<B, Error> {
    if !B::KINDS.contains(&event.kind) {
        return Err(Error::WrongKind {
            seq: event.seq,
            found: event.kind.to_string(),
            wanted: B::KINDS
                .iter()
                .map(EventKind::to_string)
                .collect::<Vec<_>>()
                .join(" or "),
        });
    }
    decode_body(&event.body).map_err(|message| Error::Decode {
        seq: event.seq,
        kind: event.kind.to_string(),
        message,
    })
}

/// A body as `B`, without the kind check (for bodies not yet in an event).
pub fn decode_body<B: DeserializeOwned>(body: &Object) -> Result<B, String> {
    let json = serde_json::Value::Object(body.iter().map(|(k, v)| (k.clone(), v.to_json())).collect());
    serde_path_to_error::deserialize(json).map_err(|e| match e.path().to_string().as_str() {
        "." => e.inner().to_string(),
        path => format!("{path}: {}", e.inner()),
    })
}

/// Whether `body`, read as `B` and written back, is the same body: true
/// when `B` names every field the body has, with the same values. The
/// golden tests hold every kind this version writes to it, so a field
/// written but not described in the type (or the reverse) fails them.
pub fn round_trips<B: Body>(body: &Object) -> Result<(), String> {
    let typed: B = decode_body(body)?;
    let again = encode(&typed).map_err(|e| e.to_string())?;
    if &again == body {
        Ok(())
    } else {
        Err(format!(
            "written back as {} but was {}",
            String::from_utf8_lossy(&ledger::Value::Object(again).to_canonical()),
            String::from_utf8_lossy(&ledger::Value::Object(body.clone()).to_canonical())
        ))
    }
}

/// Every body type, as the kinds each describes.
pub const ALL_KINDS: &[&[EventKind]] = &[
    Requested::KINDS,
    Decision::KINDS,
    Executed::KINDS,
    OutputFound::KINDS,
    CallRefused::KINDS,
    SessionOpened::KINDS,
    SessionClosed::KINDS,
    ListingObserved::KINDS,
    MessageRefused::KINDS,
    AccessRefused::KINDS,
    ServerRegistered::KINDS,
    ServerStep::KINDS,
    ToolsPinned::KINDS,
    ToolsDrifted::KINDS,
    GrantIssued::KINDS,
    GrantRevoked::KINDS,
    SuspensionIssued::KINDS,
    SuspensionLifted::KINDS,
    PolicyLoaded::KINDS,
    ApprovalRequested::KINDS,
    ApprovalDecided::KINDS,
    AlertRaised::KINDS,
    NotificationOutcome::KINDS,
    CheckpointIssued::KINDS,
    CheckpointWitnessed::KINDS,
];

/// How closely [`check_event`] holds a body to its type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// It decodes (a log written by any version).
    Decodes,
    /// It decodes and, written back, is the same body (what this version
    /// writes: no field the type does not describe).
    RoundTrips,
}

/// Checks `event`'s body against its kind's type; `Ok(false)` for kinds
/// with no body type here (the ledger's own and operators' `x.*` kinds).
pub fn check_event(event: &Event, check: Check) -> Result<bool, String> {
    fn one<B: Body>(body: &Object, check: Check) -> Result<bool, String> {
        match check {
            Check::Decodes => decode_body::<B>(body).map(|_| true),
            Check::RoundTrips => round_trips::<B>(body).map(|()| true),
        }
    }
    macro_rules! by_kind {
        ($($ty:ty),+ $(,)?) => {
            $(
                if <$ty as Body>::KINDS.contains(&event.kind) {
                    return one::<$ty>(&event.body, check);
                }
            )+
        };
    }
    by_kind!(
        Requested,
        Decision,
        Executed,
        OutputFound,
        CallRefused,
        SessionOpened,
        SessionClosed,
        ListingObserved,
        MessageRefused,
        AccessRefused,
        ServerRegistered,
        ServerStep,
        ToolsPinned,
        ToolsDrifted,
        GrantIssued,
        GrantRevoked,
        SuspensionIssued,
        SuspensionLifted,
        PolicyLoaded,
        ApprovalRequested,
        ApprovalDecided,
        AlertRaised,
        NotificationOutcome,
        CheckpointIssued,
        CheckpointWitnessed,
    );
    Ok(false)
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind the ledger knows has exactly one body type here, except
    /// the ledger's own (genesis, rotation), whose bodies the ledger reads.
    #[test]
    fn every_gateway_and_governance_kind_has_one_body_type() {
        for kind in EventKind::KNOWN {
            let types = ALL_KINDS.iter().filter(|kinds| kinds.contains(kind)).count();
            let expected = usize::from(!kind.is_reserved());
            assert_eq!(types, expected, "{kind}: {types} body types");
        }
    }

    #[test]
    fn encode_then_decode_keeps_a_body() {
        let body = GrantIssued {
            grant_id: "g-1".into(),
            principal: None,
            team: Some("sre".into()),
            tool: "read_*".into(),
            env: Some("prod".into()),
            expires_at: None,
            reason: Some("change 42".into()),
        };
        let object = encode(&body).expect("encode");
        assert_eq!(object.get("team"), Some(&ledger::Value::String("sre".into())));
        assert!(!object.contains_key("principal"), "absent is left out, not null");
        assert_eq!(decode_body::<GrantIssued>(&object).expect("decode"), body);
        round_trips::<GrantIssued>(&object).expect("round trip");
    }

    /// A field this version does not describe is ignored when reading (a
    /// later version added it) but fails the round trip the golden tests
    /// hold this version's own events to.
    #[test]
    fn unknown_fields_are_read_past_but_fail_the_round_trip() {
        let mut object = encode(&GrantRevoked {
            grant_id: "g-1".into(),
            reason: None,
        })
        .expect("encode");
        object.insert("added_later".into(), ledger::Value::Bool(true));
        assert!(decode_body::<GrantRevoked>(&object).is_ok());
        let err = round_trips::<GrantRevoked>(&object).expect_err("round trip");
        assert!(err.contains("added_later"), "{err}");
    }

    #[test]
    fn a_mistyped_field_is_an_error_naming_it() {
        let mut object = encode(&PolicyLoaded {
            text: "version: v1\nrules: []\n".into(),
            hash: "blake3:00".into(),
            origin: "api".into(),
            rules: 0,
        })
        .expect("encode");
        object.insert("rules".into(), ledger::Value::String("many".into()));
        let err = decode_body::<PolicyLoaded>(&object).expect_err("mistyped");
        assert!(err.starts_with("rules: invalid type"), "{err}");
    }
}
