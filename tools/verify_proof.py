#!/usr/bin/env python3
"""Independent verifier of Sealgate checkpoints and proofs (FORMAT.md §13, §14).

Written from ``docs/FORMAT.md`` alone, like ``verify_export.py`` (whose
envelope decoder, canonical encoder, event hash and strict Ed25519 check it
uses), to show that the document is enough to check Sealgate's Merkle tree
proofs without Sealgate's code. It reads:

* a proof: an inclusion proof (``c2sp.org/tlog-proof@v1``: the event's leaf
  data and canonical bytes, the path, the checkpoint) or a consistency proof
  (``sealgate/consistency-proof@v1``: the old size, the proof, the newer
  checkpoint);
* the ledger's key history (``sealgate key-history``: ``FROM VKEY`` lines,
  or a single verifier key);
* for a consistency proof, the older checkpoint the verifier kept; for an
  inclusion proof, optionally the checkpoint the proof must be for;
* optionally, the witnesses it trusts (``--witness VKEY``, repeatable, the
  verifier key inline or in a file) and how many of them must have cosigned
  the checkpoint (``--min-witnesses M``, default all given): §15's policy.

Usage::

    verify_proof.py PROOF --keys FILE [--checkpoint FILE]
                    [--witness VKEY]... [--min-witnesses M] [--json]
    verify_proof.py --self-test

Exit status: 0 if the proof holds, 1 if it is refused (``REFUSED: <reason>:
<detail>``, the reason one of FORMAT.md §14's or §15's), 2 on usage or I/O
errors.

Dependencies: those of ``verify_export.py`` (``blake3``, ``PyNaCl``).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import os
import sys
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import verify_export as vx  # noqa: E402  (the same directory)

TLOG_PROOF_HEADER = "c2sp.org/tlog-proof@v1"
CONSISTENCY_HEADER = "sealgate/consistency-proof@v1"
#: §13: seq (8) ‖ event hash (32) ‖ signature (64).
LEAF_DATA_LEN = 104
EM_DASH = "\u2014"


class Refused(Exception):
    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


def malformed(detail: str) -> Refused:
    return Refused("malformed", detail)


def b64(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as err:
        raise malformed(f"{what} is not base64: {err}") from None
    # RFC 4648 §3.5: the unused bits of the last character are zero, so
    # one byte string has one encoding (and one changed character of a
    # signed file always changes what it says).
    if base64.b64encode(raw).decode("ascii") != text:
        raise malformed(f"{what} is not canonical base64 (non-zero padding bits)")
    return raw


def decimal(text: str) -> int | None:
    if not text or not text.isascii() or not text.isdigit() or (len(text) > 1 and text[0] == "0"):
        return None
    return int(text)


# ---------------------------------------------------------------------------
# §13 The tree
# ---------------------------------------------------------------------------


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_inclusion(leaf: bytes, index: int, size: int, path: list[bytes]) -> bytes:
    """RFC 9162 §2.1.3.2."""
    if index >= size:
        raise Refused("bad_proof", f"leaf {index} is not in a tree of {size}")
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            raise Refused("bad_proof", "the inclusion proof has too many hashes")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise Refused("bad_proof", "the inclusion proof has too few hashes")
    return r


def check_consistency(old: int, new: int, old_root: bytes, new_root: bytes, proof: list[bytes]) -> None:
    """RFC 9162 §2.1.4.2; equal sizes need an empty proof and equal roots."""
    if old > new:
        raise Refused("bad_proof", f"the old tree ({old}) is larger than the new ({new})")
    if old == new:
        if proof or old_root != new_root:
            raise Refused("bad_proof", "equal sizes, but not the same tree")
        return
    if old == 0 or not proof:
        raise Refused("bad_proof", "no consistency proof from the empty tree, and none empty")
    path = ([old_root] if old & (old - 1) == 0 else []) + proof
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise Refused("bad_proof", "the consistency proof has too many hashes")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise Refused("bad_proof", "the consistency proof has too few hashes")
    if fr != old_root or sr != new_root:
        raise Refused("bad_proof", f"the tree of {old} is not a prefix of the tree of {new}")


# ---------------------------------------------------------------------------
# §14 Keys and checkpoints
# ---------------------------------------------------------------------------


def note_key_id(name: str, public_key: bytes) -> bytes:
    return hashlib.sha256(name.encode("utf-8") + b"\n\x01" + public_key).digest()[:4]


def check_name(name: str) -> None:
    if not name or any(c.isspace() or c == "+" for c in name):
        raise malformed(f"key name {name!r} is empty or holds a space or a plus")


@dataclass
class Checkpoint:
    origin: str
    size: int
    root: bytes


@dataclass
class History:
    origin: str
    keys: list[tuple[int, bytes]]  # (first seq the key signs, public key)

    def key_at(self, seq: int) -> bytes | None:
        found = None
        for start, key in self.keys:
            if start <= seq:
                found = key
        return found


def parse_vkey(text: str) -> tuple[str, bytes]:
    parts = text.split("+", 2)
    if len(parts) != 3:
        raise malformed(f"verifier key {text!r} is not NAME+ID+KEY")
    name, kid, material = parts
    check_name(name)
    raw = b64(material, "verifier key material")
    if len(raw) != 33 or raw[0] != 1:
        raise malformed(f"verifier key {text!r} is not an Ed25519 key (0x01 and 32 bytes)")
    public_key = raw[1:]
    if not vx.public_key_valid(public_key):
        raise malformed(f"verifier key {text!r} is not a valid Ed25519 key")
    if kid != note_key_id(name, public_key).hex():
        raise malformed(f"verifier key {text!r}: its id does not match its name and key")
    return name, public_key


def parse_history(text: str) -> History:
    origin = None
    keys: list[tuple[int, bytes]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        start_text, _, vkey = line.partition(" ")
        if vkey:
            start = decimal(start_text)
            if start is None:
                raise malformed(f"key history: {start_text!r} is not a sequence number")
        else:
            start, vkey = 0, line
        name, key = parse_vkey(vkey.strip())
        if origin is not None and name != origin:
            raise malformed(f"key history: key named {name!r} after keys of {origin!r}")
        origin = name
        if (not keys and start != 0) or (keys and start <= keys[-1][0]):
            raise malformed("key history: keys out of order, or the first not from 0")
        keys.append((start, key))
    if origin is None:
        raise malformed("the key history holds no key")
    return History(origin, keys)


def split_note(note: str) -> tuple[str, list[tuple[str, bytes]]]:
    if any(ord(c) < 0x20 and c != "\n" for c in note):
        raise malformed("the note holds a control character")
    at = note.rfind("\n\n")
    if at < 0:
        raise malformed("the note has no blank line before its signatures")
    text, rest = note[: at + 1], note[at + 2:]
    if not rest.endswith("\n"):
        raise malformed("the note's signatures do not end in a newline")
    sigs = []
    for line in rest[:-1].split("\n"):
        if not line.startswith(EM_DASH + " "):
            raise malformed(f"{line!r} is not a signature line")
        name, _, sig = line[2:].partition(" ")
        check_name(name)
        raw = b64(sig, "a signature")
        if len(raw) < 5:
            raise malformed("a signature is too short")
        sigs.append((name, raw))
    if not 1 <= len(sigs) <= 100:
        raise malformed("a note carries 1 to 100 signatures")
    return text, sigs


def parse_checkpoint_text(text: str) -> Checkpoint:
    if not text.endswith("\n"):
        raise malformed("the checkpoint text does not end in a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3 or any(not line for line in lines):
        raise malformed("a checkpoint is at least three non-empty lines")
    size = decimal(lines[1])
    if size is None:
        raise malformed(f"checkpoint size {lines[1]!r} is not a decimal")
    root = b64(lines[2], "the checkpoint root")
    if len(root) != 32:
        raise malformed("the checkpoint root is not 32 bytes")
    return Checkpoint(lines[0], size, root)


def verify_checkpoint(note: str, history: History) -> Checkpoint:
    text, sigs = split_note(note)
    cp = parse_checkpoint_text(text)
    if cp.origin != history.origin:
        raise Refused("origin_mismatch", f"the checkpoint is for {cp.origin!r}, the keys for {history.origin!r}")
    verified = 0
    for name, raw in sigs:
        if name != history.origin:
            continue
        for i, (_, key) in enumerate(history.keys):
            if note_key_id(name, key) != raw[:4]:
                continue
            if not vx.signature_valid(key, text.encode("utf-8"), raw[4:]):
                raise Refused("bad_signature", f"the signature by key {raw[:4].hex()} does not verify")
            if i + 1 < len(history.keys) and cp.size >= history.keys[i + 1][0]:
                raise Refused("retired_key", f"key {raw[:4].hex()} was retired before a tree of {cp.size}")
            verified += 1
    if verified == 0:
        raise Refused("unknown_key", f"no signature by the keys of {history.origin!r}")
    return cp


# ---------------------------------------------------------------------------
# §15 Witnesses and cosignatures
# ---------------------------------------------------------------------------

COSIGNATURE_HEADER = "cosignature/v1"
#: §15: key id (4) ‖ time (8, BE) ‖ Ed25519 signature (64).
COSIGNATURE_LEN = 76


def witness_key_id(name: str, public_key: bytes) -> bytes:
    return hashlib.sha256(name.encode("utf-8") + b"\n\x04" + public_key).digest()[:4]


@dataclass(frozen=True)
class Witness:
    name: str
    public_key: bytes

    @property
    def key_id(self) -> bytes:
        return witness_key_id(self.name, self.public_key)


def parse_witness_vkey(text: str) -> Witness:
    """§15: ``name+<key id, 8 hex>+base64(0x04 ‖ public key)``."""
    parts = text.split("+", 2)
    if len(parts) != 3:
        raise malformed(f"witness key {text!r} is not NAME+ID+KEY")
    name, kid, material = parts
    check_name(name)
    raw = b64(material, "witness key material")
    if len(raw) != 33 or raw[0] != 4:
        raise malformed(f"witness key {text!r} is not a cosignature/v1 key (0x04 and 32 bytes)")
    public_key = raw[1:]
    if not vx.public_key_valid(public_key):
        raise malformed(f"witness key {text!r} is not a valid Ed25519 key")
    if kid != witness_key_id(name, public_key).hex():
        raise malformed(f"witness key {text!r}: its id does not match its name and key")
    return Witness(name, public_key)


def cosigned_message(text: str, time: int) -> bytes:
    return f"{COSIGNATURE_HEADER}\ntime {time}\n{text}".encode("utf-8")


def cosign(text: str, name: str, signing_key, time: int) -> str:
    """A cosignature line on a checkpoint's text (for the self-tests)."""
    public_key = bytes(signing_key.verify_key)
    sig = signing_key.sign(cosigned_message(text, time)).signature
    raw = witness_key_id(name, public_key) + time.to_bytes(8, "big") + sig
    return f"{EM_DASH} {name} {base64.b64encode(raw).decode()}\n"


