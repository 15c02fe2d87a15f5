-- Protocol keys (protocol.md §2): root keys (public part only; the private
-- key is a file ops may keep offline), signer keys and their certificates by
-- each root, per-terminal day keys with their day secret, and sessions.
-- Private material is sealed (AES-256-GCM) under the master key named beside
-- it; `keys rotate-master` re-seals it all in one transaction.

CREATE TABLE root_keys (
    root_id       text PRIMARY KEY CHECK (root_id ~ '^[0-9a-f]{16}$'),
    public_der    bytea NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    -- Set when a newer root replaces it; it keeps certifying until then.
    overlap_until timestamptz
);

CREATE TABLE signer_keys (
    signer_id      text PRIMARY KEY CHECK (signer_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    public_der     bytea NOT NULL,
    sealed_private bytea NOT NULL,
    master_key_id  text NOT NULL,
    not_after      bigint NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);

-- The signer statement of protocol.md §3.1 signed by one root.
CREATE TABLE signer_certs (
    signer_id  text NOT NULL REFERENCES signer_keys ON DELETE CASCADE,
    root_id    text NOT NULL REFERENCES root_keys ON DELETE CASCADE,
    sig        bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (signer_id, root_id)
);

CREATE TABLE day_keys (
    key_id         text PRIMARY KEY CHECK (key_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    terminal_id    text NOT NULL REFERENCES terminals,
    business_day   date NOT NULL,
    not_before     bigint NOT NULL,
    not_after      bigint NOT NULL,
    public_der     bytea NOT NULL,
    -- Both NULL once destroyed (after the business day's grace period).
    sealed_private bytea,
    sealed_k_day   bytea,
    master_key_id  text NOT NULL,
    signer_id      text NOT NULL REFERENCES signer_keys,
    day_sig        bytea NOT NULL,
    status         text NOT NULL DEFAULT 'active'
                   CHECK (status IN ('active', 'revoked', 'destroyed')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    CHECK (status = 'destroyed' OR (sealed_private IS NOT NULL AND sealed_k_day IS NOT NULL))
);
-- One usable day key per terminal and business day.
CREATE UNIQUE INDEX day_keys_one_active ON day_keys (terminal_id, business_day)
    WHERE status = 'active';
CREATE INDEX day_keys_not_after ON day_keys (not_after) WHERE status <> 'destroyed';

-- K_sid is derived from K_day and the sid on demand, never stored.
CREATE TABLE sessions (
    sid         text PRIMARY KEY CHECK (sid ~ '^[A-Za-z0-9._-]{1,64}$'),
    terminal_id text NOT NULL REFERENCES terminals,
    key_id      text NOT NULL REFERENCES day_keys ON DELETE CASCADE,
    opened_at   timestamptz NOT NULL DEFAULT now(),
    not_after   bigint NOT NULL,
    revoked_at  timestamptz
);
CREATE INDEX sessions_terminal ON sessions (terminal_id);
CREATE INDEX sessions_key ON sessions (key_id);
