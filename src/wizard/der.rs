//! Just enough DER (X.690) to show a certificate's subject and issuer (RFC 5280 §4.1).
//!
//! The TLS layer hands over the certificate's DER bytes but no names, so the wizard walks
//! `Certificate → tbsCertificate → issuer / subject` itself. Every read is bounds-checked;
//! a malformed certificate gives `None`, never a panic.

/// A certificate's names, as `CN=..., O=..., C=...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertNames {
    pub subject: String,
    pub issuer: String,
}

/// One TLV: tag, contents, and the offset after it.
fn tlv(data: &[u8], pos: usize) -> Option<(u8, &[u8], usize)> {
    let tag = *data.get(pos)?;
    let first = *data.get(pos + 1)?;
    let (len, header) = if first & 0x80 == 0 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7F);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = len << 8 | usize::from(*data.get(pos + 2 + i)?);
        }
        (len, 2 + n)
    };
    let start = pos.checked_add(header)?;
    let end = start.checked_add(len)?;
    Some((tag, data.get(start..end)?, end))
}

/// The elements inside a constructed value.
fn children(data: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let (tag, body, next) = tlv(data, pos)?;
        out.push((tag, body));
        pos = next;
    }
    Some(out)
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;

/// Subject and issuer of a DER certificate.
pub fn cert_names(der: &[u8]) -> Option<CertNames> {
    let (tag, cert, _) = tlv(der, 0)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, tbs, _) = tlv(cert, 0)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut fields = children(tbs)?.into_iter();
    let mut next = fields.next()?;
    // NOTE: `version` is an optional [0] EXPLICIT field before the serial number.
    if next.0 == 0xA0 {
        next = fields.next()?;
    }
    let _serial = next;
    let _signature = fields.next()?;
    let issuer = fields.next()?;
    let _validity = fields.next()?;
    let subject = fields.next()?;
    if issuer.0 != SEQUENCE || subject.0 != SEQUENCE {
        return None;
    }
    Some(CertNames {
        subject: name(subject.1)?,
        issuer: name(issuer.1)?,
    })
}

/// Renders a Name (a sequence of sets of attribute-value pairs).
fn name(data: &[u8]) -> Option<String> {
    let mut parts = Vec::new();
    for (tag, rdn) in children(data)? {
        if tag != SET {
            return None;
        }
        for (tag, atv) in children(rdn)? {
            if tag != SEQUENCE {
                return None;
            }
            let pair = children(atv)?;
            let (oid_tag, oid) = *pair.first()?;
            let (_, value) = *pair.get(1)?;
            if oid_tag != OID {
                return None;
            }
            let label = match oid {
                [0x55, 0x04, 0x03] => "CN",
                [0x55, 0x04, 0x06] => "C",
                [0x55, 0x04, 0x07] => "L",
                [0x55, 0x04, 0x08] => "ST",
                [0x55, 0x04, 0x0A] => "O",
                [0x55, 0x04, 0x0B] => "OU",
                [0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x01] => "emailAddress",
                _ => continue,
            };
            let text: String = String::from_utf8_lossy(value)
                .chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect();
            parts.push(format!("{label}={text}"));
        }
    }
    if parts.is_empty() {
        return Some("(no name)".into());
    }
    Some(parts.join(", "))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A DER TLV with a short or long length.
    fn t(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        if body.len() < 128 {
            out.push(body.len() as u8);
        } else {
            out.push(0x82);
            out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        }
        out.extend_from_slice(body);
        out
    }

    fn rdn(oid: &[u8], value: &str) -> Vec<u8> {
        t(
            SET,
            &t(SEQUENCE, &[t(OID, oid), t(0x0C, value.as_bytes())].concat()),
        )
    }

    fn cert(with_version: bool) -> Vec<u8> {
        let issuer = t(
            SEQUENCE,
            &[rdn(&[0x55, 4, 6], "DE"), rdn(&[0x55, 4, 3], "Test CA")].concat(),
        );
        let subject = t(
            SEQUENCE,
            &[
                rdn(&[0x55, 4, 3], "mail.example.org"),
                rdn(&[0x55, 4, 10], "Example"),
            ]
            .concat(),
        );
        let mut tbs = Vec::new();
        if with_version {
            tbs.extend(t(0xA0, &t(0x02, &[2])));
        }
        tbs.extend(t(0x02, &[1, 2, 3]));
        tbs.extend(t(SEQUENCE, &t(OID, &[1, 2])));
        tbs.extend(issuer);
        tbs.extend(t(SEQUENCE, &[0u8; 200]));
        tbs.extend(subject);
        t(
            SEQUENCE,
            &[t(SEQUENCE, &tbs), t(SEQUENCE, &[]), t(0x03, &[0])].concat(),
        )
    }

    #[test]
    fn reads_subject_and_issuer() {
        for v in [true, false] {
            let names = cert_names(&cert(v)).expect("names");
            assert_eq!(names.subject, "CN=mail.example.org, O=Example");
            assert_eq!(names.issuer, "C=DE, CN=Test CA");
        }
    }

    #[test]
    fn cut_certificates_give_none() {
        let c = cert(true);
        for cut in 0..c.len() {
            assert_eq!(cert_names(&c[..cut]), None, "cut at {cut}");
        }
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = cert_names(&data);
        }
    }
}
