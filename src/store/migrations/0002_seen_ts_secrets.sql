-- Once-only values (protocol.md §4.2): every request that passes its MAC check
-- uses up its (terminal, ts), whatever its outcome. Partitioned by UTC day of
-- `ts` (Unix ms) so old values are dropped with their partition, never by a
-- scan; partitions are made ahead by the daemon (store::seen_ts).
CREATE TABLE seen_ts (
    terminal_id text NOT NULL,
    ts          bigint NOT NULL,
    seen_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (terminal_id, ts)
) PARTITION BY RANGE (ts);

-- Server secrets other than key files, each sealed (AES-256-GCM) under the
-- master key named by master_key_id; `keys rotate-master` re-seals them all.
CREATE TABLE sealed_secrets (
    name          text PRIMARY KEY,
    master_key_id text NOT NULL,
    sealed        bytea NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
