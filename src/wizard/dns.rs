//! A minimal DNS stub resolver for SRV (RFC 2782) and MX (RFC 1035 §3.3.9) lookups.
//!
//! One question per query over UDP (RFC 1035 §4.2.1) to the first `nameserver` in
//! `/etc/resolv.conf` (or the one the caller names), with a timeout; a truncated answer (TC
//! bit) is asked again over TCP (RFC 1035 §4.2.2, RFC 7766). Replies are parsed with bounds
//! checks everywhere, names may be compressed (RFC 1035 §4.1.4) and pointer loops are cut off:
//! a malformed packet gives an error, never a panic.
//!
//! NOTE: written here instead of adding a resolver crate: two record types and one server are
//! all the wizard needs.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// Record type SRV (RFC 2782).
pub const TYPE_SRV: u16 = 33;
/// Record type MX (RFC 1035 §3.2.2).
pub const TYPE_MX: u16 = 15;

/// An SRV record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Srv {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    /// The target host, without a trailing dot; `.` (service not offered) is kept as `""`.
    pub target: String,
}

/// An MX record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mx {
    pub preference: u16,
    pub exchange: String,
}

/// One answer record's data, for the types we ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Srv(Srv),
    Mx(Mx),
}

/// The first `nameserver` in a resolv.conf text, on port 53.
pub fn nameserver_from(text: &str) -> Option<SocketAddr> {
    text.lines()
        .map(|l| l.split(['#', ';']).next().unwrap_or(""))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("nameserver")).then(|| words.next())?
        })
        .find_map(|addr| {
            // NOTE: a link-local IPv6 address may carry a zone (`fe80::1%eth0`); skip those.
            addr.parse::<IpAddr>().ok()
        })
        .map(|ip| SocketAddr::new(ip, 53))
}

/// The system's nameserver from `/etc/resolv.conf`.
pub fn system_nameserver() -> Result<SocketAddr, String> {
    let path = Path::new("/etc/resolv.conf");
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    nameserver_from(&text).ok_or_else(|| format!("no nameserver in {}", path.display()))
}

/// Asks `server` for records of `qtype` at `name`; an empty list if the name has none.
pub async fn query(
    server: SocketAddr,
    name: &str,
    qtype: u16,
    timeout: Duration,
) -> Result<Vec<Record>, String> {
    let id = random_id();
    let packet = build_query(id, name, qtype)?;
    let what = format!("{name} {}", type_name(qtype));
    let reply = tokio::time::timeout(timeout, udp_exchange(server, &packet))
        .await
        .map_err(|_| {
            format!(
                "no answer from the DNS server {server} within {} s for {what}",
                timeout.as_secs_f64().ceil() as u64
            )
        })?
        .map_err(|e| format!("DNS query to {server} for {what} failed: {e}"))?;
    match parse_response(&reply, id, qtype) {
        Err(ParseError::Truncated) => {
            let reply = tokio::time::timeout(timeout, tcp_exchange(server, &packet))
                .await
                .map_err(|_| {
                    format!(
                        "the DNS answer for {what} was truncated and {server} did not answer over TCP within {} s",
                        timeout.as_secs_f64().ceil() as u64
                    )
                })?
                .map_err(|e| format!("the DNS answer for {what} was truncated and TCP failed: {e}"))?;
            parse_response(&reply, id, qtype).map_err(|e| format!("{what}: {e}"))
        }
        other => other.map_err(|e| format!("{what}: {e}")),
    }
}

fn type_name(qtype: u16) -> &'static str {
    match qtype {
        TYPE_SRV => "SRV",
        TYPE_MX => "MX",
        _ => "record",
    }
}

fn random_id() -> u16 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    );
    h.finish() as u16
}

async fn udp_exchange(server: SocketAddr, packet: &[u8]) -> std::io::Result<Vec<u8>> {
    let bind: SocketAddr = if server.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(server).await?;
    socket.send(packet).await?;
    let mut buf = vec![0u8; 4096];
    let n = socket.recv(&mut buf).await?;
    buf.truncate(n);
    Ok(buf)
}

async fn tcp_exchange(server: SocketAddr, packet: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut tcp = TcpStream::connect(server).await?;
    let len = u16::try_from(packet.len()).map_err(std::io::Error::other)?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(packet);
    tcp.write_all(&framed).await?;
    let mut len = [0u8; 2];
    tcp.read_exact(&mut len).await?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    tcp.read_exact(&mut buf).await?;
    Ok(buf)
}

