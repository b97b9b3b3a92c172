-- rebuild
-- forwarded_payments gains forward_style. SQLite cannot add a column with a
-- new constraint in place, so lightningd rebuilds the table.
CREATE TABLE forwarded_payments_new (  in_htlc_id INTEGER REFERENCES channel_htlcs(id) ON DELETE SET NULL, out_htlc_id INTEGER REFERENCES channel_htlcs(id) ON DELETE SET NULL, in_channel_scid INTEGER, out_channel_scid INTEGER, in_msatoshi INTEGER, out_msatoshi INTEGER, state INTEGER, received_time INTEGER, resolved_time INTEGER, failcode INTEGER, forward_style INTEGER DEFAULT NULL, UNIQUE(in_htlc_id, out_htlc_id));
INSERT INTO forwarded_payments_new SELECT *, NULL FROM forwarded_payments;
DROP TABLE forwarded_payments;
ALTER TABLE forwarded_payments_new RENAME TO forwarded_payments;
