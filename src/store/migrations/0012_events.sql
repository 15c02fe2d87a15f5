-- Events (protocol.md §8): the outbox. One row per posting row, written by
-- the posting's own statement, so no posting is without its event and no
-- event without its posting. `body` is the event as sent, but for `id`
-- (the event_id) and the member's phone (added for the endpoints that ask).
CREATE TABLE events (
    event_id    bigserial PRIMARY KEY,
    created_at  timestamptz NOT NULL,
    card_no     text NOT NULL,
    op          text NOT NULL,
    store_id    text,
    body        jsonb NOT NULL,
    -- Sent: its first attempts to the endpoints active then were made (a
    -- failed one left a `deliveries` row, retried from there).
    fanned_out  boolean NOT NULL DEFAULT false
);
CREATE INDEX events_to_fan_out ON events (event_id) WHERE NOT fanned_out;
CREATE INDEX events_created ON events (created_at);

-- Endpoints. The signing secret is in sealed_secrets as `webhook:{name}`,
-- sealed under the master key like every other secret.
CREATE TABLE webhooks (
    name          text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_-]{1,32}$'),
    url           text NOT NULL,
    -- NULL: every op; else the ops wanted.
    ops           text[],
    -- NULL: every store.
    store_id      text REFERENCES stores,
    include_phone boolean NOT NULL DEFAULT false,
    status        text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- One event for one endpoint whose first attempt failed. A daemon leases a
-- due row by moving its next_at past the delivery's timeout (FOR UPDATE
-- SKIP LOCKED, so several daemons never take the same one); a daemon that
-- dies mid-delivery leaves it due again when the lease ends.
CREATE TABLE deliveries (
    event_id      bigint NOT NULL REFERENCES events ON DELETE CASCADE,
    webhook       text NOT NULL REFERENCES webhooks ON DELETE CASCADE,
    status        text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts      integer NOT NULL DEFAULT 0,
    next_at       timestamptz NOT NULL,
    last_error    text,
    delivered_at  timestamptz,
    PRIMARY KEY (event_id, webhook)
);
CREATE INDEX deliveries_due ON deliveries (next_at) WHERE status = 'pending';
CREATE INDEX deliveries_failed ON deliveries (webhook) WHERE status = 'failed';