def check_witnesses(notes: list[str], witnesses: list[Witness], minimum: int | None) -> list[str]:
    """§15's policy over the cosignatures of ``notes`` (one checkpoint, as
    one or more copies of its note): returns the names of the witnesses
    that cosigned. Each witness (a public key) counts once, whatever names
    it is given under; a line under a given witness's name and key id that
    does not verify is ``bad_signature``; lines of other keys are ignored;
    fewer than ``minimum`` (default: every witness given) is
    ``too_few_witnesses``."""
    need = len(witnesses) if minimum is None else minimum
    cosigned: dict[bytes, str] = {}
    for note in notes:
        text, sigs = split_note(note)
        for name, raw in sigs:
            for w in witnesses:
                if w.name != name or w.key_id != raw[:4]:
                    continue
                time = int.from_bytes(raw[4:12], "big")
                if len(raw) != COSIGNATURE_LEN or not vx.signature_valid(
                    w.public_key, cosigned_message(text, time), raw[12:]
                ):
                    raise Refused("bad_signature", f"the cosignature of witness {name!r} ({raw[:4].hex()}) does not verify")
                cosigned.setdefault(w.public_key, name)
    if len(cosigned) < need:
        who = ", ".join(sorted(cosigned.values())) or "none"
        raise Refused(
            "too_few_witnesses",
            f"{len(cosigned)} of the {len(witnesses)} witnesses given cosigned ({who}), {need} needed",
        )
    return sorted(cosigned.values())


