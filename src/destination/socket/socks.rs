//! The SOCKS5 handshake (RFC 1928) a client makes to reach a backup server
//! through Tor: no authentication, one CONNECT to a domain name or address.
//!
//! Owns those few bytes and the proxy's refusals as text. It must not
//! resolve the target's name: the proxy does (an `.onion` name has no
//! address outside Tor). Written here rather than taken from a crate: the
//! blocking SOCKS crates are unmaintained or bring an async runtime, and the
//! part needed is a dozen fields.

use super::url::HostPort;
use std::io::{self, Read, Write};
use std::net::{IpAddr, TcpStream};

/// Ask the proxy on `stream` to connect to `target`. On `Ok` the stream
/// carries the target's bytes.
pub(crate) fn connect(stream: &mut TcpStream, target: &HostPort) -> io::Result<()> {
    let fail = |what: String| io::Error::other(format!("SOCKS5 proxy: {what}"));
    // Greeting: version 5, one method, "no authentication".
    stream.write_all(&[5, 1, 0])?;
    let mut reply = [0u8; 2];
    stream.read_exact(&mut reply)?;
    if reply[0] != 5 {
        return Err(fail(format!("not a SOCKS5 proxy (version byte {})", reply[0])));
    }
    if reply[1] != 0 {
        return Err(fail("it requires authentication, which is not supported".into()));
    }
    let mut req = vec![5, 1, 0];
    match target.host.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => {
            req.push(1);
            req.extend_from_slice(&a.octets());
        }
        Ok(IpAddr::V6(a)) => {
            req.push(4);
            req.extend_from_slice(&a.octets());
        }
        Err(_) => {
            let name = target.host.as_bytes();
            let len = u8::try_from(name.len()).map_err(|_| fail(format!("host name {} is too long", target.host)))?;
            req.push(3);
            req.push(len);
            req.extend_from_slice(name);
        }
    }
    req.extend_from_slice(&target.port.to_be_bytes());
    stream.write_all(&req)?;
    let mut head = [0u8; 4];
    stream.read_exact(&mut head)?;
    if head[1] != 0 {
        return Err(fail(format!("it could not connect to {}: {}", target.to_url_form(), reply_text(head[1]))));
    }
    // The bound address, which we do not need.
    let skip = match head[3] {
        1 => 4,
        4 => 16,
        3 => {
            let mut n = [0u8; 1];
            stream.read_exact(&mut n)?;
            usize::from(n[0])
        }
        t => return Err(fail(format!("unknown address type {t} in its reply"))),
    };
    let mut rest = vec![0u8; skip + 2];
    stream.read_exact(&mut rest)?;
    Ok(())
}

/// RFC 1928's reply codes.
fn reply_text(code: u8) -> &'static str {
    match code {
        1 => "general failure",
        2 => "not allowed by its rules",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "unknown error",
    }
}
