-- Validity of the membership (issue 15, protocol.md §6.2): when a card's
-- membership was last renewed (registered, imported, replaced onto, or
-- topped up). It lapses `business.card_validity_days` later. Under the
-- card's MAC once written; NULL on a card not written since this
-- migration, whose renewal the ledger reads from its postings and stores
-- at the card's next posting.
ALTER TABLE cards ADD COLUMN renewed_at timestamptz;
