#!/usr/bin/env python3
"""How long one durable commit's disk flush takes on this machine.

Appends COUNT records of SIZE bytes to a file in DIR, each followed by
fdatasync (what SQLite's WAL with synchronous=FULL does once per commit),
and prints the latency percentiles as a table and as one JSON line. It is
the floor under Hearth's "posted over HTTP until every subscriber has it"
latency: a post is answered, and broadcast, only after its commit.

    bench/fsync-latency.py [DIR] [COUNT] [SIZE]    # defaults: target, 2000, 4096
"""

import json
import os
import sys
import tempfile
import time


def main() -> None:
    folder = sys.argv[1] if len(sys.argv) > 1 else "target"
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    size = int(sys.argv[3]) if len(sys.argv) > 3 else 4096
    os.makedirs(folder, exist_ok=True)
    record = b"x" * size
    times = []
    with tempfile.NamedTemporaryFile(dir=folder, prefix="fsync-") as f:
        fd = f.fileno()
        for _ in range(count):
            start = time.perf_counter()
            os.write(fd, record)
            os.fdatasync(fd)
            times.append((time.perf_counter() - start) * 1000.0)
    times.sort()

    def pct(p: float) -> float:
        # Nearest rank, as hearth-bench reports.
        rank = max(1, int(-(-p * len(times) // 100)))
        return round(times[rank - 1], 3)

    result = {
        "bench": "fsync",
        "count": count,
        "size": size,
        "p50_ms": pct(50),
        "p95_ms": pct(95),
        "p99_ms": pct(99),
        "max_ms": round(times[-1], 3),
        "load": os.getloadavg()[0],
    }
    for key in ("p50_ms", "p95_ms", "p99_ms", "max_ms"):
        print(f"  {key:<8} {result[key]:>10.3f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
