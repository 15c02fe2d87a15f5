-- A terminal's kind (protocol.md §6.1): `pos`, a till, or `office`, a
-- back-office system that reads and never posts. Existing terminals are
-- tills; their row MACs stay valid, since a `pos` terminal's image is what
-- it was before kinds (integrity::terminal_image).
ALTER TABLE terminals
    ADD COLUMN kind text NOT NULL DEFAULT 'pos' CHECK (kind IN ('pos', 'office'));
