"""Internode authentication: a mutual challenge-response per connection and a MAC on every frame.

Why not TLS (Python's ``ssl``): the cluster already shares one secret and has no certificates to
distribute, and TLS with a pre-shared key is only in ``ssl`` from Python 3.13. This uses stdlib
HMAC-SHA256 (``hmac``, ``hashlib``) in the textbook way, compares with ``hmac.compare_digest``
and keeps the protocol small enough to read at once:

Handshake (K = SHA-256 of the cluster secret, domain-separated)::

    connector -> acceptor:  {"h": c_id, "a": [host, port], "n": cn}                 cn: 16-byte nonce
    acceptor -> connector:  {"h": s_id, "a": [host, port], "n": sn, "m": HMAC(K, "server"|cn|sn|s_id|c_id)}
    connector -> acceptor:  {"m": HMAC(K, "client"|cn|sn|c_id|s_id)}

Each side proves it knows K over the other's fresh nonce, so a recorded handshake replayed later
fails (the nonce differs). Then each direction has its own key ``HMAC(K, "c2s"|cn|sn)`` /
``HMAC(K, "s2c"|cn|sn)``, and what a writer sends in one go (the frames it coalesced into one
``send_all``) goes as one *sealed batch* carrying a 16-byte tag: keyed BLAKE2s of ``seq|frames``
(RFC 7693's MAC mode; about three times cheaper than HMAC-SHA256 in CPython) with ``seq``
counting that direction's batches from 0: a forged, altered, replayed, reordered or dropped
batch fails the check and closes the connection. On the wire a batch is
``length u32 | frames | tag``, the frames being the protocol's own length-prefixed frames, so one
tag and one check cover every frame of a coalesced write (a tag per frame was a tenth of the
nodes' CPU under a write load).

Without a secret a node refuses peers, unless ``internode_insecure = true`` (a dev cluster on one
machine): then the old unauthenticated hello and plain frames are used.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from typing import Any

from node import protocol
from node.runtime import Runtime

NONCE_BYTES = 16
TAG_BYTES = 16  # 128-bit tags, as AES-GCM and Poly1305 use
_SEQ = struct.Struct(">Q")
_LEN = struct.Struct(">I")
_KEY_CONTEXT = b"ringlab-internode-v2 key:"


class AuthError(Exception):
    """The peer failed authentication (wrong secret, replay, tampered frame)."""


def cluster_key(secret: str) -> bytes:
    """The key every MAC derives from (never the secret itself)."""
    return hashlib.sha256(_KEY_CONTEXT + secret.encode()).digest()


def new_nonce(runtime: Runtime, serial: int) -> bytes:
    """A nonce unique to this connection attempt (``serial``: the caller's count of nonces).

    Uniqueness, not secrecy, is what a challenge needs; the runtime's RNG and wall clock make it
    reproducible in the simulator while a restarted real node (same seed, later clock) never
    repeats one; the serial separates nonces drawn in the same microsecond.
    """
    rand = runtime.rng.getrandbits(64)
    return _SEQ.pack(rand) + _SEQ.pack((runtime.clock.wall_us() << 16 | serial & 0xFFFF) & (2**64 - 1))


def _mac(key: bytes, *parts: bytes) -> bytes:
    return hmac.digest(key, b"|".join(parts), "sha256")


def proof(key: bytes, role: str, cn: bytes, sn: bytes, me: str, other: str) -> bytes:
    """What ``role`` ("server" or "client") sends to prove it knows the key for these nonces."""
    return _mac(key, role.encode(), cn, sn, me.encode(), other.encode())


def check_proof(key: bytes, got: Any, role: str, cn: bytes, sn: bytes, sender: str, receiver: str) -> None:
    """Raise AuthError unless ``got`` is the sender's proof."""
    want = proof(key, role, cn, sn, sender, receiver)
    if not isinstance(got, bytes) or not hmac.compare_digest(got, want):
        raise AuthError(f"{role} proof from {sender!r} does not match this cluster's secret")


def check_nonce(value: Any, who: str) -> bytes:
    """The peer's nonce, or AuthError."""
    if not isinstance(value, bytes) or len(value) != NONCE_BYTES:
        raise AuthError(f"hello from {who!r} carries no valid nonce (an old or unauthenticated node?)")
    return value


def session_keys(key: bytes, cn: bytes, sn: bytes) -> tuple[bytes, bytes]:
    """(connector-to-acceptor key, acceptor-to-connector key)."""
    return _mac(key, b"c2s", cn, sn), _mac(key, b"s2c", cn, sn)


def _tag(key: bytes, seq: int, body: bytes | memoryview) -> bytes:
    mac = hashlib.blake2s(_SEQ.pack(seq), key=key, digest_size=TAG_BYTES)
    mac.update(body)
    return mac.digest()


def _keyed(key: bytes) -> Any:
    """A blake2s state that absorbed ``key``: ``.copy()`` of it starts a tag as ``_tag`` does.

    Copying the state costs a fraction of a keyed constructor, which compresses the key block
    again for every frame; the tags are the same.
    """
    return hashlib.blake2s(key=key, digest_size=TAG_BYTES)


# The most frame bytes one sealed batch carries: any single frame fits (its body is at most
# MAX_FRAME_BYTES), so a writer cuts a longer queue into several batches.
MAX_BATCH_BYTES = protocol.MAX_FRAME_BYTES + protocol.HEADER_BYTES


class Sealer:
    """Seals outgoing frames in batches, each with its tag, counting batches from 0."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._base = _keyed(key)
        self._seq = 0

    def _seal_batch(self, frames: bytes) -> bytes:
        mac = self._base.copy()
        mac.update(_SEQ.pack(self._seq))
        mac.update(frames)
        self._seq += 1
        return b"".join((_LEN.pack(len(frames) + TAG_BYTES), frames, mac.digest()))

    def seal(self, frame: bytes) -> bytes:
        """One frame (``length | body`` as encode_frame makes it) as a batch of its own."""
        return self._seal_batch(frame)

    def seal_all(self, frames: list[bytes]) -> bytes:
        """Every queued frame, in order, in as few sealed batches as MAX_BATCH_BYTES allows."""
        if len(frames) == 1:
            return self._seal_batch(frames[0])
        total = sum(map(len, frames))
        if total <= MAX_BATCH_BYTES:
            return self._seal_batch(b"".join(frames))
        out: list[bytes] = []
        batch: list[bytes] = []
        size = 0
        for f in frames:
            if batch and size + len(f) > MAX_BATCH_BYTES:
                out.append(self._seal_batch(b"".join(batch)))
                batch, size = [], 0
            batch.append(f)
            size += len(f)
        if batch:
            out.append(self._seal_batch(b"".join(batch)))
        return b"".join(out)


class OpeningDecoder(protocol.FrameDecoder):
    """A FrameDecoder for sealed batches: checks each batch's tag (in sequence), then hands out
    the frames inside it one message at a time."""

    def __init__(self, key: bytes, leftover: bytes = b"") -> None:
        super().__init__(MAX_BATCH_BYTES + TAG_BYTES)
        self._key = key
        self._base = _keyed(key)
        self._seq = 0
        # The frames of the last authentic batch, decoded as they are asked for.
        self._inner = protocol.FrameDecoder()
        self.feed(leftover)

    def next_message(self) -> dict[str, Any] | None:
        """The next authentic message, None until more bytes arrive; ProtocolError on a bad tag."""
        if self._failed is not None:
            raise protocol.ProtocolError(self._failed)
        while True:
            inner = self._inner
            if inner._pos < len(inner._buffer):  # inner.buffered, without the property call
                try:
                    msg = inner.next_message()
                except protocol.ProtocolError as exc:
                    self._fail(protocol.ProtocolError(exc.message))
                if msg is not None:
                    return msg
                # An authentic batch that ends inside a frame: the sender never cuts frames.
                self._fail(protocol.ProtocolError(f"sealed batch {self._seq - 1} ends inside a frame"))
            batch = self._next_body()
            if batch is None:
                return None
            if len(batch) < TAG_BYTES:
                self._fail(protocol.ProtocolError(f"sealed batch length {len(batch)} out of range"))
            frames = memoryview(batch)[:-TAG_BYTES]
            mac = self._base.copy()
            mac.update(_SEQ.pack(self._seq))
            mac.update(frames)
            if not hmac.compare_digest(batch[-TAG_BYTES:], mac.digest()):
                frames.release()
                self._fail(protocol.ProtocolError(
                    f"batch {self._seq} fails its MAC (forged, altered, replayed or reordered)"))
            self._seq += 1
            inner.feed(frames)
            frames.release()

    def _fail(self, exc: protocol.ProtocolError) -> None:
        self._inner = protocol.FrameDecoder()
        super()._fail(exc)
