//! The few DER structures written or rewritten by hand.
//!
//! rcgen keeps one value per attribute type in a name, while Kubernetes reads
//! one organization per group, so subjects are encoded here and put into the
//! certificates and requests rcgen builds, which are then signed again. An
//! issued certificate's issuer is the CA certificate's subject, byte for byte,
//! as chain building compares it. Keys in the older PKCS#1 and SEC1 forms
//! (kubeadm's and k3s's CA keys) are wrapped as PKCS#8, the form ring reads.

use rcgen::SigningKey;

use crate::{Error, Result};

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const BIT_STRING: u8 = 0x03;
const OCTET_STRING: u8 = 0x04;
const UTF8_STRING: u8 = 0x0c;
const CONTEXT_0: u8 = 0xa0;

/// The attribute types of names (2.5.4.3 and 2.5.4.10), as encoded OIDs.
const COMMON_NAME: &[u8] = &[0x06, 0x03, 0x55, 0x04, 0x03];
const ORGANIZATION: &[u8] = &[0x06, 0x03, 0x55, 0x04, 0x0a];
/// INTEGER 0, the version of a PKCS#8 private key.
const VERSION_0: &[u8] = &[0x02, 0x01, 0x00];
/// The algorithm identifier of RSA keys (rsaEncryption with NULL parameters).
const RSA_ALGORITHM: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];
/// The OID of elliptic curve public keys (1.2.840.10045.2.1).
const EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];

/// Encodes one element.
fn element(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// Splits the first element off `input`: its header, its content, and what
/// follows it. Only single-byte tags and definite lengths (all DER has) are
/// read.
fn split(input: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > size_of::<usize>() || rest.len() < count {
            return None;
        }
        let (bytes, rest) = rest.split_at(count);
        let len = bytes
            .iter()
            .fold(0usize, |len, b| (len << 8) | usize::from(*b));
        (len, rest)
    };
    if rest.len() < len {
        return None;
    }
    let header = input.len() - rest.len();
    let (content, after) = rest.split_at(len);
    Some((&input[..header], content, after))
}

/// The whole elements of a SEQUENCE or SET's content, in order.
fn elements(mut content: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    while !content.is_empty() {
        let (header, inner, rest) = split(content)?;
        out.push(&content[..header.len() + inner.len()]);
        content = rest;
    }
    Some(out)
}

/// The content of the SEQUENCE `input` starts with.
fn sequence(input: &[u8]) -> Option<&[u8]> {
    match split(input)? {
        (header, content, _) if header[0] == SEQUENCE => Some(content),
        _ => None,
    }
}

/// A name with one attribute per RDN: each organization, then the common
/// name (the order Go and OpenSSL write them in).
pub(crate) fn name(common_name: &str, organizations: &[String]) -> Vec<u8> {
    let attribute = |kind: &[u8], value: &str| {
        let pair = [kind, &element(UTF8_STRING, value.as_bytes())].concat();
        element(SET, &element(SEQUENCE, &pair))
    };
    let rdns: Vec<u8> = organizations
        .iter()
        .map(|o| attribute(ORGANIZATION, o))
        .chain(std::iter::once(attribute(COMMON_NAME, common_name)))
        .flatten()
        .collect();
    element(SEQUENCE, &rdns)
}

/// The names to put into a signed structure.
pub(crate) enum Names<'a> {
    /// A certificate's issuer and subject.
    Certificate { issuer: &'a [u8], subject: &'a [u8] },
    /// A certification request's subject.
    Request { subject: &'a [u8] },
}

