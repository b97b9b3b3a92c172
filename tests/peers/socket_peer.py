#!/usr/bin/env python3
"""An independent peer for the socket protocol, written from the packet
description in the project's specification (section 5), with the Python
standard library only. The Rust tests run it in two roles:

  socket_peer.py client HOST:PORT IMAGE   drive a server and check its answers
  socket_peer.py server HOST:PORT         serve an in-memory backup, printing
                                          "listening on HOST:PORT" once ready

Packets are: u8 type, u32 big-endian length, payload.
"""

import json
import os
import socket
import sqlite3
import struct
import sys
import tempfile
import zlib

CHANGE, SNAPSHOT, REWIND, REQ_METADATA, RESTORE = 1, 2, 3, 4, 5
ACK, NACK, METADATA, DONE, COMPACT, COMPACT_RES = 6, 7, 8, 9, 10, 11


def read_exactly(conn, n):
    chunks = []
    while n > 0:
        got = conn.recv(min(n, 1 << 16))
        if not got:
            raise EOFError("connection closed mid-packet")
        chunks.append(got)
        n -= len(got)
    return b"".join(chunks)


def receive(conn):
    head = conn.recv(1)
    if not head:
        return None, None
    rest = read_exactly(conn, 4)
    (length,) = struct.unpack(">I", rest)
    return head[0], read_exactly(conn, length)


def send(conn, kind, payload=b""):
    conn.sendall(struct.pack(">BI", kind, len(payload)) + payload)


def bump(v):
    return (
        "UPDATE vars SET intval = intval + 1 WHERE name = 'data_version' AND intval = %d"
        % (v - 1)
    )


def statements_payload(version, statements):
    return struct.pack(">I", version) + zlib.compress("\0".join(statements).encode("utf-8"))


def split_versioned(payload):
    (version,) = struct.unpack(">I", payload[:4])
    return version, zlib.decompress(payload[4:])


def fail(message):
    print("client: FAILED: " + message, file=sys.stderr)
    sys.exit(1)


def expect(cond, message):
    if not cond:
        fail(message)


def parse_addr(text):
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


# ------------------------------------------------------------------ client


class Client:
    def __init__(self, addr):
        self.conn = socket.create_connection(parse_addr(addr), timeout=120)

    def ask(self, kind, payload=b""):
        send(self.conn, kind, payload)
        return receive(self.conn)

    def metadata(self):
        kind, payload = self.ask(REQ_METADATA)
        expect(kind == METADATA, "REQ_METADATA answered with type %r" % kind)
        expect(len(payload) == 20, "METADATA of %d bytes" % len(payload))
        return struct.unpack(">IIIQ", payload)

    def acked(self, kind, payload, version, what):
        answer, body = self.ask(kind, payload)
        expect(answer == ACK, "%s answered with type %r (%r)" % (what, answer, body))
        (got,) = struct.unpack(">I", body[:4])
        expect(got == version, "%s acknowledged at %d, not %d" % (what, got, version))

    def change(self, version, statements):
        self.acked(CHANGE, statements_payload(version, statements), version, "CHANGE %d" % version)

    def restore(self):
        send(self.conn, RESTORE)
        stream = []
        while True:
            kind, payload = receive(self.conn)
            if kind == DONE:
                return stream
            expect(kind in (CHANGE, SNAPSHOT), "restore stream carried type %r" % kind)
            version, body = split_versioned(payload)
            stream.append((kind, version, body))


def rebuild(stream, path):
    """Apply a restore stream to a database at path; return t's rows."""
    db = None
    for kind, version, body in stream:
        if kind == SNAPSHOT:
            if db is not None:
                db.close()
            with open(path, "wb") as f:
                f.write(body)
            db = sqlite3.connect(path, isolation_level=None)
        else:
            expect(db is not None, "a change before any snapshot")
            db.execute("BEGIN")
            for statement in body.decode("utf-8").split("\0"):
                db.execute(statement)
            db.execute("COMMIT")
    rows = [r[0] for r in db.execute("SELECT v FROM t ORDER BY v")]
    (dv,) = db.execute("SELECT intval FROM vars WHERE name = 'data_version'").fetchone()
    db.close()
    return rows, dv