def _hash_lines(lines: list[str], at: int) -> tuple[list[bytes], int]:
    hashes = []
    while True:
        if at >= len(lines):
            raise malformed("the proof ends before its blank line and checkpoint")
        if lines[at] == "":
            return hashes, at + 1
        h = b64(lines[at], "a proof hash")
        if len(h) != 32:
            raise malformed("a proof hash is not 32 bytes")
        hashes.append(h)
        at += 1


Policy = tuple[list[Witness], "int | None"]


def verify_inclusion(text: str, history: History, kept: str | None, policy: Policy | None = None) -> dict:
    lines = text.split("\n")
    if len(lines) < 4 or lines[0] != TLOG_PROOF_HEADER or not lines[1].startswith("extra "):
        raise malformed("not a Sealgate tlog-proof (header, extra line)")
    extra = b64(lines[1][len("extra "):], "the extra line")
    index = decimal(lines[2][len("index "):]) if lines[2].startswith("index ") else None
    if index is None or len(extra) < LEAF_DATA_LEN:
        raise malformed("bad index line, or extra data shorter than the leaf data")
    path, at = _hash_lines(lines, 3)
    note = "\n".join(lines[at:])
    cp = verify_checkpoint(note, history)
    if kept is not None:
        held = verify_checkpoint(kept, history)
        if (held.origin, held.size, held.root) != (cp.origin, cp.size, cp.root):
            raise Refused("checkpoint_mismatch", "the proof's checkpoint is not the one kept")
    leaf, event = extra[:LEAF_DATA_LEN], extra[LEAF_DATA_LEN:]
    seq = int.from_bytes(leaf[:8], "big")
    event_hash, signature = leaf[8:40], leaf[40:]
    if seq != index:
        raise Refused("leaf_mismatch", f"the leaf is seq {seq}, the proof index {index}")
    key = history.key_at(seq)
    if key is None:
        raise Refused("unknown_key", f"no key signs seq {seq}")
    if not vx.signature_valid(key, event_hash, signature):
        raise Refused("bad_event_signature", f"the signature of seq {seq} does not verify")
    if event:
        try:
            env = vx.decode_envelope(vx.parse_json(event.decode("utf-8")))
        except ValueError as err:  # FormatError, JSON and UTF-8 errors
            raise Refused("leaf_mismatch", f"the event cannot be read: {err}") from None
        if env.canonical != event or env.seq != seq or vx.event_hash(env.prev, event) != event_hash:
            raise Refused("leaf_mismatch", "the event is not the one its leaf is for")
    if root_from_inclusion(leaf_hash(leaf), index, cp.size, path) != cp.root:
        raise Refused("bad_proof", f"seq {seq} does not lead to the root of the tree of {cp.size}")
    result = {"proof": "inclusion", "seq": seq, "hash": event_hash.hex(), "tree_size": cp.size}
    if policy is not None:
        # §15: the cosignatures on the proof's checkpoint, or on the one
        # held (which is the same tree, checked above).
        notes = [note] + ([kept] if kept is not None else [])
        result["witnesses"] = check_witnesses(notes, *policy)
    return result


