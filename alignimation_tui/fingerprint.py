"""The fingerprint of a result's settings: a short stable digest of everything that changes it.

Every stage makes the keys it stores under with it (``f"{kind}:{content_hash}:{fingerprint(...)}"``,
see ``store``), so it lives apart from the store: a stage reaches no store to name its results.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any


def fingerprint(**settings: Any) -> str:
    """A short stable digest of everything that changes a result."""
    blob = json.dumps(settings, sort_keys=True, default=str).encode()
    return hashlib.blake2b(blob, digest_size=8).hexdigest()
