-- Sealed copies (issue 12) for the rows beside the cards: AES-256-GCM under
-- the data key of the same image the row MAC covers, bound to the table and
-- key, so `verify --repair` can restore a member, a terminal, an operator or
-- a level changed by SQL. Rows from before have none (NULL), and are only
-- reported.
ALTER TABLE members ADD COLUMN sealed bytea;
ALTER TABLE terminals ADD COLUMN sealed bytea;
ALTER TABLE operators ADD COLUMN sealed bytea;
ALTER TABLE levels ADD COLUMN sealed bytea;
