-- Back-office scope (protocol.md §6.1). A head-office terminal belongs to
-- every store: its store_id is NULL (the daemon reads it as `*`, which no
-- store id can be), and only an office terminal may have one.
ALTER TABLE terminals ALTER COLUMN store_id DROP NOT NULL;
ALTER TABLE terminals
    ADD CONSTRAINT terminals_scope CHECK (store_id IS NOT NULL OR kind = 'office');

-- A card's store (for `liability`) is where it was issued: the store of the
-- terminal of its first posting (its `register`, `replace` or `import`).
-- Kept beside the card, like an index, so a store's liability reads its
-- cards only; it is derived from MAC-covered postings, and `verify` checks
-- it against them.
ALTER TABLE cards ADD COLUMN store_id text REFERENCES stores;
UPDATE cards c
   SET store_id = (SELECT t.store_id
                     FROM postings p JOIN terminals t ON t.terminal_id = p.terminal_id
                    WHERE p.card_no = c.card_no
                    ORDER BY p.posting_id LIMIT 1);
CREATE INDEX cards_store ON cards (store_id);

-- `settlement` reads one business day's postings.
CREATE INDEX postings_day ON postings (business_day);
