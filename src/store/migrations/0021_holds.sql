-- Holds (issue 15, protocol.md §6.2). A hold is an order (op 'hold'): its
-- row keeps the terms the hold was placed at (when it lapses, the
-- discount and points rates its capture is priced at), under the order's
-- MAC once set, and `reversed` marks it released (captured, voided or
-- expired). A card keeps the sum its active holds keep from being spent
-- (under its MAC once written; NULL before: none), never more than its
-- balance.
ALTER TABLE orders ADD COLUMN hold_expires_at timestamptz,
                   ADD COLUMN hold_discount numeric(5,4),
                   ADD COLUMN hold_points_rate numeric(10,4);
ALTER TABLE cards ADD COLUMN held numeric(14,2) CHECK (held >= 0 AND held <= balance);
-- A card's active holds, read only when the card holds money.
CREATE INDEX orders_active_holds ON orders (card_no, hold_expires_at)
    WHERE op = 'hold' AND NOT reversed;
