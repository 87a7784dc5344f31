#!/usr/bin/env python3
"""Independent verifier of Sealgate evidence bundles (FORMAT.md §16).

Written from ``docs/FORMAT.md`` alone, like ``verify_export.py`` and
``verify_proof.py``, whose decoders, canonical encoder, event hash, strict
Ed25519 check, note and proof code it uses: it shows that the document is
enough to check a bundle without Sealgate's code. It reads:

* a bundle (``sealgate evidence``): the selection, the checkpoint with its
  cosignatures, the key events, the events with their inclusion paths or a
  range proof, and a seal;
* the keys the verifier trusts (``--keys``: ``sealgate key-history``, or a
  single verifier key);
* optionally, the witnesses it trusts (``--witness VKEY``, repeatable,
  inline or a file) and ``--min-witnesses M`` (default: all given).

It checks §16's steps in §16's order and stops at the first failure.

Usage::

    verify_evidence.py FILE --keys KEYS [--witness VKEY]... [--min-witnesses M] [--json]
    verify_evidence.py --self-test

Exit status: 0 if the bundle holds, 1 if it is refused (``REFUSED: <reason>:
<detail>``, the reason one of FORMAT.md §16's), 2 on usage or I/O errors.

Dependencies: those of ``verify_export.py`` (``blake3``, ``PyNaCl``).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import verify_export as vx  # noqa: E402  (the same directory)
import verify_proof as vp  # noqa: E402

Refused = vp.Refused
HEADER = "sealgate/evidence@v1"
ORIGIN_PREFIX = "sealgate/ledger/"
MAX_PROOF_HASHES = 64
MAX_RANGE_HASHES = 128


def malformed(detail: str) -> Refused:
    return Refused("malformed", detail)


# ---------------------------------------------------------------------------
# Step 1: the lines
# ---------------------------------------------------------------------------


@dataclass
class Event:
    line: int  # 1-based line number of the `event` line, for messages
    hash: bytes
    signature: bytes
    raw: bytes  # the rest of the line: the canonical bytes, as signed
    proof: list[bytes] | None  # the `proof` line's hashes; None without one
    obj: Any = None  # the parsed envelope, when it decodes
    env: vx.Envelope | None = None
    error: str | None = None  # why it does not decode

    @property
    def seq(self) -> int | None:
        return None if self.env is None else self.env.seq


@dataclass
class Range:
    start: int  # A
    end: int  # END (exclusive)
    proof: list[bytes]


@dataclass
class Bundle:
    selection: dict[str, Any]
    checkpoint: str  # the note, verbatim
    range: Range | None
    events: list[Event]
    sealed: bytes  # every byte before the `seal` line
    seal: str  # the seal note
    seal_line: int
    comments: list[str] = field(default_factory=list)


def _hashes(fields: list[str], at: int, limit: int, what: str) -> list[bytes]:
    if len(fields) > limit:
        raise malformed(f"line {at}: {what} holds {len(fields)} hashes, more than {limit}")
    out = []
    for f in fields:
        h = vp.b64(f, f"line {at}: a {what} hash") if f else b""
        if len(h) != 32:
            raise malformed(f"line {at}: a {what} hash is not 32 bytes of base64")
        out.append(h)
    return out


def _fields(line: str, at: int) -> list[str]:
    fields = line.split(" ")
    if any(f == "" for f in fields):
        raise malformed(f"line {at}: fields are separated by exactly one space")
    return fields


def _count(text: str, at: int, what: str) -> int:
    n = vp.decimal(text)
    if n is None:
        raise malformed(f"line {at}: {what} count {text!r} is not a decimal")
    return n


def _timestamp(value: Any, what: str) -> int:
    try:
        return vx.parse_timestamp(value)
    except vx.FormatError as err:
        raise malformed(f"selection: {what} is not a time in the envelope's ts form: {err}") from None


def _nonempty_string(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def check_selection(sel: Any) -> dict[str, Any]:
    """§16's table: one of the selection shapes, or `malformed`."""
    if not isinstance(sel, dict):
        raise malformed("selection: not a JSON object")
    keys = frozenset(sel)
    if keys == {"call_id"}:
        # Any non-empty string: one that is not a call id selects nothing.
        if not _nonempty_string(sel["call_id"]):
            raise malformed("selection: call_id is not a non-empty string")
    elif keys == {"session"}:
        if not _nonempty_string(sel["session"]):
            raise malformed("selection: session is not a non-empty string")
    elif keys in ({"request_id"}, {"request_id", "session"}):
        r = sel["request_id"]
        if not (isinstance(r, str) or (vx.is_int(r) and vx.INT_MIN <= r < 2**63)):
            raise malformed("selection: request_id is not a string or a 64-bit signed integer")
        if "session" in sel and not _nonempty_string(sel["session"]):
            raise malformed("selection: session is not a non-empty string")
    elif {"from", "to"} <= keys and keys <= {"from", "to", "server", "principal"}:
        # §16 does not say; as `sealgate verify-evidence` reads it, an empty
        # window (from after to) is no selection.
        if _timestamp(sel["from"], "from") > _timestamp(sel["to"], "to"):
            raise malformed(f"selection: from {sel['from']} is after to {sel['to']}")
        for k in ("server", "principal"):
            if k in sel and not _nonempty_string(sel[k]):
                raise malformed(f"selection: {k} is not a non-empty string")
    else:
        raise malformed(f"selection: members {sorted(keys)} are not one of the selections")
    return sel


