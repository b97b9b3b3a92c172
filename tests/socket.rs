//! The socket protocol end to end: our client against a raw listener that
//! checks every byte, our server (the real binary) against raw bytes, an
//! independent Python peer in both roles, load, a server killed mid-stream,
//! malformed packets, the listening and token rules, and the plugin writing
//! to our server through the lightningd simulator.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
#[path = "support/run.rs"]
mod run;
#[path = "support/sim.rs"]
mod sim;
#[path = "support/workload.rs"]
mod workload;

use cln_backup::destination::{self, Access, Destination, OpenOptions};
use cln_backup::{compare, restore, Store};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

fn bump(v: u32) -> String {
    workload::bump(v)
}

fn tx(v: u32) -> Vec<String> {
    vec![format!("INSERT INTO t VALUES ({v})"), bump(v)]
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(data).unwrap();
    z.finish().unwrap()
}

fn unzlib(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(data).read_to_end(&mut out).unwrap();
    out
}

fn pkt(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![kind];
    p.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    p.extend_from_slice(payload);
    p
}

fn change_pkt(v: u32, statements: &[String]) -> Vec<u8> {
    let mut p = v.to_be_bytes().to_vec();
    p.extend_from_slice(&zlib(statements.join("\0").as_bytes()));
    pkt(1, &p)
}

fn metadata_pkt(version: u32, prev: u32, count: u64) -> Vec<u8> {
    let mut p = 1u32.to_be_bytes().to_vec();
    p.extend_from_slice(&version.to_be_bytes());
    p.extend_from_slice(&prev.to_be_bytes());
    p.extend_from_slice(&count.to_be_bytes());
    pkt(8, &p)
}

fn read_pkt(s: &mut impl Read) -> (u8, Vec<u8>) {
    let mut h = [0u8; 5];
    s.read_exact(&mut h).unwrap();
    let len = u32::from_be_bytes(h[1..5].try_into().unwrap()) as usize;
    assert!(len < 64 << 20, "unexpected length {len}");
    let mut p = vec![0u8; len];
    s.read_exact(&mut p).unwrap();
    (h[0], p)
}

fn expect_bytes(s: &mut TcpStream, want: &[u8]) {
    let mut got = vec![0u8; want.len()];
    s.read_exact(&mut got).unwrap();
    assert_eq!(got, want);
}

/// A small valid SQLite image holding `data_version` = `v`.
fn sqlite_image(dir: &Path, v: u32) -> Vec<u8> {
    let path = dir.join(format!("image-{v}.sqlite3"));
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute_batch(&format!(
        "CREATE TABLE vars (name TEXT, val TEXT, intval INTEGER, blobval BLOB, PRIMARY KEY (name));
         INSERT INTO vars (name, intval) VALUES ('data_version', {v});
         CREATE TABLE t (v INTEGER);"
    ))
    .unwrap();
    drop(c);
    std::fs::read(&path).unwrap()
}

/// What a test needs that may be missing: said on stderr, and a failure under CI.
fn missing(what: &str) {
    eprintln!("SKIPPED: {what}");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{what} (required under CI=true)");
    }
}

/// Our server, the real binary, on a store.
struct Server {
    child: Child,
    addr: String,
    log: PathBuf,
}

impl Server {
    fn start(store: &Path, listen: &str, extra: &[&str]) -> Server {
        let log = store.with_extension(format!("log{}", std::process::id() ^ rand_tag()));
        let err = std::fs::File::create(&log).unwrap();
        let mut child = run::command()
            .arg("server")
            .arg("--listen")
            .arg(listen)
            .args(extra)
            .arg(store)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addr = line.trim().strip_prefix("listening on ").unwrap_or_else(|| {
            let _ = child.kill();
            panic!("server did not start: {line:?}: {}", std::fs::read_to_string(&log).unwrap_or_default())
        });
        Server { addr: addr.to_string(), child, log }
    }

    fn url(&self) -> String {
        format!("socket:{}", self.addr)
    }

    fn port(&self) -> String {
        self.addr.rsplit(':').next().unwrap().to_string()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and the exit status.
    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(ok.success());
        self.child.wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rand_tag() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

fn new_store(dir: &Path) -> PathBuf {
    let path = dir.join("server.redb");
    Store::create(&path).unwrap();
    path
}

fn open(url: &str) -> Box<dyn Destination> {
    destination::open(url, Access::Write).unwrap_or_else(|e| panic!("{url}: {e}"))
}

/// The server's metadata over a raw connection.
fn raw_metadata(addr: &str) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&pkt(4, &[])).unwrap();
    let (t, p) = read_pkt(&mut s);
    assert_eq!(t, 8);
    p
}

// ---------------------------------------------------------------- client bytes

/// A listener in the test playing the server: `script` runs on the accepted
/// connection and checks every byte the client sends.
fn fake_server(script: impl FnOnce(&mut TcpStream) + Send + 'static) -> (String, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let h = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        script(&mut s);
    });
    (addr, h)
}

