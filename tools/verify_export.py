#!/usr/bin/env python3
"""Independent verifier for Sealgate ledger exports (ledger format version 1).

This program is written from ``docs/FORMAT.md`` alone, to show that the
document is enough to verify a Sealgate log without Sealgate's own code. It
reads the export of FORMAT.md §11 (``sealgate log -o json``: one JSON object
per line with ``seq``, ``hash``, ``signature`` and ``event``) from a file or
from stdin, and checks it as FORMAT.md §9 describes:

* every envelope is decoded (§3) and re-encoded in canonical JSON (§2) by this
  program; the input text is never hashed as such;
* the hash of every event (§5) is recomputed and compared with the exported
  one, and linked to its predecessor;
* the genesis event (§7), key ids (§6) and key rotations with their proofs
  (§8) build the key schedule, and each event's Ed25519 signature is checked
  strictly under the key valid at its position;
* sequence numbers are dense from 0, timestamps never go backwards (beyond an
  optional tolerance), and an optional pinned head ``SEQ:HASH`` must match.

The store-specific checks of §9 (``meta_mismatch``, ``time_index_mismatch``,
the ledger id against the store's) do not apply to an export. An export must start at seq 0.

Usage::

    verify_export.py [FILE] [--head SEQ:HASH] [--time-tolerance-ms N] [--json]
    verify_export.py --self-test

Exit status: 0 if everything verifies, 1 at the first failure (reported as
``FAILED at seq N: <kind>: <detail>`` with a §9 failure name), 2 on usage or
I/O errors.

Dependencies: Python 3.11 and the PyPI packages ``blake3`` and ``PyNaCl``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Iterable, Iterator, NoReturn

try:
    import blake3
    import nacl.bindings
    import nacl.exceptions
    import nacl.signing
except ImportError as _err:  # pragma: no cover - environment problem
    print(f"error: {_err}; this verifier needs the PyPI packages blake3 and PyNaCl",
          file=sys.stderr)
    sys.exit(2)

# ---------------------------------------------------------------------------
# Constants of the format
# ---------------------------------------------------------------------------

#: §5: domain-separation tag of event hashes, followed by a zero byte.
EVENT_HASH_TAG = b"sealgate.event.v1\x00"
#: §8: domain-separation tag of rotation proofs, followed by a zero byte.
ROTATION_TAG = b"sealgate.rotation.v1\x00"
#: §6: BLAKE3 derive_key context of key ids.
KEY_ID_CONTEXT = "sealgate 2026-11 key id v1"

#: §5: the "previous hash" of the event at seq 0.
ZERO_HASH = bytes(32)
#: §2.3: the range of integers allowed in signed data.
INT_MIN = -(2**63)
INT_MAX = 2**64 - 1
#: §3: `seq`, `answers` (a seq) and `ts` (nanoseconds) are unsigned 64-bit.
U64_MAX = 2**64 - 1
#: §3: `request_id` integers are 64-bit signed.
I64_MIN, I64_MAX = -(2**63), 2**63 - 1
#: §3: maximum size of an envelope's canonical encoding.
MAX_ENVELOPE_BYTES = 1 << 20
#: §3: maximum size (UTF-8 bytes) of `actor`/`subject` strings but `resource`.
MAX_LABEL_BYTES = 1024
#: §3: how deep values nest, the envelope being level 0.
MAX_DEPTH = 64
#: §3: the only envelope version this verifier knows.
ENVELOPE_VERSION = 1

KIND_GENESIS = "ledger.genesis"
KIND_ROTATED = "key.rotated"

#: The failure kinds of §9 that can occur for an export (the store-only
#: `meta_mismatch` and `time_index_mismatch` cannot).
FAILURE_KINDS = (
    "gap",
    "malformed",
    "sequence_mismatch",
    "hash_mismatch",
    "bad_link",
    "time_went_backwards",
    "bad_genesis",
    "unknown_key",
    "key_not_valid",
    "bad_rotation",
    "head_mismatch",
    "bad_signature",
    "truncated",
)

_HEX_RE = {n: re.compile(f"[0-9a-f]{{{n}}}") for n in (16, 32, 64, 128)}
_INT_LITERAL_RE = re.compile(r"-?(?:0|[1-9][0-9]*)")
_TS_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})\.([0-9]{9})Z"
)
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


class FormatError(ValueError):
    """Data that does not follow the format (reported as a §9 failure)."""


def is_int(value: Any) -> bool:
    """True for JSON integers (Python's ``bool`` is an ``int``, JSON's is not)."""
    return type(value) is int


def is_hex(value: Any, digits: int) -> bool:
    """True if ``value`` is a string of exactly ``digits`` lowercase hex digits."""
    return isinstance(value, str) and _HEX_RE[digits].fullmatch(value) is not None


def short(digest: bytes | str) -> str:
    """The first 12 hex digits of a hash, for messages."""
    text = digest.hex() if isinstance(digest, bytes) else digest
    return text[:12]


# ---------------------------------------------------------------------------
# §2 Canonical JSON: strict parsing and canonical encoding
# ---------------------------------------------------------------------------


def _reject_float(literal: str) -> NoReturn:
    raise FormatError(f"number {literal} is not an integer (no floats in signed data)")


def _reject_constant(literal: str) -> NoReturn:
    raise FormatError(f"{literal} is not JSON")


def _parse_int(literal: str) -> int:
    # The C scanner only hands over ASCII integer literals; check anyway, and
    # reject `-0`, which many JSON readers take for the float -0.0.
    if _INT_LITERAL_RE.fullmatch(literal) is None or literal == "-0":
        raise FormatError(f"number {literal} is not a plain integer")
    if len(literal) > 21:  # longer than -9223372036854775808: out of range
        raise FormatError(f"integer {literal[:24]}... outside -2^63 .. 2^64-1")
    return int(literal)


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise FormatError(f"duplicate key {json.dumps(key)}")
        obj[key] = value
    return obj


_DECODER = json.JSONDecoder(
    parse_float=_reject_float,
    parse_int=_parse_int,
    parse_constant=_reject_constant,
    object_pairs_hook=_unique_object,
    strict=True,  # no raw control characters inside strings
)


def parse_json(text: str) -> Any:
    """Parse one JSON text strictly: integers only (exact), unique keys.

    Raises FormatError for anything that could not be part of signed data or
    that a different JSON reader might read differently.
    """
    try:
        return _DECODER.decode(text)
    except FormatError:
        raise
    except RecursionError:
        raise FormatError("JSON nested too deeply") from None
    except ValueError as err:  # json.JSONDecodeError and int() limits
        raise FormatError(f"invalid JSON: {err}") from None


# §2.4: the only escapes; every other character is written as its UTF-8 bytes.
_ESCAPES = {ord('"'): '\\"', ord("\\"): "\\\\"}
_ESCAPES.update({c: f"\\u{c:04x}" for c in range(0x20)})
_ESCAPES.update(
    {0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r"}
)


def _encode_string(text: str) -> bytes:
    try:
        return b'"' + text.translate(_ESCAPES).encode("utf-8") + b'"'
    except UnicodeEncodeError:
        # A lone surrogate (e.g. from "\ud800" in the input) is not a
        # Unicode scalar value and has no UTF-8 encoding.
        raise FormatError("string contains a lone surrogate") from None



def _sorted_members(obj: dict[str, Any]) -> list[tuple[str, Any]]:
    """Object members sorted by their key's UTF-8 bytes, as unsigned bytes.

    Sorting must use the raw key bytes, not the escaped form (`"` is 0x22 raw
    but starts with 0x5c escaped).
    """
    try:
        return sorted(obj.items(), key=lambda item: item[0].encode("utf-8"))
    except UnicodeEncodeError:
        raise FormatError("object key contains a lone surrogate") from None


def _encode_value(value: Any, out: list[bytes], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise FormatError(f"value nested deeper than {MAX_DEPTH} levels")
    if value is None:
        out.append(b"null")
    elif value is True:
        out.append(b"true")
    elif value is False:
        out.append(b"false")
    elif is_int(value):
        if not INT_MIN <= value <= INT_MAX:
            raise FormatError(f"integer {value} outside -2^63 .. 2^64-1")
        out.append(str(value).encode("ascii"))
    elif isinstance(value, str):
        out.append(_encode_string(value))
    elif isinstance(value, list):
        out.append(b"[")
        for i, item in enumerate(value):
            if i:
                out.append(b",")
            _encode_value(item, out, depth + 1)
        out.append(b"]")
    elif isinstance(value, dict):
        out.append(b"{")
        for i, (key, item) in enumerate(_sorted_members(value)):
            if i:
                out.append(b",")
            out.append(_encode_string(key))
            out.append(b":")
            _encode_value(item, out, depth + 1)
        out.append(b"}")
    else:
        raise FormatError(f"{type(value).__name__} cannot be encoded canonically")


def canonical_encode(value: Any) -> bytes:
    """The canonical JSON encoding (§2) of a parsed JSON value.

    Raises FormatError for values that have none (floats, integers out of
    range, strings that are not Unicode scalar values).
    """
    out: list[bytes] = []
    try:
        _encode_value(value, out, 0)
    except RecursionError:
        raise FormatError("JSON nested too deeply") from None
    return b"".join(out)


# ---------------------------------------------------------------------------
# §3 The envelope
# ---------------------------------------------------------------------------

ENVELOPE_MEMBERS = frozenset(
    {"actor", "body", "correlation", "key", "kind", "prev", "seq", "subject", "ts", "v"}
)
ACTOR_STRINGS = frozenset({"agent", "principal", "session"})
ACTOR_LISTS = frozenset({"teams"})
SUBJECT_STRINGS = frozenset({"prompt", "resource", "server", "tool"})
SUBJECT_LISTS = frozenset({"env"})
#: §3: `subject.resource` is the one label without the 1024-byte limit.
UNLIMITED_LABELS = frozenset({"resource"})


@dataclass(frozen=True)
class Envelope:
    """A decoded, validated envelope and its canonical encoding."""

    seq: int
    kind: str
    key: str  # 32 hex: id of the signing key
    prev: bytes  # 32 raw bytes
    ts: str
    ts_ns: int  # nanoseconds since 1970
    body: dict[str, Any]
    canonical: bytes


def parse_timestamp(ts: Any) -> int:
    """§3 `ts`: ``YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`` to nanoseconds since 1970.

    The time must be a real UTC calendar time (no leap second 60) that fits
    in an unsigned 64-bit count of nanoseconds since 1970 (so at most
    2554-07-21T23:34:33.709551615Z).
    """
    if not isinstance(ts, str):
        raise FormatError("ts is not a string")
    match = _TS_RE.fullmatch(ts)
    if match is None:
        raise FormatError(f"ts {ts!r} is not YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    try:
        moment = datetime.datetime(
            year, month, day, hour, minute, second, tzinfo=datetime.timezone.utc
        )
    except ValueError as err:
        raise FormatError(f"ts {ts!r} is not a valid time: {err}") from None
    delta = moment - _EPOCH
    nanos = (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + int(match.group(7))
    if not 0 <= nanos <= U64_MAX:
        raise FormatError(f"ts {ts!r} is outside 1970 .. 2554-07-21T23:34:33.709551615Z")
    return nanos


def _check_label(where: str, value: Any, limited: bool) -> None:
    if not isinstance(value, str) or not value:
        raise FormatError(f"{where} is not a non-empty string")
    if limited and len(value.encode("utf-8", "surrogatepass")) > MAX_LABEL_BYTES:
        raise FormatError(f"{where} is longer than {MAX_LABEL_BYTES} bytes")


def _check_labels(
    name: str, obj: Any, strings: frozenset[str], lists: frozenset[str]
) -> None:
    """`actor` / `subject`: optional non-empty strings and non-empty lists of them."""
    if not isinstance(obj, dict):
        raise FormatError(f"{name} is not an object")
    for member, value in obj.items():
        where = f"{name}.{member}"
        limited = member not in UNLIMITED_LABELS
        if member in strings:
            _check_label(where, value, limited)
        elif member in lists:
            # §2.6: empty lists are omitted, never [] (and never null).
            if not isinstance(value, list) or not value:
                raise FormatError(f"{where} is not a non-empty array")
            for i, item in enumerate(value):
                _check_label(f"{where}[{i}]", item, limited)
        else:
            raise FormatError(f"{where} is not a member of {name}")


def _check_correlation(obj: Any) -> None:
    if not isinstance(obj, dict):
        raise FormatError("correlation is not an object")
    for member, value in obj.items():
        where = f"correlation.{member}"
        if member == "answers":
            if not is_int(value) or not 0 <= value <= U64_MAX:
                raise FormatError(f"{where} is not a seq (unsigned 64-bit integer)")
        elif member == "request_id":
            if is_int(value):
                if not I64_MIN <= value <= I64_MAX:
                    raise FormatError(f"{where} is not a 64-bit signed integer")
            elif not isinstance(value, str):
                raise FormatError(f"{where} is neither an integer nor a string")
        elif member == "span_id":
            if not is_hex(value, 16):
                raise FormatError(f"{where} is not 16 lowercase hex digits")
        elif member == "trace_id" or member == "call_id":
            if not is_hex(value, 32):
                raise FormatError(f"{where} is not 32 lowercase hex digits")
        else:
            raise FormatError(f"{where} is not a member of correlation")


def decode_envelope(obj: Any) -> Envelope:
    """Validate a parsed envelope against §3 and encode it canonically (§2).

    Raises FormatError (reported as `malformed`) if the envelope does not
    decode, uses an unknown version, or has no canonical form.
    """
    if not isinstance(obj, dict):
        raise FormatError("event is not a JSON object")
    # §3: an unknown version makes the event unreadable; say so first.
    if "v" in obj and obj["v"] != ENVELOPE_VERSION:
        raise FormatError(f"unknown envelope version v={obj['v']!r}")
    missing = ENVELOPE_MEMBERS - obj.keys()
    extra = obj.keys() - ENVELOPE_MEMBERS
    if missing or extra:
        parts = []
        if missing:
            parts.append("missing " + ", ".join(sorted(missing)))
        if extra:
            parts.append("unknown " + ", ".join(sorted(extra)))
        raise FormatError("envelope members: " + "; ".join(parts))
    if not is_int(obj["v"]):
        raise FormatError("v is not an integer")

    _check_labels("actor", obj["actor"], ACTOR_STRINGS, ACTOR_LISTS)
    _check_labels("subject", obj["subject"], SUBJECT_STRINGS, SUBJECT_LISTS)
    _check_correlation(obj["correlation"])
    if not isinstance(obj["body"], dict):
        raise FormatError("body is not an object")
    if not is_hex(obj["key"], 32):
        raise FormatError("key is not 32 lowercase hex digits")
    if not isinstance(obj["kind"], str) or not obj["kind"]:
        raise FormatError("kind is not a non-empty string")
    if not is_hex(obj["prev"], 64):
        raise FormatError("prev is not 64 lowercase hex digits")
    seq = obj["seq"]
    if not is_int(seq) or not 0 <= seq <= U64_MAX:
        raise FormatError("seq is not an unsigned 64-bit integer")
    ts_ns = parse_timestamp(obj["ts"])

    canonical = canonical_encode(obj)
    if len(canonical) > MAX_ENVELOPE_BYTES:
        raise FormatError(
            f"canonical envelope is {len(canonical)} bytes, more than {MAX_ENVELOPE_BYTES}"
        )
    return Envelope(
        seq=seq,
        kind=obj["kind"],
        key=obj["key"],
        prev=bytes.fromhex(obj["prev"]),
        ts=obj["ts"],
        ts_ns=ts_ns,
        body=obj["body"],
        canonical=canonical,
    )


# ---------------------------------------------------------------------------
# §5 Hash
# ---------------------------------------------------------------------------


def event_hash(prev: bytes, canonical: bytes) -> bytes:
    """BLAKE3("sealgate.event.v1" ‖ 0x00 ‖ prev ‖ canonical), 32 bytes."""
    return blake3.blake3(EVENT_HASH_TAG + prev + canonical).digest()


# ---------------------------------------------------------------------------
# §6 Keys and signatures
# ---------------------------------------------------------------------------


def key_id(public_key: bytes) -> str:
    """The 32-hex key id of a 32-byte Ed25519 public key."""
    derived = blake3.blake3(public_key, derive_key_context=KEY_ID_CONTEXT).digest()
    return derived[:16].hex()


def public_key_valid(public_key: bytes) -> bool:
    """§6: a genesis or rotation key is the canonical encoding of a point in
    the prime-order subgroup other than the identity (libsodium's
    crypto_core_ed25519_is_valid_point)."""
    return len(public_key) == 32 and bool(
        nacl.bindings.crypto_core_ed25519_is_valid_point(public_key)
    )


def signature_valid(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Strict Ed25519 verification (libsodium: canonical S, no small-order R
    or key, R compared byte for byte)."""
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.CryptoError,
            ValueError, TypeError):
        return False
    return True


