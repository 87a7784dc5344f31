//! No write path can create an event the verifier rejects. Every public way
//! of writing (`submit`, `append`, `create`, `rotate_key`), handed anything
//! its types can express, either refuses, with an error, the log byte for
//! byte as it was and the writer still writing, or writes a log that
//! verifies and that opens for writing again.
//!
//! The governance commands and the gateway write through `submit` and
//! `append` only, so what holds here holds for them.

mod common;

use std::collections::BTreeSet;
use std::ffi::OsString;

use common::*;
use ledger::{
    Actor, Correlation, Draft, EventKind, Head, KeyDir, KeyId, Ledger, MAX_EVENT_BYTES, Object, RequestId, SigningKey,
    Subject, Value,
};
use proptest::prelude::*;

/// `n` bytes of UTF-8: `c` repeated, padded with `x`.
fn sized(n: usize, c: char) -> String {
    let mut s = c.to_string().repeat(n / c.len_utf8());
    while s.len() < n {
        s.push('x');
    }
    s
}

/// Characters of 1 to 4 bytes, `\u{1}` among them (6 bytes in canonical
/// form, so 70,000 of them make 420 kB of envelope).
fn any_char() -> impl Strategy<Value = char> {
    prop::sample::select(vec!['x', 'é', '𝄞', '\u{1}'])
}

/// Names the format allows: 1 to 1,024 bytes of anything, control
/// characters and escapes included, exactly 1,024 among them.
fn good_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "\\PC{1,12}",
        2 => "[\\x00-\\x1f\"\\\\\u{7f}\u{2028}é/]{1,8}",
        2 => any::<String>().prop_filter("a name", |s| !s.is_empty() && s.len() <= 1024),
        1 => any_char().prop_map(|c| sized(1024, c)),
    ]
}

/// Names the format does not allow: empty, or over 1,024 bytes.
fn bad_name() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => Just(String::new()),
        2 => (prop::sample::select(vec![1025usize, 1027, 70_000]), any_char()).prop_map(|(n, c)| sized(n, c)),
    ]
}

/// Any string at all.
fn any_string() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => good_name(),
        1 => bad_name(),
        1 => any::<String>(),
    ]
}

fn lower_hex(digits: usize) -> impl Strategy<Value = String> {
    prop::string::string_regex(&format!("[0-9a-f]{{{digits}}}")).expect("regex")
}

/// What is not `digits` lowercase hex digits.
fn bad_hex(digits: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        prop::string::string_regex(&format!("[0-9a-fA-F]{{{digits}}}"))
            .expect("regex")
            .prop_filter("some capital", |s| s.bytes().any(|b| b.is_ascii_uppercase())),
        lower_hex(digits - 1),
        lower_hex(digits + 1),
        any_string().prop_filter("not hex", move |s| {
            s.len() != digits || !s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        }),
    ]
}

/// A list of names: a few, or a thousand-odd of 1,024 bytes, which take
/// the envelope to either side of its 1 MiB limit.
fn good_names() -> impl Strategy<Value = Vec<String>> {
    prop_oneof![
        8 => prop::collection::vec(good_name(), 0..3),
        1 => (1000usize..1040).prop_map(|n| vec![sized(1024, 'x'); n]),
    ]
}

fn good_actor() -> impl Strategy<Value = Actor> {
    (
        prop::option::of(good_name()),
        good_names(),
        prop::option::of(good_name()),
        prop::option::of(good_name()),
    )
        .prop_map(|(principal, teams, agent, session)| Actor {
            principal,
            teams,
            agent,
            session,
        })
}

fn good_subject() -> impl Strategy<Value = Subject> {
    (
        prop::option::of(good_name()),
        prop::option::of(good_name()),
        // A URI, of any length.
        prop::option::of(prop_oneof![good_name(), Just(sized(70_000, 'x'))]),
        prop::option::of(good_name()),
        good_names(),
    )
        .prop_map(|(server, tool, resource, prompt, env)| Subject {
            server,
            tool,
            resource,
            prompt,
            env,
        })
}