def is_complete_range(sel: dict[str, Any]) -> bool:
    return frozenset(sel) == {"from", "to"}


def parse(data: bytes) -> Bundle:
    """Step 1: the file's lines, in §16's order, or `malformed`."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise malformed(f"the file is not UTF-8: {err}") from None
    if "\r" in text:
        raise malformed("the file holds a CR (lines end in LF alone)")
    if not text.endswith("\n"):
        raise malformed("the file does not end in LF")
    lines = text[:-1].split("\n")
    # Byte offset of each line's start, for the seal's digest.
    offsets, pos = [], 0
    for line in lines:
        offsets.append(pos)
        pos += len(line.encode("utf-8")) + 1
    n = len(lines)
    i = 0

    def at() -> int:
        return i + 1

    if lines[0] != HEADER:
        raise malformed(f"line 1 is not {HEADER!r}")
    i = 1
    comments = []
    # A comment is `#` alone or `# ` and text (§16 shows `# ...`; as
    # `sealgate verify-evidence` reads it: `#text` is not one).
    while i < n and (lines[i] == "#" or lines[i].startswith("# ")):
        comments.append(lines[i])
        i += 1
    if i >= n or not lines[i].startswith("selection "):
        raise malformed(f"line {at()}: expected the selection line")
    try:
        selection = check_selection(vx.parse_json(lines[i][len("selection "):]))
    except vx.FormatError as err:
        raise malformed(f"line {at()}: the selection is not JSON: {err}") from None
    i += 1
    if i >= n or not lines[i].startswith("checkpoint "):
        raise malformed(f"line {at()}: expected the checkpoint line")
    count = _count(lines[i][len("checkpoint "):], at(), "checkpoint")
    if i + 1 + count > n:
        raise malformed(f"line {at()}: the checkpoint's {count} lines run past the end of the file")
    checkpoint = "".join(line + "\n" for line in lines[i + 1:i + 1 + count])
    i += 1 + count
    rng = None
    if i < n and (lines[i] == "range" or lines[i].startswith("range ")):
        fields = _fields(lines[i], at())
        if len(fields) < 3:
            raise malformed(f"line {at()}: a range line is `range <A> <END> <hash>...`")
        start = _count(fields[1], at(), "range start")
        end = _count(fields[2], at(), "range end")
        if start >= end:
            raise malformed(f"line {at()}: the range [{start}, {end}) is empty")
        rng = Range(start, end, _hashes(fields[3:], at(), MAX_RANGE_HASHES, "range"))
        i += 1
    if rng is not None and not is_complete_range(selection):
        raise malformed("a range line in a bundle whose selection is not a time range without a filter")
    events: list[Event] = []
    while i < n and lines[i].startswith("event "):
        parts = lines[i].split(" ", 3)
        if len(parts) != 4 or not vx.is_hex(parts[1], 64) or not vx.is_hex(parts[2], 128):
            raise malformed(f"line {at()}: an event line is `event <64 hex> <128 hex> <canonical envelope>`")
        ev = Event(at(), bytes.fromhex(parts[1]), bytes.fromhex(parts[2]), parts[3].encode("utf-8"), None)
        i += 1
        if i < n and (lines[i] == "proof" or lines[i].startswith("proof ")):
            ev.proof = _hashes(_fields(lines[i], at())[1:], at(), MAX_PROOF_HASHES, "proof")
            i += 1
        try:
            ev.obj = vx.parse_json(parts[3])
            ev.env = vx.decode_envelope(ev.obj)
            if ev.env.canonical != ev.raw:
                raise vx.FormatError("the event's bytes are not its canonical encoding")
        except (vx.FormatError, RecursionError) as err:
            # Not an event of the log: not a key event in step 2, and step
            # 4's leaf_mismatch.
            ev.env, ev.error = None, str(err)
        events.append(ev)
    if i >= n or not lines[i].startswith("seal "):
        raise malformed(f"line {at()}: expected an event, a proof or the seal line")
    seal_line = at()
    count = _count(lines[i][len("seal "):], at(), "seal")
    if i + 1 + count != n:
        raise malformed(f"line {at()}: the file does not end after the seal's {count} lines")
    seal = "".join(line + "\n" for line in lines[i + 1:])
    sealed = data[:offsets[i]]
    return Bundle(selection, checkpoint, rng, events, sealed, seal, seal_line, comments)


# ---------------------------------------------------------------------------
# Step 2: the keys
# ---------------------------------------------------------------------------


def build_history(bundle: Bundle, origin: str) -> tuple[vp.History, bytes]:
    """The key history the bundle's key events make; (history, ledger id)."""
    genesis = next((ev for ev in bundle.events if ev.seq == 0), None)
    if genesis is None:
        raise malformed("the bundle does not hold the event at seq 0 (the genesis)")
    try:
        ledger_id, public_key = vx.check_genesis(genesis.env)
    except vx.FormatError as err:
        raise malformed(f"line {genesis.line}: the event at seq 0 is not a valid genesis: {err}") from None
    if origin != ORIGIN_PREFIX + ledger_id.hex():
        raise malformed(f"the genesis names ledger {ledger_id.hex()}, the checkpoint's origin is {origin!r}")
    schedule = vx.KeySchedule()
    schedule.introduce(0, vx.key_id(public_key), public_key)
    for ev in bundle.events:
        if ev.env is None or ev.env.kind != vx.KIND_ROTATED:
            continue
        r = ev.env.seq
        kid, key = schedule.valid_at(r)  # the genesis is valid from 0
        if ev.env.key != kid:
            raise Refused("bad_rotation", f"the rotation at seq {r} names key {ev.env.key}, not the key {kid} valid there")
        if not vx.signature_valid(key, ev.hash, ev.signature):
            raise Refused("bad_rotation", f"the signature of the rotation at seq {r} does not verify")
        try:
            new_kid, new_key = vx.check_rotation(ev.env, ledger_id, schedule)
        except vx.FormatError as err:
            raise Refused("bad_rotation", f"the rotation at seq {r}: {err}") from None
        schedule.introduce(r + 1, new_kid, new_key)
    keys = [(start, key) for start, _, key in schedule.entries]
    return vp.History(origin, keys), ledger_id


