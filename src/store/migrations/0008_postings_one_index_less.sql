-- postings_card_time (card_no, posted_at DESC, posting_id DESC) is the primary
-- key (card_no, posted_at, posting_id) read backwards, which a B-tree does as
-- well: the history is served by the key. One index less to write on every
-- posting, and one less to open on every partition a card query touches.
DROP INDEX postings_card_time;