fn good_correlation() -> impl Strategy<Value = Correlation> {
    (
        prop::option::of(prop_oneof![
            any::<i64>().prop_map(RequestId::Int),
            any::<String>().prop_map(RequestId::Str),
        ]),
        prop::option::of(lower_hex(32)),
        prop::option::of(lower_hex(16)),
        prop::option::of(any::<u64>()),
        prop::option::of(lower_hex(32)),
    )
        .prop_map(|(request_id, trace_id, span_id, answers, call_id)| Correlation {
            request_id,
            trace_id,
            span_id,
            answers,
            call_id,
        })
}

/// Body values; with `wide`, integers of any size, most beyond the 64 bits
/// signed data allows.
fn body_value(wide: bool) -> impl Strategy<Value = Value> {
    let ints = if wide {
        any::<i128>().prop_map(Value::Int).boxed()
    } else {
        any::<i64>().prop_map(Value::from).boxed()
    };
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        ints,
        any::<u64>().prop_map(Value::from),
        any_string().prop_map(Value::String),
        Just(Value::String(String::new())),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(any_string(), inner, 0..4).prop_map(Value::Object),
        ]
    })
}

/// `0` inside `depth` arrays or objects.
fn nested(depth: usize, objects: bool) -> Value {
    (0..depth).fold(Value::Int(0), |inner, _| {
        if objects {
            Value::Object(Object::from([("k".to_owned(), inner)]))
        } else {
            Value::Array(vec![inner])
        }
    })
}

/// Bodies the format allows, but for their size: values of any sort, or
/// one string that takes the envelope to either side of 1 MiB.
fn good_body() -> impl Strategy<Value = Object> {
    prop_oneof![
        8 => prop::collection::btree_map(any_string(), body_value(false), 0..4),
        1 => prop::sample::select(vec![MAX_EVENT_BYTES - 1024, MAX_EVENT_BYTES - 300, MAX_EVENT_BYTES])
            .prop_map(|n| Object::from([("big".to_owned(), Value::String(sized(n, 'x')))])),
    ]
}

/// The kinds a caller may append.
fn appendable_kind() -> impl Strategy<Value = EventKind> {
    prop::sample::select(
        EventKind::KNOWN
            .iter()
            .filter(|k| !k.is_reserved())
            .cloned()
            .collect::<Vec<_>>(),
    )
}

fn good_draft() -> impl Strategy<Value = Draft> {
    (
        appendable_kind(),
        good_actor(),
        good_subject(),
        good_correlation(),
        good_body(),
    )
        .prop_map(|(kind, actor, subject, correlation, body)| Draft {
            kind,
            actor,
            subject,
            correlation,
            body,
        })
}

/// One thing wrong with a draft the format would otherwise allow.
#[derive(Clone, Debug)]
enum Flaw {
    /// `actor.principal`, `actor.agent`, `actor.session`, an element of
    /// `actor.teams`; `subject.server`, `.tool`, `.prompt`, an element of
    /// `subject.env`: a name that is not one.
    Name(usize, String),
    /// An empty `subject.resource`.
    Resource,
    /// `correlation.trace_id` (32) or `span_id` (16) not lowercase hex.
    TraceId(String),
    SpanId(String),
    /// A kind only the ledger writes, one this version does not know, or
    /// the name of a known one in [`EventKind::Other`].
    Kind(EventKind),
    /// A body integer beyond 64 bits.
    Int(i128),
    /// A body member `0` inside `depth` arrays or objects: that `0` is at
    /// level `depth + 2`, so 62 is the deepest allowed.
    Deep(usize, bool),
}

/// Flaws of `actor`.
fn actor_flaw() -> impl Strategy<Value = Flaw> {
    (0usize..4, bad_name()).prop_map(|(i, s)| Flaw::Name(i, s))
}

