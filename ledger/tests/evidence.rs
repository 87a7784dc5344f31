//! Evidence bundles (`docs/FORMAT.md` §16) from a real RocksDB ledger with
//! a key rotation: each selection is written and verifies with only the
//! keys a verifier trusts; every byte changed fails, and each named attack
//! fails for its own reason.

mod common;

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

use common::*;
use ledger::checkpoint::Checkpoint;
use ledger::witness::{Cosigner, cosign, cosigner_vkey};
use ledger::{
    Draft, EvidencePlan, KeyHistory, Ledger, RejectKind, RequestId, Selection, SigningKey, Timestamp, Verified,
    verify_evidence,
};

const SECOND: u64 = 1_000_000_000;
const EVENTS: u64 = 30;
const ROTATE_AFTER: u64 = 15;

/// The story's time 0: a whole second a month ahead (the writer never
/// dates an event before the genesis, which is now); events are one second
/// apart from there.
fn t0() -> u64 {
    static T0: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *T0.get_or_init(|| (Timestamp::now().as_nanos() / SECOND + 30 * 86_400) * SECOND)
}

/// The time the writer is handed; fixtures are built one at a time.
static CLOCK: AtomicU64 = AtomicU64::new(0);
static BUILDING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn clock() -> Timestamp {
    Timestamp::from_nanos(CLOCK.load(SeqCst))
}

fn call_id(i: u64) -> String {
    format!("{:032x}", 0xca11_0000 + i / 3)
}

/// Event `i` (at `seq` = `i + 1`, or `i + 2` after the rotation): three
/// events per call, four sessions, request ids 0..5, three principals, two
/// servers.
fn story(i: u64) -> Draft {
    Draft::from_json(&format!(
        r#"{{"kind":"tool_call.requested","actor":{{"principal":"p{}","session":"s{}"}},"subject":{{"server":"srv{}","tool":"t"}},"correlation":{{"request_id":{},"call_id":"{}"}},"body":{{"i":{i}}}}}"#,
        i % 3,
        i % 4,
        i % 2,
        i % 5,
        call_id(i)
    ))
    .expect("draft")
}

struct Fixture {
    _dir: tempfile::TempDir,
    ledger: Ledger,
    /// The key that signs the head's tree (after the rotation).
    key: SigningKey,
    keys: KeyHistory,
}

/// A ledger of genesis, 15 events, a rotation (A → B), 15 events; event
/// `n` of the story at `T0 + n` seconds, the rotation between.
fn fixture() -> Fixture {
    let _one_at_a_time = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    let Fresh {
        dir,
        path,
        keys,
        ledger,
    } = fresh();
    drop(ledger);
    let ledger = Ledger::open_with_clock(&path, &keys, &ledger::StoreOptions::default(), clock).expect("reopen");
    for i in 0..EVENTS {
        if i == ROTATE_AFTER {
            ledger
                .rotate_key(SigningKey::from_seed(KEY_B), actor("ops"), None)
                .expect("rotate");
        }
        CLOCK.store(t0() + (i + 1) * SECOND, SeqCst);
        ledger.append_blocking(story(i)).expect("append");
    }
    let keys = ledger.key_history().expect("key history");
    Fixture {
        _dir: dir,
        ledger,
        key: SigningKey::from_seed(KEY_B),
        keys,
    }
}

impl Fixture {
    fn size(&self) -> u64 {
        self.ledger.tree_size()
    }

    fn bundle(&self, selection: &Selection) -> String {
        let plan = self.ledger.plan_evidence(selection, self.size()).expect("plan");
        self.write(
            &plan,
            &self.ledger.checkpoint(plan.size, &self.key).expect("checkpoint"),
        )
    }

    fn write(&self, plan: &EvidencePlan, note: &str) -> String {
        self.write_sealed(plan, note, &self.key)
    }

    fn write_sealed(&self, plan: &EvidencePlan, note: &str, seal: &SigningKey) -> String {
        let mut out = Vec::new();
        self.ledger
            .write_evidence(plan, note, seal, &["a test bundle".into()], &mut out)
            .expect("write");
        String::from_utf8(out).expect("utf-8")
    }

    /// The seqs of the events `selection` matches, by a scan of the log.
    fn matching(&self, selection: &Selection) -> Vec<u64> {
        self.ledger
            .events(0, self.size() - 1)
            .expect("events")
            .map(|e| e.expect("event"))
            .filter(|e| selection.matches(&e.event))
            .map(|e| e.event.seq)
            .collect()
    }
}

fn verify(text: &str, keys: &KeyHistory) -> Result<Verified, ledger::Rejection> {
    verify_evidence(text, keys, &[], 0)
}

