//! Network records as event fields: `net` for connect/accept/bind/listen,
//! UDP sends and TCP summaries, `dns` for DNS queries.
//!
//! `src` is always the local end and `dst` the remote one, whichever side
//! opened the connection: for an accept, `dst` is the peer.

use std::net::{IpAddr, SocketAddr};

use aiwatch_common::EventKind;

use crate::{
    event::{DnsInfo, Endpoint, NetFamily, NetInfo, Protocol},
    ingest::decode::{
        dns,
        dns_answer::AnswerError,
        net::{Dns, DnsAnswer, DnsWire, HttpRequest, Net, TcpSummary, TlsClientHello},
    },
};

const SOCK_STREAM: u16 = 1;
const SOCK_DGRAM: u16 = 2;

pub fn net_info(kind: EventKind, net: &Net) -> NetInfo {
    let protocol = match (kind, net.sock_type) {
        (EventKind::UdpSend, _) => Protocol::Udp,
        (_, _) if net.unix_path.is_some() => Protocol::Unknown,
        (_, SOCK_STREAM) => Protocol::Tcp,
        (_, SOCK_DGRAM) => Protocol::Udp,
        _ => Protocol::Unknown,
    };
    // bind and listen are about the local end only.
    let remote = match kind {
        EventKind::Bind | EventKind::Listen => None,
        _ => net.remote,
    };
    NetInfo {
        family: net.family.unwrap_or_default(),
        protocol,
        src: net.local.map(endpoint),
        dst: remote.map(endpoint),
        unix_path: net.unix_path.clone(),
        result: net.result,
        bytes_sent: (kind == EventKind::UdpSend).then_some(u64::from(net.len)),
        dst_external: remote.is_some_and(|a| is_external(a.ip())),
        ..Default::default()
    }
}

pub fn summary_info(summary: &TcpSummary) -> NetInfo {
    NetInfo {
        family: family_of(summary.remote.or(summary.local)),
        protocol: Protocol::Tcp,
        src: summary.local.map(endpoint),
        dst: summary.remote.map(endpoint),
        bytes_sent: Some(summary.bytes_sent),
        bytes_received: Some(summary.bytes_received),
        closed: Some(summary.closed),
        dst_external: summary.remote.is_some_and(|a| is_external(a.ip())),
        ..Default::default()
    }
}

/// The `dns` field; a query that cannot be parsed keeps its server and an
/// empty name.
pub fn dns_info(query: &Dns) -> DnsInfo {
    let (name, qtype) = match &query.question {
        Ok(q) => (q.name.clone(), dns::qtype_name(q.qtype)),
        Err(_) => (String::new(), String::new()),
    };
    DnsInfo {
        name,
        qtype,
        server: query.server.map(endpoint),
        protocol: wire_protocol(&query.wire),
        ..Default::default()
    }
}

/// The connection of a TCP segment read on the wire, the server its peer.
fn segment_connection(wire: &DnsWire) -> NetInfo {
    NetInfo {
        family: family_of(wire.server),
        protocol: Protocol::Tcp,
        src: wire.local.map(endpoint),
        dst: wire.server.map(endpoint),
        dst_external: wire.server.is_some_and(|a| is_external(a.ip())),
        ..Default::default()
    }
}

/// The `net` field of a ClientHello: the connection and the server name.
pub fn client_hello_info(hello: &TlsClientHello) -> NetInfo {
    NetInfo {
        tls_server_name: hello.server_name.clone().ok().flatten(),
        ..segment_connection(&hello.wire)
    }
}

/// The `net` field of a plain HTTP request: the connection and its host.
pub fn http_request_info(request: &HttpRequest) -> NetInfo {
    NetInfo {
        http_host: request.host.clone().ok().flatten(),
        ..segment_connection(&request.wire)
    }
}

/// The `dns` field of an answer; `verified` as the name cache judged it.
pub fn dns_answer_info(reply: &DnsAnswer, verified: bool) -> DnsInfo {
    let mut info = DnsInfo {
        server: reply.wire.server.map(endpoint),
        protocol: wire_protocol(&reply.wire),
        ..Default::default()
    };
    match &reply.answer {
        Ok(answer) => {
            info.name.clone_from(&answer.name);
            info.qtype = dns::qtype_name(answer.qtype);
            info.rcode = Some(rcode_name(answer.rcode));
            info.cnames.clone_from(&answer.cnames);
            info.answers.clone_from(&answer.addresses);
            info.ttl = answer.ttl;
            info.verified = Some(verified);
        }
        Err(err) => info.error = Some(answer_error_name(*err).to_owned()),
    }
    info
}

/// The address family of a socket address, when there is one.
fn family_of(addr: Option<SocketAddr>) -> NetFamily {
    match addr {
        Some(SocketAddr::V4(_)) => NetFamily::Ipv4,
        Some(SocketAddr::V6(_)) => NetFamily::Ipv6,
        None => NetFamily::Unknown,
    }
}

fn wire_protocol(wire: &DnsWire) -> Protocol {
    if wire.tcp {
        Protocol::Tcp
    } else {
        Protocol::Udp
    }
}

/// A short word for why an answer could not be read.
fn answer_error_name(err: AnswerError) -> &'static str {
    match err {
        AnswerError::Cut => "cut",
        AnswerError::Truncated => "truncated",
        AnswerError::NotAnAnswer => "not_an_answer",
        AnswerError::CountsTooLarge | AnswerError::Malformed => "malformed",
    }
}

/// The mnemonic of a response code, or its number.
fn rcode_name(rcode: u16) -> String {
    match rcode {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        other => other.to_string(),
    }
}

