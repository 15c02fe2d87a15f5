-- Points lots under a row MAC (issue 12): which lot holds how many points
-- and until when decides which points expire first, so a lot changed by SQL
-- (points moved between a card's lots, an expiry pushed back) is refused on
-- use (3001). Rows from before have none: `keys rotate-row-key
-- --adopt-unmaced` MACs them as they are.
ALTER TABLE lots ADD COLUMN row_mac bytea, ADD COLUMN mac_key_id text;
