"""Facts about the running process that the CLI and benchmarks report."""

from __future__ import annotations

import os
import resource


def _status_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MB.

    Read from /proc's VmHWM where it exists: getrusage's ru_maxrss survives exec on Linux, so a
    process started by a large parent would report the parent's peak.
    """
    peak = _status_mb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    """Resident memory of this process now, in MB (0 where /proc is missing)."""
    return _status_mb("VmRSS") or 0.0


def open_files() -> int:
    """How many file descriptors this process has open (0 where /proc is missing)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0
