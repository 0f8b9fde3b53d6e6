//! DNS answers, as the kernel copied them off the wire: the question, the
//! CNAME chain from it and the A/AAAA addresses at its end, with the
//! smallest TTL along the way.
//!
//! The message is parsed by `simple-dns`, after two checks of our own that
//! keep garbage cheap: the header's record counts must fit in the bytes
//! there are (the crate reserves room for as many records as the header
//! claims), and a copy cut at the kernel's limit is reported as cut, not
//! parsed. The crate follows compression pointers only backwards, so a
//! pointer loop is an error, never a hang.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use simple_dns::{rdata::RData, Packet, PacketFlag};

/// Addresses kept from one answer; the rest are left out.
pub const MAX_ADDRESSES: usize = 32;
/// CNAME hops followed from the question.
pub const MAX_CNAME_HOPS: usize = 8;
const HEADER_LEN: usize = 12;
/// The smallest question (root name, type, class) and resource record
/// (root name, type, class, TTL, rdata length).
const MIN_QUESTION_LEN: usize = 5;
const MIN_RECORD_LEN: usize = 11;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The message id, which must match the query's.
    pub id: u16,
    /// The question's name, lower case, without the trailing dot.
    pub name: String,
    pub qtype: u16,
    /// The response code: 0 is no error, 3 is "no such name".
    pub rcode: u16,
    /// The CNAME chain from `name`, in order.
    pub cnames: Vec<String>,
    /// The addresses `name` resolves to.
    pub addresses: Vec<IpAddr>,
    /// The smallest TTL of the records that lead from `name` to the
    /// addresses; `None` without addresses.
    pub ttl: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error("the DNS answer is longer than the copy the kernel makes")]
    Cut,
    #[error("the DNS message is shorter than its header")]
    Truncated,
    #[error("the DNS message is a query, not an answer")]
    NotAnAnswer,
    #[error("the DNS message's record counts do not fit in its length")]
    CountsTooLarge,
    #[error("the DNS answer is malformed (bad name, pointer or record)")]
    Malformed,
}

/// Parses an answer. `cut`: the kernel copied only the message's start.
pub fn parse_answer(message: &[u8], cut: bool) -> Result<Answer, AnswerError> {
    if message.len() < HEADER_LEN {
        return Err(AnswerError::Truncated);
    }
    if message[2] & 0x80 == 0 {
        return Err(AnswerError::NotAnAnswer);
    }
    if cut {
        return Err(AnswerError::Cut);
    }
    let count = |at: usize| usize::from(u16::from_be_bytes([message[at], message[at + 1]]));
    let needed = count(4) * MIN_QUESTION_LEN
        + (count(6) + count(8) + count(10)) * MIN_RECORD_LEN
        + HEADER_LEN;
    if needed > message.len() {
        return Err(AnswerError::CountsTooLarge);
    }
    let packet = Packet::parse(message).map_err(|_| AnswerError::Malformed)?;
    if !packet.has_flags(PacketFlag::RESPONSE) {
        return Err(AnswerError::NotAnAnswer);
    }
    let question = packet.questions.first();
    let name = question
        .map(|q| normalise(&q.qname.to_string()))
        .unwrap_or_default();
    let qtype = question.map(|q| u16::from(q.qtype)).unwrap_or(0);

    let mut chain = vec![name.clone()];
    let mut ttl: Option<u32> = None;
    for _ in 0..MAX_CNAME_HOPS {
        let current = chain.last().cloned().unwrap_or_default();
        let next = packet.answers.iter().find_map(|rr| match &rr.rdata {
            RData::CNAME(target) if normalise(&rr.name.to_string()) == current => {
                Some((normalise(&target.0.to_string()), rr.ttl))
            }
            _ => None,
        });
        match next {
            Some((target, record_ttl)) if !chain.contains(&target) => {
                ttl = Some(ttl.map_or(record_ttl, |t| t.min(record_ttl)));
                chain.push(target);
            }
            _ => break,
        }
    }
    let mut addresses = Vec::new();
    let mut address_ttl: Option<u32> = None;
    for rr in &packet.answers {
        let address = match &rr.rdata {
            RData::A(a) => IpAddr::V4(Ipv4Addr::from(a.address)),
            RData::AAAA(a) => IpAddr::V6(Ipv6Addr::from(a.address)),
            _ => continue,
        };
        if !chain.contains(&normalise(&rr.name.to_string())) {
            continue;
        }
        address_ttl = Some(address_ttl.map_or(rr.ttl, |t| t.min(rr.ttl)));
        if addresses.len() < MAX_ADDRESSES && !addresses.contains(&address) {
            addresses.push(address);
        }
    }
    let ttl = address_ttl.map(|a| ttl.map_or(a, |c| c.min(a)));
    Ok(Answer {
        id: packet.id(),
        name,
        qtype,
        rcode: packet.rcode() as u16,
        cnames: chain.split_off(1),
        addresses,
        ttl,
    })
}

/// Lower case, without a trailing dot: names compare as DNS compares them.
fn normalise(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The id of a DNS message (query or answer), if it has a header.
pub fn message_id(message: &[u8]) -> Option<u16> {
    message.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]))
}

/// Test answers, built with the same crate the parser uses.
#[cfg(test)]
pub(crate) mod build {
    use simple_dns::{
        rdata::{RData, A, AAAA, CNAME},
        Name, Packet, PacketFlag, Question, ResourceRecord, CLASS, QCLASS, QTYPE, TYPE,
    };