def verify_consistency(text: str, history: History, kept: str | None, policy: Policy | None = None) -> dict:
    if kept is None:
        raise malformed("a consistency proof is checked against the older checkpoint: give --checkpoint")
    lines = text.split("\n")
    if len(lines) < 3 or lines[0] != CONSISTENCY_HEADER or not lines[1].startswith("old "):
        raise malformed("not a Sealgate consistency proof")
    old_size = decimal(lines[1][len("old "):])
    if old_size is None:
        raise malformed("bad old line")
    proof, at = _hash_lines(lines, 2)
    note = "\n".join(lines[at:])
    new = verify_checkpoint(note, history)
    old = verify_checkpoint(kept, history)
    if old.size != old_size:
        raise Refused("checkpoint_mismatch", f"the proof is from {old_size}, the kept checkpoint of {old.size}")
    check_consistency(old.size, new.size, old.root, new.root, proof)
    result = {"proof": "consistency", "old_size": old.size, "new_size": new.size}
    if policy is not None:
        # The held checkpoint is an older tree: only the new one's
        # cosignatures count (the same tree only when the sizes are equal).
        notes = [note] + ([kept] if old.size == new.size else [])
        result["witnesses"] = check_witnesses(notes, *policy)
    return result


def verify(text: str, history: History, kept: str | None, policy: Policy | None = None) -> dict:
    if text.startswith(TLOG_PROOF_HEADER + "\n"):
        return verify_inclusion(text, history, kept, policy)
    if text.startswith(CONSISTENCY_HEADER + "\n"):
        return verify_consistency(text, history, kept, policy)
    raise malformed("not a proof")


