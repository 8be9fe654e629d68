-- The store of record (记录库): weighings, cases (案件) and every action on them, kept without
-- expiry. Redis stays the live cache for the pages; nothing here has a TTL.

-- Every over-limit (超限) and warning verdict, as decided, with its evidence hash: searchable
-- by plate, site and time whether or not it opened a case.
CREATE TABLE weighings (
    passage_id       text PRIMARY KEY,
    weighed_at       timestamptz NOT NULL,
    site_id          text NOT NULL,
    device_id        text,
    lane             smallint NOT NULL,
    direction        text NOT NULL,
    plate            text,             -- the fused front plate; NULL when unread
    plate_rear       text,
    plate_confidence real NOT NULL,
    is_local         boolean NOT NULL, -- 本地车辆: the plate's 车籍地 is the site's authority
    vehicle_class    text NOT NULL,
    axle_count       smallint NOT NULL,
    gvw_kg           real NOT NULL,
    limit_kg         real NOT NULL,
    excess_kg        real NOT NULL,
    overload_pct     real NOT NULL,
    verdict          text NOT NULL CHECK (verdict IN ('warning', 'overlimit')),
    enforceable      boolean NOT NULL,
    policy_version   text NOT NULL,
    evidence_hash    text NOT NULL,    -- '' unless enforceable: the record's hash in its chain
    fine_cny         integer,
    body             jsonb NOT NULL,   -- the verdict record as the worker sent it
    stored_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX weighings_plate ON weighings (plate, weighed_at);
CREATE INDEX weighings_site ON weighings (site_id, weighed_at);
CREATE INDEX weighings_time ON weighings (weighed_at);

-- One case per enforceable over-limit weighing. ``version`` grows with every transition: a
-- transition names the version it was decided on, so two reviewers cannot both act on one case.
CREATE TABLE cases (
    case_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    passage_id   text NOT NULL UNIQUE REFERENCES weighings (passage_id),
    state        text NOT NULL,
    version      integer NOT NULL DEFAULT 1,
    plate        text,
    site_id      text NOT NULL,
    is_local     boolean NOT NULL,
    weighed_at   timestamptz NOT NULL,
    opened_at    timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    reviewer     text,                 -- who filed or declined it (审核)
    reason_code  text,                 -- why it was not filed (不予立案)
    fine_cny     integer               -- the penalty recorded (处罚)
);
CREATE INDEX cases_queue ON cases (state, weighed_at);
CREATE INDEX cases_plate ON cases (plate, weighed_at);

-- Every transition of every case, never updated or deleted (the triggers below refuse it).
CREATE TABLE case_events (
    event_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    case_id      bigint NOT NULL REFERENCES cases (case_id),
    at           timestamptz NOT NULL DEFAULT now(),
    actor        text NOT NULL,
    role         text NOT NULL,
    action       text NOT NULL,
    from_state   text,
    to_state     text NOT NULL,
    reason_code  text,
    note         text,
    data         jsonb
);
CREATE INDEX case_events_case ON case_events (case_id, event_id);

CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP;
END $$;
CREATE TRIGGER case_events_append_only BEFORE UPDATE OR DELETE ON case_events
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER case_events_no_truncate BEFORE TRUNCATE ON case_events
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

-- 违法行为通知书: one per notified case, with the document's hash.
CREATE TABLE notices (
    notice_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    case_id      bigint NOT NULL REFERENCES cases (case_id),
    issued_at    timestamptz NOT NULL DEFAULT now(),
    issued_by    text NOT NULL,
    document_sha256 text NOT NULL
);

-- 异地抄告: a batch of cases handed over to the home region of their vehicles.
CREATE TABLE handovers (
    handover_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    region       text NOT NULL,        -- the plates' 车籍地 (province and authority, e.g. 苏E)
    made_at      timestamptz NOT NULL DEFAULT now(),
    made_by      text NOT NULL,
    batch_sha256 text NOT NULL,
    answered_at  timestamptz,
    answer       text
);
CREATE TABLE handover_cases (
    handover_id  bigint NOT NULL REFERENCES handovers (handover_id),
    case_id      bigint NOT NULL UNIQUE REFERENCES cases (case_id),
    PRIMARY KEY (handover_id, case_id)
);
