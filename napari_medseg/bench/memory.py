"""Peak resident memory of this process, measured so that a child does not report its parent's.

On Linux ``getrusage(RUSAGE_SELF).ru_maxrss`` survives ``exec``: a benchmark child
started from a parent that once used 1.7 GB reports at least 1.7 GB, whatever it did
itself. ``VmHWM`` in ``/proc/self/status`` is the high-water mark of this process's own
address space (reset by ``exec``), so that is what the benchmarks report.
"""

from __future__ import annotations

import resource
from pathlib import Path


def peak_rss_mb() -> float:
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # elsewhere: the best we have
