-- rebuild
-- forwarded_payments becomes forwards, keyed by channel and HTLC id so that
-- a forward outlives its HTLC rows.
CREATE TABLE forwards (  in_channel_scid INTEGER, in_htlc_id INTEGER, out_channel_scid INTEGER, out_htlc_id INTEGER, in_msatoshi INTEGER, out_msatoshi INTEGER, state INTEGER, received_time INTEGER, resolved_time INTEGER, failcode INTEGER, forward_style INTEGER, PRIMARY KEY(in_channel_scid, in_htlc_id));
INSERT INTO forwards SELECT in_channel_scid, COALESCE((SELECT channel_htlc_id FROM channel_htlcs AS h WHERE h.id = forwarded_payments.in_htlc_id), -_ROWID_), out_channel_scid, (SELECT channel_htlc_id FROM channel_htlcs AS h WHERE h.id = forwarded_payments.out_htlc_id), in_msatoshi, out_msatoshi, state, received_time, resolved_time, failcode, NULL FROM forwarded_payments;
DROP TABLE forwarded_payments;