/// Puts `names` into the signed certificate or certification request `der`
/// and signs it again with `key` (the issuer's key for a certificate, the
/// requester's for a request), keeping its signature algorithm.
pub(crate) fn rename(der: &[u8], names: Names<'_>, key: &impl SigningKey) -> Result<Vec<u8>> {
    let what = match names {
        Names::Certificate { .. } => "certificate",
        Names::Request { .. } => "certificate request",
    };
    let malformed = || Error::Malformed(what);
    let signed = elements(sequence(der).ok_or_else(malformed)?).ok_or_else(malformed)?;
    let [info, algorithm, _signature] = signed[..] else {
        return Err(malformed());
    };
    let mut fields = elements(sequence(info).ok_or_else(malformed)?).ok_or_else(malformed)?;
    match names {
        Names::Certificate { issuer, subject } => {
            // version [0] (present in v3), serial, signature, issuer,
            // validity, subject, ...
            let at = usize::from(fields.first().is_some_and(|f| f[0] == CONTEXT_0));
            if fields.len() < at + 5 {
                return Err(malformed());
            }
            fields[at + 2] = issuer;
            fields[at + 4] = subject;
        }
        Names::Request { subject } => {
            // version, subject, subjectPKInfo, attributes
            if fields.len() < 2 {
                return Err(malformed());
            }
            fields[1] = subject;
        }
    }
    let info = element(SEQUENCE, &fields.concat());
    let signature = key.sign(&info).map_err(Error::Generate)?;
    let bits = [&[0u8][..], &signature].concat();
    Ok(element(
        SEQUENCE,
        &[&info[..], algorithm, &element(BIT_STRING, &bits)].concat(),
    ))
}

/// Wraps a PKCS#1 RSA private key as PKCS#8.
pub(crate) fn pkcs8_from_pkcs1(key: &[u8]) -> Vec<u8> {
    let content = [VERSION_0, RSA_ALGORITHM, &element(OCTET_STRING, key)].concat();
    element(SEQUENCE, &content)
}

/// Wraps a SEC1 elliptic curve private key as PKCS#8, its curve taken from
/// the key's own parameters.
pub(crate) fn pkcs8_from_sec1(key: &[u8]) -> Result<Vec<u8>> {
    let bad = || Error::BadKey("a SEC1 (EC PRIVATE KEY) key without its curve".to_string());
    let fields = elements(sequence(key).ok_or_else(bad)?).ok_or_else(bad)?;
    let parameters = fields.iter().find(|f| f[0] == CONTEXT_0).ok_or_else(bad)?;
    let (_, curve, _) = split(parameters).ok_or_else(bad)?;
    let algorithm = element(SEQUENCE, &[EC_PUBLIC_KEY, curve].concat());
    let content = [VERSION_0, &algorithm, &element(OCTET_STRING, key)].concat();
    Ok(element(SEQUENCE, &content))
}

#[cfg(test)]
mod tests {
    use x509_parser::prelude::FromDer;

    use super::*;

    #[test]
    fn lengths_round_trip() {
        for len in [0, 1, 127, 128, 255, 256, 70_000] {
            let content = vec![7u8; len];
            let encoded = element(OCTET_STRING, &content);
            let (header, inner, rest) = split(&encoded).unwrap();
            assert_eq!(header[0], OCTET_STRING);
            assert_eq!(inner, &content[..]);
            assert!(rest.is_empty());
        }
    }

    #[test]
    fn truncated_input_is_refused() {
        let encoded = element(SEQUENCE, &[1, 2, 3]);
        assert!(split(&encoded[..encoded.len() - 1]).is_none());
        assert!(split(&[0x30, 0x84, 0xff]).is_none());
        assert!(split(&[0x1f, 0x00]).is_none());
    }

    #[test]
    fn names_repeat_organizations() {
        let der = name("alice", &["dev".to_string(), "ops".to_string()]);
        let (_, parsed) = x509_parser::x509::X509Name::from_der(&der).unwrap();
        let orgs: Vec<_> = parsed
            .iter_organization()
            .map(|o| o.as_str().unwrap())
            .collect();
        assert_eq!(orgs, ["dev", "ops"]);
        let cn = parsed.iter_common_name().next().unwrap().as_str().unwrap();
        assert_eq!(cn, "alice");
    }
}
