DROP TABLE channels;
UPDATE version SET version=0;
DROP TABLE forwarded_payments;
UPDATE payments SET partid = 0;
INSERT INTO version VALUES (0);
UPDATE invoices SET expiry_time=0;
DELETE FROM channels WHERE state=0
DELETE FROM blocks WHERE height > 0
UPDATE channel_htlcs SET partid = 0;
ALTER TABLE invoices ADD bolt11 TEXT;
ALTER TABLE payments ADD bolt11 TEXT;
ALTER TABLE payments ADD failnode BLOB;
CREATE TABLE version (version INTEGER);
DELETE FROM blocks WHERE height IS NULL;
ALTER TABLE vars ADD COLUMN blobval BLOB
INSERT INTO db_upgrades VALUES (-0, '');
ALTER TABLE payments ADD failupdate BLOB;
ALTER TABLE payments ADD faildetail TEXT;
ALTER TABLE payments ADD failcode INTEGER;
ALTER TABLE payments ADD failchannel TEXT;
ALTER TABLE invoices ADD description TEXT;
ALTER TABLE payments ADD description TEXT;
ALTER TABLE outputs ADD scriptpubkey BLOB;
ALTER TABLE transactions ADD type INTEGER;
ALTER TABLE vars ADD COLUMN intval INTEGER
UPDATE payments SET total_msat = msatoshi;
ALTER TABLE invoices ADD pay_index INTEGER;
ALTER TABLE payments ADD failindex INTEGER;
ALTER TABLE outputs ADD COLUMN peer_id BLOB;
ALTER TABLE channels_new RENAME TO channels;
ALTER TABLE invoices ADD expiry_time INTEGER;
ALTER TABLE payments ADD failonionreply BLOB;
UPDATE payments SET msatoshi_sent = msatoshi;
ALTER TABLE channels ADD feerate_ppm INTEGER;
ALTER TABLE channel_htlcs ADD partid INTEGER;
UPDATE channels SET STATE = 0 WHERE state > 0;
ALTER TABLE payments ADD faildestperm INTEGER;
ALTER TABLE channels ADD feerate_base INTEGER;
UPDATE invoices SET pay_index=id WHERE state=0;
ALTER TABLE payments ADD msatoshi_sent INTEGER;
ALTER TABLE channels ADD last_sent_commit BLOB;
ALTER TABLE payments ADD faildirection INTEGER;
ALTER TABLE channels ADD first_blocknum INTEGER;
ALTER TABLE invoices ADD paid_timestamp INTEGER;
ALTER TABLE transactions ADD channel_id INTEGER;
ALTER TABLE channel_htlcs ADD localfailmsg BLOB;
ALTER TABLE channel_htlcs ADD we_filled INTEGER;
ALTER TABLE payments ADD COLUMN route_nodes BLOB;
ALTER TABLE outputs ADD COLUMN channel_id INTEGER;
ALTER TABLE payments ADD COLUMN path_secrets BLOB;
ALTER TABLE channels ADD remote_ann_node_sig BLOB;
INSERT INTO vars (name, blobval) VALUES ('', );
CREATE INDEX channel_idx ON htlc_sigs (channelid);
CREATE INDEX utxoset_spend ON utxoset (spendheight)
ALTER TABLE channel_htlcs ADD received_time INTEGER
ALTER TABLE payments ADD COLUMN route_channels BLOB;
ALTER TABLE channels ADD msatoshi_to_us_min INTEGER;
ALTER TABLE channels ADD msatoshi_to_us_max INTEGER;
ALTER TABLE forwarded_payments ADD failcode INTEGER;
CREATE INDEX utxoset_spend ON utxoset (spendheight);
ALTER TABLE outputs ADD COLUMN commitment_point BLOB;
ALTER TABLE channels ADD remote_ann_bitcoin_sig BLOB;
UPDATE invoices SET msatoshi_received=0 WHERE state=0;
ALTER TABLE payments ADD COLUMN payment_preimage BLOB;
ALTER TABLE channels ADD min_possible_feerate INTEGER;
ALTER TABLE channels ADD max_possible_feerate INTEGER;
UPDATE channels SET feerate_base = 0, feerate_ppm = 0;
UPDATE payments   SET faildetail = '' WHERE status = 0;
ALTER TABLE channels ADD COLUMN last_was_revoke INTEGER;
ALTER TABLE forwarded_payments ADD received_time INTEGER
ALTER TABLE forwarded_payments ADD resolved_time INTEGER
UPDATE shachains SET num_valid=0, min_index=0 WHERE id=0
INSERT INTO vars (name, val, intval) VALUES ('', '', 0);
ALTER TABLE invoices ADD COLUMN features BLOB DEFAULT '';
ALTER TABLE invoices ADD COLUMN msatoshi_received INTEGER;
ALTER TABLE channels ADD future_per_commitment_point BLOB;
ALTER TABLE channels ADD shutdown_scriptpubkey_local BLOB;
ALTER TABLE outputs ADD reserved_til INTEGER DEFAULT NULL;
UPDATE vars SET blobval = CAST(val AS BLOB) WHERE name = ''
ALTER TABLE channels ADD full_channel_id BLOB DEFAULT NULL;
INSERT INTO shachains (min_index, num_valid) VALUES (0, 0);
INSERT INTO channels_new SELECT *, NULL, NULL FROM channels;
ALTER TABLE channels ADD remote_upfront_shutdown_script BLOB;
ALTER TABLE channels ADD in_payments_offered INTEGER DEFAULT 0;
ALTER TABLE channels ADD in_msatoshi_offered INTEGER DEFAULT 0;
ALTER TABLE channels ADD our_funding_satoshi INTEGER DEFAULT 0;
ALTER TABLE channels ADD out_payments_offered INTEGER DEFAULT 0;
ALTER TABLE channels ADD out_msatoshi_offered INTEGER DEFAULT 0;
ALTER TABLE outputs ADD option_anchor_outputs INTEGER DEFAULT 0;
ALTER TABLE forwarded_payments_new RENAME TO forwarded_payments;
ALTER TABLE channels ADD in_payments_fulfilled INTEGER DEFAULT 0;
ALTER TABLE channels ADD in_msatoshi_fulfilled INTEGER DEFAULT 0;
ALTER TABLE channels ADD out_payments_fulfilled INTEGER DEFAULT 0;
ALTER TABLE channels ADD out_msatoshi_fulfilled INTEGER DEFAULT 0;
UPDATE outputs SET confirmation_height = 0 WHERE prev_out_tx = 
UPDATE channels SET min_possible_feerate=0, max_possible_feerate=0;
INSERT INTO channels (peer_id, first_blocknum, id) VALUES (0, 0, 0);
CREATE INDEX short_channel_id ON utxoset (blockheight, txindex, outnum)
UPDATE invoices   SET state = 0 WHERE state = 0   AND expiry_time <= 0;
UPDATE shachain_known SET idx=0, hash= WHERE shachain_id=0 AND pos=0
UPDATE channels SET first_blocknum=0 WHERE short_channel_id IS NOT NULL;
UPDATE invoices   SET paid_timestamp = strftime('', '') WHERE state = 0;
UPDATE vars SET intval = CAST(val AS INTEGER) WHERE name IN ('', '', '')
ALTER TABLE channels ADD COLUMN option_anchor_outputs INTEGER DEFAULT 0;
CREATE INDEX short_channel_id ON utxoset (blockheight, txindex, outnum);
CREATE TABLE vars (  name VARCHAR(0), val VARCHAR(0), PRIMARY KEY (name));
ALTER TABLE channels ADD COLUMN option_static_remotekey INTEGER DEFAULT 0;
UPDATE forwarded_payments SET received_time=0 WHERE received_time IS NULL;
INSERT INTO forwarded_payments_new SELECT *, NULL FROM forwarded_payments;
UPDATE channels SET our_funding_satoshi = funding_satoshi WHERE funder = 0;
UPDATE channels SET shutdown_keyidx_local=0 WHERE shutdown_keyidx_local = -0;
DELETE FROM blocks WHERE height > (SELECT MIN(first_blocknum) FROM channels);
INSERT INTO shachain_known (shachain_id, pos, idx, hash) VALUES (0, 0, 0, );
UPDATE channels SET  remote_ann_node_sig=,  remote_ann_bitcoin_sig= WHERE id=0
INSERT INTO transactions (  id, blockheight, txindex, rawtx) VALUES (, 0, 0, );
UPDATE channel_htlcs SET localfailmsg= WHERE malformed_onion != 0 AND direction = 0;
UPDATE outputs SET status=0, reserved_til=174WHERE prev_out_tx= AND prev_out_index=0
UPDATE outputs SET status=0, reserved_til=246WHERE prev_out_tx= AND prev_out_index=0
INSERT OR IGNORE INTO blocks (height) VALUES ((SELECT MIN(first_blocknum) FROM channels));
UPDATE payments SET failchannel = REPLACE(failchannel, '', '') WHERE failchannel IS NOT NULL;
UPDATE outputs SET spend_height = 0,  status = 0 WHERE prev_out_tx =  AND prev_out_index = 0
ALTER TABLE outputs ADD COLUMN spend_height INTEGER REFERENCES blocks(height) ON DELETE SET NULL;
ALTER TABLE outputs ADD COLUMN confirmation_height INTEGER REFERENCES blocks(height) ON DELETE SET NULL;
UPDATE channels   SET msatoshi_to_us_min = msatoshi_local     , msatoshi_to_us_max = msatoshi_local     ;
UPDATE channels SET short_channel_id = REPLACE(short_channel_id, '', '') WHERE short_channel_id IS NOT NULL;
UPDATE payments   SET path_secrets = NULL     , route_nodes = NULL     , route_channels = NULL WHERE status <> 0;
INSERT INTO vars(name, val)  VALUES('',     COALESCE((SELECT MAX(pay_index) FROM invoices WHERE state=0), 0) + 0  );
INSERT INTO payments SELECT id, timestamp, status, payment_hash, destination, msatoshi FROM temp_payments WHERE direction=0;
INSERT INTO utxoset ( txid, outnum, blockheight, spendheight, txindex, scriptpubkey, satoshis) VALUES(, 0, 0, NULL, 0, , 0);
INSERT INTO channel_feerates(channel_id, hstate, feerate_per_kw) SELECT id, 0, local_feerate_per_kw FROM channels WHERE funder = 0;
INSERT INTO channel_feerates(channel_id, hstate, feerate_per_kw) SELECT id, 0, remote_feerate_per_kw FROM channels WHERE funder = 0;
CREATE TABLE transactions (  id BLOB, blockheight INTEGER REFERENCES blocks(height) ON DELETE SET NULL, txindex INTEGER, rawtx BLOB, PRIMARY KEY (id));
CREATE TABLE transaction_annotations (  txid BLOB, idx INTEGER, location INTEGER, type INTEGER, channel INTEGER REFERENCES channels(id), UNIQUE(txid, idx));
CREATE TABLE outputs (  prev_out_tx BLOB, prev_out_index INTEGER, value INTEGER, type INTEGER, status INTEGER, keyindex INTEGER, PRIMARY KEY (prev_out_tx, prev_out_index));
DELETE FROM utxoset WHERE blockheight IN (  SELECT DISTINCT(blockheight)  FROM utxoset LEFT OUTER JOIN blocks on (blockheight = blocks.height)   WHERE blocks.hash IS NULL);
CREATE TABLE payments (  id INTEGER,  timestamp INTEGER,  status INTEGER,  payment_hash BLOB,  destination BLOB,  msatoshi INTEGER,  PRIMARY KEY (id),  UNIQUE (payment_hash));
INSERT INTO channel_feerates(channel_id, hstate, feerate_per_kw) SELECT id, 0, local_feerate_per_kw FROM channels WHERE funder = 0 and local_feerate_per_kw != remote_feerate_per_kw;
INSERT INTO channel_feerates(channel_id, hstate, feerate_per_kw) SELECT id, 0, remote_feerate_per_kw FROM channels WHERE funder = 0 and local_feerate_per_kw != remote_feerate_per_kw;
CREATE TABLE invoices (  id INTEGER,  state INTEGER,  msatoshi INTEGER,  payment_hash BLOB,  payment_key BLOB,  label TEXT,  PRIMARY KEY (id),  UNIQUE (label),  UNIQUE (payment_hash));
CREATE TABLE transactions (  id BLOB, blockheight INTEGER REFERENCES blocks(height) ON DELETE SET NULL, txindex INTEGER, rawtx BLOB, type INTEGER, channel_id INTEGER, PRIMARY KEY (id));
CREATE TABLE payments (  id INTEGER,  timestamp INTEGER,  status INTEGER,  payment_hash BLOB,  direction INTEGER,  destination BLOB,  msatoshi INTEGER,  PRIMARY KEY (id),  UNIQUE (payment_hash));
UPDATE channels   SET  in_payments_offered = 0,  in_payments_fulfilled = 0     ,  in_msatoshi_offered = 0,  in_msatoshi_fulfilled = 0     , out_payments_offered = 0, out_payments_fulfilled = 0     , out_msatoshi_offered = 0, out_msatoshi_fulfilled = 0     ;
INSERT INTO outputs (  prev_out_tx, prev_out_index, value, type, status, keyindex, channel_id, peer_id, commitment_point, option_anchor_outputs, confirmation_height, spend_height, scriptpubkey) VALUES (, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, );
CREATE TABLE forwarded_payments (  in_htlc_id INTEGER REFERENCES channel_htlcs(id) ON DELETE SET NULL, out_htlc_id INTEGER REFERENCES channel_htlcs(id) ON DELETE SET NULL, in_channel_scid INTEGER, out_channel_scid INTEGER, in_msatoshi INTEGER, out_msatoshi INTEGER, state INTEGER, UNIQUE(in_htlc_id, out_htlc_id));
CREATE TABLE forwarded_payments_new (  in_htlc_id INTEGER REFERENCES channel_htlcs(id) ON DELETE SET NULL, out_htlc_id INTEGER REFERENCES channel_htlcs(id) ON DELETE SET NULL, in_channel_scid INTEGER, out_channel_scid INTEGER, in_msatoshi INTEGER, out_msatoshi INTEGER, state INTEGER, received_time INTEGER, resolved_time INTEGER, failcode INTEGER, forward_style INTEGER DEFAULT NULL, UNIQUE(in_htlc_id, out_htlc_id));
CREATE TABLE channel_htlcs (  id INTEGER,  channel_id INTEGER REFERENCES channels(id) ON DELETE CASCADE,  channel_htlc_id INTEGER,  direction INTEGER,  origin_htlc INTEGER,  msatoshi INTEGER,  cltv_expiry INTEGER,  payment_hash BLOB,  payment_key BLOB,  routing_onion BLOB,  failuremsg BLOB,  malformed_onion INTEGER,  hstate INTEGER,  shared_secret BLOB,  PRIMARY KEY (id),  UNIQUE (channel_id, channel_htlc_id, direction));
CREATE TABLE payments ( id INTEGER, timestamp INTEGER, status INTEGER, payment_hash BLOB, destination BLOB, msatoshi INTEGER, payment_preimage BLOB, path_secrets BLOB, route_nodes BLOB, route_channels BLOB, failonionreply BLOB, faildestperm INTEGER, failindex INTEGER, failcode INTEGER, msatoshi_sent INTEGER, description TEXT, bolt11 TEXT, total_msat INTEGER, partid INTEGER, PRIMARY KEY (id), UNIQUE (payment_hash, partid));
CREATE TABLE payments ( id INTEGER, timestamp INTEGER, status INTEGER, payment_hash BLOB, destination BLOB, msatoshi INTEGER, payment_preimage BLOB, path_secrets BLOB, route_nodes BLOB, route_channels BLOB, failonionreply BLOB, faildestperm INTEGER, failindex INTEGER, failcode INTEGER, failnode BLOB, failchannel TEXT, failupdate BLOB, msatoshi_sent INTEGER, faildetail TEXT, description TEXT, faildirection INTEGER, bolt11 TEXT, total_msat INTEGER, partid INTEGER, PRIMARY KEY (id), UNIQUE (payment_hash, partid))
CREATE TABLE payments ( id INTEGER, timestamp INTEGER, status INTEGER, payment_hash BLOB, destination BLOB, msatoshi INTEGER, payment_preimage BLOB, path_secrets BLOB, route_nodes BLOB, route_channels BLOB, failonionreply BLOB, faildestperm INTEGER, failindex INTEGER, failcode INTEGER, failnode BLOB, failchannel TEXT, failupdate BLOB, msatoshi_sent INTEGER, faildetail TEXT, description TEXT, faildirection INTEGER, bolt11 TEXT, total_msat INTEGER, partid INTEGER, PRIMARY KEY (id), UNIQUE (payment_hash, partid));
INSERT INTO payments (id, timestamp, status, payment_hash, destination, msatoshi, payment_preimage, path_secrets, route_nodes, route_channels, failonionreply, faildestperm, failindex, failcode, failnode, failchannel, failupdate, msatoshi_sent, faildetail, description, faildirection, bolt11)SELECT id, timestamp, status, payment_hash, destination, msatoshi, payment_preimage, path_secrets, route_nodes, route_channels, failonionreply, faildestperm, failindex, failcode, failnode, failchannel, failupdate, msatoshi_sent, faildetail, description, faildirection, bolt11 FROM temp_payments;
CREATE TABLE channels (id INTEGER, peer_id INTEGER REFERENCES peers(id) ON DELETE CASCADE, short_channel_id TEXT, state INTEGER, funder INTEGER, channel_flags INTEGER, next_index_local INTEGER, next_index_remote INTEGER, next_htlc_id INTEGER, funding_tx_id BLOB, funding_tx_outnum INTEGER, funding_satoshi INTEGER, msatoshi_local INTEGER, fundingkey_remote BLOB, per_commit_remote BLOB, local_feerate_per_kw INTEGER, remote_feerate_per_kw INTEGER, shutdown_keyidx_local INTEGER, last_tx BLOB, last_sig BLOB, feerate_base INTEGER, feerate_ppm INTEGER, full_channel_id BLOB DEFAULT NULL, PRIMARY KEY (id));
UPDATE channels SET  shachain_remote_id=0,  short_channel_id=NULL,  full_channel_id=,  state=0,  funder=0,  channel_flags=0,  minimum_depth=0,  next_index_local=0,  next_index_remote=0,  next_htlc_id=0,  funding_tx_id=,  funding_tx_outnum=0,  funding_satoshi=0,  our_funding_satoshi=0,  funding_locked_remote=0,  push_msatoshi=0,  msatoshi_local=0,  shutdown_scriptpubkey_remote=NULL,  shutdown_keyidx_local=0,  channel_config_local=0,  last_tx=, last_sig=,  last_was_revoke=0,  min_possible_feerate=0,  max_possible_feerate=0,  msatoshi_to_us_min=0,  msatoshi_to_us_max=0,  feerate_base=0,  feerate_ppm=0,  remote_upfront_shutdown_script=NULL,  option_static_remotekey=0,  option_anchor_outputs=0,  shutdown_scriptpubkey_local= WHERE id=0
CREATE TABLE channels (  id INTEGER,  peer_id INTEGER REFERENCES peers(id) ON DELETE CASCADE,  short_channel_id TEXT,  channel_config_local INTEGER,  channel_config_remote INTEGER,  state INTEGER,  funder INTEGER,  channel_flags INTEGER,  minimum_depth INTEGER,  next_index_local INTEGER,  next_index_remote INTEGER,  next_htlc_id INTEGER,  funding_tx_id BLOB,  funding_tx_outnum INTEGER,  funding_satoshi INTEGER,  funding_locked_remote INTEGER,  push_msatoshi INTEGER,  msatoshi_local INTEGER,  fundingkey_remote BLOB,  revocation_basepoint_remote BLOB,  payment_basepoint_remote BLOB,  htlc_basepoint_remote BLOB,  delayed_payment_basepoint_remote BLOB,  per_commit_remote BLOB,  old_per_commit_remote BLOB,  local_feerate_per_kw INTEGER,  remote_feerate_per_kw INTEGER,  shachain_remote_id INTEGER,  shutdown_scriptpubkey_remote BLOB,  shutdown_keyidx_local INTEGER,  last_sent_commit_state INTEGER,  last_sent_commit_id INTEGER,  last_tx BLOB,  last_sig BLOB,  closing_fee_received INTEGER,  closing_sig_received BLOB,  PRIMARY KEY (id));
CREATE TABLE channels (  id INTEGER,  peer_id INTEGER REFERENCES peers(id) ON DELETE CASCADE,  short_channel_id TEXT,  channel_config_local INTEGER,  channel_config_remote INTEGER,  state INTEGER,  funder INTEGER,  channel_flags INTEGER,  minimum_depth INTEGER,  next_index_local INTEGER,  next_index_remote INTEGER,  next_htlc_id INTEGER,  funding_tx_id BLOB,  funding_tx_outnum INTEGER,  funding_satoshi INTEGER,  funding_locked_remote INTEGER,  push_msatoshi INTEGER,  msatoshi_local INTEGER,  fundingkey_remote BLOB,  revocation_basepoint_remote BLOB,  payment_basepoint_remote BLOB,  htlc_basepoint_remote BLOB,  delayed_payment_basepoint_remote BLOB,  per_commit_remote BLOB,  old_per_commit_remote BLOB,  local_feerate_per_kw INTEGER,  remote_feerate_per_kw INTEGER,  shachain_remote_id INTEGER,  shutdown_scriptpubkey_remote BLOB,  shutdown_keyidx_local INTEGER,  last_sent_commit_state INTEGER,  last_sent_commit_id INTEGER,  last_tx BLOB,  last_sig BLOB,  closing_fee_received INTEGER,  closing_sig_received BLOB, first_blocknum INTEGER, last_was_revoke INTEGER, feerate_base INTEGER, feerate_ppm INTEGER, full_channel_id BLOB DEFAULT NULL,  PRIMARY KEY (id));
CREATE TABLE channels_new (  id INTEGER,  peer_id INTEGER REFERENCES peers(id) ON DELETE CASCADE,  short_channel_id TEXT,  channel_config_local INTEGER,  channel_config_remote INTEGER,  state INTEGER,  funder INTEGER,  channel_flags INTEGER,  minimum_depth INTEGER,  next_index_local INTEGER,  next_index_remote INTEGER,  next_htlc_id INTEGER,  funding_tx_id BLOB,  funding_tx_outnum INTEGER,  funding_satoshi INTEGER,  funding_locked_remote INTEGER,  push_msatoshi INTEGER,  msatoshi_local INTEGER,  fundingkey_remote BLOB,  revocation_basepoint_remote BLOB,  payment_basepoint_remote BLOB,  htlc_basepoint_remote BLOB,  delayed_payment_basepoint_remote BLOB,  per_commit_remote BLOB,  old_per_commit_remote BLOB,  local_feerate_per_kw INTEGER,  remote_feerate_per_kw INTEGER,  shachain_remote_id INTEGER,  shutdown_scriptpubkey_remote BLOB,  shutdown_keyidx_local INTEGER,  last_sent_commit_state INTEGER,  last_sent_commit_id INTEGER,  last_tx BLOB,  last_sig BLOB,  closing_fee_received INTEGER,  closing_sig_received BLOB, first_blocknum INTEGER, last_was_revoke INTEGER, feerate_base INTEGER, feerate_ppm INTEGER, full_channel_id BLOB DEFAULT NULL, alias_local INTEGER DEFAULT NULL, alias_remote INTEGER DEFAULT NULL,  PRIMARY KEY (id));
DROP TABLE temp_payments;
INSERT INTO version VALUES (0)
CREATE TABLE version (version INTEGER)
INSERT INTO channel_configs DEFAULT VALUES;
ALTER TABLE payments RENAME TO temp_payments;
CREATE INDEX channel_idx ON htlc_sigs (channelid)
CREATE UNIQUE INDEX invoices_pay_index ON invoices(pay_index);
UPDATE transactions SET type = 0, channel_id = 0 WHERE id = 
DELETE FROM peers WHERE id NOT IN (SELECT peer_id FROM channels);
CREATE TABLE db_upgrades (upgrade_from INTEGER, lightning_version TEXT);
CREATE INDEX output_height_idx ON outputs (confirmation_height, spend_height);
INSERT INTO transactions (  id, blockheight, txindex, rawtx) VALUES (, NULL, NULL, );
CREATE TABLE shachains (  id INTEGER, min_index INTEGER, num_valid INTEGER, PRIMARY KEY (id));
CREATE TABLE vars (  name VARCHAR(0), val VARCHAR(0), intval INTEGER, blobval BLOB, PRIMARY KEY (name));
INSERT OR IGNORE INTO transaction_annotations (txid, idx, location, type, channel) VALUES (, 0, 0, 0, 0);
INSERT INTO channeltxs (  channel_id, type, transaction_id, input_num, blockheight) VALUES (0, 0, , 0, 0);
CREATE TABLE shachain_known (  shachain_id INTEGER REFERENCES shachains(id) ON DELETE CASCADE, pos INTEGER, idx INTEGER, hash BLOB, PRIMARY KEY (shachain_id, pos));
CREATE TABLE penalty_bases (  channel_id INTEGER REFERENCES channels(id) ON DELETE CASCADE, commitnum INTEGER, txid BLOB, outnum INTEGER, amount INTEGER, PRIMARY KEY (channel_id, commitnum));
CREATE TABLE utxoset ( txid BLOB, outnum INT, blockheight INT REFERENCES blocks(height) ON DELETE CASCADE, spendheight INT REFERENCES blocks(height) ON DELETE SET NULL, txindex INT, scriptpubkey BLOB, satoshis INTEGER, PRIMARY KEY(txid, outnum));
CREATE TABLE channel_configs (  id INTEGER,  dust_limit_satoshis INTEGER,  max_htlc_value_in_flight_msat INTEGER,  channel_reserve_satoshis INTEGER,  htlc_minimum_msat INTEGER,  to_self_delay INTEGER,  max_accepted_htlcs INTEGER,  PRIMARY KEY (id));
INSERT INTO outputs (  prev_out_tx, prev_out_index, value, type, status, keyindex, channel_id, peer_id, commitment_point, option_anchor_outputs, confirmation_height, spend_height, scriptpubkey) VALUES (, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, 0, NULL, );
CREATE TABLE channeltxs (  id INTEGER, channel_id INTEGER REFERENCES channels(id) ON DELETE CASCADE, type INTEGER, transaction_id BLOB REFERENCES transactions(id) ON DELETE CASCADE, input_num INTEGER, blockheight INTEGER REFERENCES blocks(height) ON DELETE CASCADE, PRIMARY KEY(id));
CREATE TABLE invoices (  id INTEGER,  state INTEGER,  msatoshi INTEGER,  payment_hash BLOB,  payment_key BLOB,  label TEXT, expiry_time INTEGER, pay_index INTEGER, msatoshi_received INTEGER, paid_timestamp INTEGER, bolt11 TEXT, description TEXT, features BLOB DEFAULT '',  PRIMARY KEY (id),  UNIQUE (label),  UNIQUE (payment_hash));
CREATE TABLE forwarded_payments (  in_htlc_id INTEGER REFERENCES channel_htlcs(id) ON DELETE SET NULL, out_htlc_id INTEGER REFERENCES channel_htlcs(id) ON DELETE SET NULL, in_channel_scid INTEGER, out_channel_scid INTEGER, in_msatoshi INTEGER, out_msatoshi INTEGER, state INTEGER, received_time INTEGER, resolved_time INTEGER, failcode INTEGER, UNIQUE(in_htlc_id, out_htlc_id));
CREATE TABLE outputs (  prev_out_tx BLOB, prev_out_index INTEGER, value INTEGER, type INTEGER, status INTEGER, keyindex INTEGER, channel_id INTEGER, peer_id BLOB, commitment_point BLOB, confirmation_height INTEGER REFERENCES blocks(height) ON DELETE SET NULL, spend_height INTEGER REFERENCES blocks(height) ON DELETE SET NULL, scriptpubkey BLOB, reserved_til INTEGER DEFAULT NULL, PRIMARY KEY (prev_out_tx, prev_out_index));
CREATE TABLE channel_htlcs (  id INTEGER,  channel_id INTEGER REFERENCES channels(id) ON DELETE CASCADE,  channel_htlc_id INTEGER,  direction INTEGER,  origin_htlc INTEGER,  msatoshi INTEGER,  cltv_expiry INTEGER,  payment_hash BLOB,  payment_key BLOB,  routing_onion BLOB,  failuremsg BLOB,  malformed_onion INTEGER,  hstate INTEGER,  shared_secret BLOB, received_time INTEGER, partid INTEGER, localfailmsg BLOB, we_filled INTEGER,  PRIMARY KEY (id),  UNIQUE (channel_id, channel_htlc_id, direction));
UPDATE utxoset SET spendheight = 0 WHERE txid =  AND outnum = 0
CREATE TABLE blocks (height INT, hash BLOB, prev_hash BLOB, UNIQUE(height));
CREATE TABLE peers (  id INTEGER, node_id BLOB UNIQUE, address TEXT, PRIMARY KEY (id));
CREATE TABLE htlc_sigs (channelid INTEGER REFERENCES channels(id) ON DELETE CASCADE, signature BLOB);
INSERT OR IGNORE INTO transaction_annotations (txid, idx, location, type, channel) VALUES (, 0, 0, 0, NULL);
CREATE TABLE channel_feerates (  channel_id INTEGER REFERENCES channels(id) ON DELETE CASCADE,  hstate INTEGER,  feerate_per_kw INTEGER,  UNIQUE (channel_id, hstate));
UPDATE transactions SET blockheight = 0, txindex = 0 WHERE id = 
UPDATE channels SET  shachain_remote_id=0,  short_channel_id='',  full_channel_id=,  state=0,  funder=0,  channel_flags=0,  minimum_depth=0,  next_index_local=0,  next_index_remote=0,  next_htlc_id=0,  funding_tx_id=,  funding_tx_outnum=0,  funding_satoshi=0,  our_funding_satoshi=0,  funding_locked_remote=0,  push_msatoshi=0,  msatoshi_local=0,  shutdown_scriptpubkey_remote=,  shutdown_keyidx_local=0,  channel_config_local=0,  last_tx=, last_sig=,  last_was_revoke=0,  min_possible_feerate=0,  max_possible_feerate=0,  msatoshi_to_us_min=0,  msatoshi_to_us_max=0,  feerate_base=0,  feerate_ppm=0,  remote_upfront_shutdown_script=NULL,  option_static_remotekey=0,  option_anchor_outputs=0,  shutdown_scriptpubkey_local= WHERE id=0
UPDATE channels SET  shachain_remote_id=0,  short_channel_id='',  full_channel_id=,  state=0,  funder=0,  channel_flags=0,  minimum_depth=0,  next_index_local=0,  next_index_remote=0,  next_htlc_id=0,  funding_tx_id=,  funding_tx_outnum=0,  funding_satoshi=0,  our_funding_satoshi=0,  funding_locked_remote=0,  push_msatoshi=0,  msatoshi_local=0,  shutdown_scriptpubkey_remote=NULL,  shutdown_keyidx_local=0,  channel_config_local=0,  last_tx=, last_sig=,  last_was_revoke=0,  min_possible_feerate=0,  max_possible_feerate=0,  msatoshi_to_us_min=0,  msatoshi_to_us_max=0,  feerate_base=0,  feerate_ppm=0,  remote_upfront_shutdown_script=NULL,  option_static_remotekey=0,  option_anchor_outputs=0,  shutdown_scriptpubkey_local= WHERE id=0
INSERT INTO vars (name, intval) VALUES ('', 0);
DELETE FROM channel_feerates WHERE channel_id=0
UPDATE channels SET  last_sent_commit=NULL WHERE id=0
UPDATE channels SET  fundingkey_remote=,  revocation_basepoint_remote=,  payment_basepoint_remote=,  htlc_basepoint_remote=,  delayed_payment_basepoint_remote=,  per_commit_remote=,  old_per_commit_remote=,  channel_config_remote=0,  future_per_commitment_point=NULL WHERE id=0
INSERT INTO channel_feerates  VALUES(0, 0, 0)
DELETE FROM utxoset WHERE spendheight < -0
UPDATE utxoset SET spendheight = 0 WHERE txid =  AND outnum = -0
UPDATE channel_configs SET  dust_limit_satoshis=0,  max_htlc_value_in_flight_msat=-0,  channel_reserve_satoshis=0,  htlc_minimum_msat=0,  to_self_delay=0,  max_accepted_htlcs=0 WHERE id=0;
DELETE FROM channels WHERE id=0
INSERT INTO payments (  id, status,  payment_hash,  destination,  msatoshi,  timestamp,  path_secrets,  route_nodes,  route_channels,  msatoshi_sent,  description,  bolt11,  total_msat,  partid) VALUES (0, 0, , , 0, 0, , , , 0, '', NULL, -0, 0);
INSERT INTO peers (node_id, address) VALUES (, '');
INSERT INTO outputs (  prev_out_tx, prev_out_index, value, type, status, keyindex, channel_id, peer_id, commitment_point, confirmation_height, spend_height, scriptpubkey) VALUES (, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, NULL, );
INSERT INTO outputs (  prev_out_tx, prev_out_index, value, type, status, keyindex, channel_id, peer_id, commitment_point, confirmation_height, spend_height, scriptpubkey) VALUES (, 0, 0, 0, 0, 0, NULL, NULL, NULL, 0, NULL, );
INSERT INTO channels (id, peer_id, short_channel_id, state, funder, channel_flags, next_index_local, next_index_remote, next_htlc_id, funding_tx_id, funding_tx_outnum, funding_satoshi, msatoshi_local, fundingkey_remote, per_commit_remote, local_feerate_per_kw, remote_feerate_per_kw, shutdown_keyidx_local, last_tx, last_sig, feerate_base, feerate_ppm, full_channel_id) VALUES (0, 0, '', 0, 0, 0, 0, 0, 0, , 0, 0, 0, , , 0, 0, 0, , , 0, 0, );
UPDATE outputs SET confirmation_height=0 WHERE keyindex=0
INSERT OR IGNORE INTO forwarded_payments (  in_htlc_id, out_htlc_id, in_channel_scid, out_channel_scid, in_msatoshi, out_msatoshi, state, received_time, resolved_time, failcode) VALUES (0, 0, 0, 0, 0, 0, 0, 0, NULL, NULL);
INSERT INTO channel_feerates (channel_id, hstate, feerate_per_kw) VALUES (0, 0, 0);
UPDATE invoices   SET state=0     , pay_index=0     , msatoshi_received=0     , paid_timestamp=0 WHERE id=0;
UPDATE vars SET intval=0 WHERE name='';
INSERT INTO payments (  id, status,  payment_hash,  destination,  msatoshi,  timestamp,  path_secrets,  route_nodes,  route_channels,  msatoshi_sent,  description,  bolt11,  total_msat,  partid) VALUES (0, 0, , , 0, 0, , , , 0, '', NULL, 0, 0);
INSERT INTO invoices            ( id, payment_hash, payment_key, state            , msatoshi, label, expiry_time            , pay_index, msatoshi_received            , paid_timestamp, bolt11, description, features)       VALUES ( 0, , , 0            , 0, '', 0            , NULL, NULL            , NULL, '', '', );
UPDATE channel_htlcs SET hstate=0, payment_key=NULL, malformed_onion=0, failuremsg=, localfailmsg=NULL, we_filled=NULL WHERE id=0
INSERT INTO blocks (height, hash, prev_hash) VALUES (0, , );
UPDATE channel_htlcs SET hstate=0, payment_key=, malformed_onion=0, failuremsg=NULL, localfailmsg=NULL, we_filled=NULL WHERE id=0
INSERT OR REPLACE INTO channel_feerates (channel_id, hstate, feerate_per_kw) VALUES (0, 0, 0)
UPDATE channels SET  next_index_local=0,  next_index_remote=0,  msatoshi_local=0,  per_commit_remote=,  local_feerate_per_kw=0,  last_tx=,  last_sig= WHERE id=0
DELETE FROM htlc_sigs WHERE channelid = 0
UPDATE channels SET next_htlc_id=0 WHERE id=0;
INSERT INTO htlc_sigs (channelid, signature) VALUES (0, );
INSERT INTO channel_htlcs ( id, channel_id, channel_htlc_id, direction, msatoshi, cltv_expiry, payment_hash, hstate, shared_secret, routing_onion, received_time, partid, we_filled) VALUES (0, 0, 0, 0, 0, 0, , 0, , , 0, NULL, 0);
INSERT INTO htlc_sigs (channelid, signature) VALUES (0, )
UPDATE vars SET intval = intval + 0 WHERE name = '' AND intval = 0