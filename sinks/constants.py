"""Redis key names and retention, in one place (units in the names)."""

VERDICT_KEY = "zc:verdict:{passage_id}"  # JSON of the verdict, expires after verdict_ttl_s
# a passage's evidence record is in its chain (one per passage): "<seq> <hash> <stream id>", the
# head it made and where it lies in the chain's stream (the store of record copies it from there)
EVIDENCE_MARK_KEY = "zc:evidence:of:{passage_id}"
VERDICT_STREAM = "zc:verdicts"  # live feed for dashboards
VERDICT_STREAM_MAXLEN = 10_000
GATEWAY_BATCH_STREAM = "zc:verdict-batches"  # one summary per gateway batch (batched mode)
GATEWAY_BATCH_SEEN_KEY = "zc:gw-batch:{batch_id}"  # a gateway batch counted once
PLATE_HISTORY_KEY = "zc:plate:{plate}"  # sorted set: passage_id by ts_us
KPI_SITE_DAY_KEY = "zc:kpi:site:{site_id}:{day}"  # hash of counters, day in China time
KPI_CITY_DAY_KEY = "zc:kpi:city:{day}"
KPI_SITE_HOUR_KEY = "zc:kpi:site-hour:{site_id}:{day}:{hour}"  # hour 00..23, China time
KPI_LANE_DAY_KEY = "zc:kpi:lane:{site_id}:{lane}:{day}"
KPI_TTL_S = 400 * 24 * 3600  # a year of dailies for the quarterly reports, and some
EVIDENCE_CHAIN_KEY = "zc:evidence:{site_id}"  # Redis stream per site, field "record"
EVIDENCE_HEADS_KEY = (
    "zc:evidence:heads"  # hash: site id -> "<seq> <hash>" of the chain's last record
)
SIGHTINGS_KEY = "zc:sightings:{plate}"  # sorted set: where and when a plate was read
# per checkpoint (卡口) camera, the plates it read by time: where an unidentified truck came from
CAMERA_SIGHTINGS_KEY = "zc:cam-sightings:{camera_id}"
CLONE_CONFLICTS_KEY = "zc:clone:{plate}"  # sorted set: weighings with an impossible journey
CASES_KEY = "zc:cases:{plate}"  # sorted set: passage ids of enforceable over-limit cases by ts_us
ALERT_KEY = "zc:alert:{alert_id}"  # JSON of an alert; written once per (vehicle, reason, day)
ALERT_STREAM = "zc:alerts"  # live feed of alerts (officer and dashboard pages)
OPS_ALERT_KEY = "zc:ops-alert:{alert_id}"  # operators' alerts (devices), once per device/reason/day
OPS_ALERT_STREAM = "zc:ops-alerts"
OPEN_DISPATCH_KEY = "zc:dispatch:open:{vehicle}"  # the vehicle's open order id (one at a time)
ORDER_KEY = "zc:order:{order_id}"  # JSON of a dispatch order
# a weighing with a provisional order (预判): the vehicle's open-dispatch key, until its verdict
FORESEEN_KEY = "zc:dispatch:foreseen:{passage_id}"
UNIT_ORDERS_KEY = "zc:orders:{unit_id}"  # a unit's orders, for its officer page
ORDER_STREAM = "zc:orders"  # every order, for the command centre
ACTIVE_ORDERS_KEY = "zc:dispatch:active"  # sorted set: orders not closed, by ts_us (timers)
DISPATCH_KPI_KEY = "zc:dispatch:kpi:{day}"  # hash: orders, accepted, intercepted, times, re-weighs
DRIFT_KEY = "zc:dispatch:drift"  # hash: "{device}:n|sum|sumsq" of WIM-vs-static deviation in %
FEEDBACK_ONCE_KEY = "zc:feedback:{feedback_id}"  # a unit's report applied once
TOKENS_KEY = "zc:tokens"  # hash: SHA-256 of an access token -> JSON {role, unit_id, label}
UNITS_KEY = "zc:units"  # hash: unit id -> JSON {available, at} from dispatch.feedback
BLACKLIST_KEY = "zc:blacklist"  # set of plates with unhandled cases (黑名单)
BLACKLIST_INFO_KEY = "zc:blacklist:info"  # hash: plate -> JSON {reason, case_ref, ts_us, source}
MATCH_PROGRESS_KEY = "zc:match:progress"  # hash: site id -> JSON of what the site has decided
WORKER_READY_KEY = "zc:worker:ready"  # set when a worker has been given its partitions
DEVICE_KEY = "zc:device:{device_id}"  # hash: site_id, last_seen_us, status, detail
DEVICE_KPI_KEY = "zc:health:devices"  # hash: online / normal counts and rates, offline ids
DEVICES_KEY = "zc:devices"  # set of device ids that ever reported