#[test]
fn client_sends_exact_bytes_for_every_request() {
    let dir = tempfile::tempdir().unwrap();
    let image = sqlite_image(dir.path(), 7);
    let image2 = image.clone();
    let (addr, server) = fake_server(move |s| {
        // connect: metadata.
        expect_bytes(s, &[4, 0, 0, 0, 0]);
        s.write_all(&metadata_pkt(5, 4, 3)).unwrap();
        // head(): metadata again, fresh.
        expect_bytes(s, &[4, 0, 0, 0, 0]);
        s.write_all(&metadata_pkt(5, 4, 3)).unwrap();
        // add_change(6): one CHANGE, the Python layout.
        let (t, p) = read_pkt(s);
        assert_eq!(t, 1);
        assert_eq!(&p[..4], &6u32.to_be_bytes());
        assert_eq!(unzlib(&p[4..]), tx(6).join("\0").as_bytes());
        s.write_all(&pkt(6, &6u32.to_be_bytes())).unwrap();
        // A repeated-version report.
        let (t, p) = read_pkt(s);
        assert_eq!((t, &p[..4]), (1, &6u32.to_be_bytes()[..]));
        assert_eq!(unzlib(&p[4..]), b"PRAGMA foreign_keys = OFF;");
        s.write_all(&pkt(6, &6u32.to_be_bytes())).unwrap();
        // rewind(): metadata, then REWIND to prev_version.
        expect_bytes(s, &[4, 0, 0, 0, 0]);
        s.write_all(&metadata_pkt(7, 6, 5)).unwrap();
        expect_bytes(s, &[3, 0, 0, 0, 4, 0, 0, 0, 6]);
        s.write_all(&pkt(6, &6u32.to_be_bytes())).unwrap();
        // A change the server refuses: NACK with a reason.
        let (t, _) = read_pkt(s);
        assert_eq!(t, 1);
        let mut nack = 6u32.to_be_bytes().to_vec();
        nack.extend_from_slice(b"version 9 does not follow");
        s.write_all(&pkt(7, &nack)).unwrap();
        // After a refusal the client reads the server's head again.
        expect_bytes(s, &[4, 0, 0, 0, 0]);
        s.write_all(&metadata_pkt(7, 7, 5)).unwrap();
        // add_snapshot(7).
        let (t, p) = read_pkt(s);
        assert_eq!((t, &p[..4]), (2, &7u32.to_be_bytes()[..]));
        assert_eq!(unzlib(&p[4..]), image2);
        s.write_all(&pkt(6, &7u32.to_be_bytes())).unwrap();
        // compact.
        expect_bytes(s, &[10, 0, 0, 0, 0]);
        s.write_all(&pkt(11, br#"{"compacted":true}"#)).unwrap();
        // restore: metadata, RESTORE, then a stream the client must merge.
        // (compact dropped what the client knew, so it asks again first)
        expect_bytes(s, &[4, 0, 0, 0, 0]);
        s.write_all(&metadata_pkt(9, 8, 3)).unwrap();
        expect_bytes(s, &[5, 0, 0, 0, 0]);
        let mut snap = 7u32.to_be_bytes().to_vec();
        snap.extend_from_slice(&zlib(&image2));
        s.write_all(&pkt(2, &snap)).unwrap();
        s.write_all(&change_pkt(8, &tx(8))).unwrap();
        s.write_all(&change_pkt(8, &["PRAGMA foreign_keys = ON;".to_string()])).unwrap();
        s.write_all(&change_pkt(9, &tx(9))).unwrap();
        s.write_all(&pkt(9, &[])).unwrap();
        // The client closes the restore's connection when done.
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        assert!(rest.is_empty(), "nothing after RESTORE: {rest:?}");
    });
    // The concrete type: compaction is the socket destination's own method.
    let url = destination::SocketUrl::parse(&format!("socket:{addr}")).unwrap();
    let dest = destination::SocketDestination::connect(&url, None).unwrap();
    let head = dest.head().unwrap();
    assert_eq!((head.version, head.prev_version, head.rewind_allowed), (5, Some(4), true));
    assert_eq!(dest.add_change(6, &refs(&tx(6))).unwrap(), cln_backup::Added::New(6));
    assert_eq!(dest.add_change(6, &["PRAGMA foreign_keys = OFF;"]).unwrap(), cln_backup::Added::Repeated(6));
    assert_eq!(dest.rewind().unwrap(), 6);
    let e = dest.add_change(9, &refs(&tx(9))).unwrap_err().to_string();
    assert!(e.contains(&format!("socket:{addr}")) && e.contains("version 9 does not follow"), "{e}");
    let info = dest.add_snapshot(7, &mut &image[..]).unwrap();
    assert_eq!((info.version, info.size), (7, image.len() as u64));
    let stats = dest.compact().unwrap();
    assert_eq!(stats["compacted"], true);
    let mut got_image = Vec::new();
    let source = dest.restore_source(None, &mut got_image).unwrap();
    assert_eq!(got_image, image);
    assert_eq!(source.upto, 9);
    let changes: Vec<_> = source.changes.map(Result::unwrap).collect();
    assert_eq!(changes.len(), 2);
    assert_eq!((changes[0].seq, changes[0].transactions.len()), (8, 2));
    assert_eq!(changes[0].transactions[1].statements, ["PRAGMA foreign_keys = ON;"]);
    assert_eq!(changes[0].transactions[0].time_ms, cln_backup::TIME_NOT_RECORDED);
    assert_eq!((changes[1].seq, &changes[1].transactions[0].statements), (9, &tx(9)));
    drop(dest);
    server.join().unwrap();
}

#[test]
fn client_refuses_an_unreachable_server_naming_the_url() {
    // Bound and closed again: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("socket:127.0.0.1:{port}");
    let e = destination::open(&url, Access::Write).unwrap_err().to_string();
    assert!(e.starts_with(&format!("{url}: ")), "{e}");
    assert!(e.lines().count() == 1, "{e}");
}

#[test]
fn client_sends_the_token_first_and_stops_on_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret\n").unwrap();
    let (addr, server) = fake_server(|s| {
        expect_bytes(s, &pkt(12, b"s3cret"));
        s.write_all(&pkt(6, &[])).unwrap();
        expect_bytes(s, &[4, 0, 0, 0, 0]);
        s.write_all(&metadata_pkt(0, 0, 0)).unwrap();
    });
    let mut options = OpenOptions::new(Access::Write);
    options.token_file = Some(token_file.clone());
    let dest = destination::open_with(format!("socket:{addr}"), &options).unwrap();
    server.join().unwrap();
    drop(dest);

    let (addr, server) = fake_server(|s| {
        expect_bytes(s, &pkt(12, b"s3cret"));
        let mut p = 0u32.to_be_bytes().to_vec();
        p.extend_from_slice(b"wrong token");
        s.write_all(&pkt(7, &p)).unwrap();
    });
    let e = destination::open_with(format!("socket:{addr}"), &options).unwrap_err().to_string();
    assert!(e.starts_with(&format!("socket:{addr}: ")) && e.contains("wrong token"), "{e}");
    server.join().unwrap();
}

// ---------------------------------------------------------------- server bytes

#[test]
fn server_answers_raw_bytes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let server = Server::start(&store, "127.0.0.1:0", &[]);
    let mut s = TcpStream::connect(&server.addr).unwrap();
    let ask = |s: &mut TcpStream, bytes: &[u8]| -> (u8, Vec<u8>) {
        s.write_all(bytes).unwrap();
        read_pkt(s)
    };
    assert_eq!(ask(&mut s, &pkt(4, &[])), (8, metadata_pkt(0, 0, 0)[5..].to_vec()));
    // An old client may send a token to a server without one: acknowledged.
    assert_eq!(ask(&mut s, &pkt(12, b"anything")), (6, vec![]));
    let c1 = vec![bump(1)];
    assert_eq!(ask(&mut s, &change_pkt(1, &c1)), (6, 1u32.to_be_bytes().to_vec()));
    assert_eq!(ask(&mut s, &pkt(4, &[])), (8, metadata_pkt(1, 0, 1)[5..].to_vec()));
    assert_eq!(ask(&mut s, &change_pkt(2, &tx(2))), (6, 2u32.to_be_bytes().to_vec()));
    // A repeated-version report: acknowledged at the same version.
    let pragma = vec!["PRAGMA foreign_keys = OFF;".to_string()];
    assert_eq!(ask(&mut s, &change_pkt(2, &pragma)), (6, 2u32.to_be_bytes().to_vec()));
    // The last version holds a repeated report: no rewind; METADATA says so by prev == version.
    assert_eq!(ask(&mut s, &pkt(4, &[])), (8, metadata_pkt(2, 2, 2)[5..].to_vec()));
    let (t, p) = ask(&mut s, &pkt(3, &1u32.to_be_bytes()));
    assert_eq!((t, &p[..4]), (7, &2u32.to_be_bytes()[..]));
    assert!(String::from_utf8_lossy(&p[4..]).contains("rewind"), "{p:?}");
    assert_eq!(ask(&mut s, &change_pkt(3, &tx(3))), (6, 3u32.to_be_bytes().to_vec()));
    assert_eq!(ask(&mut s, &pkt(4, &[])), (8, metadata_pkt(3, 2, 3)[5..].to_vec()));
    // REWIND to the wrong version: NACK; to prev_version: ACK at it; twice: NACK.
    let (t, _) = ask(&mut s, &pkt(3, &1u32.to_be_bytes()));
    assert_eq!(t, 7);
    assert_eq!(ask(&mut s, &pkt(3, &2u32.to_be_bytes())), (6, 2u32.to_be_bytes().to_vec()));
    let (t, p) = ask(&mut s, &pkt(3, &1u32.to_be_bytes()));
    assert_eq!((t, &p[..4]), (7, &2u32.to_be_bytes()[..]));
    // A gap: NACK with the store's reason, and the connection goes on.
    let (t, p) = ask(&mut s, &change_pkt(9, &tx(9)));
    assert_eq!((t, &p[..4]), (7, &2u32.to_be_bytes()[..]));
    assert!(String::from_utf8_lossy(&p[4..]).contains("does not follow"), "{p:?}");
    assert_eq!(ask(&mut s, &change_pkt(3, &tx(3))), (6, 3u32.to_be_bytes().to_vec()));
    // RESTORE: one CHANGE per transaction, in order, then DONE.
    s.write_all(&pkt(5, &[])).unwrap();
    let mut got = Vec::new();
    loop {
        let (t, p) = read_pkt(&mut s);
        if t == 9 {
            assert!(p.is_empty());
            break;
        }
        assert_eq!(t, 1);
        let v = u32::from_be_bytes(p[..4].try_into().unwrap());
        got.push((v, String::from_utf8(unzlib(&p[4..])).unwrap()));
    }
    assert_eq!(got, [(1, c1.join("\0")), (2, tx(2).join("\0")), (2, pragma[0].clone()), (3, tx(3).join("\0"))]);
    // A client may ACK what it received: ignored.
    s.write_all(&pkt(6, &3u32.to_be_bytes())).unwrap();
    // A SNAPSHOT at the head replaces the log.
    let image = sqlite_image(dir.path(), 3);
    let mut snap = 3u32.to_be_bytes().to_vec();
    snap.extend_from_slice(&zlib(&image));
    assert_eq!(ask(&mut s, &pkt(2, &snap)), (6, 3u32.to_be_bytes().to_vec()));
    assert_eq!(ask(&mut s, &pkt(4, &[])), (8, metadata_pkt(3, 3, 1)[5..].to_vec()));
    s.write_all(&pkt(5, &[])).unwrap();
    let (t, p) = read_pkt(&mut s);
    assert_eq!((t, &p[..4]), (2, &3u32.to_be_bytes()[..]));
    assert_eq!(unzlib(&p[4..]), image);
    assert_eq!(read_pkt(&mut s), (9, vec![]));
    // COMPACT: statistics as JSON (nothing to fold here).
    let (t, p) = ask(&mut s, &pkt(10, &[]));
    assert_eq!(t, 11);
    let stats: serde_json::Value = serde_json::from_slice(&p).unwrap();
    assert_eq!(stats["compacted"], false);
    drop(s);
    assert!(server.log().contains("connection from"), "{}", server.log());
}

