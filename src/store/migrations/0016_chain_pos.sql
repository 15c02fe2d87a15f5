-- Each posting's place in its card's chain, under its MAC (issue 14): the
-- card's `chain_len` must name the last posting's place, so a posting's
-- checks read the chain's last two rows instead of counting every posting
-- the card ever had (a count that grew with each card's history and each
-- monthly partition). NULL on postings from before: their MAC covers no
-- place, and a check of a chain that ends in one counts as before until
-- `keys rotate-row-key` gives the whole chain its places.
ALTER TABLE postings ADD COLUMN chain_pos bigint;