fn any_flaw() -> impl Strategy<Value = Flaw> {
    let huge = vec![i128::from(i64::MIN) - 1, i128::from(u64::MAX) + 1, i128::MIN, i128::MAX];
    prop_oneof![
        8 => (0usize..8, bad_name()).prop_map(|(i, s)| Flaw::Name(i, s)),
        1 => Just(Flaw::Resource),
        1 => bad_hex(32).prop_map(Flaw::TraceId),
        1 => bad_hex(16).prop_map(Flaw::SpanId),
        2 => prop_oneof![
            prop::sample::select(vec![EventKind::LedgerGenesis, EventKind::KeyRotated]),
            any_string().prop_map(EventKind::Other),
            prop::sample::select(EventKind::KNOWN.to_vec()).prop_map(|k| EventKind::Other(k.as_str().to_owned())),
        ]
        .prop_map(Flaw::Kind),
        1 => prop_oneof![prop::sample::select(huge), any::<i128>()].prop_map(Flaw::Int),
        2 => (60usize..=66, any::<bool>()).prop_map(|(depth, objects)| Flaw::Deep(depth, objects)),
    ]
}

impl Flaw {
    fn apply(self, d: &mut Draft) {
        match self {
            Flaw::Name(0, s) => d.actor.principal = Some(s),
            Flaw::Name(1, s) => d.actor.agent = Some(s),
            Flaw::Name(2, s) => d.actor.session = Some(s),
            Flaw::Name(3, s) => d.actor.teams.push(s),
            Flaw::Name(4, s) => d.subject.server = Some(s),
            Flaw::Name(5, s) => d.subject.tool = Some(s),
            Flaw::Name(6, s) => d.subject.prompt = Some(s),
            Flaw::Name(_, s) => d.subject.env.insert(0, s),
            Flaw::Resource => d.subject.resource = Some(String::new()),
            Flaw::TraceId(s) => d.correlation.trace_id = Some(s),
            Flaw::SpanId(s) => d.correlation.span_id = Some(s),
            Flaw::Kind(k) => d.kind = k,
            Flaw::Int(n) => {
                d.body.insert("n".into(), Value::Array(vec![Value::Int(n)]));
            }
            Flaw::Deep(depth, objects) => {
                d.body.insert("deep".into(), nested(depth, objects));
            }
        }
    }
}

/// Drafts with every field arbitrary.
fn wild_draft() -> impl Strategy<Value = Draft> {
    let kind = prop_oneof![
        4 => prop::sample::select(EventKind::KNOWN.to_vec()),
        1 => any_string().prop_map(EventKind::Other),
    ];
    let opt = || prop::option::of(any_string());
    let names = || prop::collection::vec(any_string(), 0..3);
    let hex = |digits| prop::option::of(prop_oneof![lower_hex(digits), bad_hex(digits)]);
    (
        kind,
        (opt(), names(), opt(), opt()),
        (opt(), opt(), opt(), opt(), names()),
        (
            hex(32),
            hex(16),
            prop::option::of(any::<String>()),
            prop::option::of(any::<u64>()),
        ),
        prop::collection::btree_map(any_string(), body_value(true), 0..4),
    )
        .prop_map(|(kind, a, s, c, body)| Draft {
            kind,
            actor: Actor {
                principal: a.0,
                teams: a.1,
                agent: a.2,
                session: a.3,
            },
            subject: Subject {
                server: s.0,
                tool: s.1,
                resource: s.2,
                prompt: s.3,
                env: s.4,
            },
            correlation: Correlation {
                trace_id: c.0,
                span_id: c.1,
                request_id: c.2.map(RequestId::Str),
                answers: c.3,
                call_id: None,
            },
            body,
        })
}

/// Any draft: one the format allows (but perhaps for its size), one with a
/// flaw, or one with every field arbitrary.
fn any_draft() -> impl Strategy<Value = Draft> {
    prop_oneof![
        3 => good_draft(),
        3 => (good_draft(), any_flaw()).prop_map(|(mut d, flaw)| {
            flaw.apply(&mut d);
            d
        }),
        1 => wild_draft(),
    ]
}

/// Any actor: a good one, one with a flaw, or one of arbitrary strings.
fn any_actor() -> impl Strategy<Value = Actor> {
    prop_oneof![
        2 => good_actor(),
        2 => (good_actor(), actor_flaw()).prop_map(|(actor, flaw)| {
            let mut d = Draft::new(EventKind::GrantIssued);
            d.actor = actor;
            flaw.apply(&mut d);
            d.actor
        }),
        1 => (
            prop::option::of(any_string()),
            prop::collection::vec(any_string(), 0..3),
            prop::option::of(any_string()),
            prop::option::of(any_string()),
        )
            .prop_map(|(principal, teams, agent, session)| Actor {
                principal,
                teams,
                agent,
                session,
            }),
    ]
}

