//! A deterministic, CLN-shaped workload: transactions as lightningd reports
//! them through `db_write`, and the reference they must restore to.
//!
//! Owns the generator (seeded, reproducible, no external randomness), the
//! direct application of a workload to a SQLite file the way lightningd runs
//! it (foreign keys on, each transaction in `BEGIN`/`COMMIT`, lone
//! `PRAGMA foreign_keys` reports outside any transaction), and a table-by-table
//! comparison of two databases. Shared by the tests and the benchmarks, so it
//! must not depend on test-only crates, and it must not touch a store.
#![allow(dead_code)]

use rusqlite::Connection;
use std::path::Path;

/// One transaction as lightningd reports it: the `data_version` after it, and
/// its statements (ending with the version bump unless it is a lone pragma).
pub type Txn = (u32, Vec<String>);

/// SplitMix64: small, fast, and good enough to look like random onions.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5eed_c1a7_b4c4_0b00)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(n);
        out
    }

    /// `n` random bytes as SQLite expands a blob parameter: `x'<lowercase hex>'`.
    pub fn blob(&mut self, n: usize) -> String {
        blob_literal(&self.bytes(n))
    }
}

/// A blob literal as SQLite's parameter expansion writes it.
pub fn blob_literal(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2 + 3);
    s.push_str("x'");
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s.push('\'');
    s
}

/// A text literal as SQLite's parameter expansion writes it (`'` doubled).
pub fn text_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The exact bump lightningd ends every transaction with, producing `version`.
pub fn bump(version: u32) -> String {
    cln_backup::version::bump_statement(version)
}

pub const FOREIGN_KEYS_OFF: &str = "PRAGMA foreign_keys = OFF;";
pub const FOREIGN_KEYS_ON: &str = "PRAGMA foreign_keys = ON;";

/// Size of a routing onion in an `update_add_htlc`.
pub const ONION_BYTES: usize = 1366;

const CHANNELS_COLUMNS: &str = "id INTEGER, peer_id INTEGER REFERENCES peers(id) ON DELETE CASCADE, \
short_channel_id TEXT, state INTEGER, funder INTEGER, channel_flags INTEGER, \
next_index_local INTEGER, next_index_remote INTEGER, next_htlc_id INTEGER, funding_tx_id BLOB, \
funding_tx_outnum INTEGER, funding_satoshi INTEGER, msatoshi_local INTEGER, \
fundingkey_remote BLOB, per_commit_remote BLOB, local_feerate_per_kw INTEGER, \
remote_feerate_per_kw INTEGER, shutdown_keyidx_local INTEGER, last_tx BLOB, last_sig BLOB, \
feerate_base INTEGER, feerate_ppm INTEGER, full_channel_id BLOB DEFAULT NULL, PRIMARY KEY (id)";

