//! A minimal DER encoder (X.690), enough for PKCS#10 requests and simple certificates.

/// Well-known object identifiers, as dotted strings.
pub mod oid {
    pub const COMMON_NAME: &str = "2.5.4.3";
    pub const ORGANIZATION: &str = "2.5.4.10";
    pub const RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
    pub const SHA256_WITH_RSA: &str = "1.2.840.113549.1.1.11";
    /// sha1WithRSASignature under the OIW arc, as old Windows CSRs use.
    pub const SHA1_WITH_RSA_OIW: &str = "1.3.14.3.2.29";
    pub const EXTENSION_REQUEST: &str = "1.2.840.113549.1.9.14";
    /// Microsoft DeviceID certificate extension carried in enrollment CSRs.
    pub const MS_DEVICE_ID: &str = "1.3.6.1.4.1.311.66.1.0";
    pub const BASIC_CONSTRAINTS: &str = "2.5.29.19";
    pub const KEY_USAGE: &str = "2.5.29.15";
    pub const EXT_KEY_USAGE: &str = "2.5.29.37";
    pub const CLIENT_AUTH: &str = "1.3.6.1.5.5.7.3.2";
    pub const DATA: &str = "1.2.840.113549.1.7.1";
    pub const SIGNED_DATA: &str = "1.2.840.113549.1.7.2";
    pub const CONTENT_TYPE: &str = "1.2.840.113549.1.9.3";
    pub const MESSAGE_DIGEST: &str = "1.2.840.113549.1.9.4";
    pub const SHA256: &str = "2.16.840.1.101.3.4.2.1";
}

/// One decoded TLV (definite lengths only, as DER requires).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    pub tag: u8,
    pub content: &'a [u8],
    /// Tag, length and content.
    pub encoded: &'a [u8],
}

/// Reads one TLV from the front of `input`; `None` on truncated or non-DER lengths.
pub fn read_tlv(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let tag = *input.first()?;
    let first = *input.get(1)?;
    let (len, header) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 {
            return None;
        }
        let bytes = input.get(2..2 + n)?;
        let len = bytes.iter().fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, 2 + n)
    };
    let end = header.checked_add(len)?;
    let content = input.get(header..end)?;
    let encoded = input.get(..end)?;
    let rest = input.get(end..)?;
    Some((
        Tlv {
            tag,
            content,
            encoded,
        },
        rest,
    ))
}

/// All TLVs in `input`, in order; `None` if any is malformed.
pub fn read_all(mut input: &[u8]) -> Option<Vec<Tlv<'_>>> {
    let mut out = Vec::new();
    while !input.is_empty() {
        let (t, rest) = read_tlv(input)?;
        out.push(t);
        input = rest;
    }
    Some(out)
}

fn push_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
        return;
    }
    let bytes = len.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    out.push(0x80 | (bytes.len() - skip) as u8);
    out.extend_from_slice(&bytes[skip..]);
}

/// One TLV with the given tag byte.
pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    push_len(&mut out, content.len());
    out.extend_from_slice(content);
    out
}

pub fn sequence(items: &[Vec<u8>]) -> Vec<u8> {
    tlv(0x30, &items.concat())
}

/// A SET; DER requires the elements sorted by encoding.
pub fn set(items: &[Vec<u8>]) -> Vec<u8> {
    let mut sorted = items.to_vec();
    sorted.sort();
    tlv(0x31, &sorted.concat())
}

pub fn null() -> Vec<u8> {
    vec![0x05, 0x00]
}

pub fn boolean(v: bool) -> Vec<u8> {
    vec![0x01, 0x01, if v { 0xff } else { 0x00 }]
}

/// INTEGER from unsigned big-endian magnitude bytes.
pub fn unsigned_integer(magnitude: &[u8]) -> Vec<u8> {
    let trimmed: Vec<u8> = magnitude.iter().copied().skip_while(|b| *b == 0).collect();
    let mut content = Vec::with_capacity(trimmed.len() + 1);
    let needs_pad = match trimmed.first() {
        None => true,
        Some(b) => b & 0x80 != 0,
    };
    if needs_pad {
        content.push(0);
    }
    content.extend_from_slice(&trimmed);
    tlv(0x02, &content)
}