// ---------------------------------------------------------------- malformed

#[test]
fn malformed_packets_are_refused_logged_and_the_server_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let server = Server::start(&store, "127.0.0.1:0", &[]);
    {
        let dest = open(&server.url());
        for v in 1..=3 {
            dest.add_change(v, &refs(&tx(v))).unwrap();
        }
    }
    let before = raw_metadata(&server.addr);
    let mut bad_zlib = 4u32.to_be_bytes().to_vec();
    bad_zlib.extend_from_slice(b"this is not zlib");
    let mut not_utf8 = 4u32.to_be_bytes().to_vec();
    let mut stmts = b"INSERT INTO t VALUES ('\xff')\0".to_vec();
    stmts.extend_from_slice(bump(4).as_bytes());
    not_utf8.extend_from_slice(&zlib(&stmts));
    let truncated = {
        let mut p = change_pkt(4, &tx(4));
        p.truncate(p.len() - 5);
        p
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("oversized", [1u8, 0xff, 0xff, 0xff, 0xff].to_vec(), "over the limit"),
        ("unknown type", pkt(0x42, b"hello"), "unknown packet type 66"),
        ("truncated", truncated, "truncated"),
        ("bad zlib", pkt(1, &bad_zlib), "bad zlib stream"),
        ("not UTF-8", pkt(1, &not_utf8), "not UTF-8"),
        ("short rewind", pkt(3, &[0, 1]), "REWIND of 2 bytes"),
    ];
    for (name, bytes, said) in cases {
        let mut s = TcpStream::connect(&server.addr).unwrap();
        s.write_all(&bytes).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let (t, p) = read_pkt(&mut s);
        assert_eq!(t, 7, "{name}: NACK expected");
        assert!(String::from_utf8_lossy(&p[4..]).contains(said), "{name}: {:?}", String::from_utf8_lossy(&p));
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "{name}: the connection is closed after the NACK");
        // Logged, naming the peer, and the next connection is served.
        assert_eq!(raw_metadata(&server.addr), before, "{name}: the store is unchanged");
        let log = server.log();
        assert!(log.lines().any(|l| l.contains("refused and closed") && l.contains(said)), "{name}: {log}");
    }
    // And a well-formed client carries on from where the store was.
    let dest = open(&server.url());
    dest.add_change(4, &refs(&tx(4))).unwrap();
    assert_eq!(dest.head().unwrap().version, 4);
}

