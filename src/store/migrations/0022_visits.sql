-- Count cards (issue 15, protocol.md §6.2). A lot of visits is a row of
-- `lots` with a `service`: its `points`/`points_left` count visits of that
-- service, under the same row MAC (which then covers the service too), the
-- same moves and the same expiry index as points lots. Points lots keep
-- `service` NULL, and everything that sums points sums those only.
ALTER TABLE lots ADD COLUMN service text;
-- The visits a card's lots hold, all services together, under the card's
-- MAC once written (NULL: the card never had any).
ALTER TABLE cards ADD COLUMN visits bigint CHECK (visits >= 0);
-- The visits a posting added or took (NULL: none), under its chained MAC
-- once set; a card's visits are the sum of its postings' `visits_delta`.
ALTER TABLE postings ADD COLUMN visits_delta bigint;