/// A rotation's reason (any string, even empty): none, any, or one too
/// long for an envelope.
fn any_reason() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        4 => prop::option::of(prop_oneof![any_string(), Just(String::new())]),
        1 => Just(Some(sized(MAX_EVENT_BYTES, 'x'))),
    ]
}

// A test's operation list: a few hundred at most, so the size of the
// largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
enum Op {
    /// One request through `submit`.
    Submit(Vec<Draft>),
    /// One draft through the async `append`.
    Append(Draft),
    /// A rotation to the key with this seed (the current one, one already
    /// introduced, or a new one); with `forget`, its key file is removed
    /// first, unless it is the current key's, as if it had been lost.
    Rotate {
        seed: [u8; 32],
        actor: Actor,
        reason: Option<String>,
        forget: bool,
    },
}

fn any_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => prop::collection::vec(any_draft(), 1..4).prop_map(Op::Submit),
        2 => any_draft().prop_map(Op::Append),
        2 => (
            prop::sample::select(vec![KEY_A, KEY_B, KEY_C, [0xd4; 32]]),
            any_actor(),
            any_reason(),
            any::<bool>(),
        )
            .prop_map(|(seed, actor, reason, forget)| Op::Rotate {
                seed,
                actor,
                reason,
                forget,
            }),
    ]
}

/// Everything a refused write must leave as it was: every stored record,
/// the head, the current key, and the key files.
#[derive(PartialEq)]
struct Trace {
    records: Vec<(u64, Box<[u8]>)>,
    last: Option<u64>,
    head: Head,
    key: KeyId,
    key_files: BTreeSet<OsString>,
}

impl std::fmt::Debug for Trace {
    /// The records by their sequence numbers and sizes: some are 1 MiB.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let records: Vec<_> = self.records.iter().map(|(seq, r)| (seq, r.len())).collect();
        f.debug_struct("Trace")
            .field("records", &records)
            .field("last", &self.last)
            .field("head", &self.head)
            .field("key", &self.key)
            .field("key_files", &self.key_files)
            .finish()
    }
}

fn trace(ledger: &Ledger, keys: &KeyDir) -> Trace {
    Trace {
        records: ledger
            .raw_records(0)
            .expect("records")
            .collect::<Result<_, _>>()
            .expect("read records"),
        last: ledger.last_stored_seq().expect("last stored seq"),
        head: ledger.head(),
        key: ledger.current_key_id().expect("current key"),
        key_files: std::fs::read_dir(keys.path())
            .map(|dir| dir.map(|e| e.expect("key dir entry").file_name()).collect())
            .unwrap_or_default(),
    }
}

/// Runs one write; `Err` is its refusal.
fn write(ledger: &Ledger, rt: &tokio::runtime::Runtime, op: Op) -> Result<(), String> {
    let shown = |e: ledger::Error| e.to_string();
    match op {
        Op::Submit(drafts) => ledger.submit(drafts).map_err(shown)?.wait().map(drop).map_err(shown),
        Op::Append(draft) => rt.block_on(ledger.append(draft)).map(drop).map_err(shown),
        Op::Rotate {
            seed, actor, reason, ..
        } => ledger
            .rotate_key(SigningKey::from_seed(seed), actor, reason)
            .map(drop)
            .map_err(shown),
    }
}

/// Removes the key file a rotation with `forget` names, unless it is the
/// current key's.
fn forget(ledger: &Ledger, keys: &KeyDir, op: &Op) {
    if let Op::Rotate { seed, forget: true, .. } = op {
        let id = SigningKey::from_seed(*seed).id();
        let file = keys.file_for(id);
        if id != ledger.current_key_id().expect("current key") && file.exists() {
            std::fs::remove_file(&file).expect("forget a key file");
        }
    }
}