// ---------------------------------------------------------------- listening, tokens, store

#[test]
fn non_loopback_listening_needs_allow_remote() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let out = run::cln_backup(&[&"server", &"--listen", &"0.0.0.0:0", &store]);
    let line = run::assert_fails(&out, &[] as &[&Path], &["0.0.0.0:0", "not a loopback address", "--allow-remote"]);
    assert!(!line.contains("panicked"));
    // With it, the server starts (on every address, port chosen by the system).
    let server = Server::start(&store, "0.0.0.0:0", &["--allow-remote"]);
    let port = server.port();
    let dest = open(&format!("socket:127.0.0.1:{port}"));
    assert_eq!(dest.head().unwrap().version, 0);
}

#[test]
fn a_missing_store_says_how_to_create_it_and_a_second_server_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let missing_store = dir.path().join("nope.redb");
    let out = run::cln_backup(&[&"server", &"--listen", &"127.0.0.1:0", &missing_store]);
    run::assert_fails(&out, &[&missing_store], &["cln-backup init"]);
    let store = new_store(dir.path());
    let _first = Server::start(&store, "127.0.0.1:0", &[]);
    let out = run::cln_backup(&[&"server", &"--listen", &"127.0.0.1:0", &store]);
    run::assert_fails(&out, &[&store], &["already open"]);
}

