-- No statistics for the JSON columns no query filters or joins on (issue
-- 14). ANALYZE sorts a sample of every column's values to find the common
-- ones, and sorting jsonb is slow: an autovacuum worker analysing the
-- fast-growing events, postings and orders took a tenth of PostgreSQL's
-- CPU during a debit run, for statistics no plan reads (these columns are
-- only selected, summed or grouped). On the partitioned postings the
-- setting reaches every partition, and `postings::partition_sql` sets it
-- on each new one.
ALTER TABLE events ALTER COLUMN body SET STATISTICS 0;
ALTER TABLE orders ALTER COLUMN effects SET STATISTICS 0,
                   ALTER COLUMN answer SET STATISTICS 0;
ALTER TABLE postings ALTER COLUMN detail SET STATISTICS 0,
                     ALTER COLUMN lots_created SET STATISTICS 0,
                     ALTER COLUMN lots_taken SET STATISTICS 0,
                     ALTER COLUMN lots_restored SET STATISTICS 0;