def compare_trusted(built: vp.History, trusted: vp.History, size: int) -> None:
    """§16 step 2: the keys trusted against the bundle's, up to the tree's size."""
    if trusted.origin != built.origin:
        raise Refused("origin_mismatch", f"the bundle is of {built.origin!r}, the keys given of {trusted.origin!r}")
    if len(trusted.keys) > 1:
        # Cut to FROM <= n, the trusted history must be exactly the built one.
        upto = [(start, key) for start, key in trusted.keys if start <= size]
        if upto != list(built.keys):
            raise Refused(
                "unknown_key",
                f"the bundle's keys for its tree of {size} events are not the trusted history's: a rotation is missing or forged",
            )
        return
    built_keys = {key for _, key in built.keys}
    for _, key in trusted.keys:
        if key not in built_keys:
            raise Refused("unknown_key", f"trusted key {vx.key_id(key)} is not among the keys of the bundle's tree")


# ---------------------------------------------------------------------------
# Step 5: range proofs (§14)
# ---------------------------------------------------------------------------


def _split(size: int) -> int:
    """The largest power of two below ``size`` (> 1)."""
    k = 1
    while k * 2 < size:
        k *= 2
    return k


def range_root(start: int, end: int, size: int, leaves: list[bytes], proof: list[bytes]) -> bytes:
    """MTH(D[0:size]) from the leaves of [start, end) and the proof (§14,
    "Range proofs"); `bad_proof` if the proof is not used up exactly."""
    if not 0 <= start < end <= size:
        raise Refused("bad_proof", f"the range [{start}, {end}) is not in a tree of {size}")
    it = iter(proof)

    def node(lo: int, hi: int) -> bytes:
        if hi <= start or lo >= end:
            h = next(it, None)
            if h is None:
                raise Refused("bad_proof", "the range proof has too few hashes")
            return h
        if hi - lo == 1:
            return leaves[lo - start]
        k = _split(hi - lo)
        left = node(lo, lo + k)
        return vp.node_hash(left, node(lo + k, hi))

    root = node(0, size)
    if next(it, None) is not None:
        raise Refused("bad_proof", "the range proof has too many hashes")
    return root


def mth(leaves: list[bytes]) -> bytes:
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return vp.node_hash(mth(leaves[:k]), mth(leaves[k:]))


def inclusion_path(leaves: list[bytes], m: int) -> list[bytes]:
    """RFC 9162 §2.1.3.1 PATH(m, D[n]), from the leaf's sibling up."""
    if len(leaves) == 1:
        return []
    k = _split(len(leaves))
    if m < k:
        return inclusion_path(leaves[:k], m) + [mth(leaves[k:])]
    return inclusion_path(leaves[k:], m - k) + [mth(leaves[:k])]


def range_proof(leaves: list[bytes], start: int, end: int) -> list[bytes]:
    """The hashes range_root takes, left to right (for the self-test)."""
    out: list[bytes] = []

    def node(lo: int, hi: int) -> None:
        if hi <= start or lo >= end:
            out.append(mth(leaves[lo:hi]))
        elif hi - lo > 1:
            k = _split(hi - lo)
            node(lo, lo + k)
            node(lo + k, hi)

    node(0, len(leaves))
    return out