def run_client(addr, image_path):
    with open(image_path, "rb") as f:
        image = f.read()
    c = Client(addr)
    protocol, version, prev, count = c.metadata()
    expect(protocol == 1, "protocol %d" % protocol)
    expect((version, count) == (0, 0), "a new store reports %r" % ((version, prev, count),))

    # The Python client's init: a snapshot first, into the empty store.
    c.acked(SNAPSHOT, struct.pack(">I", 10) + zlib.compress(image), 10, "SNAPSHOT 10")
    for v in (11, 12, 13):
        c.change(v, ["INSERT INTO t VALUES (%d)" % v, bump(v)])
    protocol, version, prev, count = c.metadata()
    expect((version, prev) == (13, 12), "after three changes: %r" % ((version, prev),))

    # A rewind to anything but prev_version is refused; to it, accepted once.
    answer, _ = c.ask(REWIND, struct.pack(">I", 11))
    expect(answer == NACK, "REWIND to 11 answered with %r" % answer)
    c.acked(REWIND, struct.pack(">I", 12), 12, "REWIND 12")
    answer, _ = c.ask(REWIND, struct.pack(">I", 11))
    expect(answer == NACK, "a second REWIND answered with %r" % answer)
    c.change(13, ["INSERT INTO t VALUES (130)", bump(13)])

    # A gap is refused and the connection goes on.
    answer, _ = c.ask(CHANGE, statements_payload(20, ["INSERT INTO t VALUES (20)", bump(20)]))
    expect(answer == NACK, "a gap answered with %r" % answer)

    tmp = tempfile.mkdtemp()
    stream = c.restore()
    kinds = [(k, v) for k, v, _ in stream]
    expect(kinds == [(SNAPSHOT, 10), (CHANGE, 11), (CHANGE, 12), (CHANGE, 13)], "restore stream %r" % kinds)
    expect(stream[0][2] == image, "the snapshot came back different")
    rows, dv = rebuild(stream, os.path.join(tmp, "a.sqlite3"))
    expect((rows, dv) == ([11, 12, 130], 13), "restored %r at %r" % (rows, dv))

    answer, body = c.ask(COMPACT)
    expect(answer == COMPACT_RES, "COMPACT answered with %r" % answer)
    stats = json.loads(body.decode("utf-8"))
    expect(stats.get("compacted") is True, "compaction stats %r" % stats)
    stream = c.restore()
    kinds = [(k, v) for k, v, _ in stream]
    expect(kinds == [(SNAPSHOT, 12), (CHANGE, 13)], "restore after compaction %r" % kinds)
    rows, dv = rebuild(stream, os.path.join(tmp, "b.sqlite3"))
    expect((rows, dv) == ([11, 12, 130], 13), "restored after compaction %r at %r" % (rows, dv))
    protocol, version, prev, count = c.metadata()
    expect((version, prev) == (13, 12), "after compaction: %r" % ((version, prev),))
    c.conn.close()
    print("client: all checks passed")


# ------------------------------------------------------------------ server


class Backup:
    def __init__(self):
        self.records = []  # (kind, version, payload as received)
        self.version = 0
        self.prev_version = 0
        self.count = 0
        self.rewindable = False


def serve(conn, backup):
    while True:
        kind, payload = receive(conn)
        if kind is None:
            return
        if kind == REQ_METADATA:
            send(conn, METADATA, struct.pack(">IIIQ", 1, backup.version, backup.prev_version, backup.count))
        elif kind in (CHANGE, SNAPSHOT):
            version, body = split_versioned(payload)
            if kind == CHANGE:
                body.decode("utf-8")
                backup.records.append((kind, version, payload))
                backup.rewindable = version != backup.version
            else:
                backup.records = [(kind, version, payload)]
                backup.rewindable = False
            if version != backup.version:
                backup.prev_version = backup.version
            backup.version = version
            backup.count += 1
            send(conn, ACK, struct.pack(">I", version))
        elif kind == REWIND:
            (to,) = struct.unpack(">I", payload)
            if backup.rewindable and to == backup.prev_version:
                backup.records.pop()
                backup.version = to
                backup.rewindable = False
                send(conn, ACK, struct.pack(">I", to))
            else:
                send(conn, NACK, struct.pack(">I", backup.version))
        elif kind == RESTORE:
            for k, _, p in backup.records:
                send(conn, k, p)
            send(conn, DONE)
        elif kind == COMPACT:
            send(conn, COMPACT_RES, json.dumps({"compacted": False}).encode())
        else:
            send(conn, NACK, struct.pack(">I", backup.version))
            return


def run_server(addr):
    host, port = parse_addr(addr)
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(4)
    bound = listener.getsockname()
    print("listening on %s:%d" % (bound[0], bound[1]), flush=True)
    backup = Backup()
    while True:
        conn, _ = listener.accept()
        try:
            serve(conn, backup)
        except (EOFError, ConnectionError) as e:
            print("server: connection ended: %s" % e, file=sys.stderr)
        finally:
            conn.close()


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "client":
        run_client(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 3 and sys.argv[1] == "server":
        run_server(sys.argv[2])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
