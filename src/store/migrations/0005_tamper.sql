-- Tamper evidence (issue 5). The program alone writes row_mac (HMAC-SHA256
-- under the row key named by mac_key_id) and sealed (AES-256-GCM of the same
-- values under the data key); see ARCHITECTURE.md "Tamper evidence".

-- How many postings the card's chain holds; covered by the card's MAC, so a
-- deleted or inserted posting anywhere in the chain shows on the next use.
ALTER TABLE cards ADD COLUMN chain_len bigint NOT NULL DEFAULT 0;

-- The head of the audit chain: the MAC and id of the last audit row, so a
-- deleted last row is seen too. One row; every audit insert swaps it.
CREATE TABLE audit_head (
    one       boolean PRIMARY KEY DEFAULT true CHECK (one),
    last_id   bigint,
    last_mac  bytea
);
INSERT INTO audit_head (one) VALUES (true);

-- Postings of a card in chain order (verify and the check on use).
CREATE INDEX postings_card_id ON postings (card_no, posting_id);