# ---------------------------------------------------------------------------
# Step 7: the selection
# ---------------------------------------------------------------------------


def is_key_event(ev: Event) -> bool:
    return ev.env is not None and ev.env.kind in (vx.KIND_GENESIS, vx.KIND_ROTATED)


def selected(sel: dict[str, Any], ev: Event) -> bool:
    obj = ev.obj
    actor, subject, corr = obj["actor"], obj["subject"], obj["correlation"]

    def same(have: dict[str, Any], member: str, want: Any) -> bool:
        # JSON types, exactly: 7 is not "7" (and Python's True is not 1).
        return member in have and type(have[member]) is type(want) and have[member] == want

    if "call_id" in sel:
        return same(corr, "call_id", sel["call_id"])
    if "request_id" in sel:
        return same(corr, "request_id", sel["request_id"]) and (
            "session" not in sel or same(actor, "session", sel["session"])
        )
    if "session" in sel:
        return same(actor, "session", sel["session"])
    ts = ev.env.ts_ns
    if not vx.parse_timestamp(sel["from"]) <= ts <= vx.parse_timestamp(sel["to"]):
        return False
    if "server" in sel and not same(subject, "server", sel["server"]):
        return False
    return "principal" not in sel or same(actor, "principal", sel["principal"])


# ---------------------------------------------------------------------------
# The steps
# ---------------------------------------------------------------------------


def verify(data: bytes, trusted: vp.History, policy: vp.Policy | None = None) -> dict:
    # 1. Parse.
    bundle = parse(data)
    events = bundle.events
    # 2. Keys. The checkpoint's origin is the first line of its note's
    # text; its size and root are read in step 3 (as `sealgate
    # verify-evidence` does: a bundle of another ledger is origin_mismatch
    # whatever its checkpoint's size line holds, but a note that does not
    # split into text and signatures names no origin: malformed).
    try:
        origin = vp.split_note(bundle.checkpoint)[0].split("\n", 1)[0]
    except Refused as err:
        raise malformed(f"the checkpoint names no origin: {err.detail}") from None
    history, _ = build_history(bundle, origin)
    try:
        size = vp.parse_checkpoint_text(vp.split_note(bundle.checkpoint)[0]).size
    except Refused as err:
        raise malformed(f"the checkpoint: {err.detail}") from None
    compare_trusted(history, trusted, size)
    # 3. Checkpoint.
    cp = vp.verify_checkpoint(bundle.checkpoint, history)
    for ev in events:
        if ev.seq is not None and ev.seq >= cp.size:
            raise Refused("bad_proof", f"line {ev.line}: seq {ev.seq} is not in the checkpoint's tree of {cp.size}")
    # 4. Events.
    rng = bundle.range
    by_seq: dict[int, Event] = {}
    previous = -1
    for ev in events:
        if ev.env is None:
            raise Refused("leaf_mismatch", f"line {ev.line}: the event does not decode: {ev.error}")
        env = ev.env
        # §16 has events "in increasing seq" (Lines: "any other order is
        # malformed") and checks it in step 4, beside leaf_mismatch: read,
        # like `sealgate verify-evidence`, as step 4's check with step 1's
        # reason.
        if env.seq <= previous:
            raise malformed(f"line {ev.line}: seq {env.seq} does not follow the event before it ({previous})")
        previous = env.seq
        # Events in the range have no proof line, all others one (Lines:
        # malformed), which needs the event's seq.
        inside = rng is not None and rng.start <= env.seq < rng.end
        if inside and ev.proof is not None:
            raise malformed(f"line {ev.line}: seq {env.seq} is in the range and has a proof line")
        if not inside and ev.proof is None:
            raise malformed(f"line {ev.line}: seq {env.seq} is outside the range and has no proof line")
        if vx.event_hash(env.prev, ev.raw) != ev.hash:
            raise Refused("leaf_mismatch", f"line {ev.line}: seq {env.seq} does not hash to its line's hash")
        before = by_seq.get(env.seq - 1)
        if before is not None and env.prev != before.hash:
            raise Refused("leaf_mismatch", f"line {ev.line}: seq {env.seq}'s prev is not the hash of seq {env.seq - 1}")
        key = history.key_at(env.seq)
        if key is None or not vx.signature_valid(key, ev.hash, ev.signature):
            raise Refused("bad_event_signature", f"line {ev.line}: the signature of seq {env.seq} does not verify")
        if ev.proof is not None:
            leaf = vp.leaf_hash(env.seq.to_bytes(8, "big") + ev.hash + ev.signature)
            if vp.root_from_inclusion(leaf, env.seq, cp.size, ev.proof) != cp.root:
                raise Refused("bad_proof", f"line {ev.line}: seq {env.seq} does not lead to the checkpoint's root")
        by_seq[env.seq] = ev
    # 5. Range.
    if rng is not None:
        inside = [ev for ev in events if rng.start <= ev.seq < rng.end]
        if [ev.seq for ev in inside] != list(range(rng.start, rng.end)):
            have = {ev.seq for ev in inside}
            missing = next(s for s in range(rng.start, rng.end) if s not in have)
            raise malformed(f"the range [{rng.start}, {rng.end}) lacks seq {missing}")
        leaves = [vp.leaf_hash(ev.seq.to_bytes(8, "big") + ev.hash + ev.signature) for ev in inside]
        if range_root(rng.start, rng.end, cp.size, leaves, rng.proof) != cp.root:
            raise Refused("bad_proof", f"the range [{rng.start}, {rng.end}) does not lead to the checkpoint's root")
    # 6. Witnesses.
    result: dict[str, Any] = {
        "origin": cp.origin,
        "tree_size": cp.size,
        "selection": bundle.selection,
        "events": len(events),
    }
    if policy is not None:
        result["witnesses"] = vp.check_witnesses([bundle.checkpoint], *policy)
    # 7. Selection.
    sel = bundle.selection
    count = 0
    for ev in events:
        is_selected = selected(sel, ev)
        count += is_selected
        inside = rng is not None and rng.start <= ev.seq < rng.end
        if not inside and not is_selected and not is_key_event(ev):
            raise Refused("selection_mismatch", f"line {ev.line}: seq {ev.seq} is neither selected nor a key event")
    if rng is None and is_complete_range(sel):
        # A time range without a filter is proved complete by a range line
        # (§16, "Complete range"); without one it is not shown complete.
        raise Refused("incomplete_range", "a time range without a filter, and no range line proving it complete")
    if rng is None and count == 0:
        raise Refused("selection_mismatch", "no event of the bundle is selected")
    result["selected"] = count
    if rng is not None:
        t1, t2 = vx.parse_timestamp(sel["from"]), vx.parse_timestamp(sel["to"])
        first, last = by_seq[rng.start], by_seq[rng.end - 1]
        if not (rng.start == 0 or first.env.ts_ns < t1):
            raise Refused("incomplete_range", f"seq {rng.start} starts the range but is not before {sel['from']}")
        if not (rng.end == cp.size or last.env.ts_ns > t2):
            raise Refused("incomplete_range", f"seq {rng.end - 1} ends the range but is not after {sel['to']}")
        result["range"] = [rng.start, rng.end]
        # Complete up to T2; or, when the tree ends at or before T2, up to a
        # nanosecond before its last event (a later one may share its time),
        # and not the whole window.
        whole = last.env.ts_ns > t2
        result["whole_window"] = whole
        result["complete_to"] = sel["to"] if whole else f"{last.env.ts_ns - 1} ns"
    # 8. Seal.
    check_seal(bundle, history, cp)
    return result


