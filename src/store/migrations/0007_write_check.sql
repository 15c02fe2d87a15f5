-- The ledger's write statement checks its own row counts (every card
-- update, posting, lot move, new lot, order and original order landed), so
-- its COMMIT can be sent with it in one round trip: a miscount raises, and
-- the COMMIT that follows then rolls the transaction back.
CREATE FUNCTION cardswitch_expect(got bigint[], want bigint[]) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    IF got IS DISTINCT FROM want THEN
        RAISE EXCEPTION 'ledger write landed % rows, expected %', got, want
            USING ERRCODE = 'XX000';
    END IF;
    RETURN true;
END
$$;
