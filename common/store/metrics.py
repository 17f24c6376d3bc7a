"""Counters of tasks kept in Redis, so every API and worker process adds to the same figures.

One hash, `h4:metrics`: `<kind>:<state>` counts, `<kind>:seconds:<bucket>` a duration histogram,
`backup:bytes` the bytes archived. Starts are counted by the store's creation scripts, ends
here; /metrics reads them.
"""

from __future__ import annotations

import redis

KEY = "h4:metrics"
# Backup durations span a second to hours.
DURATION_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600)


def count_finished(client: redis.Redis, kind: str, state: str, seconds: float,
                   archived_bytes: int = 0) -> None:
    with client.pipeline(transaction=False) as pipe:
        pipe.hincrby(KEY, f"{kind}:{state.lower()}", 1)
        pipe.hincrbyfloat(KEY, f"{kind}:seconds:sum", seconds)
        for bound in DURATION_BUCKETS:
            if seconds <= bound:
                pipe.hincrby(KEY, f"{kind}:seconds:le:{bound}", 1)
        pipe.hincrby(KEY, f"{kind}:seconds:le:+Inf", 1)
        if archived_bytes:
            pipe.hincrby(KEY, "backup:bytes", archived_bytes)
        pipe.execute()


def read(client: redis.Redis) -> dict[str, float]:
    return {name: float(value) for name, value in client.hgetall(KEY).items()}