fn endpoint(addr: SocketAddr) -> Endpoint {
    Endpoint {
        ip: addr.ip().to_canonical(),
        port: addr.port(),
    }
}

/// Whether traffic to `ip` can leave the host's own links: anything but
/// loopback, unspecified and link-local addresses. Private (RFC 1918, ULA)
/// addresses count as external: they reach other machines, and in clusters
/// exfiltration goes there as easily as to the internet.
pub fn is_external(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => !(v4.is_loopback() || v4.is_unspecified() || v4.is_link_local()),
        IpAddr::V6(v6) => !(v6.is_loopback() || v6.is_unspecified() || v6.is_unicast_link_local()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::NetFamily;

    fn net(kind_local: Option<&str>, remote: Option<&str>, sock_type: u16) -> Net {
        Net {
            result: Some(0),
            fd: 3,
            sock_type,
            family: Some(NetFamily::Ipv4),
            local: kind_local.map(|a| a.parse().unwrap()),
            remote: remote.map(|a| a.parse().unwrap()),
            unix_path: None,
            len: 0,
            tracked: false,
            denied: false,
            netns: 0,
        }
    }

    #[test]
    fn external_means_off_the_host_links() {
        for ip in [
            "127.0.0.1",
            "0.0.0.0",
            "169.254.1.2",
            "::1",
            "::",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_external(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "10.1.2.3",
            "192.168.0.1",
            "8.8.8.8",
            "fd00::1",
            "2001:db8::1",
        ] {
            assert!(is_external(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn connect_and_accept_put_the_peer_in_dst() {
        let n = net(Some("127.0.0.1:40000"), Some("10.0.0.5:443"), 1);
        let info = net_info(EventKind::Connect, &n);
        assert_eq!(
            (info.family.as_str(), info.protocol.as_str()),
            ("ipv4", "tcp")
        );
        assert_eq!(
            info.dst.as_ref().map(|d| (d.ip.to_string(), d.port)),
            Some(("10.0.0.5".to_string(), 443))
        );
        assert_eq!(info.src.as_ref().map(|s| s.port), Some(40000));
        assert!(info.dst_external);
        assert_eq!(info.result, Some(0));
        assert_eq!(info.bytes_sent, None);
    }

    #[test]
    fn bind_and_listen_have_no_destination() {
        let n = net(Some("0.0.0.0:8080"), Some("1.2.3.4:1"), 1);
        let info = net_info(EventKind::Listen, &n);
        assert!(info.dst.is_none() && !info.dst_external);
        assert_eq!(info.src.unwrap().port, 8080);
    }

    #[test]
    fn udp_sends_carry_their_length_and_no_result() {
        let mut n = net(None, Some("127.0.0.53:53"), 0);
        n.result = None;
        n.len = 37;
        let info = net_info(EventKind::UdpSend, &n);
        assert_eq!(
            (info.protocol.as_str(), info.bytes_sent, info.result),
            ("udp", Some(37), None)
        );
        assert!(!info.dst_external);
    }

    #[test]
    fn summaries_and_mapped_addresses() {
        let s = TcpSummary {
            local: Some("[::ffff:127.0.0.1]:5000".parse().unwrap()),
            remote: Some("[::ffff:127.0.0.1]:6000".parse().unwrap()),
            bytes_sent: 1,
            bytes_received: 2,
            opened_ktime_ns: 0,
            closed: false,
            netns: 0,
        };
        let info = summary_info(&s);
        assert_eq!(info.dst.unwrap().ip.to_string(), "127.0.0.1");
        assert_eq!(
            (info.bytes_sent, info.bytes_received, info.closed),
            (Some(1), Some(2), Some(false))
        );
    }

    #[test]
    fn dns_info_from_a_parsed_query_or_garbage() {
        let wire = DnsWire {
            server: Some("127.0.0.1:53".parse().unwrap()),
            local: None,
            socket_cookie: 1,
            netns: 0,
            tcp: true,
            id: Some(0x1234),
        };
        let good = Dns {
            server: Some("127.0.0.1:53".parse().unwrap()),
            question: dns::parse_query(&dns::test_query("models.example.test", 28)),
            wire: wire.clone(),
        };
        let info = dns_info(&good);
        assert_eq!(
            (info.name.as_str(), info.qtype.as_str()),
            ("models.example.test", "AAAA")
        );
        assert_eq!(info.server.unwrap().port, 53);
        assert_eq!(info.protocol, Protocol::Tcp);
        let bad = Dns {
            server: None,
            question: dns::parse_query(&[1, 2, 3]),
            wire: wire.clone(),
        };
        assert_eq!(dns_info(&bad).name, "");

        let reply = DnsAnswer {
            answer: crate::ingest::decode::dns_answer::parse_answer(
                &crate::ingest::decode::dns_answer::build::answer(
                    7,
                    "a.example.test",
                    &[("a.example.test", "A", "10.0.0.1", 30)],
                ),
                false,
            ),
            wire: wire.clone(),
        };
        let info = dns_answer_info(&reply, true);
        assert_eq!(info.name, "a.example.test");
        assert_eq!(info.answers, ["10.0.0.1".parse::<IpAddr>().unwrap()]);
        assert_eq!((info.ttl, info.verified), (Some(30), Some(true)));
        assert_eq!(info.rcode.as_deref(), Some("NOERROR"));
        let garbage = DnsAnswer {
            answer: crate::ingest::decode::dns_answer::parse_answer(&[0, 1, 0x80], false),
            wire,
        };
        let info = dns_answer_info(&garbage, false);
        assert_eq!(
            (info.error.as_deref(), info.verified),
            (Some("truncated"), None)
        );
    }
}