#[test]
fn a_token_is_required_when_the_server_has_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let token = dir.path().join("token");
    std::fs::write(&token, "correct horse\n").unwrap();
    let server = Server::start(&store, "127.0.0.1:0", &["--token-file", token.to_str().unwrap()]);
    // No token: refused.
    let e = destination::open(server.url(), Access::Write).unwrap_err().to_string();
    assert!(e.contains("requires a token"), "{e}");
    // A wrong one: refused.
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "battery staple").unwrap();
    let mut options = OpenOptions::new(Access::Write);
    options.token_file = Some(wrong);
    let e = destination::open_with(server.url(), &options).unwrap_err().to_string();
    assert!(e.contains("wrong token"), "{e}");
    // A raw client that skips it gets a NACK and a closed connection.
    let mut s = TcpStream::connect(&server.addr).unwrap();
    s.write_all(&change_pkt(1, &[bump(1)])).unwrap();
    assert_eq!(read_pkt(&mut s).0, 7);
    // The right one (the file's trailing newline is not part of it): served.
    options.token_file = Some(token);
    let dest = destination::open_with(server.url(), &options).unwrap();
    dest.add_change(1, &[bump(1).as_str()]).unwrap();
    assert_eq!(dest.head().unwrap().version, 1);
    let log = server.log();
    assert!(log.contains("without the token this server requires"), "{log}");
    assert!(log.contains("wrong token"), "{log}");
}

#[test]
fn sigterm_stops_cleanly_and_the_store_keeps_every_acknowledged_change() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let server = Server::start(&store, "127.0.0.1:0", &[]);
    let dest = open(&server.url());
    for v in 1..=5 {
        dest.add_change(v, &refs(&tx(v))).unwrap();
    }
    // A client connected and idle while the signal comes.
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
    // The store is closed (a writer may open it) and holds what was acknowledged.
    let s = Store::open(&store).unwrap();
    assert_eq!(s.version(), 5);
}

// ---------------------------------------------------------------- load and restore

#[test]
fn ten_thousand_changes_then_a_restore_equal_to_a_local_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let server = Server::start(&store, "127.0.0.1:0", &[]);
    let local_path = dir.path().join("local.redb");
    let local = Store::create(&local_path).unwrap();
    let dest = open(&server.url());
    for (v, statements) in workload::Workload::generate(7, 10_000) {
        dest.add_change(v, &refs(&statements)).unwrap();
        local.add_change(v, &statements).unwrap();
    }
    assert_eq!(dest.head().unwrap().version, local.version());
    let out = tempfile::tempdir().unwrap();
    let from_server = out.path().join("server.sqlite3");
    let from_local = out.path().join("local.sqlite3");
    let report = restore::restore_from(dest.as_ref(), &from_server, &restore::Options::default()).unwrap();
    assert_eq!(report.version, local.version());
    restore::restore_store(&local, &from_local, &restore::Options::default()).unwrap();
    let diff = compare::compare_databases(&from_server, &from_local, compare::Labels::RESTORED_AND_EXPECTED).unwrap();
    assert!(diff.is_none(), "{diff:?}");
    // A restore to an earlier version stops there.
    let early = out.path().join("early.sqlite3");
    let opts = restore::Options { to_version: Some(5000), ..Default::default() };
    let report = restore::restore_from(dest.as_ref(), &early, &opts).unwrap();
    assert_eq!(report.version, 5000);
    let local_early = out.path().join("local-early.sqlite3");
    restore::restore_store(&local, &local_early, &opts).unwrap();
    assert!(compare::compare_databases(&early, &local_early, compare::Labels::RESTORED_AND_EXPECTED)
        .unwrap()
        .is_none());
    // Out of range: the library's refusal.
    let opts = restore::Options { to_version: Some(20_000), ..Default::default() };
    let e = restore::restore_from(dest.as_ref(), &out.path().join("x.sqlite3"), &opts).unwrap_err();
    assert!(matches!(e, cln_backup::Error::NotRestorable { .. }), "{e}");
}

