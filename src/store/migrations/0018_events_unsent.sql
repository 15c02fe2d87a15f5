-- The deliverer's queue (issue 14): an event not yet sent has a row here,
-- written by the posting's own statement with the event, and deleted once
-- its first attempts are made. It replaces `events.fanned_out`, whose
-- update rewrote the whole event (body and all) and, the flag being in a
-- partial index, could never be HOT: a second row version and two index
-- entries per event. The events table is now only ever appended to (and
-- purged).
CREATE TABLE events_unsent (
    event_id bigint PRIMARY KEY
);
INSERT INTO events_unsent SELECT event_id FROM events WHERE NOT fanned_out;
DROP INDEX events_to_fan_out;
ALTER TABLE events DROP COLUMN fanned_out;
