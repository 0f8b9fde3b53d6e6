//! A small parser for the question of a DNS query, as the kernel copied it.
//!
//! The kernel hands over at most the first 256 bytes of the datagram, so
//! the message may be cut anywhere after the question. Full-message parsers
//! reject such input; this one reads only the header and the first question,
//! checks every length against the buffer, follows at most
//! [`MAX_POINTER_JUMPS`] compression pointers (each strictly backwards, so
//! loops are impossible) and caps names at 255 bytes, as RFC 1035 does.

/// Compression pointers followed before a name is rejected.
pub const MAX_POINTER_JUMPS: usize = 16;
/// The longest name on the wire (RFC 1035 §2.3.4).
const MAX_NAME_WIRE_LEN: usize = 255;
const HEADER_LEN: usize = 12;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Question {
    /// The name, without the trailing dot; bytes outside printable ASCII
    /// are escaped as `\DDD`, as `dig` shows them.
    pub name: String,
    pub qtype: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    #[error("the DNS message is cut before the end of its question")]
    Truncated,
    #[error("the DNS message is a response, not a query")]
    NotAQuery,
    #[error("the DNS message has no question")]
    NoQuestion,
    #[error("a DNS label is longer than 63 bytes")]
    BadLabel,
    #[error("a DNS name is longer than 255 bytes")]
    NameTooLong,
    #[error("a DNS compression pointer does not point backwards, or they chain too deep")]
    BadPointer,
}

