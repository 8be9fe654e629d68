"""Redis key names and retention, in one place (units in the names)."""

VERDICT_KEY = "zc:verdict:{passage_id}"  # JSON of the verdict, expires after verdict_ttl_s
VERDICT_STREAM = "zc:verdicts"  # live feed for dashboards
VERDICT_STREAM_MAXLEN = 10_000
PLATE_HISTORY_KEY = "zc:plate:{plate}"  # sorted set: passage_id by ts_us
SEEN_KEY = "zc:seen:{passage_id}"  # first-write marker: replays do not double the feed