/// The schema transaction's statements (before the bump), with `data_version`
/// starting at `start`.
fn schema_statements(start: u32) -> Vec<String> {
    vec![
        "CREATE TABLE version (version INTEGER)".into(),
        "INSERT INTO version VALUES (1)".into(),
        "CREATE TABLE vars (  name VARCHAR(32), val VARCHAR(255), intval INTEGER, blobval BLOB, PRIMARY KEY (name));".into(),
        format!("INSERT INTO vars (name, intval) VALUES ('data_version', {start});"),
        "INSERT INTO vars (name, intval) VALUES ('next_pay_index', 1);".into(),
        "INSERT INTO vars (name, intval) VALUES ('rebuilds', 0);".into(),
        "CREATE TABLE peers (  id INTEGER, node_id BLOB UNIQUE, address TEXT, PRIMARY KEY (id));".into(),
        format!("CREATE TABLE channels ({CHANNELS_COLUMNS});"),
        "CREATE TABLE channel_htlcs (  id INTEGER,  channel_id INTEGER REFERENCES channels(id) ON DELETE CASCADE,  channel_htlc_id INTEGER,  direction INTEGER,  origin_htlc INTEGER,  msatoshi INTEGER,  cltv_expiry INTEGER,  payment_hash BLOB,  payment_key BLOB,  routing_onion BLOB,  failuremsg BLOB,  malformed_onion INTEGER,  hstate INTEGER,  shared_secret BLOB, received_time INTEGER, partid INTEGER, localfailmsg BLOB, we_filled INTEGER,  PRIMARY KEY (id),  UNIQUE (channel_id, channel_htlc_id, direction));".into(),
        "CREATE TABLE htlc_sigs (channelid INTEGER REFERENCES channels(id) ON DELETE CASCADE, signature BLOB);".into(),
        "CREATE INDEX channel_idx ON htlc_sigs (channelid)".into(),
        "CREATE TABLE channel_feerates (  channel_id INTEGER REFERENCES channels(id) ON DELETE CASCADE,  hstate INTEGER,  feerate_per_kw INTEGER,  UNIQUE (channel_id, hstate));".into(),
        "CREATE TABLE invoices (  id INTEGER,  state INTEGER,  msatoshi INTEGER,  payment_hash BLOB,  payment_key BLOB,  label TEXT, expiry_time INTEGER, pay_index INTEGER, msatoshi_received INTEGER, paid_timestamp INTEGER, bolt11 TEXT, description TEXT, features BLOB DEFAULT '',  PRIMARY KEY (id),  UNIQUE (label),  UNIQUE (payment_hash));".into(),
        "CREATE TABLE payments ( id INTEGER, timestamp INTEGER, status INTEGER, payment_hash BLOB, destination BLOB, msatoshi INTEGER, payment_preimage BLOB, path_secrets BLOB, route_nodes BLOB, route_channels BLOB, failonionreply BLOB, faildestperm INTEGER, failindex INTEGER, failcode INTEGER, msatoshi_sent INTEGER, description TEXT, bolt11 TEXT, total_msat INTEGER, partid INTEGER, PRIMARY KEY (id), UNIQUE (payment_hash, partid));".into(),
        "CREATE TABLE blocks (height INT, hash BLOB, prev_hash BLOB, UNIQUE(height));".into(),
        "CREATE TABLE outputs (  prev_out_tx BLOB, prev_out_index INTEGER, value INTEGER, type INTEGER, status INTEGER, keyindex INTEGER, channel_id INTEGER, peer_id BLOB, commitment_point BLOB, confirmation_height INTEGER REFERENCES blocks(height) ON DELETE SET NULL, spend_height INTEGER REFERENCES blocks(height) ON DELETE SET NULL, scriptpubkey BLOB, reserved_til INTEGER DEFAULT NULL, PRIMARY KEY (prev_out_tx, prev_out_index));".into(),
        "CREATE TABLE forwarded_payments (  in_htlc_id INTEGER REFERENCES channel_htlcs(id) ON DELETE SET NULL, out_htlc_id INTEGER REFERENCES channel_htlcs(id) ON DELETE SET NULL, in_channel_scid INTEGER, out_channel_scid INTEGER, in_msatoshi INTEGER, out_msatoshi INTEGER, state INTEGER, received_time INTEGER, resolved_time INTEGER, failcode INTEGER, UNIQUE(in_htlc_id, out_htlc_id));".into(),
    ]
}

#[derive(Clone, Debug)]
struct Channel {
    id: u64,
    scid: u64,
    next_htlc_id: u64,
    commit: u64,
    /// `channel_htlcs.id` of this channel's HTLCs.
    htlcs: Vec<u64>,
}

/// What the generator has produced so far, so that every statement applies.
#[derive(Clone, Debug)]
pub struct Workload {
    rng: Rng,
    version: u32,
    schema_done: bool,
    next_peer: u64,
    next_channel: u64,
    next_htlc_row: u64,
    channels: Vec<Channel>,
    closed: u64,
    invoices: u64,
    paid: u64,
    payments: u64,
    height: u64,
    block_hash: Vec<u8>,
    outputs: u64,
    forwards: u64,
    rebuilds: u64,
    time: u64,
}

const NOTES: &[&str] = &[
    "coffee",
    "it's the \"best\" café",
    "multi\nline\nlabel",
    "⚡ zap ⚡",
    "日本語のラベル",
    "O'Brien's tab",
    "tab\tand 'quotes'",
    "emoji 🥩🍺",
];