/// Reads the first question of a DNS query.
pub fn parse_query(message: &[u8]) -> Result<Question, DnsError> {
    if message.len() < HEADER_LEN {
        return Err(DnsError::Truncated);
    }
    if message[2] & 0x80 != 0 {
        return Err(DnsError::NotAQuery);
    }
    if u16::from_be_bytes([message[4], message[5]]) == 0 {
        return Err(DnsError::NoQuestion);
    }
    let (name, after) = read_name(message, HEADER_LEN)?;
    let qtype = message
        .get(after..after + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or(DnsError::Truncated)?;
    Ok(Question { name, qtype })
}

/// Reads a possibly compressed name at `start`; returns it and the offset
/// just after it in the original position.
fn read_name(message: &[u8], start: usize) -> Result<(String, usize), DnsError> {
    let mut name = String::new();
    let mut wire_len = 0usize;
    let mut pos = start;
    let mut resume = None;
    let mut jumps = 0;
    loop {
        let len = *message.get(pos).ok_or(DnsError::Truncated)? as usize;
        match len & 0xc0 {
            0x00 => {}
            0xc0 => {
                let low = *message.get(pos + 1).ok_or(DnsError::Truncated)? as usize;
                let target = (len & 0x3f) << 8 | low;
                jumps += 1;
                if target >= pos || jumps > MAX_POINTER_JUMPS {
                    return Err(DnsError::BadPointer);
                }
                resume.get_or_insert(pos + 2);
                pos = target;
                continue;
            }
            _ => return Err(DnsError::BadLabel),
        }
        if len == 0 {
            return Ok((name, resume.unwrap_or(pos + 1)));
        }
        wire_len += len + 1;
        if wire_len > MAX_NAME_WIRE_LEN {
            return Err(DnsError::NameTooLong);
        }
        let label = message
            .get(pos + 1..pos + 1 + len)
            .ok_or(DnsError::Truncated)?;
        if !name.is_empty() {
            name.push('.');
        }
        for &byte in label {
            match byte {
                b'.' | b'\\' => {
                    name.push('\\');
                    name.push(byte as char);
                }
                0x21..=0x7e => name.push(byte as char),
                _ => name.push_str(&format!("\\{byte:03}")),
            }
        }
        pos += 1 + len;
    }
}

/// The mnemonic of a query type, or its number.
pub fn qtype_name(qtype: u16) -> String {
    let name = match qtype {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        12 => "PTR",
        15 => "MX",
        16 => "TXT",
        28 => "AAAA",
        33 => "SRV",
        35 => "NAPTR",
        43 => "DS",
        46 => "RRSIG",
        48 => "DNSKEY",
        64 => "SVCB",
        65 => "HTTPS",
        255 => "ANY",
        257 => "CAA",
        other => return other.to_string(),
    };
    name.to_owned()
}

/// A query as resolvers send it: id, RD flag, one question.
#[cfg(test)]
pub(crate) fn test_query(name: &str, qtype: u16) -> Vec<u8> {
    let mut out = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::{test_query as query, *};

    #[test]
    fn reads_the_question_of_a_query() {
        let q = parse_query(&query("models.example.test", 1)).unwrap();
        assert_eq!(q.name, "models.example.test");
        assert_eq!(qtype_name(q.qtype), "A");
        let q = parse_query(&query("huggingface.co", 28)).unwrap();
        assert_eq!((q.name.as_str(), q.qtype), ("huggingface.co", 28));
        assert_eq!(qtype_name(q.qtype), "AAAA");
        assert_eq!(qtype_name(4242), "4242");
    }

    #[test]
    fn the_root_name_is_empty() {
        let mut msg = query("x", 1)[..12].to_vec();
        msg.extend_from_slice(&[0, 0, 2, 0, 1]);
        let q = parse_query(&msg).unwrap();
        assert_eq!((q.name.as_str(), qtype_name(q.qtype).as_str()), ("", "NS"));
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let full = query("models.example.test", 1);
        // Everything up to the qtype is needed; qclass is not.
        let needed = full.len() - 2;
        for cut in 0..needed {
            assert_eq!(
                parse_query(&full[..cut]),
                Err(DnsError::Truncated),
                "cut at {cut}"
            );
        }
        assert!(parse_query(&full[..needed]).is_ok());
    }

    #[test]
    fn responses_and_empty_queries_are_rejected() {
        let mut response = query("a.test", 1);
        response[2] |= 0x80;
        assert_eq!(parse_query(&response), Err(DnsError::NotAQuery));
        let mut empty = query("a.test", 1);
        empty[5] = 0;
        assert_eq!(parse_query(&empty), Err(DnsError::NoQuestion));
    }

    #[test]
    fn pointers_must_point_backwards_and_chain_shallowly() {
        // A pointer to itself at the question's start.
        let mut looped = query("a.test", 1)[..12].to_vec();
        looped.extend_from_slice(&[0xc0, 12, 0, 1]);
        assert_eq!(parse_query(&looped), Err(DnsError::BadPointer));
        // A pointer forwards.
        let mut forward = query("a.test", 1)[..12].to_vec();
        forward.extend_from_slice(&[0xc0, 40, 0, 1]);
        assert_eq!(parse_query(&forward), Err(DnsError::BadPointer));
        // A valid backwards pointer into a label placed in the header area
        // is followed, and the qtype is read after the pointer.
        let mut msg = vec![0, 0, 0, 0, 0, 1, 0, 0, 1, b'x', 0, 0];
        msg.extend_from_slice(&[0xc0, 8, 0, 28]);
        let q = parse_query(&msg).unwrap();
        assert_eq!((q.name.as_str(), q.qtype), ("x", 28));
    }

    #[test]
    fn long_labels_and_names_are_rejected() {
        let mut bad_label = query("a.test", 1)[..12].to_vec();
        bad_label.push(0x40);
        assert_eq!(parse_query(&bad_label), Err(DnsError::BadLabel));
        let long = vec!["abcdefghij"; 30].join(".");
        assert_eq!(parse_query(&query(&long, 1)), Err(DnsError::NameTooLong));
    }

    #[test]
    fn odd_bytes_are_escaped() {
        let mut msg = query("ab.test", 1);
        msg[13] = 0x07;
        msg[14] = b'.';
        assert_eq!(parse_query(&msg).unwrap().name, "\\007\\..test");
    }

    /// A deterministic xorshift, so the fuzzing below is reproducible.
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn random_and_mutated_bytes_never_panic() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let seed = query("models.example.test", 1);
        let mut parsed = 0;
        for round in 0..20_000 {
            let mut msg = if round % 2 == 0 {
                seed.clone()
            } else {
                let len = (xorshift(&mut state) % 300) as usize;
                (0..len).map(|_| xorshift(&mut state) as u8).collect()
            };
            for _ in 0..(xorshift(&mut state) % 4) {
                if msg.is_empty() {
                    break;
                }
                let at = (xorshift(&mut state) as usize) % msg.len();
                msg[at] = xorshift(&mut state) as u8;
            }
            if let Ok(q) = parse_query(&msg) {
                assert!(q.name.len() <= 4 * MAX_NAME_WIRE_LEN);
                parsed += 1;
            }
        }
        // The mutated seeds mostly stay valid: the parser is not rejecting all.
        assert!(parsed > 1000, "only {parsed} parsed");
    }
}
