-- The ledger (protocol.md §6): orders (idempotency, for ever), postings
-- (append-only, partitioned by month of posted_at) and points lots.
-- Every table here carries the card number, so the schema can be
-- distributed by it without changing a query.

-- One row per successful posting request, keyed by (terminal, order_no): the
-- unique key is what makes a posting idempotent (protocol.md §4.2), so this
-- table is never partitioned nor pruned. A request claims its row first
-- (answer NULL, visible to nobody until commit); a refused request deletes
-- its claim in the same transaction, so only a success uses an order_no up.
CREATE TABLE orders (
    terminal_id       text NOT NULL,
    order_no          text NOT NULL,
    -- SHA-256 of the canonical inner form (proto-spec §9).
    digest            bytea NOT NULL CHECK (length(digest) = 32),
    op                text NOT NULL,
    -- The card the answer is about, and every card the posting touched in
    -- the order of its effects.
    card_no           text,
    cards             text[] NOT NULL DEFAULT '{}',
    txn_id            bigint,
    business_day      date,
    posted_at         timestamptz,
    amount            numeric(14,2) NOT NULL DEFAULT 0,
    charged           numeric(14,2) NOT NULL DEFAULT 0,
    tender            text NOT NULL DEFAULT 'balance' CHECK (tender IN ('balance', 'cash')),
    points_earned     bigint NOT NULL DEFAULT 0,
    -- What later reverses and refunds did to this posting.
    reversed          boolean NOT NULL DEFAULT false,
    refunded          numeric(14,2) NOT NULL DEFAULT 0,
    points_taken_back bigint NOT NULL DEFAULT 0,
    -- Per card: balance and points deltas, lots created and taken (ids), so
    -- a reverse undoes exactly this posting.
    effects           jsonb,
    -- The answer row as first sent, replayed unchanged.
    answer            jsonb,
    row_mac           bytea,
    mac_key_id        text,
    PRIMARY KEY (terminal_id, order_no),
    CHECK (refunded >= 0 AND refunded <= charged)
);
CREATE INDEX orders_card ON orders (card_no);

CREATE SEQUENCE txn_id_seq;
CREATE SEQUENCE posting_id_seq;

-- The ledger proper: one row per card per posting, never updated nor
-- deleted. A card's balance is the sum of its balance_delta, its points the
-- sum of its points_delta. Partitioned by month (UTC) of posted_at; the
-- daemon makes partitions ahead (store::postings), the DEFAULT partition only
-- catches a row if that job has been failing for months.
CREATE TABLE postings (
    posting_id     bigint NOT NULL DEFAULT nextval('posting_id_seq'),
    txn_id         bigint NOT NULL,
    card_no        text NOT NULL,
    terminal_id    text NOT NULL,
    -- NULL for the store's own expiry postings.
    order_no       text,
    op             text NOT NULL,
    balance_delta  numeric(14,2) NOT NULL,
    points_delta   bigint NOT NULL,
    -- The card's values after this posting.
    balance        numeric(14,2) NOT NULL CHECK (balance >= 0),
    points         bigint NOT NULL CHECK (points >= 0),
    amount         numeric(14,2) NOT NULL DEFAULT 0,
    discount       numeric(14,2) NOT NULL DEFAULT 0,
    charged        numeric(14,2) NOT NULL DEFAULT 0,
    business_day   date NOT NULL,
    posted_at      timestamptz NOT NULL,
    -- Lots this posting created, took from and gave back to: [[lot_id, points], …].
    lots_created   jsonb NOT NULL DEFAULT '[]',
    lots_taken     jsonb NOT NULL DEFAULT '[]',
    lots_restored  jsonb NOT NULL DEFAULT '[]',
    -- Request details no rule reads (tender, reason, gift, original order).
    detail         jsonb NOT NULL DEFAULT '{}',
    row_mac        bytea,
    mac_key_id     text,
    PRIMARY KEY (card_no, posted_at, posting_id)
) PARTITION BY RANGE (posted_at);
CREATE INDEX postings_card_time ON postings (card_no, posted_at DESC, posting_id DESC);
CREATE TABLE postings_default PARTITION OF postings DEFAULT;

CREATE SEQUENCE lots_lot_id_seq;

-- Points as lots: each earning is a lot with its own expiry; spending takes
-- the soonest to expire first. A card's points = the sum of its lots' points_left.
CREATE TABLE lots (
    lot_id       bigint PRIMARY KEY,
    card_no      text NOT NULL,
    points       bigint NOT NULL CHECK (points > 0),
    points_left  bigint NOT NULL CHECK (points_left >= 0 AND points_left <= points),
    expires_at   timestamptz,
    txn_id       bigint NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX lots_card_live ON lots (card_no) WHERE points_left > 0;