impl Workload {
    /// A workload whose schema transaction produces `data_version` 1.
    pub fn new(seed: u64) -> Workload {
        Workload::starting_at(seed, 0)
    }

    /// A workload whose database starts at `data_version == start` (the schema
    /// transaction produces `start + 1`, wrapping).
    pub fn starting_at(seed: u64, start: u32) -> Workload {
        Workload {
            rng: Rng::new(seed),
            version: start,
            schema_done: false,
            next_peer: 1,
            next_channel: 1,
            next_htlc_row: 1,
            channels: Vec::new(),
            closed: 0,
            invoices: 0,
            paid: 0,
            payments: 0,
            height: 100,
            block_hash: vec![0; 32],
            outputs: 0,
            forwards: 0,
            rebuilds: 0,
            time: 1_700_000_000,
        }
    }

    /// A workload for a database whose schema already exists (built by the
    /// simulator from `migrations/`) at `data_version == version`: it starts
    /// with the mix, not with its own schema.
    pub fn on_existing_schema(seed: u64, version: u32) -> Workload {
        let mut w = Workload::starting_at(seed, version);
        w.schema_done = true;
        w
    }

    /// Go on from `version`: the node made writes of its own since the last
    /// transaction produced here (a restart's start-up write).
    pub fn resume_at(&mut self, version: u32) {
        self.version = version;
    }

    /// `data_version` of the last transaction produced.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Channels currently open.
    pub fn open_channels(&self) -> Vec<u64> {
        self.channels.iter().map(|c| c.id).collect()
    }

    /// Channels closed so far.
    pub fn closed_channels(&self) -> u64 {
        self.closed
    }

    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    /// Finish a transaction: append the bump to the next version.
    pub fn commit(&mut self, mut statements: Vec<String>) -> Txn {
        self.version = self.version.wrapping_add(1);
        statements.push(bump(self.version));
        (self.version, statements)
    }

    /// The schema transaction (also produced by the first [`Workload::next_txn`]).
    pub fn schema(&mut self) -> Txn {
        assert!(!self.schema_done, "schema already produced");
        self.schema_done = true;
        let s = schema_statements(self.version);
        self.commit(s)
    }

    /// `n` transactions: the schema, then a realistic mix.
    pub fn generate(seed: u64, n: usize) -> Vec<Txn> {
        let mut w = Workload::new(seed);
        (0..n).map(|_| w.next_txn()).collect()
    }

    /// The next transaction of the mix (the schema first).
    pub fn next_txn(&mut self) -> Txn {
        if !self.schema_done {
            return self.schema();
        }
        if self.channels.len() < 2 {
            return self.open_channel();
        }
        self.time += self.rng.range(1, 30);
        let roll = self.rng.below(1000);
        match roll {
            0..=299 => self.add_htlc(),
            300..=499 => self.update_htlc(),
            500..=699 => self.channel_update(),
            700..=779 => self.block(),
            780..=839 => self.invoice(),
            840..=879 => self.pay_invoice(),
            880..=929 => self.payment(),
            930..=959 => self.forward(),
            960..=979 => self.output(),
            980..=991 => self.open_channel(),
            _ => self.close_channel().unwrap_or_else(|| self.block()),
        }
    }

    fn pick_channel(&mut self) -> usize {
        self.rng.below(self.channels.len() as u64) as usize
    }