def self_test() -> bool:
    """Reproduce FORMAT.md §12's tree and checkpoint from its two events."""
    import nacl.signing

    signing_key = nacl.signing.SigningKey(vx.EXAMPLE_SEED)
    prev, leaves = vx.ZERO_HASH, []
    for i in (0, 1):
        with open(os.path.join(vx.EXAMPLE_DIR, f"format-example-{i}.json"), "rb") as f:
            canonical = f.read().rstrip(b"\n")
        digest = vx.event_hash(prev, canonical)
        signature = signing_key.sign(digest).signature
        leaves.append(leaf_hash(i.to_bytes(8, "big") + digest + signature))
        prev = digest
    root = node_hash(leaves[0], leaves[1])
    origin = "sealgate/ledger/00112233445566778899aabbccddeeff"
    text = f"{origin}\n2\n{base64.b64encode(root).decode()}\n"
    public_key = bytes(signing_key.verify_key)
    sig = note_key_id(origin, public_key) + signing_key.sign(text.encode()).signature
    note = f"{text}\n{EM_DASH} {origin} {base64.b64encode(sig).decode()}\n"
    made = f"leaf 0 {leaves[0].hex()}\nleaf 1 {leaves[1].hex()}\nroot {root.hex()}\n{note}"
    with open(os.path.join(vx.EXAMPLE_DIR, "format-example-tree.txt"), encoding="utf-8") as f:
        expected = f.read()
    vkey = f"{origin}+{note_key_id(origin, public_key).hex()}+" + base64.b64encode(b"\x01" + public_key).decode()
    checks = [
        ("tree and checkpoint as in format-example-tree.txt", made == expected),
        ("the checkpoint verifies with its verifier key", verify_checkpoint(note, parse_history(vkey)).root == root),
        ("leaf 1 is leaf 0's inclusion proof", root_from_inclusion(leaves[0], 0, 2, [leaves[1]]) == root),
    ]
    checks += _cosignature_checks(note, text)
    for name, passed in checks:
        print(f"{'ok  ' if passed else 'FAIL'} {name}")
    return all(passed for _, passed in checks)


def refusal(fn, *args) -> str | None:
    """The reason ``fn(*args)`` is refused, or None if it is not."""
    try:
        fn(*args)
    except Refused as err:
        return err.kind
    return None


def witness_vkey(name: str, public_key: bytes) -> str:
    return f"{name}+{witness_key_id(name, public_key).hex()}+" + base64.b64encode(b"\x04" + public_key).decode()