#[test]
fn a_server_killed_mid_stream_loses_no_acknowledged_change() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let mut server = Server::start(&store, "127.0.0.1:0", &[]);
    let addr = server.addr.clone();
    let url = server.url();
    let (tx_ok, rx_ok) = std::sync::mpsc::channel::<u32>();
    let client = std::thread::spawn(move || {
        let dest = open(&url);
        for v in 1..=600u32 {
            match dest.add_change(v, &refs(&tx(v))) {
                Ok(_) => tx_ok.send(v).unwrap(),
                Err(e) => return Some((v, e.to_string())),
            }
        }
        None
    });
    // Kill the server once 200 changes were acknowledged, while the client sends more.
    let mut acked = 0;
    while acked < 200 {
        acked = rx_ok.recv().unwrap();
    }
    server.kill();
    let mut server = Server::start(&store, &addr, &[]);
    let outcome = client.join().unwrap();
    let last_ok = rx_ok.try_iter().last().unwrap_or(acked).max(acked);
    let head = open(&server.url()).head().unwrap().version;
    eprintln!("after the kill: acknowledged up to {last_ok}, server at {head}, client outcome {outcome:?}");
    match outcome {
        None => assert_eq!((last_ok, head), (600, 600), "the client recovered and finished"),
        Some((v, e)) => {
            // An error, never a lost Ok: every acknowledged change is there.
            assert!(head >= last_ok, "acknowledged {last_ok}, server at {head} ({v}: {e})");
            assert!(head <= v, "server at {head} beyond the failed {v}");
        }
    }
    server.kill();
    // The store itself agrees, read directly.
    let s = Store::open_read_only(&store).unwrap();
    assert!(s.version() >= last_ok);
}

// ---------------------------------------------------------------- plugin

#[test]
fn the_plugin_backs_up_to_our_server_and_a_restore_equals_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let server = Server::start(&store, "127.0.0.1:0", &[]);
    let node_dir = sim::NodeDir::new();
    std::fs::write(node_dir.network().join("backup.lock"), format!("{{\"backend_url\": \"{}\"}}", server.url()))
        .unwrap();
    let bin = env!("CARGO_BIN_EXE_cln-backup");
    let mut node = sim::Node::start(&node_dir, &sim::Start::with_plugin(bin)).unwrap_or_else(|e| panic!("{e}"));
    let mut load = workload::Workload::on_existing_schema(3, node.data_version());
    for _ in 0..300 {
        let t = load.next_txn();
        node.apply(&t).unwrap_or_else(|e| panic!("{}: {e}", t.0));
    }
    // With the server as the only destination, backup-compact is the
    // server's compaction (COMPACT), and returns its statistics.
    let before = node.data_version();
    let stats = node.rpc("backup-compact", serde_json::json!({})).unwrap_or_else(|e| panic!("{e}"));
    let snapshot = stats["snapshot_version"].as_u64().unwrap_or_else(|| panic!("no snapshot_version in {stats}"));
    assert!(snapshot > 0 && snapshot < u64::from(before), "{stats}");
    // An operator's request while the node's connection is open and quiet
    // is served once the server closes the quiet one (--yield-after), and
    // the node's next write reconnects.
    assert_eq!(open(&server.url()).head().unwrap().version, before);
    for _ in 0..20 {
        let t = load.next_txn();
        node.apply(&t).unwrap_or_else(|e| panic!("{}: {e}", t.0));
    }
    let version = node.data_version();
    node.stop();
    let dest = open(&server.url());
    assert_eq!(dest.head().unwrap().version, version);
    let out = tempfile::tempdir().unwrap();
    let restored = out.path().join("restored.sqlite3");
    restore::restore_from(dest.as_ref(), &restored, &restore::Options::default()).unwrap();
    workload::assert_same_db(&restored, &node_dir.db());
    drop(dest);
    let mut server = server;
    server.kill();
    let status = Store::open_read_only(&store).unwrap().status().unwrap();
    assert_eq!(status.snapshot.map(|s| u64::from(s.version)), Some(snapshot), "the server's store was compacted");
}

// ---------------------------------------------------------------- independent peer

const PEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/socket_peer.py");

fn python() -> Option<&'static str> {
    let ok = Command::new("python3").arg("--version").output().is_ok_and(|o| o.status.success());
    if ok {
        Some("python3")
    } else {
        missing("python3 is not installed: the independent peer tests cannot run");
        None
    }
}

#[test]
fn the_independent_python_client_against_our_server() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let server = Server::start(&store, "127.0.0.1:0", &[]);
    let image = dir.path().join("base.sqlite3");
    std::fs::write(&image, sqlite_image(dir.path(), 10)).unwrap();
    let out = Command::new(py).args([PEER, "client", &server.addr, image.to_str().unwrap()]).output().unwrap();
    assert!(
        out.status.success(),
        "peer failed:\n{}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("client: all checks passed"));
    // What the peer left: the snapshot at 10, then 11..=13 with 13 rewound and sent again.
    let dest = open(&server.url());
    assert_eq!(dest.head().unwrap().version, 13);
}

