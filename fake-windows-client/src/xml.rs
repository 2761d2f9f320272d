//! Parsing of XML received from a server, which may be hostile: DTDs refused, a node
//! cap, and a nesting cap checked before the tree is built (the parser recurses per
//! element level, so unbounded nesting would exhaust the stack).

use roxmltree::{Document, ParsingOptions};

use crate::error::ClientError;

/// Deepest element nesting accepted in a server response.
pub const MAX_DEPTH: usize = 64;
const MAX_NODES: u32 = 500_000;

/// Scanner states for [`depth_exceeds`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scan {
    Text,
    /// Inside a markup construct that does not open an element (`</..>`, `<?..?>`,
    /// `<!..>`), up to its closing `>`.
    Skip,
    /// Inside `<!-- ... -->`.
    Comment,
    /// Inside `<![CDATA[ ... ]]>`.
    Cdata,
    /// Inside a start tag; the byte is the open quote of an attribute value, if any.
    Tag(Option<u8>),
}

/// Whether any element is nested more than `max` levels deep.
pub fn depth_exceeds(text: &str, max: usize) -> bool {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut state = Scan::Text;
    let mut prev = 0u8;
    let mut i = 0usize;
    while i < bytes.len() {
        let b = bytes[i];
        // Text (most of a document: base64 certificates, values) only matters at '<'.
        if matches!(state, Scan::Text) && b != b'<' {
            match bytes[i..].iter().position(|&c| c == b'<') {
                Some(skip) => {
                    i += skip;
                    prev = bytes[i - 1];
                    continue;
                }
                None => break,
            }
        }
        state = match state {
            Scan::Text if b == b'<' => {
                let rest = &bytes[i..];
                if rest.starts_with(b"<!--") {
                    i += 3;
                    Scan::Comment
                } else if rest.starts_with(b"<![CDATA[") {
                    i += 8;
                    Scan::Cdata
                } else if rest.starts_with(b"</") {
                    depth = depth.saturating_sub(1);
                    Scan::Skip
                } else if rest.starts_with(b"<?") || rest.starts_with(b"<!") {
                    Scan::Skip
                } else {
                    Scan::Tag(None)
                }
            }
            Scan::Skip if b == b'>' => Scan::Text,
            Scan::Comment if b == b'>' && bytes[..i].ends_with(b"--") => Scan::Text,
            Scan::Cdata if b == b'>' && bytes[..i].ends_with(b"]]") => Scan::Text,
            Scan::Tag(None) if b == b'"' || b == b'\'' => Scan::Tag(Some(b)),
            Scan::Tag(Some(q)) if b == q => Scan::Tag(None),
            Scan::Tag(None) if b == b'>' => {
                if prev != b'/' {
                    depth += 1;
                    if depth > max {
                        return true;
                    }
                }
                Scan::Text
            }
            s => s,
        };
        prev = b;
        i += 1;
    }
    false
}

/// Parses a server's XML for `step`.
pub fn parse<'i>(step: &'static str, text: &'i str) -> Result<Document<'i>, ClientError> {
    if depth_exceeds(text, MAX_DEPTH) {
        return Err(ClientError::invalid(
            step,
            format!("response nests elements deeper than {MAX_DEPTH} levels"),
        ));
    }
    let options = ParsingOptions {
        allow_dtd: false,
        nodes_limit: MAX_NODES,
    };
    Document::parse_with_options(text, options).map_err(|source| ClientError::Xml { step, source })
}

/// XML-escapes text for element content and attribute values.
pub fn esc(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_elements_only() {
        assert!(!depth_exceeds(
            "<a b='>'><!-- <x><x> --><![CDATA[<y><y>]]><c/><d></d></a>",
            2
        ));
        assert!(depth_exceeds("<a><b><c/></b></a>", 1));
        assert!(!depth_exceeds("<?xml version='1.0'?><a><b/></a>", 1));
    }

    #[test]
    fn hostile_nesting_is_an_error_not_a_crash() {
        let deep = format!("{}{}", "<a>".repeat(200_000), "</a>".repeat(200_000));
        assert!(parse("test", &deep).is_err());
    }
}
