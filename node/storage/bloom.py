"""A bloom filter over partition keys: a bit array probed by double hashing of one blake2b digest."""

from __future__ import annotations

import hashlib
import math
import struct

_HEADER = struct.Struct("<QI")  # number of bits, number of hash functions
# Kirsch-Mitzenmacher double hashing: k probes from two 64-bit halves of one 128-bit digest cost
# one hash call per key instead of k, with the same false-positive rate in practice.
_DIGEST_BYTES = 16
_MASK64 = (1 << 64) - 1
_TWO_U64 = struct.Struct("<QQ")


def _halves(key: bytes) -> tuple[int, int]:
    h1, h2 = _TWO_U64.unpack(hashlib.blake2b(key, digest_size=_DIGEST_BYTES).digest())
    return h1, h2 | 1


class BloomFilter:
    """Answers "definitely absent" or "maybe present" for a key."""

    __slots__ = ("nbits", "k", "bits")

    def __init__(self, nbits: int, k: int, bits: bytearray | None = None) -> None:
        self.nbits = max(8, nbits)
        self.k = max(1, k)
        self.bits = bits if bits is not None else bytearray((self.nbits + 7) // 8)

    @classmethod
    def for_capacity(cls, n: int, fp_chance: float) -> BloomFilter:
        """A filter sized for ``n`` keys at false-positive chance ``fp_chance``."""
        n = max(1, n)
        nbits = int(math.ceil(-n * math.log(fp_chance) / (math.log(2) ** 2)))
        k = max(1, round(nbits / n * math.log(2)))
        return cls(nbits, k)

    def add(self, key: bytes) -> None:
        """Record ``key``."""
        h1, h2 = _halves(key)
        m = self.nbits
        bits = self.bits
        for i in range(self.k):
            pos = ((h1 + i * h2) & _MASK64) % m
            bits[pos >> 3] |= 1 << (pos & 7)

    def might_contain(self, key: bytes) -> bool:
        """False only if ``key`` was certainly never added."""
        h1, h2 = _halves(key)
        m = self.nbits
        bits = self.bits
        for i in range(self.k):
            pos = ((h1 + i * h2) & _MASK64) % m
            if not bits[pos >> 3] & (1 << (pos & 7)):
                return False
        return True

    def to_bytes(self) -> bytes:
        """Serialized form: header then the bit array."""
        return _HEADER.pack(self.nbits, self.k) + bytes(self.bits)

    @classmethod
    def from_bytes(cls, data: bytes) -> BloomFilter:
        """Inverse of :meth:`to_bytes`; raises ``ValueError`` on a malformed buffer."""
        if len(data) < _HEADER.size:
            raise ValueError("bloom filter too short")
        nbits, k = _HEADER.unpack_from(data)
        bits = bytearray(data[_HEADER.size:])
        if len(bits) != (max(8, nbits) + 7) // 8 or k < 1 or k > 64:
            raise ValueError("bloom filter header does not match its size")
        return cls(nbits, k, bits)
