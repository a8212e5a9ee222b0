"""The one way the gateway makes a Redis client: each command timed into the metrics (a round trip each:
the gateway uses no pipelines). Used by the composition root and the patient's page's session store."""

from __future__ import annotations

import time

import redis

from gateway import metrics

# Commands named in the metrics; any other is counted as "other" (the label set stays bounded).
KNOWN_COMMANDS = frozenset({"GET", "SET", "INCR", "DEL", "EXPIRE", "PING", "MGET", "SETEX", "GETDEL", "EXISTS"})


class TimedRedis(redis.Redis):
    def execute_command(self, *args, **options):
        started = time.perf_counter()
        try:
            return super().execute_command(*args, **options)
        finally:
            name = str(args[0]).upper() if args else "other"
            metrics.redis_round_trip(command=name if name in KNOWN_COMMANDS else "other",
                                     seconds=time.perf_counter() - started)


def redis_client(url: str, **options) -> redis.Redis:
    return TimedRedis.from_url(url, **options)
