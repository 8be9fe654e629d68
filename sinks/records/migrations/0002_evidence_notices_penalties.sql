-- Evidence records (证据记录) kept with the weighings they seal, the documents served to the
-- parties (违法行为通知书), and the penalty decisions (处罚决定) with the 一超四罚 parties.

-- Every evidence record of a stored weighing, exactly as sealed into its site's chain: the
-- line "<sha256> <hmac> <body>" and, read from its body, its position (seq) and the hash of
-- the record before it (prev). The chain's links are checked from here, so a case keeps its
-- evidence after the live cache has forgotten it. Never updated or deleted.
CREATE TABLE evidence_records (
    digest      text PRIMARY KEY,
    passage_id  text NOT NULL UNIQUE,
    site_id     text NOT NULL,
    seq         bigint NOT NULL,
    prev        text NOT NULL,
    line        text NOT NULL,
    stored_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX evidence_records_prev ON evidence_records (site_id, prev);
CREATE TRIGGER evidence_records_append_only BEFORE UPDATE OR DELETE ON evidence_records
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER evidence_records_no_truncate BEFORE TRUNCATE ON evidence_records
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

-- A notice is kept as served: its number, the HTML and the PDF printed from it.
ALTER TABLE notices
    ADD COLUMN notice_no text,
    ADD COLUMN html text NOT NULL DEFAULT '',
    ADD COLUMN pdf bytea NOT NULL DEFAULT '\x'::bytea;
ALTER TABLE notices ALTER COLUMN html DROP DEFAULT, ALTER COLUMN pdf DROP DEFAULT;
CREATE UNIQUE INDEX notices_no ON notices (notice_no);
CREATE INDEX notices_case ON notices (case_id);
CREATE TRIGGER notices_append_only BEFORE UPDATE OR DELETE ON notices
    FOR EACH ROW EXECUTE FUNCTION refuse_change();

-- 处罚决定: the amount (from the policy's fine schedule, at most its amount) and the parties
-- of 一超四罚 (62号令 第四十四条): the driver, the vehicle's transport company and its 道路运输证,
-- the source loading unit and its loading bill.
CREATE TABLE penalties (
    case_id                 bigint PRIMARY KEY REFERENCES cases (case_id),
    decided_at              timestamptz NOT NULL DEFAULT now(),
    decided_by              text NOT NULL,
    fine_cny                integer NOT NULL CHECK (fine_cny > 0),
    schedule_fine_cny       integer NOT NULL,
    driver_name             text,
    driver_qualification_no text,      -- 从业资格证号
    transport_company       text,      -- 道路运输企业
    road_transport_cert_no  text,      -- 道路运输证号
    source_unit             text,      -- 货运源头单位
    loading_bill            text       -- 装载单号
);
CREATE TRIGGER penalties_append_only BEFORE UPDATE OR DELETE ON penalties
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