    /// A channel open: perhaps a new peer, the channel row with its funding
    /// and a PSBT-sized commitment, its first feerates.
    pub fn open_channel(&mut self) -> Txn {
        let mut s = Vec::new();
        let peer = if self.next_peer == 1 || self.rng.chance(60) {
            let id = self.next_peer;
            self.next_peer += 1;
            let mut node_id = self.rng.bytes(33);
            node_id[0] = 2;
            s.push(format!(
                "INSERT INTO peers (node_id, address) VALUES ({}, '10.0.{}.{}:9735');",
                blob_literal(&node_id),
                id / 256,
                id % 256
            ));
            id
        } else {
            self.rng.range(1, self.next_peer - 1)
        };
        let id = self.next_channel;
        self.next_channel += 1;
        let scid = (self.height << 40) | (self.rng.below(3000) << 16) | self.rng.below(4);
        let last_tx_len = self.rng.range(600, 1100) as usize;
        s.push(format!(
            "INSERT INTO channels (id, peer_id, short_channel_id, state, funder, channel_flags, next_index_local, next_index_remote, next_htlc_id, funding_tx_id, funding_tx_outnum, funding_satoshi, msatoshi_local, fundingkey_remote, per_commit_remote, local_feerate_per_kw, remote_feerate_per_kw, shutdown_keyidx_local, last_tx, last_sig, feerate_base, feerate_ppm, full_channel_id) VALUES ({id}, {peer}, '{}x{}x{}', 2, {}, 1, 1, 1, 0, {}, {}, {}, {}, {}, {}, 253, 253, 0, {}, {}, 1000, 10, {});",
            scid >> 40,
            (scid >> 16) & 0xffffff,
            scid & 0xffff,
            self.rng.below(2),
            self.rng.blob(32),
            self.rng.below(3),
            self.rng.range(20_000, 16_777_215),
            self.rng.range(0, 16_777_215_000),
            self.rng.blob(33),
            self.rng.blob(33),
            self.rng.blob(last_tx_len),
            self.rng.blob(64),
            self.rng.blob(32),
        ));
        s.push(format!("INSERT INTO channel_feerates (channel_id, hstate, feerate_per_kw) VALUES ({id}, 4, 253);"));
        s.push(format!(
            "INSERT INTO channel_feerates (channel_id, hstate, feerate_per_kw) VALUES ({id}, 14, {});",
            self.rng.range(253, 20_000)
        ));
        self.channels.push(Channel { id, scid, next_htlc_id: 0, commit: 1, htlcs: Vec::new() });
        self.commit(s)
    }

    /// An `update_add_htlc`: the HTLC with its 1366-byte onion, the channel's
    /// counters, an HTLC signature.
    pub fn add_htlc(&mut self) -> Txn {
        let c = self.pick_channel();
        let row = self.next_htlc_row;
        self.next_htlc_row += 1;
        let (cid, hid) = {
            let ch = &mut self.channels[c];
            ch.next_htlc_id += 1;
            ch.htlcs.push(row);
            (ch.id, ch.next_htlc_id - 1)
        };
        let direction = self.rng.below(2);
        let s = vec![
            format!(
                "INSERT INTO channel_htlcs ( id, channel_id, channel_htlc_id, direction, msatoshi, cltv_expiry, payment_hash, hstate, shared_secret, routing_onion, received_time, partid, we_filled) VALUES ({row}, {cid}, {hid}, {direction}, {}, {}, {}, {}, {}, {}, {}, NULL, 0);",
                self.rng.range(1_000, 500_000_000),
                self.height + self.rng.range(18, 2016),
                self.rng.blob(32),
                self.rng.below(10),
                self.rng.blob(32),
                self.rng.blob(ONION_BYTES),
                self.time * 1_000_000_000 + self.rng.below(1_000_000_000),
            ),
            format!("UPDATE channels SET next_htlc_id={} WHERE id={cid};", hid + 1),
            format!(
                "INSERT INTO htlc_sigs (channelid, signature) VALUES ({cid}, {});",
                self.rng.blob(64)
            ),
        ];
        self.commit(s)
    }

    /// An HTLC state change: fulfilled with its preimage, or failed with a message.
    pub fn update_htlc(&mut self) -> Txn {
        let c = self.pick_channel();
        let Some(&row) = ({
            let ch = &self.channels[c];
            let n = ch.htlcs.len() as u64;
            if n == 0 {
                None
            } else {
                ch.htlcs.get(self.rng.below(n) as usize)
            }
        }) else {
            return self.add_htlc();
        };
        let s = if self.rng.chance(70) {
            vec![format!(
                "UPDATE channel_htlcs SET hstate={}, payment_key={}, malformed_onion=0, failuremsg=NULL, localfailmsg=NULL, we_filled=NULL WHERE id={row}",
                self.rng.range(3, 9),
                self.rng.blob(32)
            )]
        } else {
            let len = self.rng.range(100, 300) as usize;
            vec![format!(
                "UPDATE channel_htlcs SET hstate={}, payment_key=NULL, malformed_onion=0, failuremsg={}, localfailmsg=NULL, we_filled=NULL WHERE id={row}",
                self.rng.range(3, 9),
                self.rng.blob(len)
            )]
        };
        self.commit(s)
    }