def check_seal(bundle: Bundle, history: vp.History, cp: vp.Checkpoint) -> None:
    try:
        text, sigs = vp.split_note(bundle.seal)
    except Refused as err:
        raise Refused("bad_seal", f"the seal is not a signed note: {err.detail}") from None
    digest = base64.b64encode(hashlib.sha256(bundle.sealed).digest()).decode()
    expected = f"{HEADER}\n{cp.origin}\n{digest}\n"
    if text != expected:
        raise Refused("bad_seal", "the seal's text is not this file's (header, origin, SHA-256 of the bytes before it)")
    if len(sigs) != 1:
        raise Refused("bad_seal", f"the seal has {len(sigs)} signature lines, not one")
    name, raw = sigs[0]
    key = history.key_at(cp.size)
    if (
        name != cp.origin
        or key is None
        or raw[:4] != vp.note_key_id(cp.origin, key)
        or len(raw) != 68
        or not vx.signature_valid(key, text.encode("utf-8"), raw[4:])
    ):
        raise Refused("bad_seal", f"the seal is not signed by the key that signs the tree of {cp.size}")


# ---------------------------------------------------------------------------
# Self-test: a bundle made here from §12's key, then tampered
# ---------------------------------------------------------------------------


def _make_bundle(signing, events, selection, rng, cp_note, comments) -> bytes:
    """A bundle's bytes: events are (canonical, hash, signature, proof|None)."""
    out = [HEADER, *comments, "selection " + vx.canonical_encode(selection).decode()]
    note_lines = cp_note[:-1].split("\n")
    out.append(f"checkpoint {len(note_lines)}")
    out += note_lines
    if rng is not None:
        start, end, proof = rng
        out.append(" ".join([f"range {start} {end}", *(base64.b64encode(h).decode() for h in proof)]))
    for canonical, digest, sig, proof in events:
        out.append(f"event {digest.hex()} {sig.hex()} {canonical.decode()}")
        if proof is not None:
            out.append(" ".join(["proof", *(base64.b64encode(h).decode() for h in proof)]))
    body = ("\n".join(out) + "\n").encode()
    return body + _seal(signing, body, cp_note.split("\n", 1)[0])


