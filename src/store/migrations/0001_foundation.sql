-- Foundation: who may transact (stores, terminals, operators), what they
-- transact on (levels, members, cards), and the audit trail.
-- Integrity columns (row_mac, mac_key_id, sealed, last_mac) are filled by the
-- program; see ARCHITECTURE.md "Tamper evidence".

CREATE TABLE stores (
    store_id    text PRIMARY KEY CHECK (store_id ~ '^[A-Za-z0-9_-]{1,32}$'),
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE terminals (
    terminal_id   text PRIMARY KEY CHECK (terminal_id ~ '^[A-Za-z0-9_-]{1,32}$'),
    store_id      text NOT NULL REFERENCES stores,
    status        text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    pw_hash       bytea,
    pw_salt       bytea,
    pw_key_id     text,
    failed_logins integer NOT NULL DEFAULT 0,
    last_failed_at timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    row_mac       bytea,
    mac_key_id    text
);

CREATE TABLE operators (
    store_id      text NOT NULL REFERENCES stores,
    operator_id   text NOT NULL CHECK (operator_id ~ '^[A-Za-z0-9_-]{1,32}$'),
    role          text NOT NULL CHECK (role IN ('cashier', 'manager')),
    status        text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    pin_hash      bytea,
    pin_salt      bytea,
    pin_fail_count integer NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    row_mac       bytea,
    mac_key_id    text,
    PRIMARY KEY (store_id, operator_id),
    CHECK (role = 'cashier' OR pin_hash IS NOT NULL)
);

CREATE TABLE levels (
    level       text PRIMARY KEY CHECK (level ~ '^[A-Za-z0-9_-]{1,32}$'),
    discount    numeric(5,4) NOT NULL CHECK (discount > 0 AND discount <= 1),
    points_rate numeric(10,4) NOT NULL CHECK (points_rate >= 0),
    created_at  timestamptz NOT NULL DEFAULT now(),
    row_mac     bytea,
    mac_key_id  text
);

CREATE TABLE members (
    member_id   bigserial PRIMARY KEY,
    name        text NOT NULL,
    phone       text NOT NULL,
    birthday    date,
    referrer    text,
    level       text NOT NULL REFERENCES levels,
    created_at  timestamptz NOT NULL DEFAULT now(),
    row_mac     bytea,
    mac_key_id  text
);

CREATE TABLE cards (
    card_no       text PRIMARY KEY CHECK (card_no ~ '^[A-Za-z0-9]{4,32}$'),
    member_id     bigint NOT NULL REFERENCES members,
    status        text NOT NULL DEFAULT 'active'
                  CHECK (status IN ('active', 'lost', 'locked', 'closed')),
    balance       numeric(14,2) NOT NULL DEFAULT 0 CHECK (balance >= 0),
    points        bigint NOT NULL DEFAULT 0 CHECK (points >= 0),
    pin_hash      bytea,
    pin_salt      bytea,
    pin_fail_count integer NOT NULL DEFAULT 0,
    opened_at     timestamptz NOT NULL DEFAULT now(),
    closed_at     timestamptz,
    row_mac       bytea,
    mac_key_id    text,
    sealed        bytea,
    last_mac      bytea
);
CREATE INDEX cards_member ON cards (member_id);

CREATE TABLE audit (
    audit_id    bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    kind        text NOT NULL,
    terminal_id text,
    actor       text,
    source      text,
    detail      jsonb NOT NULL DEFAULT '{}',
    row_mac     bytea,
    mac_key_id  text
);
CREATE INDEX audit_at ON audit (at);