@dataclass
class KeySchedule:
    """Which key is valid at which position: (valid_from, key id, public key)."""

    entries: list[tuple[int, str, bytes]] = field(default_factory=list)

    def introduce(self, valid_from: int, kid: str, public_key: bytes) -> None:
        self.entries.append((valid_from, kid, public_key))

    def introduced(self, kid: str) -> bool:
        return any(entry[1] == kid for entry in self.entries)

    def valid_at(self, n: int) -> tuple[str, bytes] | None:
        """The key valid at position n: the last one introduced from ≤ n."""
        current = None
        for valid_from, kid, public_key in self.entries:
            if valid_from <= n:
                current = (kid, public_key)
        return current


# ---------------------------------------------------------------------------
# §7 Genesis
# ---------------------------------------------------------------------------

GENESIS_BODY_MEMBERS = frozenset({"format", "ledger_id", "public_key"})


def check_genesis(env: Envelope) -> tuple[bytes, bytes]:
    """§7 for the event at seq 0; returns (ledger id, first public key)."""
    if env.kind != KIND_GENESIS:
        raise FormatError(f"the event at seq 0 is {env.kind!r}, not {KIND_GENESIS!r}")
    body = env.body
    if body.keys() != GENESIS_BODY_MEMBERS:
        raise FormatError(
            "genesis body members are " + ", ".join(sorted(body)) +
            "; expected exactly format, ledger_id, public_key"
        )
    if not is_int(body["format"]) or body["format"] != 1:
        raise FormatError(f"genesis format is {body['format']!r}, not 1")
    if not is_hex(body["ledger_id"], 32):
        raise FormatError("genesis ledger_id is not 32 lowercase hex digits")
    if not is_hex(body["public_key"], 64):
        raise FormatError("genesis public_key is not 64 lowercase hex digits")
    public_key = bytes.fromhex(body["public_key"])
    if not public_key_valid(public_key):
        raise FormatError("genesis public_key is not a valid Ed25519 key (§6: canonical, prime order, not the identity)")
    expected = key_id(public_key)
    if env.key != expected:
        raise FormatError(f"envelope key {env.key} is not the genesis key's id {expected}")
    if env.prev != ZERO_HASH:
        raise FormatError("genesis prev is not 64 zeros")
    return bytes.fromhex(body["ledger_id"]), public_key


