"""Stable seeds derived from names, so random choices do not depend on processing order.

Python's ``hash()`` is salted per process; these helpers hash the parts with SHA-256 instead, so
the same (seed, scene, frame, query) gives the same generator in every process, shard and run.
"""

from __future__ import annotations

import hashlib

import numpy as np


def stable_seed(*parts: object) -> int:
    """A 63-bit seed from any printable parts (order matters)."""
    blob = "\x1f".join(str(p) for p in parts).encode("utf-8")
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "little") >> 1


def rng_for(*parts: object) -> np.random.Generator:
    """A numpy generator seeded by :func:`stable_seed` of ``parts``."""
    return np.random.default_rng(stable_seed(*parts))


def unit_vector(dim: int, *parts: object) -> np.ndarray:
    """A random unit vector (float64) in ``dim`` dimensions, determined by ``parts``."""
    v = rng_for("unit", *parts).standard_normal(dim)
    return v / np.linalg.norm(v)
