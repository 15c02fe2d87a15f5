-- Failed logins are counted per (terminal, source address) in the daemon's
-- memory now (issue 12): an outsider's failures must not slow down the
-- terminal's own login, and a failed login must not cost a write. The
-- refusals are on the audit trail (kind 'refused.unproved', errno 1003).
ALTER TABLE terminals DROP COLUMN failed_logins, DROP COLUMN last_failed_at;
