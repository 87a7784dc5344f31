//! [`Event::decode`], and its fast path: reading envelope bytes straight
//! into an [`Event`], without building a JSON tree of the envelope first.
//!
//! It returns `None` on anything it does not expect, and leaves the general
//! path (`serde_json` → [`Value`] → `Event::from_value`) to say what is
//! wrong. What it does return must be exactly what the general path would
//! return, so it applies the same rules: the same field rules, through the
//! same function the writer checks drafts with (`Event::check`:
//! non-empty names of at most `MAX_NAME_LEN` bytes, lowercase hex ids, ...),
//! and the same representation (non-empty lists, version 1, ...).
//! `Event::decode` re-encodes what this returns and compares it with the
//! input, so this reader need only parse JSON correctly: canonical form is
//! still proved by that comparison, not here. This module's tests hold its
//! answers to the general path's over every one-byte change, insertion and
//! deletion of an envelope, each field rule and generated events.

use crate::canonical::{Object, Value};
use crate::event::{
    Actor, Correlation, ENVELOPE_VERSION, Event, EventKind, Hash, KeyId, RequestId, Subject, check_size,
    parse_hex_array,
};
use crate::timestamp::Timestamp;

/// Nesting the fast path follows, counting the envelope as level 0: less
/// than the general path's 64, so that anything deeper is its to judge.
const MAX_FAST_DEPTH: usize = 48;

impl Event {
    /// Decodes canonical bytes. Fails if the bytes are not valid JSON, not
    /// an envelope of a version this code reads, or not in canonical form.
    pub fn decode(bytes: &[u8]) -> Result<Event, String> {
        check_size(bytes.len())?;
        // The fast path reads the envelope without a JSON tree; whatever it
        // does not take, the general path decodes or explains.
        if let Some(event) = read_event(bytes)
            && event.canonical_bytes() == bytes
        {
            return Ok(event);
        }
        Self::decode_general(bytes)
    }
}

/// Reads a whole envelope, or `None` to leave it to the general path.
fn read_event(bytes: &[u8]) -> Option<Event> {
    let mut r = Reader { b: bytes, at: 0 };
    let mut actor = None;
    let mut body = None;
    let mut correlation = None;
    let mut key = None;
    let mut kind = None;
    let mut prev = None;
    let mut seq = None;
    let mut subject = None;
    let mut ts = None;
    let mut version = None;
    r.object_fields(|r, name| match name {
        b"actor" => set(&mut actor, r.actor()?),
        b"body" => set(&mut body, r.object(1)?),
        b"correlation" => set(&mut correlation, r.correlation()?),
        b"key" => set(&mut key, KeyId(parse_hex_array(&r.string()?).ok()?)),
        b"kind" => set(&mut kind, EventKind::from_name(&r.string()?)),
        b"prev" => set(&mut prev, Hash(parse_hex_array(&r.string()?).ok()?)),
        b"seq" => set(&mut seq, u64::try_from(r.int()?).ok()?),
        b"subject" => set(&mut subject, r.subject()?),
        b"ts" => set(&mut ts, Timestamp::parse_canonical(&r.string()?).ok()?),
        b"v" => set(&mut version, (r.int()? == ENVELOPE_VERSION).then_some(())?),
        _ => None,
    })?;
    if r.at != bytes.len() {
        return None;
    }
    version?;
    let event = Event {
        seq: seq?,
        ts: ts?,
        kind: kind?,
        actor: actor?,
        subject: subject?,
        correlation: correlation?,
        body: body?,
        prev: prev?,
        key: key?,
    };
    // The field rules are the writer's, in one function; what breaks them,
    // the general path names.
    event.check().ok()?;
    Some(event)
}