# ---------------------------------------------------------------------------
# §8 Key rotation
# ---------------------------------------------------------------------------

ROTATION_REQUIRED = frozenset({"new_key", "new_public_key", "proof"})
ROTATION_OPTIONAL = frozenset({"reason"})


def rotation_digest(ledger_id: bytes, outgoing_key_id: bytes, new_public_key: bytes) -> bytes:
    """The 32 bytes a new key signs to accept its introduction (§8)."""
    return blake3.blake3(ROTATION_TAG + ledger_id + outgoing_key_id + new_public_key).digest()


def check_rotation(env: Envelope, ledger_id: bytes, schedule: KeySchedule) -> tuple[str, bytes]:
    """§8 for a `key.rotated` event; returns (new key id, new public key)."""
    body = env.body
    missing = ROTATION_REQUIRED - body.keys()
    extra = body.keys() - ROTATION_REQUIRED - ROTATION_OPTIONAL
    if missing or extra:
        raise FormatError(
            "rotation body members are " + ", ".join(sorted(body)) +
            "; expected new_key, new_public_key, proof and optionally reason"
        )
    if "reason" in body and not isinstance(body["reason"], str):
        raise FormatError("rotation reason is not a string")
    if not is_hex(body["new_key"], 32):
        raise FormatError("new_key is not 32 lowercase hex digits")
    if not is_hex(body["new_public_key"], 64):
        raise FormatError("new_public_key is not 64 lowercase hex digits")
    if not is_hex(body["proof"], 128):
        raise FormatError("proof is not 128 lowercase hex digits")
    new_public_key = bytes.fromhex(body["new_public_key"])
    if not public_key_valid(new_public_key):
        raise FormatError("new_public_key is not a valid Ed25519 key (§6: canonical, prime order, not the identity)")
    new_key = body["new_key"]
    expected = key_id(new_public_key)
    if new_key != expected:
        raise FormatError(f"new_key {new_key} is not the id {expected} of new_public_key")
    if schedule.introduced(new_key):
        raise FormatError(f"new key {new_key} was already introduced earlier in the log")
    digest = rotation_digest(ledger_id, bytes.fromhex(env.key), new_public_key)
    if not signature_valid(new_public_key, digest, bytes.fromhex(body["proof"])):
        raise FormatError(f"proof is not the new key's signature over the rotation of {env.key}")
    return new_key, new_public_key


