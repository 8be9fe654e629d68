-- What the analysis of a quarter (季度通报) reads: every sighting (过车记录) of a vehicle at a weigh
-- site, and hourly counts of the traffic, so that a quarter's report sums a few thousand rows per
-- site instead of scanning millions of weighings. Kept without expiry like the rest.

-- One row per weighed vehicle, lawful or not: where and when a plate was seen (车辆轨迹).
CREATE TABLE sightings (
    sighting_id   text PRIMARY KEY,     -- the passage id
    seen_at       timestamptz NOT NULL,
    plate         text,                 -- the front plate, else the rear; NULL when unread
    site_id       text NOT NULL,
    lane          smallint NOT NULL,
    direction     text NOT NULL,
    vehicle_class text NOT NULL,
    axle_count    smallint NOT NULL,
    gvw_kg        real NOT NULL,
    verdict       text NOT NULL CHECK (verdict IN ('ok', 'warning', 'overlimit')),
    enforceable   boolean NOT NULL
);
CREATE INDEX sightings_plate ON sightings (plate, seen_at) WHERE plate IS NOT NULL;
CREATE INDEX sightings_time ON sightings (seen_at);

-- Per China-time hour, site, lane, direction, vehicle class and 车籍地 (the plate's province
-- and authority letter, e.g. 浙D; '' when unread): how many vehicles and what became of them.
-- A sighting adds to its hour once, in the transaction that stores it.
CREATE TABLE traffic_hours (
    hour          timestamptz NOT NULL,
    site_id       text NOT NULL,
    lane          smallint NOT NULL,
    direction     text NOT NULL,
    vehicle_class text NOT NULL,
    plate_region  text NOT NULL,
    locality      text NOT NULL CHECK (locality IN ('local', 'nonlocal', 'unread')),
    vehicles      integer NOT NULL,
    heavy         integer NOT NULL,     -- GVW of 3.5 t and more
    overlimit     integer NOT NULL,     -- 超限
    warnings      integer NOT NULL,
    enforceable   integer NOT NULL,
    unidentified  integer NOT NULL,
    PRIMARY KEY (hour, site_id, lane, direction, vehicle_class, plate_region, locality)
);
CREATE INDEX traffic_hours_site ON traffic_hours (site_id, hour);
