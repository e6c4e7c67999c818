"""How many CPU cores this process may run on (its affinity: a container or ``taskset`` may allow
fewer than the machine has). Detection and the render both size their threads from it."""
from __future__ import annotations

import os


def usable_cores(unknown: int = 1) -> int:
    """The cores this process may use; ``unknown`` where the system cannot say."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or unknown