    /// An answer with id `id` to `name`, holding `records`: `(owner, "A"|"AAAA"|"CNAME", value, ttl)`.
    pub fn answer(id: u16, name: &str, records: &[(&str, &str, &str, u32)]) -> Vec<u8> {
        let mut packet = Packet::new_reply(id);
        packet.set_flags(PacketFlag::RECURSION_DESIRED | PacketFlag::RECURSION_AVAILABLE);
        packet.questions.push(Question::new(
            Name::new_unchecked(name),
            QTYPE::TYPE(TYPE::A),
            QCLASS::CLASS(CLASS::IN),
            false,
        ));
        for (owner, kind, value, ttl) in records {
            let rdata = match *kind {
                "A" => RData::A(A::from(value.parse::<std::net::Ipv4Addr>().unwrap())),
                "AAAA" => RData::AAAA(AAAA::from(value.parse::<std::net::Ipv6Addr>().unwrap())),
                _ => RData::CNAME(CNAME(Name::new_unchecked(value))),
            };
            packet.answers.push(ResourceRecord::new(
                Name::new_unchecked(owner),
                CLASS::IN,
                *ttl,
                rdata,
            ));
        }
        packet.build_bytes_vec_compressed().unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::{build::answer, *};

    #[test]
    fn follows_a_cname_chain_to_its_addresses_with_the_smallest_ttl() {
        let msg = answer(
            0x1234,
            "Models.Example.TEST",
            &[
                ("models.example.test", "CNAME", "cdn.example.test", 300),
                ("cdn.example.test", "A", "10.200.0.7", 60),
                ("cdn.example.test", "AAAA", "fd00::7", 120),
                ("elsewhere.test", "A", "10.9.9.9", 5),
            ],
        );
        let a = parse_answer(&msg, false).unwrap();
        assert_eq!(a.id, 0x1234);
        assert_eq!(a.name, "models.example.test");
        assert_eq!(a.cnames, ["cdn.example.test"]);
        assert_eq!(
            a.addresses,
            [
                "10.200.0.7".parse::<IpAddr>().unwrap(),
                "fd00::7".parse().unwrap()
            ]
        );
        assert_eq!(a.ttl, Some(60));
        assert_eq!(message_id(&msg), Some(0x1234));
    }

    #[test]
    fn no_such_name_has_no_addresses() {
        let mut msg = answer(7, "nope.test", &[]);
        msg[3] |= 3;
        let a = parse_answer(&msg, false).unwrap();
        assert_eq!((a.rcode, a.addresses.len(), a.ttl), (3, 0, None));
    }

    #[test]
    fn queries_cut_copies_and_short_messages_are_errors() {
        let msg = answer(7, "a.test", &[("a.test", "A", "10.0.0.1", 9)]);
        assert_eq!(parse_answer(&msg, true), Err(AnswerError::Cut));
        let mut query = msg.clone();
        query[2] &= 0x7f;
        assert_eq!(parse_answer(&query, false), Err(AnswerError::NotAnAnswer));
        for cut in 0..msg.len() {
            assert!(parse_answer(&msg[..cut], false).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn counts_larger_than_the_message_are_rejected_before_parsing() {
        let mut msg = answer(7, "a.test", &[("a.test", "A", "10.0.0.1", 9)]);
        msg[6] = 0xff;
        msg[7] = 0xff;
        assert_eq!(parse_answer(&msg, false), Err(AnswerError::CountsTooLarge));
    }

    #[test]
    fn compression_pointer_loops_are_malformed() {
        // Header: a response with one question whose name is a pointer to
        // itself, then one to the next name, which points back.
        let mut looped = vec![0, 1, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0];
        looped.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        assert_eq!(parse_answer(&looped, false), Err(AnswerError::Malformed));
        let mut forward = vec![0, 1, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0];
        forward.extend_from_slice(&[0xc0, 14, 0xc0, 12, 0, 1, 0, 1]);
        assert_eq!(parse_answer(&forward, false), Err(AnswerError::Malformed));
    }

    /// A deterministic xorshift, so the fuzzing below is reproducible.
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn random_and_mutated_answers_never_panic() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let seed = answer(
            9,
            "models.example.test",
            &[
                ("models.example.test", "CNAME", "cdn.example.test", 300),
                ("cdn.example.test", "A", "10.200.0.7", 60),
            ],
        );
        let mut parsed = 0;
        for round in 0..20_000 {
            let mut msg = if round % 2 == 0 {
                seed.clone()
            } else {
                let len = (xorshift(&mut state) % 520) as usize;
                (0..len).map(|_| xorshift(&mut state) as u8).collect()
            };
            for _ in 0..(xorshift(&mut state) % 4) {
                if msg.is_empty() {
                    break;
                }
                let at = (xorshift(&mut state) as usize) % msg.len();
                msg[at] = xorshift(&mut state) as u8;
            }
            if let Ok(a) = parse_answer(&msg, false) {
                assert!(a.addresses.len() <= MAX_ADDRESSES);
                assert!(a.cnames.len() <= MAX_CNAME_HOPS);
                parsed += 1;
            }
        }
        assert!(parsed > 1000, "only {parsed} parsed");
    }
}
