"""phidnn_rng.py - the seeded noise source, bit for bit the same as engine/vision_ops.c.

  splitmix64(seed) -> four words -> xoshiro256** state
  next_u64: xoshiro256** (Blackman & Vigna)
  uniform:  (next_u64 >> 11) * 2^-53, in [0, 1), a double
  normal:   u1 = 1 - uniform(), u2 = uniform(); sqrt(-2 ln u1) * cos(2 pi u2) in double,
            then rounded to float32 (one normal per two uniforms)
  index:    ((next_u64 >> 32) * n) >> 32, an integer in [0, n)
"""
import math

import numpy as np

M64 = (1 << 64) - 1


def _rotl(x, k):
    return ((x << k) | (x >> (64 - k))) & M64


class Rng:
    def __init__(self, seed):
        sm = seed & M64
        self.s = []
        for _ in range(4):
            sm = (sm + 0x9E3779B97F4A7C15) & M64
            z = sm
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
            self.s.append(z ^ (z >> 31))

    def next_u64(self):
        s = self.s
        result = (_rotl((s[1] * 5) & M64, 7) * 9) & M64
        t = (s[1] << 17) & M64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = _rotl(s[3], 45)
        return result

    def uniform(self):
        return (self.next_u64() >> 11) * (1.0 / 9007199254740992.0)

    def normal(self):
        u1 = 1.0 - self.uniform()
        u2 = self.uniform()
        return float(np.float32(math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)))

    def normals(self, n):
        return np.array([self.normal() for _ in range(n)], dtype=np.float32)

    def index(self, n):
        return ((self.next_u64() >> 32) * n) >> 32

    def indices(self, count, n):
        return np.array([self.index(n) for _ in range(count)], dtype=np.int64)