proptest! {
    #![proptest_config(proptest_config(24))]

    #[test]
    fn any_append_or_rotation_verifies_or_leaves_the_log_as_it_was(ops in prop::collection::vec(any_op(), 1..6)) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .expect("runtime");
        let Fresh { dir: _dir, path, keys, ledger } = fresh();
        for (i, op) in ops.into_iter().enumerate() {
            forget(&ledger, &keys, &op);
            let before = trace(&ledger, &keys);
            if let Err(refused) = write(&ledger, &rt, op) {
                // Refused: an error that says what, and nothing changed.
                prop_assert!(!refused.is_empty());
                let after = trace(&ledger, &keys);
                prop_assert_eq!(&after, &before, "op {} was refused ({}) but changed the store", i, refused);
                // And the writer was not poisoned by it.
                ledger.append_blocking(draft(i)).map_err(|e| {
                    TestCaseError::fail(format!("op {i} was refused ({refused}); the next append failed: {e}"))
                })?;
            }
        }
        drop(ledger);
        let report = verify(&path, None);
        prop_assert!(report.ok(), "{:?}", report.failure);
        // The log opens for writing again, and takes more.
        let ledger = Ledger::open(&path, &keys).expect("reopen for writing");
        ledger.append_blocking(draft(99)).expect("append after reopening");
        drop(ledger);
        let report = verify(&path, None);
        prop_assert!(report.ok(), "{:?}", report.failure);
    }

    #[test]
    fn any_create_verifies_or_leaves_nothing(actor in any_actor()) {
        let dir = tempfile::tempdir().expect("tempdir");
        let site = dir.path().join("data");
        let path = site.join("ledger");
        let keys = KeyDir::new(site.join("keys"));
        match Ledger::create(&path, &keys, SigningKey::from_seed(KEY_A), actor) {
            Ok(ledger) => {
                drop(ledger);
                let report = verify(&path, None);
                prop_assert!(report.ok(), "{:?}", report.failure);
                let ledger = Ledger::open(&path, &keys).expect("reopen for writing");
                ledger.append_blocking(draft(1)).expect("append after create");
            }
            Err(refused) => {
                // Refused: no ledger, no half-made one, no key file; not
                // even the directory they would be in.
                prop_assert!(!refused.to_string().is_empty());
                let left: Vec<_> = std::fs::read_dir(dir.path())
                    .expect("list")
                    .map(|e| e.expect("entry").path())
                    .collect();
                prop_assert!(left.is_empty(), "a refused create ({}) left {:?}", refused, left);
            }
        }
    }
}

/// `f` refuses, with an error naming `want`, and leaves the log, the head,
/// the current key and the key files as they were; the ledger then takes
/// an append, and the log verifies.
fn refused_without_a_trace(what: &str, want: &str, f: impl FnOnce(&Ledger) -> Result<(), String>) {
    refused_after(what, want, |_, _| {}, f);
}

/// [`refused_without_a_trace`], on a ledger that `setup` wrote to first.
fn refused_after(
    what: &str,
    want: &str,
    setup: impl FnOnce(&Ledger, &KeyDir),
    f: impl FnOnce(&Ledger) -> Result<(), String>,
) {
    let Fresh {
        dir: _dir,
        path,
        keys,
        ledger,
    } = fresh();
    ledger.append_blocking(draft(0)).expect("append");
    setup(&ledger, &keys);
    let before = trace(&ledger, &keys);
    let refused = f(&ledger)
        .err()
        .unwrap_or_else(|| panic!("{what}: written, not refused"));
    assert!(refused.contains(want), "{what}: `{refused}` does not say `{want}`");
    assert_eq!(trace(&ledger, &keys), before, "{what}: refused, but the store changed");
    ledger
        .append_blocking(draft(1))
        .expect("the writer goes on after a refusal");
    drop(ledger);
    let report = verify(&path, None);
    assert!(report.ok(), "{what}: {:?}", report.failure);
    Ledger::open(&path, &keys).expect("the ledger opens for writing");
}