def _seal(signing, body: bytes, origin: str) -> bytes:
    text = f"{HEADER}\n{origin}\n{base64.b64encode(hashlib.sha256(body).digest()).decode()}\n"
    public_key = bytes(signing.verify_key)
    sig = vp.note_key_id(origin, public_key) + signing.sign(text.encode()).signature
    note = f"{text}\n{vp.EM_DASH} {origin} {base64.b64encode(sig).decode()}\n"
    return f"seal {note.count(chr(10))}\n{note}".encode()


def _resealed(signing, data: bytes) -> bytes:
    at = data.rindex(b"\nseal ") + 1
    lines = data.split(b"\n")
    origin = lines[next(i for i, line in enumerate(lines) if line.startswith(b"checkpoint ")) + 1]
    return data[:at] + _seal(signing, data[:at], origin.decode())


def self_test() -> bool:
    import nacl.signing

    key0 = nacl.signing.SigningKey(vx.EXAMPLE_SEED)
    key1 = nacl.signing.SigningKey(bytes([8]) * 32)
    pub0, pub1 = bytes(key0.verify_key), bytes(key1.verify_key)
    ledger_id = bytes.fromhex("00112233445566778899aabbccddeeff")
    origin = ORIGIN_PREFIX + ledger_id.hex()

    def vkey(pub: bytes, name: str = origin) -> str:
        return f"{name}+{vp.note_key_id(name, pub).hex()}+" + base64.b64encode(b"\x01" + pub).decode()

    # Events 0 and 1 of §12, a rotation to key1 at 2, then two events by key1.
    canon = []
    for i in (0, 1):
        with open(os.path.join(vx.EXAMPLE_DIR, f"format-example-{i}.json"), "rb") as f:
            canon.append(f.read().rstrip(b"\n"))
    chain = []  # (canonical, hash, signature)
    prev = vx.ZERO_HASH
    for i, c in enumerate(canon):
        h = vx.event_hash(prev, c)
        chain.append((c, h, key0.sign(h).signature))
        prev = h
    if chain[0][1].hex() != vx.EXAMPLE_HASHES[0] or chain[1][1].hex() != vx.EXAMPLE_HASHES[1]:
        print("FAIL §12's events do not hash as FORMAT.md says")
        return False
    kid0, kid1 = vx.key_id(pub0), vx.key_id(pub1)
    rotation_proof = key1.sign(vx.rotation_digest(ledger_id, bytes.fromhex(kid0), pub1)).signature
    drafts = [
        ("key.rotated", kid0, {}, {"new_key": kid1, "new_public_key": pub1.hex(), "proof": rotation_proof.hex()},
         {}, "2026-11-18T11:06:41.000000000Z"),
        ("tool_call.requested", kid1, {"session": "s-1"}, {"n": 2}, {"request_id": 8},
         "2026-11-18T11:06:42.000000000Z"),
        ("execution.completed", kid1, {"session": "s-1"}, {}, {"request_id": 8, "answers": 3},
         "2026-11-18T11:06:43.000000000Z"),
    ]
    for seq, (kind, kid, actor, body, corr, ts) in enumerate(drafts, start=2):
        env = {"actor": actor, "body": body, "correlation": corr, "key": kid, "kind": kind,
               "prev": prev.hex(), "seq": seq, "subject": {"server": "fs"}, "ts": ts, "v": 1}
        c = vx.canonical_encode(env)
        h = vx.event_hash(prev, c)
        chain.append((c, h, (key0 if seq <= 2 else key1).sign(h).signature))
        prev = h
    leaves = [vp.leaf_hash(i.to_bytes(8, "big") + h + s) for i, (_, h, s) in enumerate(chain)]
    size = len(leaves)
    root = mth(leaves)
    cp_text = f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n"
    cp_sig = vp.note_key_id(origin, pub1) + key1.sign(cp_text.encode()).signature  # key at seq 5 is key1
    cp_note = f"{cp_text}\n{vp.EM_DASH} {origin} {base64.b64encode(cp_sig).decode()}\n"
    witness_key = nacl.signing.SigningKey(bytes([0x0B]) * 32)
    wname = "example.com/witness"
    cp_note += vp.cosign(cp_text, wname, witness_key, 1_765_000_000)
    witness = vp.Witness(wname, bytes(witness_key.verify_key))
    history = vp.parse_history(f"0 {vkey(pub0)}\n3 {vkey(pub1)}\n")
    comments = ["# Sealgate evidence bundle (self-test).", "# Verify: verify_evidence.py FILE --keys KEYS"]

    def bundle(selection, keep, rng=None) -> bytes:
        evs = []
        for i, (c, h, s) in enumerate(chain):
            if i in keep:
                inside = rng is not None and rng[0] <= i < rng[1]
                evs.append((c, h, s, None if inside else inclusion_path(leaves, i)))
        r = None if rng is None else (rng[0], rng[1], range_proof(leaves, rng[0], rng[1]))
        return _make_bundle(key1, evs, selection, r, cp_note, comments)

    by_request = bundle({"request_id": 8, "session": "s-1"}, {0, 2, 3, 4})
    # [T1, T2] holds event 3 only: the range is [2, 5), from the last event
    # before T1 to the first after T2.
    by_time = bundle({"from": "2026-11-18T11:06:41.500000000Z", "to": "2026-11-18T11:06:42.500000000Z"},
                     {0, 2, 3, 4}, (2, 5))
    policy = ([witness], None)

    def reason(data: bytes, trusted: vp.History = history, pol=policy) -> str | None:
        try:
            verify(data, trusted, pol)
        except Refused as err:
            return err.kind
        return None

    def edit_line(data: bytes, prefix: bytes, nth: int, fn) -> bytes:
        lines = data.split(b"\n")
        hits = [i for i, line in enumerate(lines) if line.startswith(prefix)]
        lines[hits[nth]] = fn(lines[hits[nth]])
        return b"\n".join(lines)

    def flip_at(at: int):
        def fn(line: bytes) -> bytes:
            b = bytearray(line)
            b[at] = ord("A") if b[at] != ord("A") else ord("B")
            return bytes(b)
        return fn

    def flip_hex(at: int):
        def fn(line: bytes) -> bytes:
            b = bytearray(line)
            b[at] = ord("0") if b[at] != ord("0") else ord("1")
            return bytes(b)
        return fn

    def padding_bits(line: bytes) -> bytes:
        """The last base64 character before `=` with a padding bit set:
        the same bytes, another (non-canonical) encoding."""
        alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        at = line.rindex(b"=") - (2 if line.endswith(b"==") else 1)
        return line[:at] + bytes([alphabet[alphabet.index(line[at]) ^ 1]]) + line[at + 1:]

    def drop_event(data: bytes, nth: int, with_proof: bool) -> bytes:
        lines = data.split(b"\n")
        hits = [i for i, line in enumerate(lines) if line.startswith(b"event ")]
        del lines[hits[nth]:hits[nth] + (2 if with_proof else 1)]
        return b"\n".join(lines)

    def swap_events(data: bytes, a: int, b: int) -> bytes:
        lines = data.split(b"\n")
        hits = [i for i, line in enumerate(lines) if line.startswith(b"event ")]
        lines[hits[a]], lines[hits[b]] = lines[hits[b]], lines[hits[a]]
        lines[hits[a] + 1], lines[hits[b] + 1] = lines[hits[b] + 1], lines[hits[a] + 1]
        return b"\n".join(lines)

    sig_at = 6 + 64 + 1 + 10  # inside the signature field of an event line
    tampered = [
        ("an event's body", edit_line(by_request, b"event ", 2, lambda l: l.replace(b'"n":2', b'"n":3')), "leaf_mismatch"),
        ("an event's hash", edit_line(by_request, b"event ", 2, flip_hex(10)), "leaf_mismatch"),
        ("an event's signature", edit_line(by_request, b"event ", 2, flip_hex(sig_at)), "bad_event_signature"),
        ("a proof hash", edit_line(by_request, b"proof ", 2, flip_at(8)), "bad_proof"),
        ("the range line", edit_line(by_time, b"range ", 0, flip_at(12)), "bad_proof"),
        ("the checkpoint's root", by_request.replace(base64.b64encode(root), base64.b64encode(bytes(32))), "bad_signature"),
        ("a cosignature", edit_line(by_request, vp.EM_DASH.encode() + b" " + wname.encode(), 0, flip_at(40)),
         "bad_signature"),
        ("the selection", by_request.replace(b'"request_id":8', b'"request_id":7', 1), "selection_mismatch"),
        ("the time selection", by_time.replace(b"11:06:41.500000000Z", b"11:06:40.500000000Z"), "incomplete_range"),
        ("a window ending before it starts", by_time.replace(b"11:06:42.500000000Z", b"11:06:41.000000000Z"), "malformed"),
        ("a comment line", by_request.replace(b"(self-test)", b"(self-tesT)"), "bad_seal"),
        ("the seal", edit_line(by_request, vp.EM_DASH.encode(), -1, flip_at(60)), "bad_seal"),
        ("the seal's padding bits", edit_line(by_request, vp.EM_DASH.encode(), -1, padding_bits), "bad_seal"),
        ("an event removed", drop_event(by_request, 3, True), "bad_seal"),
        ("an event removed from a range", drop_event(by_time, 2, False), "malformed"),
        ("two events swapped", swap_events(by_request, 2, 3), "malformed"),
        ("the key event removed", drop_event(by_request, 1, True), "unknown_key"),
        ("a line past the seal", by_request + b"# more\n", "malformed"),
        ("a CR", by_request.replace(b"\n", b"\r\n", 1), "malformed"),
        ("an unselected event added", _resealed(key1, bundle({"request_id": 8, "session": "s-1"}, {0, 1, 2, 3, 4})),
         "selection_mismatch"),
    ]
    checks = [
        ("a request-id bundle verifies", reason(by_request) is None),
        ("a complete-range bundle verifies", reason(by_time) is None),
        ("with the current key alone", reason(by_request, vp.parse_history(vkey(pub1))) is None),
        ("with the genesis key alone", reason(by_request, vp.parse_history(vkey(pub0))) is None),
        ("witness policy: a missing witness", reason(by_request, history, ([witness, vp.Witness("w2", bytes(key0.verify_key))], None))
         == "too_few_witnesses"),
        ("the same keys named for another ledger: origin_mismatch",
         reason(by_request, vp.parse_history(vkey(pub0, ORIGIN_PREFIX + "ff" * 16))) == "origin_mismatch"),
        ("a stranger's key is not trusted", reason(by_request, vp.parse_history(vkey(bytes(witness_key.verify_key)))) == "unknown_key"),
        ("a history from other seqs", reason(by_request, vp.parse_history(f"0 {vkey(pub0)}\n4 {vkey(pub1)}\n")) == "unknown_key"),
        ("the range proof reproduces the root", range_root(2, 5, size, leaves[2:5], range_proof(leaves, 2, 5)) == root),
        ("a resealed bundle still verifies", reason(_resealed(key1, by_request)) is None),
    ]
    for what, data, expected in tampered:
        got = reason(data)
        checks.append((f"tampered {what}: {expected}" + ("" if got == expected else f" (got {got})"), got == expected))
    checks += _worked_example_checks()
    for name, passed in checks:
        print(f"{'ok  ' if passed else 'FAIL'} {name}")
    return all(passed for _, passed in checks)


