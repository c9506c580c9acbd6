"""Seeds and fingerprints: every random choice of a run is derived from its master seed and a
purpose key, and resume states are keyed by a hash of what produced them.

Both are stable across processes, machines and versions (tests pin their values).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def derive_seed(master: int, *keys: Any) -> int:
    """A 63-bit seed from the master seed and purpose keys; stable across processes and machines."""
    text = json.dumps([int(master), *[str(k) for k in keys]])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def fingerprint(obj: Any) -> str:
    """A short, stable hash of a JSON-able object (used to key resume states)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def retrain_seeds(master: int, r: int, experiment: str = "lds") -> tuple[int, int]:
    """(training seed, initialisation seed) of retrain seed ``r`` of an experiment's retrains
    (``lds`` or ``shapley``): every subset shares them, so subsets differ only by their data."""
    return derive_seed(master, f"{experiment}-train", r), derive_seed(master, f"{experiment}-init", r)
