#!/usr/bin/env python3
"""The largest allocation sites of a dhat heap profile, per connection.

    bench/dhat-top.py dhat-heap.json CONNECTIONS [TOP]

For each site live at the heap's peak (dhat's `t-gmax`): bytes and blocks
per connection, the average block, and the first frames that are not the
allocator's own. Written for bench/heap-profile.sh.
"""
import json
import re
import sys

path, connections = sys.argv[1], int(sys.argv[2])
top = int(sys.argv[3]) if len(sys.argv) > 3 else 25
profile = json.load(open(path))
frames = profile["ftbl"]
sites = [p for p in profile["pps"] if p["gb"] > 0]
# Frames of the allocator, dhat and std's containers say nothing of who asked.
plumbing = re.compile(
    r"dhat::|alloc::|__rust|core::|std::alloc|hashbrown::raw|RawVec|\[root\]"
)
total = sum(p["gb"] for p in sites)
print(f"live at the peak: {total:,} bytes, {total / connections:,.0f} per connection")
for site in sorted(sites, key=lambda p: -p["gb"])[:top]:
    callers = [frames[i] for i in site["fs"] if not plumbing.search(frames[i])]
    print(
        f"{site['gb'] / connections:8.1f} B/conn {site['gbk'] / connections:6.2f} blocks/conn"
        f"  ~{site['gb'] // max(site['gbk'], 1):,} B each"
    )
    for frame in callers[:4]:
        print("      ", frame[:160])