def _cosignature_checks(note: str, text: str) -> list[tuple[str, bool]]:
    """§15: a witness (a key made here) cosigns §12's checkpoint."""
    import nacl.signing

    w_key = nacl.signing.SigningKey(bytes([0x0B]) * 32)
    other = nacl.signing.SigningKey(bytes([0x0C]) * 32)
    name = "example.com/witness"
    w = parse_witness_vkey(witness_vkey(name, bytes(w_key.verify_key)))
    w2 = parse_witness_vkey(witness_vkey("example.org/w2", bytes(other.verify_key)))
    alias = Witness("example.net/alias", w.public_key)
    line = cosign(text, name, w_key, 1_765_000_000)
    cosigned = note + line
    prefix, encoded = line[:-1].rsplit(" ", 1)
    raw = bytearray(base64.b64decode(encoded))

    def with_raw(edit) -> str:
        changed = bytearray(raw)
        edit(changed)
        return note + f"{prefix} {base64.b64encode(bytes(changed)).decode()}\n"

    def flip(at):
        return lambda b: b.__setitem__(at, b[at] ^ 1)

    # A line under the witness's name by another key (another key id).
    stranger = note + cosign(text, name, other, 1_765_000_000)
    origin = text.split("\n", 1)[0]
    vkey = f"{origin}+{note_key_id(origin, bytes(nacl.signing.SigningKey(vx.EXAMPLE_SEED).verify_key)).hex()}+"
    vkey += base64.b64encode(b"\x01" + bytes(nacl.signing.SigningKey(vx.EXAMPLE_SEED).verify_key)).decode()
    return [
        ("a cosigned checkpoint still verifies as a checkpoint",
         verify_checkpoint(cosigned, parse_history(vkey)).size == 2),
        ("the witness's cosignature counts", check_witnesses([cosigned], [w], None) == [name]),
        ("a witness that did not cosign: too_few_witnesses",
         refusal(check_witnesses, [cosigned], [w, w2], None) == "too_few_witnesses"),
        ("1 of 2 is enough with --min-witnesses 1", check_witnesses([cosigned], [w, w2], 1) == [name]),
        ("no cosignature: too_few_witnesses", refusal(check_witnesses, [note], [w], None) == "too_few_witnesses"),
        ("a changed signature byte: bad_signature",
         refusal(check_witnesses, [with_raw(flip(40))], [w], None) == "bad_signature"),
        ("a changed time: bad_signature",
         refusal(check_witnesses, [with_raw(flip(11))], [w], None) == "bad_signature"),
        ("a changed key id: ignored, so too_few_witnesses",
         refusal(check_witnesses, [with_raw(flip(0))], [w], None) == "too_few_witnesses"),
        ("another key under the witness's name: ignored",
         refusal(check_witnesses, [stranger], [w], None) == "too_few_witnesses"),
        ("a cosignature of another checkpoint: bad_signature",
         refusal(check_witnesses, [note.replace("\n2\n", "\n3\n", 1) + line], [w], None) == "bad_signature"),
        ("one key under two names counts once",
         refusal(check_witnesses, [cosigned + cosign(text, alias.name, w_key, 1_765_000_001)], [w, alias], 2)
         == "too_few_witnesses"),
        ("a witness key is not a log key (type 0x04)",
         refusal(parse_vkey, witness_vkey(name, w.public_key)) == "malformed"),
    ]


def add_witness_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--witness", action="append", default=[], metavar="VKEY",
        help="a witness's verifier key (inline, or a file holding it); repeatable",
    )
    parser.add_argument(
        "--min-witnesses", type=int, metavar="M",
        help="how many of the witnesses given must have cosigned (default: all)",
    )


class UsageError(Exception):
    pass


def read_policy(args: argparse.Namespace) -> Policy | None:
    """The witnesses given (a file's content or the argument itself) and
    M; None without --witness. Raises OSError or UsageError (exit 2)."""
    if not args.witness:
        if args.min_witnesses is not None:
            raise UsageError("--min-witnesses needs --witness")
        return None
    if args.min_witnesses is not None and args.min_witnesses < 0:
        raise UsageError("--min-witnesses is not a count")
    witnesses = []
    for given in args.witness:
        text = given
        if os.path.isfile(given):
            with open(given, encoding="utf-8") as f:
                text = f.read()
        try:
            witnesses.append(parse_witness_vkey(text.strip()))
        except Refused as err:
            raise UsageError(f"--witness {given}: {err.detail}") from None
    if args.min_witnesses is not None and args.min_witnesses > len(witnesses):
        raise UsageError(f"--min-witnesses {args.min_witnesses}: only {len(witnesses)} witness keys given")
    return witnesses, args.min_witnesses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Verify a Sealgate inclusion or consistency proof per FORMAT.md.")
    if argv is None:
        argv = sys.argv[1:]
    if argv == ["--self-test"]:
        return 0 if self_test() else 1
    parser.add_argument("proof")
    parser.add_argument("--keys", required=True, help="key history (sealgate key-history) or one verifier key")
    parser.add_argument("--checkpoint", help="the checkpoint kept (required for a consistency proof)")
    add_witness_arguments(parser)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        policy = read_policy(args)
        with open(args.proof, encoding="utf-8") as f:
            text = f.read()
        with open(args.keys, encoding="utf-8") as f:
            keys_text = f.read()
        kept = None
        if args.checkpoint:
            with open(args.checkpoint, encoding="utf-8") as f:
                kept = f.read()
    except (OSError, UnicodeDecodeError, UsageError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        result = verify(text, parse_history(keys_text), kept, policy)
    except Refused as refusal:
        if args.json:
            print(json.dumps({"ok": False, "reason": refusal.kind, "detail": refusal.detail}))
        else:
            print(f"REFUSED: {refusal.kind}: {refusal.detail}")
        return 1
    print(json.dumps({"ok": True, "verified": result}) if args.json else f"OK: {result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