#[test]
fn our_client_against_the_independent_python_server() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(py)
        .args([PEER, "server", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("listening on ").unwrap().to_string();
    let url = format!("socket:{addr}");
    let image = sqlite_image(dir.path(), 10);
    let result = std::panic::catch_unwind(|| {
        let dest = open(&url);
        assert_eq!(dest.head().unwrap().version, 0);
        dest.add_snapshot(10, &mut &image[..]).unwrap();
        for v in 11..=13 {
            let t = vec![format!("INSERT INTO t VALUES ({v})"), bump(v)];
            dest.add_change(v, &refs(&t)).unwrap();
        }
        let head = dest.head().unwrap();
        assert_eq!((head.version, head.prev_version, head.rewind_allowed), (13, Some(12), true));
        assert_eq!(dest.rewind().unwrap(), 12);
        dest.add_change(13, &refs(&["INSERT INTO t VALUES (130)".to_string(), bump(13)])).unwrap();
        let restored = dir.path().join("restored.sqlite3");
        restore::restore_from(dest.as_ref(), &restored, &restore::Options::default()).unwrap();
        let c = rusqlite::Connection::open(&restored).unwrap();
        let rows: Vec<i64> = c
            .prepare("SELECT v FROM t ORDER BY v")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(rows, [11, 12, 130]);
    });
    let _ = child.kill();
    let _ = child.wait();
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

// ---------------------------------------------------------------- SOCKS5 and IPv6

#[test]
fn a_socks5_proxy_is_asked_to_connect_to_the_name_unresolved() {
    let (addr, proxy) = fake_server(|s| {
        // Greeting: SOCKS5, one method, no authentication.
        expect_bytes(s, &[5, 1, 0]);
        s.write_all(&[5, 0]).unwrap();
        // CONNECT to the name itself (type 3), which only the proxy resolves.
        let name = b"backupxyz.onion";
        let mut req = vec![5, 1, 0, 3, name.len() as u8];
        req.extend_from_slice(name);
        req.extend_from_slice(&8700u16.to_be_bytes());
        expect_bytes(s, &req);
        s.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0x1f, 0x90]).unwrap();
        // From here on the proxy carries the protocol.
        expect_bytes(s, &[4, 0, 0, 0, 0]);
        s.write_all(&metadata_pkt(3, 2, 2)).unwrap();
    });
    let url = format!("socket:backupxyz.onion:8700?proxy=socks5:{addr}");
    let dest = open(&url);
    proxy.join().unwrap();
    assert_eq!(dest.location(), url);

    // A proxy that cannot reach the target: its reply code, in words.
    let (addr, proxy) = fake_server(|s| {
        expect_bytes(s, &[5, 1, 0]);
        s.write_all(&[5, 0]).unwrap();
        let mut req = [0u8; 4 + 1 + 15 + 2];
        s.read_exact(&mut req).unwrap();
        s.write_all(&[5, 4, 0, 1, 0, 0, 0, 0, 0, 0]).unwrap();
    });
    let url = format!("socket:backupxyz.onion:8700?proxy=socks5:{addr}");
    let e = destination::open(&url, Access::Write).unwrap_err().to_string();
    proxy.join().unwrap();
    assert!(e.starts_with(&url) && e.contains("SOCKS5") && e.contains("host unreachable"), "{e}");
}

#[test]
fn an_ipv6_server_and_url() {
    if TcpListener::bind("[::1]:0").is_err() {
        missing("no IPv6 loopback on this machine");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let server = Server::start(&store, "[::1]:0", &[]);
    assert!(server.addr.starts_with("[::1]:"), "{}", server.addr);
    let dest = open(&server.url());
    dest.add_change(1, &[bump(1).as_str()]).unwrap();
    assert_eq!(dest.head().unwrap().version, 1);
}

#[test]
fn one_connection_at_a_time_the_next_waits_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let server = Server::start(&store, "127.0.0.1:0", &[]);
    let first = open(&server.url());
    assert_eq!(first.head().unwrap().version, 0);
    // A second client connects (into the backlog) and asks while the first is served.
    let mut second = TcpStream::connect(&server.addr).unwrap();
    second.write_all(&pkt(4, &[])).unwrap();
    first.add_change(1, &[bump(1).as_str()]).unwrap();
    drop(first);
    // Served only once the first closed: it sees the first's change.
    assert_eq!(read_pkt(&mut second), (8, metadata_pkt(1, 0, 1)[5..].to_vec()));
}