/// Builds a query for `name` (recursion desired, class IN).
pub fn build_query(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>, String> {
    let mut p = Vec::with_capacity(64);
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&[0x01, 0x00]); // RD
    p.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // QDCOUNT 1
    let name = name.trim_end_matches('.');
    if name.len() > 253 {
        return Err(format!("{name} is too long for DNS"));
    }
    for label in name.split('.') {
        let len = u8::try_from(label.len())
            .ok()
            .filter(|l| (1..=63).contains(l))
            .ok_or_else(|| format!("{} is not a valid DNS name", crate::sanitize::line(name)))?;
        p.push(len);
        p.extend_from_slice(label.as_bytes());
    }
    p.push(0);
    p.extend_from_slice(&qtype.to_be_bytes());
    p.extend_from_slice(&1u16.to_be_bytes());
    Ok(p)
}

/// Why a reply could not be used.
#[derive(Debug, PartialEq, Eq)]
pub enum ParseError {
    /// The TC bit is set: ask again over TCP.
    Truncated,
    /// Anything else, with a one-line reason.
    Bad(String),
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::Truncated => f.write_str("the answer was truncated"),
            ParseError::Bad(s) => f.write_str(s),
        }
    }
}

fn bad<T>(why: &str) -> Result<T, ParseError> {
    Err(ParseError::Bad(format!("malformed DNS answer: {why}")))
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn u8(&mut self) -> Result<u8, ParseError> {
        let b = self.data.get(self.pos).copied();
        self.pos += 1;
        b.map_or_else(|| bad("it ends early"), Ok)
    }
    fn u16(&mut self) -> Result<u16, ParseError> {
        Ok(u16::from(self.u8()?) << 8 | u16::from(self.u8()?))
    }
    fn u32(&mut self) -> Result<u32, ParseError> {
        Ok(u32::from(self.u16()?) << 16 | u32::from(self.u16()?))
    }
    fn skip(&mut self, n: usize) -> Result<(), ParseError> {
        if self.pos + n > self.data.len() {
            return bad("a record runs past the end");
        }
        self.pos += n;
        Ok(())
    }
    /// Reads a possibly compressed name at the cursor, advancing past it.
    fn name(&mut self) -> Result<String, ParseError> {
        let (name, next) = read_name(self.data, self.pos)?;
        self.pos = next;
        Ok(name)
    }
}

/// Reads the name at `start`; returns it and the offset just after it (in the original place).
fn read_name(data: &[u8], start: usize) -> Result<(String, usize), ParseError> {
    let mut labels: Vec<String> = Vec::new();
    let mut pos = start;
    let mut end = None;
    let mut jumps = 0;
    let mut total = 0usize;
    loop {
        let Some(&len) = data.get(pos) else {
            return bad("a name runs past the end");
        };
        match len & 0xC0 {
            0x00 if len == 0 => {
                let after = end.unwrap_or(pos + 1);
                return Ok((labels.join("."), after));
            }
            0x00 => {
                let n = usize::from(len);
                let Some(label) = data.get(pos + 1..pos + 1 + n) else {
                    return bad("a label runs past the end");
                };
                total += n + 1;
                if total > 255 {
                    return bad("a name is longer than 255 octets");
                }
                labels.push(
                    label
                        .iter()
                        .map(|&b| {
                            if b.is_ascii_graphic() {
                                char::from(b)
                            } else {
                                '?'
                            }
                        })
                        .collect(),
                );
                pos += 1 + n;
            }
            0xC0 => {
                let Some(&low) = data.get(pos + 1) else {
                    return bad("a compression pointer is cut off");
                };
                jumps += 1;
                if jumps > 32 {
                    return bad("compression pointers loop");
                }
                if end.is_none() {
                    end = Some(pos + 2);
                }
                let target = usize::from(len & 0x3F) << 8 | usize::from(low);
                if target >= data.len() {
                    return bad("a compression pointer points past the end");
                }
                pos = target;
            }
            _ => return bad("an unknown label type"),
        }
    }
}