fn refused(text: &str, keys: &KeyHistory) -> RejectKind {
    match verify(text, keys) {
        Ok(v) => panic!("a tampered bundle verified: {:?}", v.selection),
        Err(r) => r.kind,
    }
}

fn seqs(v: &Verified) -> Vec<u64> {
    v.events.iter().map(|e| e.event.seq).collect()
}

fn at(n: u64) -> Timestamp {
    Timestamp::from_nanos(t0() + n * SECOND)
}

#[test]
fn each_selection_verifies_and_holds_exactly_the_events_it_selects() {
    let f = fixture();
    let selections = [
        Selection::Call(call_id(4)),
        Selection::Session("s2".into()),
        Selection::Request {
            id: RequestId::Int(3),
            session: Some("s1".into()),
        },
        Selection::Request {
            id: RequestId::Int(3),
            session: None,
        },
        Selection::Range {
            from: at(5),
            to: at(20),
            server: Some("srv1".into()),
            principal: None,
        },
        Selection::Range {
            from: at(5),
            to: at(20),
            server: Some("srv0".into()),
            principal: Some("p1".into()),
        },
    ];
    for selection in &selections {
        let text = f.bundle(selection);
        let v = verify(&text, &f.keys).unwrap_or_else(|r| panic!("{selection:?}: {r}"));
        let want = f.matching(selection);
        assert!(!want.is_empty(), "{selection:?} selects something");
        assert_eq!(seqs(&v), want, "{selection:?}");
        assert_eq!(v.key_events, 2, "{selection:?}: the genesis and the rotation");
        assert_eq!(v.checkpoint.size, f.size());
        assert_eq!(v.complete, None, "{selection:?} is not a complete range");
    }
    // A string request id is not the integer.
    let none = f.ledger.plan_evidence(
        &Selection::Request {
            id: RequestId::Str("3".into()),
            session: None,
        },
        f.size(),
    );
    assert!(none.expect_err("nothing selected").to_string().contains("no event"));
}

#[test]
fn a_time_range_is_proved_complete_and_an_empty_window_proves_that_nothing_happened() {
    let f = fixture();
    // Events of the story are at T0 + 1 s, + 2 s, ...; the rotation shares
    // the time of the event before it.
    let window = Selection::Range {
        from: at(5),
        to: at(9),
        server: None,
        principal: None,
    };
    let text = f.bundle(&window);
    assert!(text.contains("\nrange "), "a complete range carries a range proof");
    let v = verify(&text, &f.keys).expect("verifies");
    assert_eq!(seqs(&v), f.matching(&window));
    assert_eq!(seqs(&v), (5..=9).collect::<Vec<_>>());
    let c = v.complete.expect("complete");
    assert_eq!(
        (c.first, c.last, c.through),
        (4, 10, at(9)),
        "the boundary events on either side"
    );
    assert!(c.whole_window);

    // Between two events: nothing happened, and the bundle proves it.
    let quiet = Selection::Range {
        from: Timestamp::from_nanos(t0() + 7 * SECOND + 1),
        to: Timestamp::from_nanos(t0() + 8 * SECOND - 1),
        server: None,
        principal: None,
    };
    let v = verify(&f.bundle(&quiet), &f.keys).expect("verifies");
    assert!(v.events.is_empty());
    assert_eq!(
        v.complete.map(|c| (c.first, c.last, c.whole_window)),
        Some((7, 8, true))
    );

    // A window reaching past the log is complete only up to just before
    // the last event (a later one may share its time), and says so.
    let tail = Selection::Range {
        from: at(28),
        to: at(1000),
        server: None,
        principal: None,
    };
    let v = verify(&f.bundle(&tail), &f.keys).expect("verifies");
    let last = f.size() - 1;
    assert_eq!(
        v.complete,
        Some(ledger::Complete {
            first: 28,
            last,
            through: Timestamp::from_nanos(at(EVENTS).as_nanos() - 1),
            whole_window: false,
        })
    );

    // A range that stops short of the window's end, or starts inside it,
    // sealed with the real key, is refused: its complement could hide events.
    let plan = f.ledger.plan_evidence(&window, f.size()).expect("plan");
    let note = f.ledger.checkpoint(plan.size, &f.key).expect("checkpoint");
    for range in [(4, 10), (5, 11), (4, 9)] {
        let mut cut = plan.clone();
        cut.range = Some(range);
        let text = f.write(&cut, &note);
        assert_eq!(refused(&text, &f.keys), RejectKind::IncompleteRange, "{range:?}");
    }
}