# ---------------------------------------------------------------------------
# §11 Export records
# ---------------------------------------------------------------------------

RECORD_MEMBERS = frozenset({"seq", "hash", "signature", "event"})


@dataclass(frozen=True)
class Record:
    """One export line: the exported seq, hash and signature, and the envelope."""

    seq: int
    hash: bytes
    signature: bytes
    envelope: Envelope


def parse_record_json(line: bytes) -> Any:
    """Parse an export line (strict UTF-8, strict JSON)."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as err:
        raise FormatError(f"line is not UTF-8: {err}") from None
    return parse_json(text)


def record_seq(obj: Any) -> int | None:
    """The exported `seq` of a parsed line, if it has a usable one."""
    if isinstance(obj, dict) and is_int(obj.get("seq")) and 0 <= obj["seq"] <= U64_MAX:
        return obj["seq"]
    return None


def decode_record(obj: Any) -> Record:
    """Validate a parsed export line (§11) and decode its envelope (§3)."""
    if not isinstance(obj, dict):
        raise FormatError("line is not a JSON object")
    if obj.keys() != RECORD_MEMBERS:
        raise FormatError(
            "line members are " + ", ".join(sorted(obj)) +
            "; expected exactly seq, hash, signature, event"
        )
    seq = record_seq(obj)
    if seq is None:
        raise FormatError("line seq is not an unsigned 64-bit integer")
    if not is_hex(obj["hash"], 64):
        raise FormatError("line hash is not 64 lowercase hex digits")
    if not is_hex(obj["signature"], 128):
        raise FormatError("line signature is not 128 lowercase hex digits")
    return Record(
        seq=seq,
        hash=bytes.fromhex(obj["hash"]),
        signature=bytes.fromhex(obj["signature"]),
        envelope=decode_envelope(obj["event"]),
    )


def read_lines(stream: BinaryIO) -> Iterator[bytes]:
    """The export's lines, without their line ends (§11).

    Lines end at LF only (a binary stream splits there; U+2028, U+2029 and
    U+0085 stay inside their strings). A final newline is normal; blank
    lines after the last record are tolerated, but a blank line followed by
    a record is returned as an empty line so that it is reported as
    malformed.
    """
    blanks = 0
    for raw in stream:
        line = raw.rstrip(b"\r\n")
        if not line.strip(b" \t\r"):
            blanks += 1
            continue
        if blanks:
            blanks = 0
            yield b""
        yield line


# ---------------------------------------------------------------------------
# §9 Verification
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Head:
    """A (seq, hash) pair: a pinned head or the last verified event."""

    seq: int
    hash: bytes


@dataclass(frozen=True)
class Failure:
    seq: int
    kind: str
    detail: str


@dataclass(frozen=True)
class Result:
    events: int  # events that passed every check
    last: Head | None  # the last of them
    failure: Failure | None

    @property
    def ok(self) -> bool:
        return self.failure is None


class _Fail(Exception):
    def __init__(self, seq: int, kind: str, detail: str) -> None:
        assert kind in FAILURE_KINDS, kind
        super().__init__(seq, kind, detail)
        self.failure = Failure(seq, kind, detail)


def _introduced_later(kid: str, env: Envelope, rest: Iterator[bytes]) -> bool:
    """Whether `kid` is introduced by this event's rotation or a later one.

    Only used to tell `key_not_valid` (a newer key of this log used at an
    earlier position) from `unknown_key`; consumes the rest of the input and
    reads it leniently, since nothing after the failure is verified.
    """
    if env.kind == KIND_ROTATED and env.body.get("new_key") == kid:
        return True
    for line in rest:
        try:
            event = json.loads(line).get("event", {})
            if event.get("kind") == KIND_ROTATED and event.get("body", {}).get("new_key") == kid:
                return True
        except (ValueError, AttributeError, RecursionError):
            continue
    return False


def verify_export(
    lines: Iterable[bytes], pinned: Head | None = None, tolerance_ms: int = 0
) -> Result:
    """Verify an export, event by event, in the order of §9; stop at the first failure."""
    tolerance_ns = tolerance_ms * 1_000_000
    prev_hash = ZERO_HASH
    max_ts = 0  # latest timestamp seen so far (§9 step 6)
    schedule = KeySchedule()
    ledger_id = b""
    last: Head | None = None
    n = 0
    it = iter(lines)
    try:
        for line in it:
            # 1. gap / 2. malformed. The exported `seq` stands for the store's
            # key: if it is further on, position n is missing.
            try:
                obj = parse_record_json(line) if line else None
                if obj is None:
                    raise FormatError("blank line")
            except FormatError as err:
                raise _Fail(n, "malformed", str(err)) from None
            stored = record_seq(obj)
            if stored is not None and stored > n:
                raise _Fail(n, "gap", f"no event at seq {n}; the next line is seq {stored}")
            try:
                record = decode_record(obj)
            except FormatError as err:
                raise _Fail(n, "malformed", str(err)) from None
            env = record.envelope

            # 3. sequence_mismatch: both the line's and the envelope's seq are n.
            if record.seq != n:
                raise _Fail(n, "sequence_mismatch",
                            f"line at position {n} is seq {record.seq} (duplicate or out of order)")
            if env.seq != n:
                raise _Fail(n, "sequence_mismatch", f"the envelope says seq {env.seq}")

            # 4. hash_mismatch: §5 with the envelope's own prev.
            computed = event_hash(env.prev, env.canonical)
            if computed != record.hash:
                raise _Fail(n, "hash_mismatch",
                            f"event hashes to {short(computed)} but the line says {short(record.hash)}")

            # 5. bad_link
            if env.prev != prev_hash:
                raise _Fail(n, "bad_link",
                            f"prev is {short(env.prev)} but seq {n - 1} hashes to {short(prev_hash)}"
                            if n else "prev of seq 0 is not 64 zeros")

            # 6. time_went_backwards
            if env.ts_ns < max_ts - tolerance_ns:
                raise _Fail(n, "time_went_backwards",
                            f"ts {env.ts} is {(max_ts - env.ts_ns) / 1e6:.3f} ms before the latest earlier timestamp"
                            f" (tolerance {tolerance_ms} ms)")

            # 7. bad_genesis; the genesis key starts the schedule.
            if n == 0:
                try:
                    ledger_id, genesis_key = check_genesis(env)
                except FormatError as err:
                    raise _Fail(n, "bad_genesis", str(err)) from None
                schedule.introduce(0, env.key, genesis_key)
            elif env.kind == KIND_GENESIS:
                raise _Fail(n, "bad_genesis", f"{KIND_GENESIS} event at seq {n} > 0")

            # 8. unknown_key / key_not_valid
            valid = schedule.valid_at(n)
            assert valid is not None  # the genesis key is valid from 0
            valid_id, public_key = valid
            if env.key != valid_id:
                if schedule.introduced(env.key) or _introduced_later(env.key, env, it):
                    raise _Fail(n, "key_not_valid",
                                f"key {env.key} belongs to this log but is not valid at seq {n};"
                                f" {valid_id} is")
                raise _Fail(n, "unknown_key", f"key {env.key} was never introduced by this log")

            # 9. bad_rotation; the new key is valid from n + 1.
            if env.kind == KIND_ROTATED:
                try:
                    new_id, new_public_key = check_rotation(env, ledger_id, schedule)
                except FormatError as err:
                    raise _Fail(n, "bad_rotation", str(err)) from None
                schedule.introduce(n + 1, new_id, new_public_key)

            # 10. head_mismatch
            if pinned is not None and pinned.seq == n and pinned.hash != computed:
                raise _Fail(n, "head_mismatch",
                            f"the pinned head says seq {n} is {short(pinned.hash)}"
                            f" but the event there hashes to {short(computed)}")

            # 11. bad_signature: Ed25519 over the 32 raw hash bytes.
            if not signature_valid(public_key, computed, record.signature):
                raise _Fail(n, "bad_signature", f"signature does not verify under key {valid_id}")

            prev_hash, max_ts = computed, max(max_ts, env.ts_ns)
            last = Head(n, computed)
            n += 1

        # After the last event.
        if last is None:
            raise _Fail(0, "truncated", "the export is empty: a log starts with its genesis at seq 0")
        if pinned is not None and pinned.seq > last.seq:
            raise _Fail(n, "truncated",
                        f"the log ends at seq {last.seq}, before the pinned head at seq {pinned.seq}")
    except _Fail as fail:
        return Result(events=n, last=last, failure=fail.failure)
    return Result(events=n, last=last, failure=None)


# ---------------------------------------------------------------------------
# §12 Self-test against the worked example
# ---------------------------------------------------------------------------

#: Values printed in FORMAT.md §12.
EXAMPLE_SEED = bytes([7]) * 32
EXAMPLE_PUBLIC_KEY = "ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c"
EXAMPLE_KEY_ID = "ea539e327da5c57a04a906a2e324d3b5"
EXAMPLE_HASHES = (
    "aff8b23c743e70f7e3b9bee29fde543adf5d386edda6dcbe88a79192a93c82ab",
    "41f78c1d2a51dba6841f16e5c5a61230ab6bb231cc6c4607a64fa8beaacdc0ac",
)
EXAMPLE_SIGNATURES = (
    "a6e98bf8071574b9f553e029d699409524e43097bb549578810c103987609a05"
    "5237fea30a4b250f666212c9d18abe50f226adb63ccb4d6ae22319727dab870a",
    "a9fe9c92d12fdc51130f11952ec2cc4941e49300e7b76a51201e79a0e1670da1"
    "d2551719ba7fb69d79f610dd765fc22a2b44d167fb1a805554d8aba2f3ab850e",
)
EXAMPLE_DIR = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), os.pardir, "ledger", "tests", "data"
)
#: The order of the Ed25519 group, to build a non-canonical S.
ED25519_L = 2**252 + 27742317777372353535851937790883648493


def _expect_format_error(fn: Any, *args: Any) -> bool:
    try:
        fn(*args)
    except FormatError:
        return True
    return False


def self_test() -> bool:
    """Check encoder, hash, key id and signatures against §12; print each check."""
    results: list[tuple[str, bool]] = []

    def check(name: str, passed: bool) -> None:
        results.append((name, passed))
        print(f"{'ok  ' if passed else 'FAIL'} {name}")

    # The worked example (§12) from the example files.
    canonicals: list[bytes] = []
    for i in (0, 1):
        path = os.path.join(EXAMPLE_DIR, f"format-example-{i}.json")
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as err:
            check(f"read {path}: {err}", False)
            return False
        # The files end with a newline; the canonical bytes do not.
        data = data[:-1] if data.endswith(b"\n") else data
        canonicals.append(data)
        try:
            env = decode_envelope(parse_json(data.decode("utf-8")))
            check(f"example {i}: decodes and re-encodes to the same bytes", env.canonical == data)
        except FormatError as err:
            check(f"example {i}: decodes ({err})", False)

    signing_key = nacl.signing.SigningKey(EXAMPLE_SEED)
    public_key = bytes(signing_key.verify_key)
    check("example key: public key", public_key.hex() == EXAMPLE_PUBLIC_KEY)
    check("example key: key id", key_id(public_key) == EXAMPLE_KEY_ID)

    prev = ZERO_HASH
    lines = []
    for i, data in enumerate(canonicals):
        digest = event_hash(prev, data)
        check(f"example {i}: hash", digest.hex() == EXAMPLE_HASHES[i])
        signature = signing_key.sign(digest).signature
        check(f"example {i}: signature", signature.hex() == EXAMPLE_SIGNATURES[i])
        check(f"example {i}: signature verifies",
              signature_valid(public_key, digest, bytes.fromhex(EXAMPLE_SIGNATURES[i])))
        lines.append(json.dumps({
            "seq": i, "hash": EXAMPLE_HASHES[i], "signature": EXAMPLE_SIGNATURES[i],
            "event": json.loads(data),
        }).encode())
        prev = digest

    # The example as an export: verifies, and tampering is caught.
    result = verify_export(lines, Head(1, bytes.fromhex(EXAMPLE_HASHES[1])))
    check("example export verifies with its head pinned", result.ok and result.events == 2)
    tampered = lines[1].replace(b"write_file", b"read_file")
    result = verify_export([lines[0], tampered])
    check("tampered example: hash_mismatch at seq 1",
          result.failure is not None and (result.failure.seq, result.failure.kind) == (1, "hash_mismatch"))
    result = verify_export(lines[:1], Head(1, bytes.fromhex(EXAMPLE_HASHES[1])))
    check("cut example: truncated at seq 1",
          result.failure is not None and (result.failure.seq, result.failure.kind) == (1, "truncated"))

    # §2: key order, escaping, integers, and what the parser refuses.
    check("keys sorted by UTF-8 bytes",
          canonical_encode({"é": 1, "a": 2, "Z": 3, "\U0001f600": 4, "\uffff": 5, 'a"': 6, "a#": 7})
          == '{"Z":3,"a":2,"a\\"":6,"a#":7,"é":1,"\uffff":5,"\U0001f600":4}'.encode())
    # The example of FORMAT.md §2 rule 2, byte for byte.
    check("key order example of §2",
          canonical_encode(parse_json('{"\\ud83d\\ude00":1,"\\ue000":2,"\\u00e9":3,"z":4}')).hex()
          == "7b227a223a342c22c3a9223a332c22ee8080223a322c22f09f9880223a317d")
    check("string escaping",
          canonical_encode("\"\\\b\t\n\f\r\x00\x01\x1f\x7f/\u2028\u2029é")
          == '"\\"\\\\\\b\\t\\n\\f\\r\\u0000\\u0001\\u001f\x7f/\u2028\u2029é"'.encode())
    check("integer range", canonical_encode([2**64 - 1, -(2**63), 0, -1]) ==
          b"[18446744073709551615,-9223372036854775808,0,-1]")
    nested: Any = 0
    for _ in range(MAX_DEPTH):
        nested = [nested]
    check("64 levels accepted", canonical_encode(nested) == b"[" * 64 + b"0" + b"]" * 64)
    check("65 levels refused", _expect_format_error(canonical_encode, [nested]))
    check("2^64 refused", _expect_format_error(canonical_encode, 2**64))
    check("-2^63-1 refused", _expect_format_error(canonical_encode, -(2**63) - 1))
    for text in ('{"a":1.5}', '{"a":1e3}', '{"a":NaN}', '{"a":1,"a":2}', '{"a":-0}'):
        check(f"parser refuses {text}", _expect_format_error(parse_json, text))
    check("lone surrogate refused",
          _expect_format_error(canonical_encode, parse_json('"\\ud800"')))
    check("surrogate pair accepted", canonical_encode(parse_json('"\\ud83d\\ude00"')) ==
          '"\U0001f600"'.encode())

    # §6: strict verification.
    digest = bytes.fromhex(EXAMPLE_HASHES[0])
    signature = bytes.fromhex(EXAMPLE_SIGNATURES[0])
    s = int.from_bytes(signature[32:], "little") + ED25519_L
    check("non-canonical S refused",
          not signature_valid(public_key, digest, signature[:32] + s.to_bytes(32, "little")))
    identity = bytes([1]) + bytes(31)  # small-order point: the identity
    check("small-order key refused",
          not signature_valid(identity, digest, identity + bytes(32)))
    # §6 key validity: the example key passes; the identity, a non-canonical
    # encoding (y = p + 3) and a mixed-order key (the example key plus a
    # point of order 8) do not.
    check("example key is a valid key", public_key_valid(public_key))
    non_canonical = bytes([0xED + 3]) + b"\xff" * 30 + b"\x7f"
    mixed = bytes.fromhex("1f4f580e73ac208f06760190e9edc6f5916775dabd9c1cdca393175c2d6d1083")
    for name, key in (("identity", identity), ("non-canonical", non_canonical), ("mixed-order", mixed)):
        check(f"{name} key is not a valid key", not public_key_valid(key))

    failed = [name for name, passed in results if not passed]
    print(f"self-test: {len(results) - len(failed)}/{len(results)} checks passed")
    return not failed


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def _parse_head(text: str) -> Head:
    seq, sep, digest = text.partition(":")
    if not sep or not seq.isascii() or not seq.isdigit() or int(seq) > U64_MAX:
        raise argparse.ArgumentTypeError(f"{text!r}: expected SEQ:HASH with a decimal SEQ")
    if not is_hex(digest, 64):
        raise argparse.ArgumentTypeError(f"{text!r}: HASH is not 64 lowercase hex digits")
    return Head(int(seq), bytes.fromhex(digest))


def _parse_tolerance(text: str) -> int:
    if not text.isascii() or not text.isdigit() or int(text) > U64_MAX:
        raise argparse.ArgumentTypeError(f"{text!r} is not a non-negative integer")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Verify a Sealgate ledger export (`sealgate log -o json`) per FORMAT.md.",
    )
    parser.add_argument("file", nargs="?", help="export file (default: stdin)")
    parser.add_argument("--head", type=_parse_head, metavar="SEQ:HASH",
                        help="a head written down earlier that must be part of the log")
    parser.add_argument("--time-tolerance-ms", type=_parse_tolerance, default=0, metavar="N",
                        help="how far a timestamp may go back from its predecessor's (default 0)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.add_argument("--self-test", action="store_true",
                        help="check the encoder and hash against FORMAT.md §12 and exit")
    args = parser.parse_args(argv)

    if args.self_test:
        return 0 if self_test() else 1

    try:
        if args.file is None or args.file == "-":
            result = verify_export(read_lines(sys.stdin.buffer), args.head, args.time_tolerance_ms)
        else:
            with open(args.file, "rb") as stream:
                result = verify_export(read_lines(stream), args.head, args.time_tolerance_ms)
    except OSError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    if args.json:
        print(json.dumps({
            "ok": result.ok,
            "events": result.events,
            "last": {"seq": result.last.seq, "hash": result.last.hash.hex()} if result.last else None,
            "failure": {"seq": result.failure.seq, "kind": result.failure.kind,
                        "detail": result.failure.detail} if result.failure else None,
        }))
    elif result.failure is not None:
        print(f"FAILED at seq {result.failure.seq}: {result.failure.kind}: {result.failure.detail}")
    else:
        assert result.last is not None
        print(f"OK: {result.events} events, head {result.last.seq}:{result.last.hash.hex()}")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
