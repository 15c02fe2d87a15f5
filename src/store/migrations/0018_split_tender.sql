-- Split tender (issue 15, protocol.md §6.2): an order paid part in cash and
-- the rest from the balance records its tender as `split`; its legs are in
-- its effects (what left the balance) and its posting's detail (the cash).
ALTER TABLE orders DROP CONSTRAINT orders_tender_check;
ALTER TABLE orders ADD CONSTRAINT orders_tender_check
    CHECK (tender IN ('balance', 'cash', 'split'));
