//! A minimal HTTPS client (HTTP/1.1, RFC 9112): GET for autoconfig files, form POST for OAuth2.
//!
//! Only `https://` URLs, verified TLS (through [`crate::tls::handshake`]), at most
//! [`MAX_REDIRECTS`] redirects and each of them to HTTPS again, a body of at most
//! [`MAX_BODY`] bytes with `Content-Length`, chunked or read-to-close framing, and one timeout
//! over the whole fetch. [`post_form`] sends an `application/x-www-form-urlencoded` body
//! (the OAuth2 token and device endpoints, RFC 6749 §4.1.3, RFC 8628 §3.1) and returns the
//! status with the body, because those endpoints answer errors as JSON with status 400. That
//! is all mailbag needs, so no HTTP crate is pulled in.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::discover::Discovery;
use crate::sanitize;

/// Redirects followed before giving up.
pub const MAX_REDIRECTS: usize = 3;
/// The largest body accepted, in bytes.
pub const MAX_BODY: usize = 1024 * 1024;
/// The largest header block accepted, in bytes.
const MAX_HEADERS: usize = 64 * 1024;

/// An `https://host[:port]/path?query` URL, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub host: String,
    pub port: u16,
    /// The path and query, starting with `/`.
    pub target: String,
}

impl Url {
    /// Parses an HTTPS URL; anything else (plain `http://` included) is refused.
    pub fn parse(url: &str) -> Result<Url, String> {
        let Some(rest) = url.strip_prefix("https://") else {
            return Err(format!(
                "refusing {}: only https:// is used",
                sanitize::line(url)
            ));
        };
        let (authority, target) = match rest.find(['/', '?']) {
            Some(i) => (
                rest.get(..i).unwrap_or(""),
                rest.get(i..).unwrap_or("/").to_string(),
            ),
            None => (rest, "/".to_string()),
        };
        let target = if target.starts_with('?') {
            format!("/{target}")
        } else {
            target
        };
        let target = target.split('#').next().unwrap_or("/").to_string();
        if authority.contains('@') {
            return Err("refusing a URL with user information".into());
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| format!("invalid port in {}", sanitize::line(url)))?,
            ),
            None => (authority, 443),
        };
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return Err(format!("invalid host in {}", sanitize::line(url)));
        }
        if target.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(format!("invalid path in {}", sanitize::line(url)));
        }
        Ok(Url {
            host: host.to_ascii_lowercase(),
            port,
            target,
        })
    }

    /// Resolves a `Location` header against this URL (absolute `https://` or `/path` only).
    pub fn join(&self, location: &str) -> Result<Url, String> {
        if location.starts_with("https://") {
            Url::parse(location)
        } else if location.starts_with('/') && !location.starts_with("//") {
            Ok(Url {
                target: location.to_string(),
                ..self.clone()
            })
        } else {
            Err(format!(
                "refusing the redirect to {}: only https:// is followed",
                sanitize::line(location)
            ))
        }
    }
}

/// Fetches `url` and returns the body as text; the message of an error is one line.
pub async fn get(discovery: &Discovery, url: &str, timeout: Duration) -> Result<String, String> {
    match tokio::time::timeout(timeout, get_inner(discovery, url)).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "no answer within {} s",
            timeout.as_secs_f64().ceil() as u64
        )),
    }
}

async fn get_inner(discovery: &Discovery, url: &str) -> Result<String, String> {
    let mut url = Url::parse(url)?;
    for _ in 0..=MAX_REDIRECTS {
        match fetch_once(discovery, &url).await? {
            Response::Body(body) => {
                return String::from_utf8(body).map_err(|_| "the body is not UTF-8 text".into());
            }
            Response::Redirect(location) => url = url.join(&location)?,
        }
    }
    Err(format!("more than {MAX_REDIRECTS} redirects"))
}

/// What one request gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Response {
    Body(Vec<u8>),
    Redirect(String),
}

async fn fetch_once(discovery: &Discovery, url: &Url) -> Result<Response, String> {
    let tcp = discovery.connect(&url.host, url.port).await?;
    exchange(
        tcp,
        url,
        &discovery.trust,
        get_request(url).as_bytes(),
        parse_response,
    )
    .await
}