def _worked_example_checks() -> list[tuple[str, bool]]:
    """FORMAT.md §16's worked example, made here from §12's two events and
    key: byte for byte the file ledger/tests/data/format-example-evidence.txt."""
    import nacl.signing

    key = nacl.signing.SigningKey(vx.EXAMPLE_SEED)
    public_key = bytes(key.verify_key)
    origin = ORIGIN_PREFIX + "00112233445566778899aabbccddeeff"
    chain, prev = [], vx.ZERO_HASH
    for i in (0, 1):
        with open(os.path.join(vx.EXAMPLE_DIR, f"format-example-{i}.json"), "rb") as f:
            canonical = f.read().rstrip(b"\n")
        digest = vx.event_hash(prev, canonical)
        chain.append((canonical, digest, key.sign(digest).signature))
        prev = digest
    leaves = [vp.leaf_hash(i.to_bytes(8, "big") + h + s) for i, (_, h, s) in enumerate(chain)]
    text = f"{origin}\n2\n{base64.b64encode(mth(leaves)).decode()}\n"
    sig = vp.note_key_id(origin, public_key) + key.sign(text.encode()).signature
    note = f"{text}\n{vp.EM_DASH} {origin} {base64.b64encode(sig).decode()}\n"
    events = [(c, h, s, inclusion_path(leaves, i)) for i, (c, h, s) in enumerate(chain)]
    made = _make_bundle(key, events, {"session": "s-1"}, None, note, ["# FORMAT.md section 16, worked example"])
    with open(os.path.join(vx.EXAMPLE_DIR, "format-example-evidence.txt"), "rb") as f:
        expected = f.read()
    vkey = f"{origin}+{vp.note_key_id(origin, public_key).hex()}+" + base64.b64encode(b"\x01" + public_key).decode()
    try:
        result = verify(expected, vp.parse_history(vkey))
    except Refused as err:
        result = {"refused": str(err)}
    return [
        ("§16's worked example, made here, is format-example-evidence.txt", made == expected),
        ("§16's worked example verifies with §12's verifier key", result.get("selected") == 1),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Verify a Sealgate evidence bundle per FORMAT.md §16.")
    if argv is None:
        argv = sys.argv[1:]
    if argv == ["--self-test"]:
        return 0 if self_test() else 1
    parser.add_argument("bundle")
    parser.add_argument("--keys", required=True, help="key history (sealgate key-history) or one verifier key")
    vp.add_witness_arguments(parser)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        policy = vp.read_policy(args)
        with open(args.bundle, "rb") as f:
            data = f.read()
        with open(args.keys, encoding="utf-8") as f:
            keys_text = f.read()
    except (OSError, UnicodeDecodeError, vp.UsageError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        trusted = vp.parse_history(keys_text)
    except Refused as err:
        print(f"error: --keys {args.keys}: {err.detail}", file=sys.stderr)
        return 2
    try:
        result = verify(data, trusted, policy)
    except Refused as refusal:
        if args.json:
            print(json.dumps({"ok": False, "reason": refusal.kind, "detail": refusal.detail}))
        else:
            print(f"REFUSED: {refusal.kind}: {refusal.detail}")
        return 1
    print(json.dumps({"ok": True, "verified": result}) if args.json else f"OK: {json.dumps(result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