#[test]
fn any_byte_changed_fails_verification() {
    let f = fixture();
    for selection in [
        Selection::Call(call_id(5)),
        Selection::Range {
            from: at(14),
            to: at(17),
            server: None,
            principal: None,
        },
    ] {
        let text = f.bundle(&selection);
        verify(&text, &f.keys).expect("the bundle verifies");
        let bytes = text.as_bytes();
        let mut checked = 0;
        for i in 0..bytes.len() {
            if !bytes[i].is_ascii() {
                continue;
            }
            let mut changed = bytes.to_vec();
            changed[i] = match bytes[i] {
                b'0' => b'1',
                b'a' => b'b',
                b'A' => b'B',
                b'\n' => b' ',
                _ => b'0',
            };
            let changed = String::from_utf8(changed).expect("still utf-8");
            assert!(
                verify(&changed, &f.keys).is_err(),
                "{selection:?}: byte {i} ({:?}) changed and the bundle still verifies",
                bytes[i] as char
            );
            checked += 1;
        }
        assert!(checked > 3000, "{checked} bytes");
    }
}

/// The line of `text` that starts with `prefix` and contains `needle`.
fn line_index(text: &str, prefix: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.starts_with(prefix) && l.contains(needle))
        .unwrap_or_else(|| panic!("no `{prefix}` line with `{needle}`"))
}

fn edit(text: &str, edit: impl FnOnce(&mut Vec<String>)) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    edit(&mut lines);
    lines.join("\n") + "\n"
}

#[test]
fn each_attack_fails_for_its_own_reason() {
    let f = fixture();
    let call = Selection::Call(call_id(6));
    let text = f.bundle(&call);
    verify(&text, &f.keys).expect("verifies");
    let selected = f.matching(&call);
    let first = line_index(&text, "event ", &format!("\"seq\":{}", selected[0]));
    let cases: Vec<(&str, String, RejectKind)> = vec![
        (
            "an event's body changed",
            edit(&text, |l| {
                l[first] = l[first].replacen("\"body\":{\"i\":", "\"body\":{\"i\":1", 1)
            }),
            RejectKind::LeafMismatch,
        ),
        (
            "an event's hash changed",
            edit(&text, |l| {
                let h = l[first][6..8].to_owned();
                let other = if h == "00" { "01" } else { "00" };
                l[first].replace_range(6..8, other);
            }),
            RejectKind::LeafMismatch,
        ),
        (
            "an event's signature changed",
            edit(&text, |l| {
                let at = 6 + 65;
                let c = if &l[first][at..at + 1] == "0" { "1" } else { "0" };
                l[first].replace_range(at..at + 1, c);
            }),
            RejectKind::BadEventSignature,
        ),
        (
            "a proof hash changed",
            edit(&text, |l| {
                let p = first + 1;
                let c = if &l[p][6..7] == "A" { "B" } else { "A" };
                l[p].replace_range(6..7, c);
            }),
            RejectKind::BadProof,
        ),
        (
            "two events swapped",
            edit(&text, |l| {
                let second = first + 2;
                let (a, b) = (l[first..first + 2].to_vec(), l[second..second + 2].to_vec());
                l.splice(first..second + 2, b.into_iter().chain(a));
            }),
            RejectKind::Malformed,
        ),
        (
            "a selected event removed",
            edit(&text, |l| {
                l.drain(first..first + 2);
            }),
            RejectKind::BadSeal,
        ),
        (
            "the rotation removed",
            edit(&text, |l| {
                let r = l
                    .iter()
                    .position(|x| x.contains("\"kind\":\"key.rotated\""))
                    .expect("rotation");
                l.drain(r..r + 2);
            }),
            RejectKind::UnknownKey,
        ),
        (
            "the checkpoint's root changed",
            edit(&text, |l| {
                let r = line_index(&text, "checkpoint ", "") + 3;
                let c = if &l[r][0..1] == "A" { "B" } else { "A" };
                l[r].replace_range(0..1, c);
            }),
            RejectKind::BadSignature,
        ),
        (
            "another call selected",
            edit(&text, |l| {
                let s = line_index(&text, "selection ", "");
                l[s] = format!("selection {{\"call_id\":\"{}\"}}", call_id(9));
            }),
            RejectKind::SelectionMismatch,
        ),
        (
            "a comment changed",
            edit(&text, |l| l[1] = "# verify with the key in this file".into()),
            RejectKind::BadSeal,
        ),
    ];
    for (what, tampered, want) in cases {
        assert_ne!(tampered, text, "{what}: nothing changed");
        match verify(&tampered, &f.keys) {
            Ok(_) => panic!("{what}: verified"),
            Err(r) => assert_eq!(r.kind, want, "{what}: {r}"),
        }
    }
}