/// Parses a reply to query `id` and returns the answers of type `qtype`.
pub fn parse_response(data: &[u8], id: u16, qtype: u16) -> Result<Vec<Record>, ParseError> {
    let mut r = Reader { data, pos: 0 };
    let got_id = r.u16()?;
    let flags = r.u16()?;
    let qd = r.u16()?;
    let an = r.u16()?;
    let _ns = r.u16()?;
    let _ar = r.u16()?;
    if got_id != id {
        return bad("its id does not match the question");
    }
    if flags & 0x8000 == 0 {
        return bad("it is a question, not an answer");
    }
    if flags & 0x0200 != 0 {
        return Err(ParseError::Truncated);
    }
    match flags & 0x000F {
        0 => {}
        // NXDOMAIN: the name does not exist, which simply means no records.
        3 => return Ok(Vec::new()),
        2 => return Err(ParseError::Bad("the DNS server failed (SERVFAIL)".into())),
        5 => return Err(ParseError::Bad("the DNS server refused the query".into())),
        code => {
            return Err(ParseError::Bad(format!(
                "the DNS server answered rcode {code}"
            )));
        }
    }
    for _ in 0..qd {
        r.name()?;
        r.skip(4)?;
    }
    let mut out = Vec::new();
    for _ in 0..an {
        r.name()?;
        let rtype = r.u16()?;
        let _class = r.u16()?;
        let _ttl = r.u32()?;
        let rdlen = usize::from(r.u16()?);
        let rdata_start = r.pos;
        if rdata_start + rdlen > data.len() {
            return bad("record data runs past the end");
        }
        if rtype == qtype {
            let mut rd = Reader {
                data,
                pos: rdata_start,
            };
            let record = match rtype {
                TYPE_SRV => Record::Srv(Srv {
                    priority: rd.u16()?,
                    weight: rd.u16()?,
                    port: rd.u16()?,
                    target: rd.name()?,
                }),
                TYPE_MX => Record::Mx(Mx {
                    preference: rd.u16()?,
                    exchange: rd.name()?,
                }),
                _ => return bad("an unexpected record type"),
            };
            if rd.pos > rdata_start + rdlen {
                return bad("record data is longer than its length");
            }
            out.push(record);
        }
        // NOTE: other types (a CNAME before the SRV, say) are skipped.
        r.pos = rdata_start + rdlen;
    }
    Ok(out)
}

/// Builds a reply packet (for tests and the test DNS server): `answers` are (name, type,
/// rdata) with names written uncompressed except where the rdata already holds pointers.
pub fn build_reply(
    query: &[u8],
    rcode: u8,
    truncated: bool,
    answers: &[(String, u16, Vec<u8>)],
) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(query.get(..2).unwrap_or(&[0, 0]));
    p.push(0x81 | if truncated { 0x02 } else { 0 });
    p.push(0x80 | (rcode & 0x0F));
    p.extend_from_slice(&[0, 1]);
    p.extend_from_slice(&u16::try_from(answers.len()).unwrap_or(0).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0]);
    p.extend_from_slice(query.get(12..).unwrap_or(&[]));
    for (name, rtype, rdata) in answers {
        p.extend_from_slice(&encode_name(name));
        p.extend_from_slice(&rtype.to_be_bytes());
        p.extend_from_slice(&1u16.to_be_bytes());
        p.extend_from_slice(&300u32.to_be_bytes());
        p.extend_from_slice(&u16::try_from(rdata.len()).unwrap_or(0).to_be_bytes());
        p.extend_from_slice(rdata);
    }
    p
}

/// Encodes a name uncompressed (labels of at most 63 octets are assumed).
pub fn encode_name(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        out.push(label.len().min(63) as u8);
        out.extend_from_slice(label.as_bytes().get(..label.len().min(63)).unwrap_or(&[]));
    }
    out.push(0);
    out
}

/// SRV rdata for `target` (use `.` for "no service").
pub fn srv_rdata(priority: u16, weight: u16, port: u16, target: &str) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&priority.to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    out.extend_from_slice(&port.to_be_bytes());
    out.extend_from_slice(&encode_name(target));
    out
}

/// MX rdata for `exchange`.
pub fn mx_rdata(preference: u16, exchange: &str) -> Vec<u8> {
    let mut out = preference.to_be_bytes().to_vec();
    out.extend_from_slice(&encode_name(exchange));
    out
}