/// The GET request for `url`.
fn get_request(url: &Url) -> String {
    format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: mailbag/{}\r\nAccept: application/xml, text/xml, */*\r\nConnection: close\r\n\r\n",
        url.target,
        host_header(url),
        env!("CARGO_PKG_VERSION")
    )
}

/// A reply from [`post_form`]: the status code and the body, whatever the status.
pub struct Reply {
    pub status: u16,
    /// The body. NOTE: it may hold tokens; never log or format it.
    pub body: Vec<u8>,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply")
            .field("status", &self.status)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// POSTs `form` as `application/x-www-form-urlencoded` to the HTTPS `url`, trusting `trust`
/// beyond the system CAs; redirects are not followed. The form values may be secrets: they
/// never appear in an error.
pub async fn post_form(
    url: &str,
    form: &[(&str, &str)],
    trust: &crate::tls::TlsTrust,
    timeout: Duration,
) -> Result<Reply, String> {
    let url = Url::parse(url)?;
    let body = form_encode(form);
    let mut request = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: mailbag/{}\r\nAccept: application/json\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        url.target,
        host_header(&url),
        env!("CARGO_PKG_VERSION"),
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body.as_bytes());
    let run = async {
        let tcp = crate::tls::connect_tcp(&url.host, url.port)
            .await
            .map_err(|e| e.to_string())?;
        exchange(tcp, &url, trust, &request, |buf, eof| {
            Ok(parse_reply(buf, eof, true)?.map(|(status, _, body)| Reply { status, body }))
        })
        .await
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "no answer from {} within {} s",
            url.host,
            timeout.as_secs_f64().ceil() as u64
        )),
    }
}

/// `host` or `host:port` when the port is not 443, for the `Host` header.
fn host_header(url: &Url) -> String {
    if url.port == 443 {
        url.host.clone()
    } else {
        format!("{}:{}", url.host, url.port)
    }
}

/// `a=b&c=d` with every byte outside the unreserved set percent-encoded (WHATWG
/// `application/x-www-form-urlencoded`, which RFC 6749 Appendix B refers to).
pub fn form_encode(form: &[(&str, &str)]) -> String {
    form.iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encodes everything but `A-Z a-z 0-9 - . _ ~` (RFC 3986 §2.3).
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes and `+` (as a space) in a query or form value; `None` if an escape
/// is malformed or the result is not UTF-8.
pub fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// TLS to `url`, write `request`, read until `parse` has a complete answer.
async fn exchange<T>(
    tcp: tokio::net::TcpStream,
    url: &Url,
    trust: &crate::tls::TlsTrust,
    request: &[u8],
    parse: impl Fn(&[u8], bool) -> Result<Option<T>, String>,
) -> Result<T, String> {
    let mut tls = crate::tls::handshake(tcp, &url.host, trust)
        .await
        .map_err(|e| e.to_string())?;
    tls.write_all(request)
        .await
        .map_err(|e| format!("cannot send the request: {e}"))?;
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        if let Some(r) = parse(&buf, false)? {
            return Ok(r);
        }
        match tls.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or(&[])),
            // NOTE: a server that closes without TLS close_notify after a complete
            // read-to-close body is common; what was read is judged below.
            Err(_) if !buf.is_empty() => break,
            Err(e) => return Err(format!("the connection failed: {e}")),
        }
        if buf.len() > MAX_HEADERS + MAX_BODY + 64 * 1024 {
            return Err(format!("the response is larger than {MAX_BODY} bytes"));
        }
    }
    parse(&buf, true)?.ok_or_else(|| "the connection closed in the middle of the response".into())
}

/// Parses a response from `buf`: `Ok(None)` while more bytes are needed (`eof` says none
/// will come). Redirects become [`Response::Redirect`]; any other status but 200 is an error.
pub fn parse_response(buf: &[u8], eof: bool) -> Result<Option<Response>, String> {
    let Some((code, location, body)) = parse_reply(buf, eof, false)? else {
        return Ok(None);
    };
    if matches!(code, 301 | 302 | 303 | 307 | 308) {
        return match location {
            Some(l) => Ok(Some(Response::Redirect(l))),
            None => Err(format!("HTTP {code} without a Location")),
        };
    }
    if code != 200 {
        // NOTE: only the status line: the body that came along need not be UTF-8.
        let status_line = buf.split(|b| *b == b'\r').next().unwrap_or_default();
        let reason = std::str::from_utf8(status_line)
            .ok()
            .and_then(|l| l.splitn(3, ' ').nth(2))
            .unwrap_or("");
        return Err(format!("HTTP {code} {}", sanitize::line(reason)));
    }
    Ok(Some(Response::Body(body)))
}

/// Status, `Location` and body of one response.
type RawReply = (u16, Option<String>, Vec<u8>);

/// Parses status, `Location` and body from `buf`: `Ok(None)` while more bytes are needed.
/// Without `error_bodies`, only a 200 reply waits for its body.
fn parse_reply(buf: &[u8], eof: bool, error_bodies: bool) -> Result<Option<RawReply>, String> {
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        if buf.len() > MAX_HEADERS {
            return Err("the response headers are too long".into());
        }
        return if eof && !buf.is_empty() {
            Err("the response ends inside its headers".into())
        } else if eof {
            Err("the server closed the connection without answering".into())
        } else {
            Ok(None)
        };
    };
    let head = std::str::from_utf8(buf.get(..head_end).unwrap_or(&[]))
        .map_err(|_| "the response headers are not text".to_string())?;
    let body = buf.get(head_end + 4..).unwrap_or(&[]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let code = parts.next().and_then(|c| c.parse::<u16>().ok());
    let (true, Some(code)) = (version.starts_with("HTTP/1."), code) else {
        return Err(format!(
            "not an HTTP response: {}",
            sanitize::line(status_line)
        ));
    };
    let mut length = None;
    let mut chunked = false;
    let mut location = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err("a malformed response header".into());
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                length = Some(
                    value
                        .parse::<usize>()
                        .map_err(|_| "an invalid Content-Length".to_string())?,
                )
            }
            "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
            "location" => location = Some(value.to_string()),
            _ => {}
        }
    }
    // NOTE: a redirect's body is never looked at; do not wait for one.
    if matches!(code, 301 | 302 | 303 | 307 | 308 | 204 | 304) || (code != 200 && !error_bodies) {
        return Ok(Some((code, location, Vec::new())));
    }
    if chunked {
        return match dechunk(body)? {
            Some(b) => Ok(Some((code, location, b))),
            None if eof => Err("the chunked body is cut off".into()),
            None => Ok(None),
        };
    }
    if let Some(n) = length {
        if n > MAX_BODY {
            return Err(format!("the body is larger than {MAX_BODY} bytes"));
        }
        return match body.get(..n) {
            Some(b) => Ok(Some((code, location, b.to_vec()))),
            None if eof => Err("the body is shorter than its Content-Length".into()),
            None => Ok(None),
        };
    }
    if body.len() > MAX_BODY {
        return Err(format!("the body is larger than {MAX_BODY} bytes"));
    }
    Ok(eof.then(|| (code, location, body.to_vec())))
}

/// Decodes a chunked body (RFC 9112 §7.1); `Ok(None)` if it is not complete yet.
fn dechunk(mut data: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = find(data, b"\r\n") else {
            return Ok(None);
        };
        let line = std::str::from_utf8(data.get(..line_end).unwrap_or(&[]))
            .map_err(|_| "a malformed chunk size".to_string())?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("a malformed chunk size {}", sanitize::line(size_text)))?;
        data = data.get(line_end + 2..).unwrap_or(&[]);
        if size == 0 {
            // NOTE: trailers are ignored; the body is complete once the size-0 chunk is seen.
            return Ok(Some(out));
        }
        if out.len().saturating_add(size) > MAX_BODY {
            return Err(format!("the body is larger than {MAX_BODY} bytes"));
        }
        let Some(chunk) = data.get(..size) else {
            return Ok(None);
        };
        out.extend_from_slice(chunk);
        match data.get(size..size + 2) {
            Some(b"\r\n") => data = data.get(size + 2..).unwrap_or(&[]),
            Some(_) => return Err("a chunk is not followed by CRLF".into()),
            None => return Ok(None),
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_refuse_plain_http() {
        let u =
            Url::parse("https://Autoconfig.Example.org/mail/config-v1.1.xml?e=a%40b").expect("ok");
        assert_eq!(u.host, "autoconfig.example.org");
        assert_eq!(u.port, 443);
        assert_eq!(u.target, "/mail/config-v1.1.xml?e=a%40b");
        assert_eq!(Url::parse("https://h:8443").expect("ok").port, 8443);
        // RFC 9110 §7.2: the Host header names a port other than the scheme's default.
        let get = |u: &str| get_request(&Url::parse(u).expect("ok"));
        assert!(get("https://h:8443/x").contains("\r\nHost: h:8443\r\n"));
        assert!(get("https://h/x").contains("\r\nHost: h\r\n"));
        assert!(Url::parse("http://example.org/").is_err());
        assert!(Url::parse("https://user@example.org/").is_err());
        assert!(Url::parse("https://exa mple.org/").is_err());
        assert!(u.join("http://evil.example/").is_err());
        assert!(u.join("//evil.example/").is_err());
        assert_eq!(u.join("/other").expect("ok").target, "/other");
    }

    #[test]
    fn forms_encode_and_decode() {
        assert_eq!(
            form_encode(&[("grant_type", "refresh_token"), ("scope", "a b/c&d=é")]),
            "grant_type=refresh_token&scope=a%20b%2Fc%26d%3D%C3%A9"
        );
        assert_eq!(
            percent_decode("a%20b+c%2F%C3%A9").as_deref(),
            Some("a b c/é")
        );
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%4"), None);
    }

    #[test]
    fn error_statuses_keep_their_body_for_post() {
        let r = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 7\r\n\r\n{\"a\":1}";
        let (code, _, body) = parse_reply(r, false, true).expect("ok").expect("complete");
        assert_eq!(code, 400);
        assert_eq!(body, b"{\"a\":1}");
    }

    #[test]
    fn content_length_bodies() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello, extra";
        assert_eq!(
            parse_response(r, false).expect("ok"),
            Some(Response::Body(b"hello".to_vec()))
        );
        let partial = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel";
        assert_eq!(parse_response(partial, false).expect("ok"), None);
        assert!(parse_response(partial, true).is_err());
    }

    #[test]
    fn chunked_bodies() {
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        assert_eq!(
            parse_response(r, false).expect("ok"),
            Some(Response::Body(b"hello world".to_vec()))
        );
        let cut = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel";
        assert_eq!(parse_response(cut, false).expect("ok"), None);
        assert!(parse_response(cut, true).is_err());
        let bad = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        assert!(parse_response(bad, false).is_err());
        let huge = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFF\r\n";
        assert!(parse_response(huge, false).is_err());
    }

    #[test]
    fn read_to_close_redirects_and_errors() {
        let r = b"HTTP/1.0 200 OK\r\n\r\nbody";
        assert_eq!(parse_response(r, false).expect("ok"), None);
        assert_eq!(
            parse_response(r, true).expect("ok"),
            Some(Response::Body(b"body".to_vec()))
        );
        let r = b"HTTP/1.1 301 Moved\r\nLocation: /x\r\n\r\n";
        assert_eq!(
            parse_response(r, false).expect("ok"),
            Some(Response::Redirect("/x".into()))
        );
        let e = parse_response(b"HTTP/1.1 404 Not Found\r\n\r\n", false).expect_err("404");
        assert_eq!(e, "HTTP 404 Not Found");
        let r = b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n\xff\xfe";
        assert_eq!(parse_response(r, false), Err("HTTP 404 Not Found".into()));
        assert!(parse_response(b"SSH-2.0-x\r\n\r\n", false).is_err());
        assert!(parse_response(b"", true).is_err());
        let big = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert!(parse_response(big.as_bytes(), false).is_err());
    }
}