#[test]
fn the_verifier_trusts_only_its_own_keys() {
    let f = fixture();
    let text = f.bundle(&Selection::Session("s3".into()));
    // One key of the bundle's tree is accepted alone (the genesis key, or
    // the current one); only the history, with witnesses, stops whoever
    // holds a retired key (FORMAT.md §16).
    for vkey in f.keys.to_text().lines().filter(|l| !l.starts_with('#')) {
        let one = KeyHistory::parse(vkey.split_once(' ').expect("FROM VKEY").1).expect("one key");
        verify(&text, &one).unwrap_or_else(|r| panic!("trusting {vkey}: {r}"));
    }
    // Another ledger's keys, or this ledger's bundle passed off as another's.
    let other = fixture();
    assert_eq!(refused(&text, &other.keys), RejectKind::OriginMismatch);
    let theirs = other.bundle(&Selection::Session("s3".into()));
    assert_eq!(refused(&theirs, &f.keys), RejectKind::OriginMismatch);
    // A history whose rotation is elsewhere.
    let mut moved = f.keys.clone();
    moved.keys[1].from += 1;
    assert_eq!(refused(&text, &moved), RejectKind::UnknownKey);
}

#[test]
fn a_checkpoint_signed_with_the_retired_key_is_refused() {
    let f = fixture();
    let call = Selection::Call(call_id(8));
    let plan = f.ledger.plan_evidence(&call, f.size()).expect("plan");
    let retired = SigningKey::from_seed(KEY_A);
    let note = Checkpoint {
        origin: f.keys.origin.clone(),
        size: plan.size,
        root: f.ledger.tree_root(plan.size).expect("root"),
    }
    .sign(&retired);
    let text = f.write_sealed(&plan, &note, &retired);
    assert_eq!(refused(&text, &f.keys), RejectKind::RetiredKey);
}

#[test]
fn witnesses_count_as_the_policy_says() {
    let f = fixture();
    let call = Selection::Call(call_id(2));
    let plan = f.ledger.plan_evidence(&call, f.size()).expect("plan");
    let note = f.ledger.checkpoint(plan.size, &f.key).expect("checkpoint");
    let witness = SigningKey::from_seed([0x77; 32]);
    let text_part = ledger::witness::note_text(&note).expect("text").to_owned();
    let cosigned = format!(
        "{note}{}",
        cosign("witness.example/w1", &witness, &text_part, 1_763_464_000)
    );
    let trusted = Cosigner::parse_vkey(&cosigner_vkey("witness.example/w1", &witness.public())).expect("vkey");
    let stranger = SigningKey::from_seed([0x78; 32]);
    let untrusted = Cosigner::parse_vkey(&cosigner_vkey("witness.example/w2", &stranger.public())).expect("vkey");
    let text = f.write(&plan, &cosigned);
    let v = verify_evidence(&text, &f.keys, std::slice::from_ref(&trusted), 1).expect("cosigned");
    assert_eq!(v.witnesses, vec!["witness.example/w1".to_owned()]);
    let both = [trusted.clone(), untrusted];
    let r = verify_evidence(&text, &f.keys, &both, 2).expect_err("one of two");
    assert_eq!(r.kind, RejectKind::TooFewWitnesses, "{r}");
    // Without the cosignature, the same policy fails.
    let bare = f.write(&plan, &note);
    let r = verify_evidence(&bare, &f.keys, &[trusted], 1).expect_err("no cosignature");
    assert_eq!(r.kind, RejectKind::TooFewWitnesses, "{r}");
}

/// A bundle of a tree from before a rotation still verifies with today's
/// key history (the later key is the history's own, not the bundle's);
/// the later key alone cannot vouch for it.
#[test]
fn an_old_bundle_verifies_with_todays_key_history() {
    let f = fixture();
    let key_a = SigningKey::from_seed(KEY_A);
    let rotation = f.keys.keys[1].from - 1;
    let old = Selection::Call(call_id(1));
    let plan = f.ledger.plan_evidence(&old, rotation).expect("plan");
    assert!(plan.proved.iter().all(|s| *s < rotation));
    let note = Checkpoint {
        origin: f.keys.origin.clone(),
        size: rotation,
        root: f.ledger.tree_root(rotation).expect("root"),
    }
    .sign(&key_a);
    let text = f.write_sealed(&plan, &note, &key_a);
    verify(&text, &f.keys).expect("today's history vouches for the old bundle");
    let history = f.keys.to_text();
    let newest = history
        .lines()
        .last()
        .expect("a key")
        .split_once(' ')
        .expect("FROM VKEY")
        .1;
    let newest = KeyHistory::parse(newest).expect("one key");
    assert_eq!(refused(&text, &newest), RejectKind::UnknownKey);
    // A history that moves the rotation into the old tree is not this one.
    let mut moved = f.keys.clone();
    moved.keys[1].from = rotation - 3;
    assert_eq!(refused(&text, &moved), RejectKind::UnknownKey);
}