/// The question name of a query packet (for the test DNS server), if it is well formed.
pub fn question(query: &[u8]) -> Option<(String, u16)> {
    let (name, next) = read_name(query, 12).ok()?;
    let t = query.get(next..next + 2)?;
    Some((name, u16::from_be_bytes([*t.first()?, *t.get(1)?])))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn resolv_conf_gives_the_first_nameserver() {
        let text = "# comment\nsearch example.com\nnameserver fe80::1%eth0\nnameserver 10.0.0.2 # x\nnameserver 10.0.0.3\n";
        assert_eq!(
            nameserver_from(text),
            Some("10.0.0.2:53".parse().expect("addr"))
        );
        assert_eq!(nameserver_from("search x\n"), None);
    }

    #[test]
    fn query_and_reply_round_trip_with_compression() {
        let q = build_query(0x1234, "_imaps._tcp.example.com", TYPE_SRV).expect("query");
        assert_eq!(
            question(&q),
            Some(("_imaps._tcp.example.com".into(), TYPE_SRV))
        );
        // An answer whose owner name is a pointer to the question (offset 12) and whose target
        // ends in a pointer to "example.com" inside the question.
        let mut rdata = vec![0, 10, 0, 5, 0x03, 0xE1, 4];
        rdata.extend_from_slice(b"imap");
        rdata.extend_from_slice(&[0xC0, 12 + 7 + 5]);
        let mut reply = build_reply(&q, 0, false, &[]);
        reply[7] = 1; // ANCOUNT
        reply.extend_from_slice(&[0xC0, 12]);
        reply.extend_from_slice(&TYPE_SRV.to_be_bytes());
        reply.extend_from_slice(&[0, 1, 0, 0, 1, 0]);
        reply.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        reply.extend_from_slice(&rdata);
        let records = parse_response(&reply, 0x1234, TYPE_SRV).expect("parse");
        assert_eq!(
            records,
            [Record::Srv(Srv {
                priority: 10,
                weight: 5,
                port: 993,
                target: "imap.example.com".into()
            })]
        );
    }

    #[test]
    fn rcodes_ids_and_truncation() {
        let q = build_query(7, "example.com", TYPE_MX).expect("query");
        assert_eq!(
            parse_response(&build_reply(&q, 3, false, &[]), 7, TYPE_MX),
            Ok(vec![])
        );
        assert!(matches!(
            parse_response(&build_reply(&q, 2, false, &[]), 7, TYPE_MX),
            Err(ParseError::Bad(m)) if m.contains("SERVFAIL")
        ));
        assert_eq!(
            parse_response(&build_reply(&q, 0, true, &[]), 7, TYPE_MX),
            Err(ParseError::Truncated)
        );
        assert!(parse_response(&build_reply(&q, 0, false, &[]), 8, TYPE_MX).is_err());
        let reply = build_reply(
            &q,
            0,
            false,
            &[("example.com".into(), TYPE_MX, mx_rdata(5, "mx.example.net"))],
        );
        assert_eq!(
            parse_response(&reply, 7, TYPE_MX),
            Ok(vec![Record::Mx(Mx {
                preference: 5,
                exchange: "mx.example.net".into()
            })])
        );
    }

    #[test]
    fn pointer_loops_and_cut_packets_are_errors() {
        let q = build_query(1, "a.b", TYPE_MX).expect("query");
        let mut reply = build_reply(&q, 0, false, &[]);
        reply[7] = 1;
        let at = reply.len();
        reply.extend_from_slice(&[0xC0, (at as u8)]); // points at itself
        reply.extend_from_slice(&[0; 10]);
        assert!(
            matches!(parse_response(&reply, 1, TYPE_MX), Err(ParseError::Bad(m)) if m.contains("loop"))
        );
        let full = build_reply(
            &q,
            0,
            false,
            &[("a.b".into(), TYPE_MX, mx_rdata(1, "mx.a.b"))],
        );
        for cut in 0..full.len() {
            assert!(
                parse_response(&full[..cut], 1, TYPE_MX).is_err(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn invalid_names_are_refused() {
        assert!(build_query(1, "a..b", TYPE_MX).is_err());
        assert!(build_query(1, &"x".repeat(64), TYPE_MX).is_err());
    }

    proptest! {
        #[test]
        fn never_panics_on_garbage(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_response(&data, 0, TYPE_SRV);
            let _ = parse_response(&data, 0, TYPE_MX);
            let _ = question(&data);
        }
    }
}