#[test]
fn a_store_named_without_a_directory_stages_snapshots_in_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    Store::create(dir.path().join("here.redb")).unwrap();
    let mut child = run::command()
        .current_dir(dir.path())
        .args(["server", "--listen", "127.0.0.1:0", "here.redb"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("listening on ").unwrap().to_string();
    let result = std::panic::catch_unwind(|| {
        let dest = open(&format!("socket:{addr}"));
        let image = sqlite_image(dir.path(), 4);
        assert_eq!(dest.add_snapshot(4, &mut &image[..]).unwrap().version, 4);
        assert_eq!(dest.head().unwrap().version, 4);
    });
    let _ = child.kill();
    let _ = child.wait();
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

#[test]
fn a_restore_across_the_u32_wrap_through_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let server = Server::start(&store, "127.0.0.1:0", &[]);
    let start = u32::MAX - 3;
    let image_path = dir.path().join("node.sqlite3");
    {
        let c = rusqlite::Connection::open(&image_path).unwrap();
        c.execute_batch(&format!(
            "CREATE TABLE vars (name TEXT, val TEXT, intval INTEGER, blobval BLOB, PRIMARY KEY (name));
             INSERT INTO vars (name, intval) VALUES ('data_version', {start});
             CREATE TABLE t (v INTEGER);
             CREATE TRIGGER data_version_u32 AFTER UPDATE OF intval ON vars
             WHEN NEW.name = 'data_version' AND NEW.intval > 4294967295
             BEGIN UPDATE vars SET intval = NEW.intval - 4294967296 WHERE name = 'data_version'; END;"
        ))
        .unwrap();
    }
    let dest = open(&server.url());
    dest.add_snapshot(start, &mut std::fs::File::open(&image_path).unwrap()).unwrap();
    let local = Store::create(dir.path().join("local.redb")).unwrap();
    local.add_snapshot(start, &mut std::fs::File::open(&image_path).unwrap()).unwrap();
    let mut v = start;
    for n in 0..8 {
        v = v.wrapping_add(1);
        let t = vec![format!("INSERT INTO t VALUES ({n})"), bump(v)];
        dest.add_change(v, &refs(&t)).unwrap();
        local.add_change(v, &t).unwrap();
    }
    assert!(v < 10, "wrapped");
    let out = tempfile::tempdir().unwrap();
    let (a, b) = (out.path().join("server.sqlite3"), out.path().join("local.sqlite3"));
    let report = restore::restore_from(dest.as_ref(), &a, &restore::Options::default()).unwrap();
    assert_eq!(report.version, v);
    assert!(report.seq > u64::from(u32::MAX), "the restore's version runs on past the wrap");
    restore::restore_store(&local, &b, &restore::Options::default()).unwrap();
    assert!(compare::compare_databases(&a, &b, compare::Labels::RESTORED_AND_EXPECTED).unwrap().is_none());
    // A version before the wrap, named by its data_version.
    let early = out.path().join("early.sqlite3");
    let opts = restore::Options { to_version: Some(u64::from(u32::MAX)), ..Default::default() };
    let report = restore::restore_from(dest.as_ref(), &early, &opts).unwrap();
    assert_eq!(report.version, u32::MAX);
}

#[test]
fn a_connection_the_server_closed_is_replaced_before_sending() {
    // The server closes the first connection (as after a long silence); a
    // repeated-version report sent next must go on a new connection, since
    // one lost after sending could not be told stored or not.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let (closed_tx, closed_rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        expect_bytes(&mut s, &[4, 0, 0, 0, 0]);
        s.write_all(&metadata_pkt(5, 4, 3)).unwrap();
        drop(s);
        closed_tx.send(()).unwrap();
        let (mut s, _) = l.accept().unwrap();
        expect_bytes(&mut s, &[4, 0, 0, 0, 0]);
        s.write_all(&metadata_pkt(5, 4, 3)).unwrap();
        let (t, p) = read_pkt(&mut s);
        assert_eq!((t, &p[..4]), (1, &5u32.to_be_bytes()[..]));
        s.write_all(&pkt(6, &5u32.to_be_bytes())).unwrap();
    });
    let dest = open(&format!("socket:{addr}"));
    closed_rx.recv().unwrap();
    assert_eq!(dest.add_change(5, &["PRAGMA foreign_keys = ON;"]).unwrap(), cln_backup::Added::Repeated(5));
    server.join().unwrap();
}

#[test]
fn a_restore_stream_cut_short_is_an_error_and_places_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let image = sqlite_image(dir.path(), 7);
    let sent = image.clone();
    let (addr, server) = fake_server(move |s| {
        expect_bytes(s, &[4, 0, 0, 0, 0]);
        s.write_all(&metadata_pkt(9, 8, 3)).unwrap();
        expect_bytes(s, &[4, 0, 0, 0, 0]);
        s.write_all(&metadata_pkt(9, 8, 3)).unwrap();
        expect_bytes(s, &[5, 0, 0, 0, 0]);
        let mut snap = 7u32.to_be_bytes().to_vec();
        snap.extend_from_slice(&zlib(&sent));
        s.write_all(&pkt(2, &snap)).unwrap();
        s.write_all(&change_pkt(8, &tx(8))).unwrap();
        let c9 = change_pkt(9, &tx(9));
        s.write_all(&c9[..c9.len() - 4]).unwrap();
    });
    let dest = open(&format!("socket:{addr}"));
    let out = dir.path().join("restored.sqlite3");
    let e = restore::restore_from(dest.as_ref(), &out, &restore::Options::default()).unwrap_err().to_string();
    server.join().unwrap();
    assert!(e.contains(&format!("socket:{addr}")) && e.contains("truncated"), "{e}");
    assert!(!out.exists(), "nothing placed");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.iter().all(|n| !n.to_string_lossy().starts_with(".cln-backup")), "{left:?}");
}

#[test]
fn a_quiet_connection_yields_to_a_waiting_client() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let server = Server::start(&store, "127.0.0.1:0", &["--yield-after", "0"]);
    // A node's plugin, connected and quiet (or gone without closing).
    let quiet = open(&server.url());
    assert_eq!(quiet.head().unwrap().version, 0);
    // Another client is served once the quiet one was closed for it.
    let mut other = TcpStream::connect(&server.addr).unwrap();
    other.set_read_timeout(Some(std::time::Duration::from_secs(120))).unwrap();
    other.write_all(&pkt(4, &[])).unwrap();
    assert_eq!(read_pkt(&mut other), (8, metadata_pkt(0, 0, 0)[5..].to_vec()));
    drop(other);
    // The quiet client's next change goes through on a new connection.
    quiet.add_change(1, &[bump(1).as_str()]).unwrap();
    assert_eq!(quiet.head().unwrap().version, 1);
    assert!(server.log().contains("another client waits"), "{}", server.log());
}
