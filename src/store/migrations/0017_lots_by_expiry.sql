-- A card's live lots by expiry (issue 14): an op whose decision reads no
-- lot (a debit, a top-up) reads only those expired by now, for its expiry
-- step, as a range of this index, however many lots the card holds; the
-- ops that read them all still find them by card number.
CREATE INDEX lots_card_expiry ON lots (card_no, expires_at) WHERE points_left > 0;
DROP INDEX lots_card_live;
