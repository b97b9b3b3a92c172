-- rebuild
-- channels gains alias columns. Rebuilding a table that others reference: with
-- foreign keys on, DROP TABLE channels would delete every HTLC, signature and
-- feerate by cascade, which is why lightningd brackets it with
-- PRAGMA foreign_keys = OFF/ON and a replay must too.
CREATE TABLE channels_new (  id INTEGER,  peer_id INTEGER REFERENCES peers(id) ON DELETE CASCADE,  short_channel_id TEXT,  channel_config_local INTEGER,  channel_config_remote INTEGER,  state INTEGER,  funder INTEGER,  channel_flags INTEGER,  minimum_depth INTEGER,  next_index_local INTEGER,  next_index_remote INTEGER,  next_htlc_id INTEGER,  funding_tx_id BLOB,  funding_tx_outnum INTEGER,  funding_satoshi INTEGER,  funding_locked_remote INTEGER,  push_msatoshi INTEGER,  msatoshi_local INTEGER,  fundingkey_remote BLOB,  revocation_basepoint_remote BLOB,  payment_basepoint_remote BLOB,  htlc_basepoint_remote BLOB,  delayed_payment_basepoint_remote BLOB,  per_commit_remote BLOB,  old_per_commit_remote BLOB,  local_feerate_per_kw INTEGER,  remote_feerate_per_kw INTEGER,  shachain_remote_id INTEGER,  shutdown_scriptpubkey_remote BLOB,  shutdown_keyidx_local INTEGER,  last_sent_commit_state INTEGER,  last_sent_commit_id INTEGER,  last_tx BLOB,  last_sig BLOB,  closing_fee_received INTEGER,  closing_sig_received BLOB, first_blocknum INTEGER, last_was_revoke INTEGER, feerate_base INTEGER, feerate_ppm INTEGER, full_channel_id BLOB DEFAULT NULL, alias_local INTEGER DEFAULT NULL, alias_remote INTEGER DEFAULT NULL,  PRIMARY KEY (id));
INSERT INTO channels_new SELECT *, NULL, NULL FROM channels;
DROP TABLE channels;
ALTER TABLE channels_new RENAME TO channels;
