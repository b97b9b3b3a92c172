//! `socket:` URLs: `socket:host:port[?proxy=socks5:host:port]`.
//!
//! Owns parsing them: bracketed IPv6 addresses for the target and the
//! proxy, host names kept as names (so that an `.onion` name is resolved by
//! the proxy, never here), and the refusal of anything else, naming the URL.
//! It must not connect or resolve anything.

use crate::{Error, Result};

/// A host and port as written in a `socket:` URL.
///
/// ```
/// use cln_backup::destination::{HostPort, SocketUrl};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let url = SocketUrl::parse("socket:[::1]:8700")?;
/// assert_eq!(url.target, HostPort { host: "::1".into(), port: 8700 });
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    /// The host: an IPv4 or IPv6 address (without brackets) or a name.
    pub host: String,
    /// The TCP port.
    pub port: u16,
}

impl HostPort {
    /// `host:port`, with brackets around an IPv6 address.
    ///
    /// ```
    /// use cln_backup::destination::HostPort;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let v6 = HostPort { host: "::1".into(), port: 8700 };
    /// assert_eq!(v6.to_url_form(), "[::1]:8700");
    /// let name = HostPort { host: "backup.example".into(), port: 8700 };
    /// assert_eq!(name.to_url_form(), "backup.example:8700");
    /// # Ok(()) }
    /// ```
    pub fn to_url_form(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// A parsed `socket:` URL.
///
/// ```
/// use cln_backup::destination::SocketUrl;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let url = SocketUrl::parse("socket:abcdefghij.onion:8700?proxy=socks5:127.0.0.1:9050")?;
/// assert_eq!(url.url, "socket:abcdefghij.onion:8700?proxy=socks5:127.0.0.1:9050");
/// // The name is kept for the proxy to resolve.
/// assert_eq!(url.target.host, "abcdefghij.onion");
/// assert_eq!(url.proxy.map(|p| p.to_url_form()).as_deref(), Some("127.0.0.1:9050"));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SocketUrl {
    /// The URL as written.
    pub url: String,
    /// The backup server.
    pub target: HostPort,
    /// A SOCKS5 proxy to reach it through (Tor), when given.
    pub proxy: Option<HostPort>,
}

impl SocketUrl {
    /// Parse `socket:host:port[?proxy=socks5:host:port]`. The host is an
    /// IPv4 address, a bracketed IPv6 address (`socket:[::1]:8700`) or a
    /// name; the one parameter is `proxy`, of type `socks5`. Anything else
    /// is [`Error::Destination`] naming the URL and what is wrong.
    ///
    /// ```
    /// use cln_backup::destination::SocketUrl;
    /// use cln_backup::Error;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let url = SocketUrl::parse("socket:192.0.2.7:8700")?;
    /// assert_eq!((url.target.host.as_str(), url.target.port), ("192.0.2.7", 8700));
    /// assert!(url.proxy.is_none());
    /// // An IPv6 address needs brackets.
    /// let err = SocketUrl::parse("socket:::1:8700").unwrap_err();
    /// assert!(matches!(&err, Error::Destination { url, .. } if url == "socket:::1:8700"));
    /// assert!(err.to_string().contains("must be in brackets"), "{err}");
    /// # Ok(()) }
    /// ```
    pub fn parse(url: &str) -> Result<SocketUrl> {
        let refuse = |what: String| Error::Destination { url: url.to_string(), what };
        let Some(rest) = url.strip_prefix("socket:") else {
            return Err(refuse("a socket URL starts with socket: (socket:host:port)".into()));
        };
        let (target, query) = match rest.split_once('?') {
            Some((t, q)) => (t, Some(q)),
            None => (rest, None),
        };
        let target = host_port(target).map_err(|what| refuse(format!("{what} (socket:host:port)")))?;
        let mut proxy = None;
        if let Some(query) = query {
            for param in query.split('&') {
                let (key, value) = param.split_once('=').unwrap_or((param, ""));
                match key {
                    "proxy" => {
                        if proxy.is_some() {
                            return Err(refuse("the proxy parameter is given twice".into()));
                        }
                        let Some((kind, at)) = value.split_once(':') else {
                            return Err(refuse(format!(
                                "proxy {value:?} is not socks5:host:port (as in ?proxy=socks5:127.0.0.1:9050)"
                            )));
                        };
                        if kind != "socks5" {
                            return Err(refuse(format!("unknown proxy type {kind:?}: only socks5 is supported")));
                        }
                        proxy = Some(host_port(at).map_err(|what| refuse(format!("proxy: {what}")))?);
                    }
                    _ => {
                        return Err(refuse(format!("unknown parameter {key:?}: the only parameter is proxy")));
                    }
                }
            }
        }
        Ok(SocketUrl { url: url.to_string(), target, proxy })
    }
}

/// `host:port` or `[v6]:port`.
fn host_port(s: &str) -> std::result::Result<HostPort, String> {
    let (host, port) = if let Some(inner) = s.strip_prefix('[') {
        let Some((host, after)) = inner.split_once(']') else {
            return Err(format!("unterminated bracket in {s:?}"));
        };
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("{host:?} in brackets is not an IPv6 address"));
        }
        let Some(port) = after.strip_prefix(':') else {
            return Err(format!("the port is missing after [{host}]"));
        };
        (host, port)
    } else {
        let Some((host, port)) = s.rsplit_once(':') else {
            return Err(format!("the port is missing in {s:?}"));
        };
        if host.contains(':') {
            return Err(format!("{host:?}: an IPv6 address must be in brackets, as in [::1]:8700"));
        }
        (host, port)
    };
    if host.is_empty() {
        return Err(format!("the host is missing in {s:?}"));
    }
    if host.chars().any(|c| c.is_whitespace() || c == '/' || c == '@') {
        return Err(format!("{host:?} is not a host name or address"));
    }
    if port.is_empty() {
        return Err(format!("the port is missing in {s:?}"));
    }
    let port = match port.parse::<u16>() {
        Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => p,
        _ => return Err(format!("bad port {port:?} (1 to 65535)")),
    };
    Ok(HostPort { host: host.to_string(), port })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn hp(host: &str, port: u16) -> HostPort {
        HostPort { host: host.into(), port }
    }

    #[test]
    fn the_forms_the_python_plugin_writes_parse() {
        let u = SocketUrl::parse("socket:127.0.0.1:8700").unwrap();
        assert_eq!((u.target, u.proxy), (hp("127.0.0.1", 8700), None));
        let u = SocketUrl::parse("socket:[::1]:1234").unwrap();
        assert_eq!(u.target, hp("::1", 1234));
        assert_eq!(u.target.to_url_form(), "[::1]:1234");
        let u = SocketUrl::parse("socket:backup.example:9000").unwrap();
        assert_eq!(u.target, hp("backup.example", 9000));
        let u = SocketUrl::parse("socket:abcdefghij.onion:8700?proxy=socks5:127.0.0.1:9050").unwrap();
        assert_eq!(u.target, hp("abcdefghij.onion", 8700));
        assert_eq!(u.proxy, Some(hp("127.0.0.1", 9050)));
        let u = SocketUrl::parse("socket:[fe80::1]:1?proxy=socks5:[::1]:9050").unwrap();
        assert_eq!(u.proxy, Some(hp("::1", 9050)));
    }

    #[test]
    fn malformed_urls_are_refused_naming_the_url() {
        for (url, what) in [
            ("socket:127.0.0.1", "port is missing"),
            ("socket:127.0.0.1:", "port is missing"),
            ("socket:host:99999", "bad port"),
            ("socket:host:0", "bad port"),
            ("socket:host:12a", "bad port"),
            ("socket:host:+12", "bad port"),
            ("socket:[::1:8700", "unterminated bracket"),
            ("socket:[::1]", "port is missing"),
            ("socket:[nothost]:1", "not an IPv6 address"),
            ("socket:::1:8700", "must be in brackets"),
            ("socket::8700", "host is missing"),
            ("socket:h:1?timeout=3", "unknown parameter"),
            ("socket:h:1?proxy=http:127.0.0.1:8080", "unknown proxy type"),
            ("socket:h:1?proxy=socks5:127.0.0.1", "proxy: the port is missing"),
            ("socket:h:1?proxy=socks5", "not socks5:host:port"),
            ("socket:h:1?proxy=socks5:a:1&proxy=socks5:b:2", "twice"),
        ] {
            let e = SocketUrl::parse(url).unwrap_err();
            assert!(matches!(&e, Error::Destination { url: u, .. } if u == url), "{url}: {e}");
            assert!(e.to_string().contains(what), "{url}: {e}");
            assert!(e.to_string().starts_with(url), "{url}: {e}");
        }
    }
}