pub fn small_integer(v: u32) -> Vec<u8> {
    unsigned_integer(&v.to_be_bytes())
}

pub fn octet_string(v: &[u8]) -> Vec<u8> {
    tlv(0x04, v)
}

/// BIT STRING with no unused bits.
pub fn bit_string(v: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(v.len() + 1);
    content.push(0);
    content.extend_from_slice(v);
    tlv(0x03, &content)
}

/// PrintableString. Bytes are written as given: Windows puts characters such as `!` and a
/// trailing NUL in its CSR subject although X.680 does not allow them in this type.
pub fn printable_string(v: &[u8]) -> Vec<u8> {
    tlv(0x13, v)
}

pub fn utf8_string(v: &str) -> Vec<u8> {
    tlv(0x0c, v.as_bytes())
}

/// UTCTime `YYMMDDHHMMSSZ` (valid for years 1950..2049).
pub fn utc_time(t: time::OffsetDateTime) -> Vec<u8> {
    let t = t.to_offset(time::UtcOffset::UTC);
    let s = format!(
        "{:02}{:02}{:02}{:02}{:02}{:02}Z",
        t.year().rem_euclid(100),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    tlv(0x17, s.as_bytes())
}

/// Context-specific constructed tag `[n]`.
pub fn context(n: u8, content: &[u8]) -> Vec<u8> {
    tlv(0xa0 | n, content)
}

/// OBJECT IDENTIFIER from a dotted string. Panics never: malformed input yields an empty arc list.
pub fn oid(dotted: &str) -> Vec<u8> {
    let arcs: Vec<u64> = dotted.split('.').filter_map(|a| a.parse().ok()).collect();
    let mut content = Vec::new();
    if arcs.len() >= 2 {
        push_base128(&mut content, arcs[0] * 40 + arcs[1]);
        for a in &arcs[2..] {
            push_base128(&mut content, *a);
        }
    }
    tlv(0x06, &content)
}

fn push_base128(out: &mut Vec<u8>, mut v: u64) {
    let mut tmp = vec![(v & 0x7f) as u8];
    v >>= 7;
    while v > 0 {
        tmp.push(0x80 | (v & 0x7f) as u8);
        v >>= 7;
    }
    tmp.reverse();
    out.extend_from_slice(&tmp);
}

/// Dotted text of OBJECT IDENTIFIER content bytes.
pub fn oid_string(content: &[u8]) -> String {
    let mut arcs: Vec<u64> = Vec::new();
    let mut v: u64 = 0;
    for b in content {
        v = (v << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (v / 40).min(2);
                arcs.push(first);
                arcs.push(v - first * 40);
            } else {
                arcs.push(v);
            }
            v = 0;
        }
    }
    arcs.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

/// AlgorithmIdentifier with NULL parameters.
pub fn algorithm(oid_str: &str) -> Vec<u8> {
    sequence(&[oid(oid_str), null()])
}

/// A Name with a single RDN per attribute, attributes given as (OID, encoded value).
pub fn name(attrs: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let rdns: Vec<Vec<u8>> = attrs
        .iter()
        .map(|(o, v)| set(&[sequence(&[oid(o), v.clone()])]))
        .collect();
    sequence(&rdns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_known_values() {
        assert_eq!(
            oid("1.2.840.113549.1.1.11"),
            hex::decode("06092a864886f70d01010b").unwrap_or_default()
        );
        assert_eq!(
            oid("1.3.14.3.2.29"),
            hex::decode("06052b0e03021d").unwrap_or_default()
        );
        assert_eq!(
            oid("1.3.6.1.4.1.311.66.1.0"),
            hex::decode("060a2b060104018237420100").unwrap_or_default()
        );
        assert_eq!(small_integer(0), vec![2, 1, 0]);
        assert_eq!(small_integer(128), vec![2, 2, 0, 128]);
        assert_eq!(tlv(4, &[0u8; 200])[..3], [4, 0x81, 200]);
        assert_eq!(tlv(4, &[0u8; 300])[..4], [4, 0x82, 1, 44]);
    }
}