    /// A commitment update: new last_tx (PSBT-sized) and signature, the HTLC
    /// signatures replaced, a feerate.
    pub fn channel_update(&mut self) -> Txn {
        let c = self.pick_channel();
        let (cid, commit, nhtlcs) = {
            let ch = &mut self.channels[c];
            ch.commit += 1;
            (ch.id, ch.commit, ch.htlcs.len())
        };
        let last_tx_len = self.rng.range(600, 1100) as usize;
        let mut s = vec![format!(
            "UPDATE channels SET  next_index_local={commit},  next_index_remote={commit},  msatoshi_local={},  per_commit_remote={},  local_feerate_per_kw={},  last_tx={},  last_sig={} WHERE id={cid}",
            self.rng.range(0, 16_777_215_000),
            self.rng.blob(33),
            self.rng.range(253, 20_000),
            self.rng.blob(last_tx_len),
            self.rng.blob(64),
        )];
        s.push(format!("DELETE FROM htlc_sigs WHERE channelid = {cid}"));
        for _ in 0..nhtlcs.min(3) {
            s.push(format!("INSERT INTO htlc_sigs (channelid, signature) VALUES ({cid}, {})", self.rng.blob(64)));
        }
        s.push(format!(
            "INSERT OR REPLACE INTO channel_feerates (channel_id, hstate, feerate_per_kw) VALUES ({cid}, {}, {})",
            self.rng.range(1, 14),
            self.rng.range(253, 20_000)
        ));
        self.commit(s)
    }

    /// A new block (and, sometimes, an output confirmed in it).
    pub fn block(&mut self) -> Txn {
        self.height += 1;
        let hash = self.rng.bytes(32);
        let mut s = vec![format!(
            "INSERT INTO blocks (height, hash, prev_hash) VALUES ({}, {}, {});",
            self.height,
            blob_literal(&hash),
            blob_literal(&self.block_hash)
        )];
        self.block_hash = hash;
        if self.outputs > 0 && self.rng.chance(30) {
            s.push(format!(
                "UPDATE outputs SET confirmation_height={} WHERE keyindex={}",
                self.height,
                self.rng.below(self.outputs)
            ));
        }
        self.commit(s)
    }

    /// An invoice whose label and description carry quotes, newlines and
    /// non-ASCII text.
    pub fn invoice(&mut self) -> Txn {
        self.invoices += 1;
        let n = self.invoices;
        let note = NOTES[self.rng.below(NOTES.len() as u64) as usize];
        let label = format!("{note} #{n}");
        let bolt11: String = (0..self.rng.range(200, 400))
            .map(|_| b"qpzry9x8gf2tvdw0s3jn54khce6mua7l"[self.rng.below(32) as usize] as char)
            .collect();
        let s = vec![format!(
            "INSERT INTO invoices            ( id, payment_hash, payment_key, state            , msatoshi, label, expiry_time            , pay_index, msatoshi_received            , paid_timestamp, bolt11, description, features)       VALUES ( {n}, {}, {}, 0            , {}, {}, {}            , NULL, NULL            , NULL, 'lnbc1{bolt11}', {}, x'');",
            self.rng.blob(32),
            self.rng.blob(32),
            self.rng.range(1, 100_000_000_000),
            text_literal(&label),
            self.time + 3600,
            text_literal(&format!("{note}\nfor order {n}: 'thanks'")),
        )];
        self.commit(s)
    }

    /// An invoice paid.
    pub fn pay_invoice(&mut self) -> Txn {
        if self.paid >= self.invoices {
            return self.invoice();
        }
        self.paid += 1;
        let s = vec![
            format!(
                "UPDATE invoices   SET state=1     , pay_index={}     , msatoshi_received={}     , paid_timestamp={} WHERE id={};",
                self.paid,
                self.rng.range(1, 100_000_000_000),
                self.time,
                self.paid
            ),
            format!(
                "UPDATE vars SET intval={} WHERE name='next_pay_index';",
                self.paid + 1
            ),
        ];
        self.commit(s)
    }

