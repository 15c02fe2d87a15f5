-- Limits per level (issue 15, protocol.md §6.2): a cap on the balance for
-- money coming in, and a limit on what one business day's debits and
-- outgoing transfers take from a card (NULL: none). Each level's MAC covers
-- them once set. A card keeps what it spent on its last business day with
-- spending (under its MAC once written; NULL before).
ALTER TABLE levels ADD COLUMN max_balance numeric(14,2) CHECK (max_balance >= 0),
                   ADD COLUMN daily_debit_limit numeric(14,2) CHECK (daily_debit_limit >= 0);
ALTER TABLE cards ADD COLUMN spent_day date,
                  ADD COLUMN spent_today numeric(14,2) CHECK (spent_today >= 0);
