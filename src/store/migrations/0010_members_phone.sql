-- `find` by phone (protocol.md §6.1) is an index look-up, not a scan of
-- every member.
CREATE INDEX members_phone ON members (phone);