    /// An outgoing payment with its route.
    pub fn payment(&mut self) -> Txn {
        self.payments += 1;
        let hops = self.rng.range(1, 5) as usize;
        let s = vec![format!(
            "INSERT INTO payments (  id, status,  payment_hash,  destination,  msatoshi,  timestamp,  path_secrets,  route_nodes,  route_channels,  msatoshi_sent,  description,  bolt11,  total_msat,  partid) VALUES ({}, 0, {}, {}, {}, {}, {}, {}, {}, {}, {}, NULL, {}, 0);",
            self.payments,
            self.rng.blob(32),
            self.rng.blob(33),
            self.rng.range(1, 1_000_000_000),
            self.time,
            self.rng.blob(32 * hops),
            self.rng.blob(33 * hops),
            self.rng.blob(8 * hops),
            self.rng.range(1, 1_000_000_000),
            text_literal(NOTES[self.rng.below(NOTES.len() as u64) as usize]),
            // u64::MAX as lightningd's SQLite expansion writes it.
            if self.rng.chance(10) { "-1".to_string() } else { self.rng.range(1, 1_000_000_000).to_string() },
        )];
        self.commit(s)
    }

    /// A forward between two HTLCs (SET NULL when their channel closes).
    pub fn forward(&mut self) -> Txn {
        let a = self.pick_channel();
        let b = self.pick_channel();
        let (ha, hb) = (self.channels[a].htlcs.last().copied(), self.channels[b].htlcs.first().copied());
        let (Some(ha), Some(hb)) = (ha, hb) else {
            return self.add_htlc();
        };
        self.forwards += 1;
        let s = vec![format!(
            "INSERT OR IGNORE INTO forwarded_payments (  in_htlc_id, out_htlc_id, in_channel_scid, out_channel_scid, in_msatoshi, out_msatoshi, state, received_time, resolved_time, failcode) VALUES ({ha}, {hb}, {}, {}, {}, {}, 1, {}, NULL, NULL);",
            self.channels[a].scid,
            self.channels[b].scid,
            self.rng.range(1001, 1_000_000),
            1000,
            self.time * 1_000_000_000,
        )];
        self.commit(s)
    }

    /// A wallet output.
    pub fn output(&mut self) -> Txn {
        let k = self.outputs;
        self.outputs += 1;
        let s = vec![format!(
            "INSERT INTO outputs (  prev_out_tx, prev_out_index, value, type, status, keyindex, channel_id, peer_id, commitment_point, confirmation_height, spend_height, scriptpubkey) VALUES ({}, {}, {}, 0, 0, {k}, NULL, NULL, NULL, {}, NULL, {});",
            self.rng.blob(32),
            self.rng.below(4),
            self.rng.range(546, 100_000_000),
            // Confirmed in the latest block, once there is one (heights start above 100).
            if self.rng.chance(50) && self.height > 100 { self.height.to_string() } else { "NULL".into() },
            self.rng.blob(22),
        )];
        self.commit(s)
    }

    /// A channel close: ONE `DELETE FROM channels`; its HTLCs, signatures and
    /// feerates go by cascade. `None` when fewer than two channels are open.
    pub fn close_channel(&mut self) -> Option<Txn> {
        if self.channels.len() < 2 {
            return None;
        }
        let c = self.pick_channel();
        let ch = self.channels.remove(c);
        self.closed += 1;
        Some(self.commit(vec![format!("DELETE FROM channels WHERE id={}", ch.id)]))
    }

    /// Close a given channel, as [`Workload::close_channel`].
    pub fn close(&mut self, id: u64) -> Txn {
        let at = self.channels.iter().position(|c| c.id == id).expect("channel is open");
        self.channels.remove(at);
        self.closed += 1;
        self.commit(vec![format!("DELETE FROM channels WHERE id={id}")])
    }

