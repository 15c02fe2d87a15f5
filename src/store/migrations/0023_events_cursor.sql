-- The outbox's sent mark as a cursor (issue 14). Marking each event sent
-- was an UPDATE per event, never HOT (the flag was in a partial index):
-- about a quarter of a debit's WAL. Now each event keeps the id of the
-- transaction that wrote it, and the deliverer keeps one cursor: the last
-- (xid, event_id) whose first attempts were made. It takes events past the
-- cursor only below the xid horizon (pg_snapshot_xmin of its snapshot):
-- every transaction that could still commit an event has an xid at or
-- above it, so no event can appear behind the cursor later, though event
-- ids are drawn before their transactions commit, in any order.
ALTER TABLE events ADD COLUMN xid xid8;
-- Events not yet sent are taken first (no real xid is this small); those
-- sent keep NULL: behind every cursor.
UPDATE events SET xid = '1'::xid8 WHERE NOT fanned_out;
ALTER TABLE events ALTER COLUMN xid SET DEFAULT pg_current_xact_id();
ALTER TABLE events DROP COLUMN fanned_out;
CREATE INDEX events_by_xid ON events (xid, event_id) WHERE xid IS NOT NULL;
CREATE TABLE events_cursor (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    xid       xid8 NOT NULL,
    event_id  bigint NOT NULL
);
INSERT INTO events_cursor VALUES (true, '0'::xid8, 0);