/// Fills a field once; a second occurrence is not something to guess at.
fn set<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    match slot {
        Some(_) => None,
        None => {
            *slot = Some(value);
            Some(())
        }
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn eat(&mut self, c: u8) -> bool {
        let hit = self.b.get(self.at) == Some(&c);
        self.at += usize::from(hit);
        hit
    }

    fn expect(&mut self, c: u8) -> Option<()> {
        self.eat(c).then_some(())
    }

    /// `{"name":value,...}`, handing each name to `field`, which reads the
    /// value. Names are taken as raw bytes: an escape in one is left to the
    /// general path.
    fn object_fields(&mut self, mut field: impl FnMut(&mut Self, &[u8]) -> Option<()>) -> Option<()> {
        self.expect(b'{')?;
        if self.eat(b'}') {
            return Some(());
        }
        loop {
            self.expect(b'"')?;
            let start = self.at;
            let len = self.b[start..].iter().position(|&c| c == b'"' || c == b'\\')?;
            self.at += len;
            self.expect(b'"')?;
            self.expect(b':')?;
            let name = &self.b[start..start + len];
            field(self, name)?;
            if self.eat(b'}') {
                return Some(());
            }
            self.expect(b',')?;
        }
    }

    fn actor(&mut self) -> Option<Actor> {
        let mut a = Actor::default();
        let mut teams = None;
        self.object_fields(|r, n| match n {
            b"agent" => set(&mut a.agent, r.string()?),
            b"principal" => set(&mut a.principal, r.string()?),
            b"session" => set(&mut a.session, r.string()?),
            b"teams" => set(&mut teams, r.name_list()?),
            _ => None,
        })?;
        a.teams = teams.unwrap_or_default();
        Some(a)
    }

    fn subject(&mut self) -> Option<Subject> {
        let mut s = Subject::default();
        let mut env = None;
        self.object_fields(|r, n| match n {
            b"env" => set(&mut env, r.name_list()?),
            b"prompt" => set(&mut s.prompt, r.string()?),
            b"resource" => set(&mut s.resource, r.string()?),
            b"server" => set(&mut s.server, r.string()?),
            b"tool" => set(&mut s.tool, r.string()?),
            _ => None,
        })?;
        s.env = env.unwrap_or_default();
        Some(s)
    }

    fn correlation(&mut self) -> Option<Correlation> {
        let mut c = Correlation::default();
        self.object_fields(|r, n| match n {
            b"answers" => set(&mut c.answers, u64::try_from(r.int()?).ok()?),
            b"call_id" => set(&mut c.call_id, r.string()?),
            b"request_id" => {
                let id = if r.b.get(r.at) == Some(&b'"') {
                    RequestId::Str(r.string()?)
                } else {
                    RequestId::Int(i64::try_from(r.int()?).ok()?)
                };
                set(&mut c.request_id, id)
            }
            b"span_id" => set(&mut c.span_id, r.string()?),
            b"trace_id" => set(&mut c.trace_id, r.string()?),
            _ => None,
        })?;
        Some(c)
    }

    /// A non-empty array of strings (an empty list is written as none).
    fn name_list(&mut self) -> Option<Vec<String>> {
        self.expect(b'[')?;
        let mut out = Vec::new();
        loop {
            out.push(self.string()?);
            if self.eat(b']') {
                return Some(out);
            }
            self.expect(b',')?;
        }
    }

    /// A JSON string. Escapes are decoded; a `\u` escape of a surrogate, a
    /// raw control character or invalid UTF-8 is left to the general path.
    fn string(&mut self) -> Option<String> {
        self.expect(b'"')?;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let rest = &self.b[self.at..];
            let len = rest.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
            out.extend_from_slice(&rest[..len]);
            self.at += len;
            match self.b[self.at] {
                b'"' => {
                    self.at += 1;
                    return String::from_utf8(out).ok();
                }
                b'\\' => {
                    let c = *self.b.get(self.at + 1)?;
                    self.at += 2;
                    let decoded = match c {
                        b'"' => b'"',
                        b'\\' => b'\\',
                        b'/' => b'/',
                        b'b' => 0x08,
                        b'f' => 0x0c,
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'u' => {
                            let hex = self.b.get(self.at..self.at + 4)?;
                            let code = hex
                                .iter()
                                .try_fold(0u32, |n, &h| Some(n * 16 + char::from(h).to_digit(16)?))?;
                            self.at += 4;
                            let ch = char::from_u32(code)?;
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                            continue;
                        }
                        _ => return None,
                    };
                    out.push(decoded);
                }
                _ => return None,
            }
        }
    }

    /// A JSON integer in `i64::MIN ..= u64::MAX`; fractions, exponents and
    /// leading zeros are left to the general path.
    fn int(&mut self) -> Option<i128> {
        let negative = self.eat(b'-');
        let start = self.at;
        let len = self.b[start..].iter().take_while(|c| c.is_ascii_digit()).count();
        let digits = &self.b[start..start + len];
        if len == 0 || len > 20 || (len > 1 && digits[0] == b'0') {
            return None;
        }
        self.at += len;
        if matches!(self.b.get(self.at), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        let magnitude = digits.iter().fold(0i128, |n, d| n * 10 + i128::from(d - b'0'));
        let n = if negative { -magnitude } else { magnitude };
        (i128::from(i64::MIN)..=i128::from(u64::MAX)).contains(&n).then_some(n)
    }

    fn object(&mut self, depth: usize) -> Option<Object> {
        if depth > MAX_FAST_DEPTH {
            return None;
        }
        let mut members = Vec::new();
        self.expect(b'{')?;
        if !self.eat(b'}') {
            loop {
                let key = self.string()?;
                self.expect(b':')?;
                members.push((key, self.value(depth + 1)?));
                if self.eat(b'}') {
                    break;
                }
                self.expect(b',')?;
            }
        }
        // Strictly increasing keys: duplicates (which a map would fold
        // into one) and any other order are the general path's to judge.
        if !members.windows(2).all(|w| w[0].0.as_bytes() < w[1].0.as_bytes()) {
            return None;
        }
        Some(members.into_iter().collect())
    }

    fn value(&mut self, depth: usize) -> Option<Value> {
        if depth > MAX_FAST_DEPTH {
            return None;
        }
        match *self.b.get(self.at)? {
            b'"' => self.string().map(Value::String),
            b'{' => self.object(depth).map(Value::Object),
            b'[' => {
                self.at += 1;
                let mut items = Vec::new();
                if !self.eat(b']') {
                    loop {
                        items.push(self.value(depth + 1)?);
                        if self.eat(b']') {
                            break;
                        }
                        self.expect(b',')?;
                    }
                }
                Some(Value::Array(items))
            }
            b't' => self.word(b"true", Value::Bool(true)),
            b'f' => self.word(b"false", Value::Bool(false)),
            b'n' => self.word(b"null", Value::Null),
            _ => self.int().map(Value::Int),
        }
    }

    fn word(&mut self, word: &[u8], value: Value) -> Option<Value> {
        self.b[self.at..].starts_with(word).then(|| {
            self.at += word.len();
            value
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::event::{Draft, MAX_EVENT_BYTES, MAX_NAME_LEN};

    fn event(draft: Draft) -> Event {
        let ts = Timestamp::parse_canonical("2026-12-02T01:02:03.456789012Z").expect("ts");
        Event::from_draft(draft, 42, ts, Hash([7; 32]), KeyId([9; 16]))
    }

    /// Every envelope field set, and a body with every kind of value and
    /// every kind of escape.
    fn rich() -> Vec<u8> {
        let draft = Draft::from_json(
            r#"{"kind":"policy.decision",
                "actor":{"principal":"alice@example.com","teams":["sre","ops"],"agent":"claude-code/1.2","session":"s-9"},
                "subject":{"server":"github","tool":"create_issue","resource":"repo://x","prompt":"p","env":["prod","eu"]},
                "correlation":{"request_id":-3,"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","answers":1},
                "body":{"decision":"ALLOW","n":-9223372036854775808,"u":18446744073709551615,"ok":true,"no":false,"none":null,
                        "args":"{\"q\":1.5}\n\t\r\b\f/","esc":"\u0000\u001f\"\\é\u2028𝄞","list":[1,[],{},"x"],"obj":{"":{"a":"b"},"z":0}}}"#,
        )
        .expect("rich draft");
        event(draft).canonical_bytes()
    }

    /// The contract: `decode` (fast path first) answers exactly as the
    /// general path does, error text included; and the fast path takes
    /// everything the general path accepts, so that it is not quietly
    /// falling back.
    fn agrees(bytes: &[u8]) {
        agrees_within(bytes, true);
    }

    /// [`agrees`], for input the fast path need not take (`fast_must_take`
    /// false: nesting beyond `MAX_FAST_DEPTH`).
    fn agrees_within(bytes: &[u8], fast_must_take: bool) {
        let general = Event::decode_general(bytes);
        assert_eq!(Event::decode(bytes), general, "{}", String::from_utf8_lossy(bytes));
        if fast_must_take && let Ok(e) = &general {
            assert_eq!(
                read_event(bytes).as_ref(),
                Some(e),
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn reads_what_the_writer_wrote() {
        let bytes = rich();
        let e = read_event(&bytes).expect("fast path takes a canonical envelope");
        assert_eq!(e.canonical_bytes(), bytes);
        assert_eq!(Ok(e), Event::decode_general(&bytes));
        let minimal = event(Draft::new(EventKind::LedgerGenesis)).canonical_bytes();
        agrees(&minimal);
        assert!(read_event(&minimal).is_some());
    }

    #[test]
    fn every_one_byte_change_is_answered_as_the_general_path_answers() {
        let bytes = rich();
        for at in 0..bytes.len() {
            for b in 0..=255u8 {
                if b != bytes[at] {
                    let mut changed = bytes.clone();
                    changed[at] = b;
                    agrees(&changed);
                }
            }
        }
    }

    #[test]
    fn every_inserted_or_deleted_byte_is_answered_as_the_general_path_answers() {
        let bytes = rich();
        let inserts = b" \t\n\r,:{}[]\"\\-0123456789.eEabfnrtu+/\x00\x7f\xc3\xa9";
        for at in 0..=bytes.len() {
            if at < bytes.len() {
                let mut shorter = bytes.clone();
                shorter.remove(at);
                agrees(&shorter);
            }
            for &b in inserts {
                let mut longer = bytes.clone();
                longer.insert(at, b);
                agrees(&longer);
            }
        }
    }

    #[test]
    fn nesting_near_either_limit_is_answered_as_the_general_path_answers() {
        let base = String::from_utf8(event(Draft::new(EventKind::PolicyLoaded)).canonical_bytes()).expect("utf-8");
        for depth in [1, 2, 46, 47, 48, 49, 50, 62, 63, 64, 65, 66, 200] {
            for (open, close) in [("[", "]"), ("{\"k\":", "}")] {
                let nested = format!("{}0{}", open.repeat(depth), close.repeat(depth));
                let text = base.replacen("\"body\":{}", &format!("\"body\":{{\"a\":{nested}}}"), 1);
                // The body is level 1, the outermost container (the value
                // of `a`) level 2, and the innermost `0` level depth + 2.
                agrees_within(text.as_bytes(), depth + 2 <= MAX_FAST_DEPTH);
            }
        }
    }

    #[test]
    fn each_field_rule_is_applied_as_the_general_path_applies_it() {
        // Each edit of the rich envelope's text breaks, or only just keeps,
        // one of the general path's field rules.
        let text = String::from_utf8(rich()).expect("utf-8");
        let long = |n: usize| format!("\"{}\"", "x".repeat(n));
        let mut edits: Vec<(String, String)> = Vec::new();
        for field in [
            "alice@example.com",
            "claude-code/1.2",
            "s-9",
            "sre",
            "github",
            "create_issue",
            "prod",
            "p",
        ] {
            let quoted = format!("\"{field}\"");
            for n in [0, 1, MAX_NAME_LEN, MAX_NAME_LEN + 1] {
                edits.push((quoted.clone(), long(n)));
            }
        }
        let more: &[(&str, &str)] = &[
            ("\"repo://x\"", "\"\""),
            ("[\"prod\",\"eu\"]", "[]"),
            ("[\"sre\",\"ops\"]", "[]"),
            ("[\"sre\",\"ops\"]", "[\"sre\",1]"),
            ("\"request_id\":-3", "\"request_id\":\"\""),
            ("\"request_id\":-3", "\"request_id\":9223372036854775808"),
            ("\"request_id\":-3", "\"request_id\":-9223372036854775808"),
            ("\"request_id\":-3", "\"request_id\":null"),
            ("\"answers\":1", "\"answers\":-1"),
            ("\"answers\":1", "\"answers\":18446744073709551615"),
            ("\"answers\":1", "\"answers\":18446744073709551616"),
            ("4bf92f3577b34da6a3ce929d0e0e4736", "4BF92F3577B34DA6A3CE929D0E0E4736"),
            ("4bf92f3577b34da6a3ce929d0e0e4736", "4bf92f3577b34da6a3ce929d0e0e473"),
            ("00f067aa0ba902b7", "00f067aa0ba902bg"),
            ("\"seq\":42", "\"seq\":-42"),
            ("\"seq\":42", "\"seq\":\"42\""),
            ("\"v\":1", "\"v\":2"),
            ("\"v\":1", "\"v\":\"1\""),
            (",\"v\":1", ""),
            ("\"kind\":\"policy.decision\"", "\"kind\":\"\""),
            ("\"kind\":\"policy.decision\"", "\"kind\":\"made.up\""),
            ("\"key\":\"0909", "\"key\":\"09"),
            ("\"prev\":\"0707", "\"prev\":\"0A07"),
            ("456789012Z", "456789012+00:00"),
            ("\"actor\":{", "\"actor\":{\"x\":1,"),
            ("\"subject\":{", "\"subject\":[],\"s\":{"),
            ("\"body\":{", "\"body\":[],\"b\":{"),
        ];
        edits.extend(more.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())));
        for (from, to) in edits {
            assert!(text.contains(&from), "{from}");
            agrees(text.replacen(&from, &to, 1).as_bytes());
        }
    }

    /// An envelope of exactly [`MAX_EVENT_BYTES`] is read; one byte more is
    /// malformed, on either path, as it is refused on writing.
    #[test]
    fn the_size_limit_is_applied_on_reading() {
        let base = event(Draft::new(EventKind::PolicyLoaded)).canonical_bytes().len();
        let sized = |n: usize| {
            let mut d = Draft::new(EventKind::PolicyLoaded);
            // `{"x":"…"}` in place of `{}`: 6 bytes and the string.
            d.body.insert("x".into(), Value::String("y".repeat(n - base - 6)));
            event(d).canonical_bytes()
        };
        let max = sized(MAX_EVENT_BYTES);
        assert_eq!(max.len(), MAX_EVENT_BYTES);
        assert!(read_event(&max).is_some());
        agrees(&max);
        let over = sized(MAX_EVENT_BYTES + 1);
        let err = Event::decode(&over).expect_err("over the limit");
        assert!(err.contains("1048577 bytes, more than the limit of 1048576"), "{err}");
        agrees(&over);
    }

    fn any_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| Value::Int(i128::from(n))),
            any::<u64>().prop_map(|n| Value::Int(i128::from(n))),
            any::<String>().prop_map(Value::String),
            "[\\x00-\\x1f\"\\\\/é\u{2028}\u{fffd}]{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::btree_map(any::<String>(), inner, 0..5).prop_map(Value::Object),
            ]
        })
    }

    fn opt_name() -> impl Strategy<Value = Option<String>> {
        prop::option::of("\\PC{1,12}")
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn any_event_is_read_back_as_written(
            kind in "[a-z_.]{1,24}",
            principal in opt_name(),
            agent in opt_name(),
            session in opt_name(),
            teams in prop::collection::vec("\\PC{1,8}", 0..3),
            server in opt_name(),
            resource in opt_name(),
            env in prop::collection::vec("\\PC{1,8}", 0..3),
            request_id in prop::option::of(prop_oneof![
                any::<i64>().prop_map(RequestId::Int),
                any::<String>().prop_map(RequestId::Str),
            ]),
            answers in prop::option::of(any::<u64>()),
            body in prop::collection::btree_map(any::<String>(), any_value(), 0..6),
        ) {
            let mut d = Draft::new(EventKind::from_name(&kind));
            d.actor = Actor { principal, teams, agent, session };
            d.subject = Subject { server, resource, env, ..Subject::default() };
            d.correlation = Correlation { request_id, answers, ..Correlation::default() };
            d.body = body;
            let e = event(d);
            let bytes = e.canonical_bytes();
            prop_assert_eq!(read_event(&bytes), Some(e));
            agrees(&bytes);
        }
    }
}
