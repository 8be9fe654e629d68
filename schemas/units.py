"""Units shared by every layer. Timestamps on the wire and in Redis are integer microseconds
since the epoch (Avro ``timestamp-micros``); ``US`` converts them to and from seconds."""

from __future__ import annotations

US = 1_000_000  # microseconds per second