/// Each rule the ledger checks before it signs, one example apiece. All but
/// the kind and an append's size were holes: signed, stored, and then
/// called malformed by the verifier and by every later open for writing.
#[test]
fn each_rule_is_checked_before_signing() {
    let submit = |d: Draft| {
        move |l: &Ledger| {
            l.submit(vec![d])
                .map_err(|e| e.to_string())?
                .wait()
                .map(drop)
                .map_err(|e| e.to_string())
        }
    };
    let with = |f: fn(&mut Draft)| {
        let mut d = draft(7);
        f(&mut d);
        d
    };
    refused_without_a_trace(
        "an empty principal",
        "actor.principal: must not be empty",
        submit(with(|d| d.actor.principal = Some(String::new()))),
    );
    refused_without_a_trace(
        "a 1,025-byte team",
        "actor.teams[0]: longer than 1024 bytes",
        submit(with(|d| d.actor.teams = vec!["t".repeat(1025)])),
    );
    refused_without_a_trace(
        "an empty resource",
        "subject.resource: must not be empty",
        submit(with(|d| d.subject.resource = Some(String::new()))),
    );
    refused_without_a_trace(
        "a trace id in capitals",
        "correlation.trace_id: expected 32 lowercase hex digits",
        submit(with(|d| {
            d.correlation.trace_id = Some("4BF92F3577B34DA6A3CE929D0E0E4736".into())
        })),
    );
    refused_without_a_trace(
        "an integer beyond 64 bits",
        "body.n: the integer 18446744073709551616 is outside",
        submit(with(|d| {
            d.body.insert("n".into(), Value::Int(i128::from(u64::MAX) + 1));
        })),
    );
    refused_without_a_trace(
        "a value 65 levels deep",
        "nested deeper than 64 levels",
        submit(with(|d| {
            d.body.insert("deep".into(), nested(63, false));
        })),
    );
    refused_without_a_trace(
        "an unknown kind named like a known one",
        "kind `grant.issued` cannot be appended",
        submit(with(|d| d.kind = EventKind::Other("grant.issued".into()))),
    );
    refused_without_a_trace(
        "an envelope over 1 MiB",
        "more than the limit of 1048576",
        submit(with(|d| {
            d.body.insert("big".into(), Value::String("x".repeat(MAX_EVENT_BYTES)));
        })),
    );
    let rotate = |seed: [u8; 32], actor: Actor, reason: Option<String>| {
        move |l: &Ledger| {
            l.rotate_key(SigningKey::from_seed(seed), actor, reason)
                .map(drop)
                .map_err(|e| e.to_string())
        }
    };
    refused_without_a_trace(
        "a rotation by an empty principal",
        "actor.principal: must not be empty",
        rotate(KEY_B, actor(""), None),
    );
    refused_without_a_trace(
        "a rotation by a 1,025-byte principal",
        "actor.principal: longer than 1024 bytes",
        rotate(KEY_B, actor(&"p".repeat(1025)), None),
    );
    refused_without_a_trace(
        "a rotation with a 1 MiB reason",
        "more than the limit of 1048576",
        rotate(KEY_B, actor("ops"), Some("r".repeat(MAX_EVENT_BYTES))),
    );
    // Back to a key the log introduced before, whose file was lost (with
    // the file there, storing the key refuses it anyway).
    refused_after(
        "a rotation back to an earlier key",
        "rotation re-introduces key",
        |l, keys| {
            l.rotate_key(SigningKey::from_seed(KEY_B), actor("ops"), None)
                .expect("rotate to B");
            std::fs::remove_file(keys.file_for(SigningKey::from_seed(KEY_A).id())).expect("lose key A's file");
        },
        rotate(KEY_A, actor("ops"), None),
    );
}

/// A genesis the verifier would refuse is refused before anything is made.
#[test]
fn a_genesis_is_checked_before_anything_is_made() {
    let cases = [
        (actor(""), "actor.principal: must not be empty"),
        (actor(&"p".repeat(1025)), "actor.principal: longer than 1024 bytes"),
        (
            Actor {
                teams: vec!["t".repeat(1024); 1100],
                ..Actor::default()
            },
            "more than the limit of 1048576",
        ),
    ];
    for (actor, want) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = KeyDir::new(dir.path().join("data/keys"));
        let refused = Ledger::create(
            &dir.path().join("data/ledger"),
            &keys,
            SigningKey::from_seed(KEY_A),
            actor,
        )
        .err()
        .expect("refused");
        assert!(refused.to_string().contains(want), "`{refused}` does not say `{want}`");
        assert_eq!(
            std::fs::read_dir(dir.path()).expect("list").count(),
            0,
            "{refused}: something was made"
        );
    }
}
