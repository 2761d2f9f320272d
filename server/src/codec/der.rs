//! A minimal DER reader for the structures the enrollment endpoint inspects by hand
//! (PKCS#10, CMS SignedData), where lenient handling of Windows' encodings matters.

/// Why DER input is refused: what was expected or went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DerError(pub &'static str);

pub const TAG_SEQUENCE: u8 = 0x30;
pub const TAG_SET: u8 = 0x31;
pub const TAG_INTEGER: u8 = 0x02;
pub const TAG_BIT_STRING: u8 = 0x03;
pub const TAG_OID: u8 = 0x06;
pub const TAG_OCTET_STRING: u8 = 0x04;
/// `[0]` constructed, context-specific.
pub const TAG_CONTEXT_0: u8 = 0xA0;

/// One DER TLV: its tag, contents, and the complete encoding.
pub struct Tlv<'a> {
    pub tag: u8,
    pub contents: &'a [u8],
    pub encoded: &'a [u8],
}

/// Reads one TLV from the front of `input`, returning it and the rest.
pub fn read_tlv(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), DerError> {
    let (&tag, rest) = input.split_first().ok_or(DerError("truncated"))?;
    if tag & 0x1F == 0x1F {
        return Err(DerError("high-tag-number form"));
    }
    let (&first, rest) = rest.split_first().ok_or(DerError("truncated length"))?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7F);
        if n == 0 {
            return Err(DerError("indefinite length"));
        }
        if n > 4 || rest.len() < n {
            return Err(DerError("bad length"));
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return Err(DerError("content runs past the end"));
    }
    let header_len = input.len() - rest.len();
    Ok((
        Tlv {
            tag,
            contents: &rest[..len],
            encoded: &input[..header_len + len],
        },
        &rest[len..],
    ))
}

pub fn expect<'a>(
    input: &'a [u8],
    tag: u8,
    what: &'static str,
) -> Result<(Tlv<'a>, &'a [u8]), DerError> {
    let (tlv, rest) = read_tlv(input)?;
    if tlv.tag != tag {
        return Err(DerError(what));
    }
    Ok((tlv, rest))
}

/// The bytes of a BIT STRING with no unused bits.
pub fn bit_string_bytes(contents: &[u8]) -> Result<&[u8], DerError> {
    match contents.split_first() {
        Some((0, bytes)) => Ok(bytes),
        _ => Err(DerError("BIT STRING with unused bits")),
    }
}
