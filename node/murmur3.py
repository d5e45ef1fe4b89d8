"""MurmurHash3 x64 128-bit as Apache Cassandra's Murmur3Partitioner computes it.

Cassandra's Java port reads the tail bytes as *signed* bytes (``(long) key.get(i)`` sign-extends),
so for keys whose length is not a multiple of 16 and whose tail holds bytes >= 0x80 the result
differs from the reference C implementation. We reproduce that quirk on purpose: tokens must be
identical to Cassandra's (and to the DataStax driver's ``cassandra.murmur3``) so placement can be
compared with real clusters and tools.
"""

from __future__ import annotations

_MASK = (1 << 64) - 1
_C1 = 0x87C37B91114253D5
_C2 = 0x4CF5AD432745937F
_MIN_LONG = -(1 << 63)
_MAX_LONG = (1 << 63) - 1


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & _MASK


def _fmix(k: int) -> int:
    k ^= k >> 33
    k = (k * 0xFF51AFD7ED558CCD) & _MASK
    k ^= k >> 33
    k = (k * 0xC4CEB9FE1A85EC53) & _MASK
    k ^= k >> 33
    return k


def _signed_byte(b: int) -> int:
    """The byte as Java's ``(long) byte`` sees it, in 64-bit two's complement."""
    return (b - 256 if b >= 128 else b) & _MASK


def murmur3_x64_128(data: bytes, seed: int = 0) -> tuple[int, int]:
    """The two 64-bit halves (unsigned) of Cassandra's MurmurHash3_x64_128 of ``data``."""
    length = len(data)
    nblocks = length // 16
    h1 = seed & _MASK
    h2 = seed & _MASK
    for i in range(nblocks):
        off = i * 16
        k1 = int.from_bytes(data[off : off + 8], "little")
        k2 = int.from_bytes(data[off + 8 : off + 16], "little")
        k1 = (k1 * _C1) & _MASK
        k1 = _rotl(k1, 31)
        k1 = (k1 * _C2) & _MASK
        h1 ^= k1
        h1 = _rotl(h1, 27)
        h1 = (h1 + h2) & _MASK
        h1 = (h1 * 5 + 0x52DCE729) & _MASK
        k2 = (k2 * _C2) & _MASK
        k2 = _rotl(k2, 33)
        k2 = (k2 * _C1) & _MASK
        h2 ^= k2
        h2 = _rotl(h2, 31)
        h2 = (h2 + h1) & _MASK
        h2 = (h2 * 5 + 0x38495AB5) & _MASK
    tail = data[nblocks * 16 :]
    rem = len(tail)
    # Tail bytes below 0x80 read the same signed or unsigned, so an ASCII tail is one
    # little-endian integer; only other tails need Java's sign extension byte by byte.
    plain = tail.isascii()
    if rem > 8:
        if plain:
            k2 = int.from_bytes(tail[8:], "little")
        else:
            k2 = 0
            for j in range(rem - 1, 7, -1):
                k2 ^= (_signed_byte(tail[j]) << ((j - 8) * 8)) & _MASK
        k2 = (k2 * _C2) & _MASK
        k2 = _rotl(k2, 33)
        k2 = (k2 * _C1) & _MASK
        h2 ^= k2
    if rem > 0:
        if plain:
            k1 = int.from_bytes(tail[:8], "little")
        else:
            k1 = 0
            for j in range(min(rem, 8) - 1, -1, -1):
                k1 ^= (_signed_byte(tail[j]) << (j * 8)) & _MASK
        k1 = (k1 * _C1) & _MASK
        k1 = _rotl(k1, 31)
        k1 = (k1 * _C2) & _MASK
        h1 ^= k1
    h1 ^= length
    h2 ^= length
    h1 = (h1 + h2) & _MASK
    h2 = (h2 + h1) & _MASK
    h1 = _fmix(h1)
    h2 = _fmix(h2)
    h1 = (h1 + h2) & _MASK
    h2 = (h2 + h1) & _MASK
    return h1, h2


def murmur3_token(key: bytes) -> int:
    """Cassandra's Murmur3Partitioner token of ``key`` (a signed 64-bit int, never Long.MIN_VALUE)."""
    if not key:
        # Cassandra maps the empty key to the minimum token.
        return _MIN_LONG
    h1, _ = murmur3_x64_128(key)
    token = h1 - (1 << 64) if h1 >= (1 << 63) else h1
    # Long.MIN_VALUE is reserved as the ring's minimum token, so Cassandra normalises it away.
    return _MAX_LONG if token == _MIN_LONG else token