    /// A table-rebuild migration of `channels` as lightningd reports it: a lone
    /// `PRAGMA foreign_keys = OFF;` at the current version, the rebuild
    /// transaction (new table, copy, `DROP TABLE channels`, rename), then a lone
    /// `PRAGMA foreign_keys = ON;` at the rebuild's version. With foreign keys
    /// on, the DROP would cascade-delete every HTLC, signature and feerate.
    pub fn rebuild_channels(&mut self) -> Vec<Txn> {
        self.rebuilds += 1;
        let off = (self.version, vec![FOREIGN_KEYS_OFF.to_string()]);
        let rebuild = self.commit(vec![
            format!("CREATE TABLE channels_new ({CHANNELS_COLUMNS});"),
            "INSERT INTO channels_new SELECT * FROM channels;".into(),
            "DROP TABLE channels;".into(),
            "ALTER TABLE channels_new RENAME TO channels;".into(),
            format!("UPDATE vars SET intval={} WHERE name='rebuilds';", self.rebuilds),
        ]);
        let on = (self.version, vec![FOREIGN_KEYS_ON.to_string()]);
        vec![off, rebuild, on]
    }
}

/// Is this transaction a lone `PRAGMA foreign_keys` report?
pub fn is_lone_pragma(statements: &[String]) -> bool {
    cln_backup::version::lone_foreign_keys_pragma(statements).is_some()
}

/// A SQLite connection configured as lightningd opens its database.
pub fn open_like_lightningd(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.execute_batch("PRAGMA foreign_keys = ON;")?;
    Ok(conn)
}

/// Apply transactions the way lightningd executed them: each in
/// `BEGIN`/`COMMIT`, lone `PRAGMA foreign_keys` reports outside any transaction.
pub fn apply(conn: &Connection, txns: &[Txn]) -> rusqlite::Result<()> {
    for (_, statements) in txns {
        if is_lone_pragma(statements) {
            conn.execute_batch(&statements[0])?;
            continue;
        }
        conn.execute_batch("BEGIN")?;
        for s in statements {
            conn.execute_batch(s)?;
        }
        conn.execute_batch("COMMIT")?;
    }
    Ok(())
}

/// Build the reference database at `path` (a new file) from `txns`.
pub fn reference_db(path: &Path, txns: &[Txn]) -> rusqlite::Result<()> {
    let conn = open_like_lightningd(path)?;
    // Durability of the reference does not matter, and syncing every
    // transaction would dominate the tests' time.
    conn.execute_batch("PRAGMA synchronous = OFF;")?;
    apply(&conn, txns)?;
    conn.close().map_err(|(_, e)| e)
}

/// The first difference between the databases at `a` and `b`, schema
/// included, by the library's comparer: one line naming both files.
pub fn difference(a: &Path, b: &Path) -> Option<String> {
    cln_backup::compare::compare_databases(a, b, cln_backup::compare::Labels::RESTORED_AND_EXPECTED)
        .unwrap_or_else(|e| panic!("cannot compare {} with {}: {e}", a.display(), b.display()))
        .map(|d| d.to_string())
}

/// Assert that the databases at `restored` and `reference` hold the same
/// schema and rows.
pub fn assert_same_db(restored: &Path, reference: &Path) {
    if let Some(d) = difference(restored, reference) {
        panic!("{d}");
    }
}

/// The schema objects (tables, indexes, triggers, views) of the database
/// at `path`, and the rows of its tables.
pub fn size(path: &Path) -> rusqlite::Result<(u64, u64)> {
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let objects: Vec<(String, String)> = {
        let mut stmt = conn.prepare("SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut rows = 0u64;
    for (_, table) in objects.iter().filter(|(kind, _)| kind == "table") {
        let sql = format!("SELECT count(*) FROM \"{}\"", table.replace('"', "\"\""));
        rows += conn.query_row(&sql, [], |r| r.get::<_, i64>(0))? as u64;
    }
    Ok((objects.len() as u64, rows))
}

/// Total bytes of the statements (what lightningd sends, before any encoding).
pub fn statement_bytes(txns: &[Txn]) -> u64 {
    txns.iter().flat_map(|(_, s)| s.iter()).map(|s| s.len() as u64).sum()
}
