-- Tamper evidence (issue 5) for the key tables of 0003: day keys and
-- sessions get a row MAC (HMAC-SHA256 under the row key named by
-- mac_key_id) like the tables of 0005. Rows from before stay without one
-- until `keys rotate-row-key --adopt-unmaced` MACs them.
ALTER TABLE day_keys ADD COLUMN row_mac bytea, ADD COLUMN mac_key_id text;
ALTER TABLE sessions ADD COLUMN row_mac bytea, ADD COLUMN mac_key_id text;
