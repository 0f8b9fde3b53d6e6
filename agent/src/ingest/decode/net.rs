//! Decoding of the network records: connect/accept/bind/listen and UDP
//! sends (`NetRecord`), TCP byte totals (`TcpSummaryRecord`) and DNS query
//! copies (`DnsRecord`, parsed by [`super::dns`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use aiwatch_common::{
    DnsRecord, EventHeader, EventKind, NetRecord, SockAddr, TcpOwner, TcpSummaryRecord,
    DNS_FLAG_CUT, DNS_FLAG_TCP, NET_FLAG_DENIED, NET_FLAG_NO_RESULT, NET_FLAG_TRACKED,
    NET_FLAG_UNIX_ABSTRACT, TCP_OWNER_ACTIVE, TCP_SUMMARY_FLAG_ACTIVE, TCP_SUMMARY_FLAG_FINAL,
    TCP_SUMMARY_FLAG_FIN_ACKED, TCP_SUMMARY_FLAG_FIN_RECEIVED,
};

use super::{checked, dns, dns_answer, http_head, tls_hello, DecodeError, Payload};
use crate::event::NetFamily;

const AF_UNIX: u16 = 1;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// An address family as the kernel reported it.
fn family_from_raw(raw: u16) -> Option<NetFamily> {
    match raw {
        AF_INET => Some(NetFamily::Ipv4),
        AF_INET6 => Some(NetFamily::Ipv6),
        AF_UNIX => Some(NetFamily::Unix),
        _ => None,
    }
}

/// connect, accept, bind, listen or a UDP send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Net {
    /// The syscall's result; `None` for UDP sends, reported at entry.
    pub result: Option<i64>,
    pub fd: i32,
    /// `SOCK_STREAM` (1), `SOCK_DGRAM` (2), ...; 0 when unknown.
    pub sock_type: u16,
    pub family: Option<NetFamily>,
    pub local: Option<SocketAddr>,
    pub remote: Option<SocketAddr>,
    /// A unix socket path; abstract names start with `@`.
    pub unix_path: Option<String>,
    /// UDP sends: the payload size asked for.
    pub len: u32,
    pub tracked: bool,
    /// An egress allowlist refused the connect in the kernel
    /// (`NET_FLAG_DENIED`).
    pub denied: bool,
    /// The process's network namespace inode; 0 when unknown.
    pub netns: u32,
}

/// Byte totals of a TCP connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpSummary {
    pub local: Option<SocketAddr>,
    pub remote: Option<SocketAddr>,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub opened_ktime_ns: u64,
    /// Reported at close (else a periodic report of an open connection).
    pub closed: bool,
    /// The owner's network namespace inode; 0 when unknown.
    pub netns: u32,
}

/// Where a message copied off the wire went: the socket it left or
/// arrived at, and the peer at the other end (a DNS resolver, a TLS server).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsWire {
    /// The resolver: the query's destination, the answer's source.
    pub server: Option<SocketAddr>,
    /// The socket's own address.
    pub local: Option<SocketAddr>,
    /// Ties an answer to its query's socket.
    pub socket_cookie: u64,
    /// The querying process's network namespace inode; 0 when unknown.
    pub netns: u32,
    pub tcp: bool,
    /// The message id, when the copy holds a header.
    pub id: Option<u16>,
}

/// A DNS query seen leaving a socket for port 53.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dns {
    pub server: Option<SocketAddr>,
    /// The question, or why it could not be read.
    pub question: Result<dns::Question, dns::DnsError>,
    pub wire: DnsWire,
}

/// The first TLS record a process wrote on a TCP connection: a ClientHello.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsClientHello {
    /// The name in its `server_name` extension, `None` without one.
    pub server_name: Result<Option<String>, tls_hello::HelloError>,
    /// `server` is the TLS server's address.
    pub wire: DnsWire,
}

/// The head of a plain HTTP request a tracked process sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRequest {
    /// The host it names (`Host`), `None` for an HTTP/1.0 request without.
    pub host: Result<Option<String>, http_head::HeadError>,
    /// `server` is the HTTP server's address.
    pub wire: DnsWire,
}

/// A DNS answer from port 53, to a socket that sent a query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsAnswer {
    pub answer: Result<dns_answer::Answer, dns_answer::AnswerError>,
    pub wire: DnsWire,
}

/// Decodes the network family's records; `kind` is one of its kinds.
pub(super) fn decode(
    kind: EventKind,
    header: &EventHeader,
    bytes: &[u8],
) -> Result<Payload, DecodeError> {
    Ok(match kind {
        EventKind::TcpSummary => {
            let r = checked::<TcpSummaryRecord>(kind, header, bytes)?;
            Payload::TcpSummary(tcp_summary(&r))
        }
        EventKind::Dns => {
            let r = checked::<DnsRecord>(kind, header, bytes)?;
            Payload::Dns(Box::new(dns_query(&r)))
        }
        EventKind::DnsAnswer => {
            let r = checked::<DnsRecord>(kind, header, bytes)?;
            Payload::DnsAnswer(Box::new(dns_answer(&r)))
        }
        EventKind::TlsClientHello => {
            let r = checked::<DnsRecord>(kind, header, bytes)?;
            Payload::TlsClientHello(Box::new(TlsClientHello {
                server_name: tls_hello::server_name(dns_payload(&r)),
                wire: dns_wire(&r),
            }))
        }
        EventKind::HttpRequest => {
            let r = checked::<DnsRecord>(kind, header, bytes)?;
            Payload::HttpRequest(Box::new(HttpRequest {
                host: http_head::host(dns_payload(&r)),
                wire: dns_wire(&r),
            }))
        }
        _ => {
            let r = checked::<NetRecord>(kind, header, bytes)?;
            Payload::Net(Box::new(net(&r)))
        }
    })
}

pub fn net(r: &NetRecord) -> Net {
    let flags = r.header.flags;
    let unix_path = (r.remote.family == AF_UNIX || r.local.family == AF_UNIX)
        .then(|| {
            let len = usize::from(r.unix_path_len).min(r.unix_path.len());
            let raw = &r.unix_path[..len];
            if flags & NET_FLAG_UNIX_ABSTRACT != 0 {
                let name = raw.get(1..).unwrap_or_default();
                let name = name.split(|&b| b == 0).next().unwrap_or_default();
                format!("@{}", String::from_utf8_lossy(name))
            } else {
                super::c_string(raw)
            }
        })
        .filter(|path| !path.is_empty());
    let family = family_from_raw(r.remote.family).or(family_from_raw(r.local.family));
    Net {
        result: (flags & NET_FLAG_NO_RESULT == 0).then_some(r.ret),
        fd: r.fd,
        sock_type: r.sock_type,
        family,
        local: socket_addr(&r.local),
        remote: socket_addr(&r.remote),
        unix_path,
        len: r.len,
        tracked: flags & NET_FLAG_TRACKED != 0,
        denied: flags & NET_FLAG_DENIED != 0,
        netns: r.netns,
    }
}

pub fn tcp_summary(r: &TcpSummaryRecord) -> TcpSummary {
    let flags = r.header.flags;
    let (bytes_sent, bytes_received) = data_bytes(
        r.bytes_sent,
        r.bytes_received,
        flags & TCP_SUMMARY_FLAG_ACTIVE != 0,
        flags & TCP_SUMMARY_FLAG_FIN_ACKED != 0,
        flags & TCP_SUMMARY_FLAG_FIN_RECEIVED != 0,
    );
    TcpSummary {
        local: socket_addr(&r.local),
        remote: socket_addr(&r.remote),
        bytes_sent,
        bytes_received,
        opened_ktime_ns: r.opened_ktime_ns,
        closed: r.header.flags & TCP_SUMMARY_FLAG_FINAL != 0,
        netns: r.netns,
    }
}

/// The summary of an open connection, from an entry of the `TCP_OWNERS` map.
pub fn open_connection(owner: &TcpOwner) -> TcpSummary {
    let active = owner.flags & TCP_OWNER_ACTIVE != 0;
    let (bytes_sent, bytes_received) =
        data_bytes(owner.bytes_sent, owner.bytes_received, active, false, false);
    TcpSummary {
        local: socket_addr(&owner.local),
        remote: socket_addr(&owner.remote),
        bytes_sent,
        bytes_received,
        opened_ktime_ns: owner.opened_ktime_ns,
        closed: false,
        netns: owner.netns,
    }
}

/// Data bytes from the kernel's sequence-space totals: `bytes_acked`
/// counts an active opener's SYN and our FIN once acked, `bytes_received`
/// counts the peer's FIN.
fn data_bytes(
    acked: u64,
    received: u64,
    active: bool,
    fin_acked: bool,
    fin_received: bool,
) -> (u64, u64) {
    let sent = acked
        .saturating_sub(u64::from(active && acked > 0))
        .saturating_sub(u64::from(fin_acked));
    (sent, received.saturating_sub(u64::from(fin_received)))
}

/// The bytes of a DNS record's copy, its length clamped to the buffer.
fn dns_payload(r: &DnsRecord) -> &[u8] {
    &r.payload[..usize::from(r.payload_len).min(r.payload.len())]
}

fn dns_wire(r: &DnsRecord) -> DnsWire {
    DnsWire {
        server: socket_addr(&r.remote),
        local: socket_addr(&r.local),
        socket_cookie: r.socket_cookie,
        netns: r.netns,
        tcp: r.header.flags & DNS_FLAG_TCP != 0,
        id: dns_answer::message_id(dns_payload(r)),
    }
}

pub fn dns_query(r: &DnsRecord) -> Dns {
    Dns {
        server: socket_addr(&r.remote),
        question: dns::parse_query(dns_payload(r)),
        wire: dns_wire(r),
    }
}

pub fn dns_answer(r: &DnsRecord) -> DnsAnswer {
    DnsAnswer {
        answer: dns_answer::parse_answer(dns_payload(r), r.header.flags & DNS_FLAG_CUT != 0),
        wire: dns_wire(r),
    }
}

/// An inet [`SockAddr`] as a socket address; `None` for other families.
pub fn socket_addr(raw: &SockAddr) -> Option<SocketAddr> {
    let ip = match raw.family {
        AF_INET => IpAddr::V4(Ipv4Addr::new(
            raw.addr[0],
            raw.addr[1],
            raw.addr[2],
            raw.addr[3],
        )),
        AF_INET6 => IpAddr::V6(Ipv6Addr::from(raw.addr)),
        _ => return None,
    };
    Some(SocketAddr::new(ip, raw.port))
}

#[cfg(test)]
mod tests {
    use std::mem::size_of;

    use super::*;
    use crate::ingest::decode::{
        decode,
        dns::test_query,
        test_support::{self, bytes_of, zeroed},
        DecodeError, Payload,
    };

    fn header(kind: EventKind, size: usize) -> aiwatch_common::EventHeader {
        test_support::header(kind, size, 100, "")
    }

    fn inet(family: u16, addr: &[u8], port: u16) -> SockAddr {
        let mut a = SockAddr {
            family,
            port,
            _pad: 0,
            addr: [0; 16],
        };
        a.addr[..addr.len()].copy_from_slice(addr);
        a
    }

    fn net_record(kind: EventKind) -> NetRecord {
        let mut r: NetRecord = zeroed();
        r.header = header(kind, size_of::<NetRecord>());
        r
    }

    #[test]
    fn connect_with_result_and_both_ends() {
        let mut r = net_record(EventKind::Connect);
        r.ret = -115;
        r.fd = 3;
        r.sock_type = 1;
        r.remote = inet(2, &[127, 0, 0, 1], 8080);
        r.local = inet(2, &[127, 0, 0, 1], 40000);
        let Payload::Net(net) = decode(&bytes_of(&r)).unwrap().payload else {
            panic!("not a net payload");
        };
        assert_eq!(net.result, Some(-115));
        assert_eq!(net.family, Some(NetFamily::Ipv4));
        assert_eq!(net.remote, Some("127.0.0.1:8080".parse().unwrap()));
        assert_eq!(net.local, Some("127.0.0.1:40000".parse().unwrap()));
        assert_eq!((net.fd, net.sock_type, net.unix_path), (3, 1, None));
    }

    #[test]
    fn ipv6_and_unix_addresses() {
        let mut r = net_record(EventKind::Connect);
        let mut loopback = [0u8; 16];
        loopback[15] = 1;
        r.remote = inet(10, &loopback, 443);
        let net = net(&r);
        assert_eq!(net.remote, Some("[::1]:443".parse().unwrap()));
        assert_eq!(net.family, Some(NetFamily::Ipv6));

        let mut r = net_record(EventKind::Connect);
        r.remote.family = 1;
        r.unix_path[..9].copy_from_slice(b"/run/sock");
        r.unix_path_len = 10; // the NUL counted, as sockaddr lengths often do
        let unix = super::net(&r);
        assert_eq!(unix.unix_path.as_deref(), Some("/run/sock"));
        assert_eq!(unix.family, Some(NetFamily::Unix));
        assert_eq!(unix.remote, None);

        r.header.flags = NET_FLAG_UNIX_ABSTRACT;
        r.unix_path = [0; 108];
        r.unix_path[1..5].copy_from_slice(b"abst");
        r.unix_path_len = 5;
        assert_eq!(super::net(&r).unix_path.as_deref(), Some("@abst"));
    }

    #[test]
    fn udp_sends_have_no_result_and_a_length_that_cannot_overrun() {
        let mut r = net_record(EventKind::UdpSend);
        r.header.flags = NET_FLAG_NO_RESULT;
        r.len = 42;
        r.remote = inet(2, &[10, 0, 0, 1], 53);
        r.unix_path_len = u16::MAX; // garbage length, no unix family: ignored
        let net = net(&r);
        assert_eq!((net.result, net.len, net.unix_path), (None, 42, None));
        // Unix family with an empty path and a garbage length: no path.
        r.remote.family = 1;
        assert_eq!(super::net(&r).unix_path, None);
    }

    #[test]
    fn summaries_and_dns_queries() {
        let mut r: TcpSummaryRecord = zeroed();
        r.header = header(EventKind::TcpSummary, size_of::<TcpSummaryRecord>());
        // A client's socket after an orderly close: SYN and FIN acked, the
        // peer's FIN received.
        r.header.flags = TCP_SUMMARY_FLAG_FINAL
            | TCP_SUMMARY_FLAG_ACTIVE
            | TCP_SUMMARY_FLAG_FIN_ACKED
            | TCP_SUMMARY_FLAG_FIN_RECEIVED;
        r.bytes_sent = 10_002;
        r.bytes_received = 2_501;
        r.remote = inet(2, &[127, 0, 0, 1], 9000);
        let Payload::TcpSummary(s) = decode(&bytes_of(&r)).unwrap().payload else {
            panic!("not a summary");
        };
        assert_eq!(
            (s.bytes_sent, s.bytes_received, s.closed),
            (10_000, 2_500, true)
        );
        // A refused connect: nothing acked, nothing to subtract.
        r.bytes_sent = 0;
        r.bytes_received = 0;
        let s = tcp_summary(&r);
        assert_eq!((s.bytes_sent, s.bytes_received), (0, 0));
        // A passive socket reset before any FIN: raw counts are data.
        r.header.flags = TCP_SUMMARY_FLAG_FINAL;
        r.bytes_sent = 7;
        r.bytes_received = 9;
        assert_eq!(
            (tcp_summary(&r).bytes_sent, tcp_summary(&r).bytes_received),
            (7, 9)
        );

        let mut d: DnsRecord = zeroed();
        d.header = header(EventKind::Dns, size_of::<DnsRecord>());
        d.remote = inet(2, &[127, 0, 0, 1], 53);
        let query = test_query("models.example.test", 1);
        d.payload[..query.len()].copy_from_slice(&query);
        d.payload_len = query.len() as u16;
        let Payload::Dns(dns) = decode(&bytes_of(&d)).unwrap().payload else {
            panic!("not dns");
        };
        assert_eq!(dns.question.unwrap().name, "models.example.test");
        // A garbage payload length is clamped, and garbage bytes are an error value.
        d.payload_len = 9999;
        d.payload = [0xff; aiwatch_common::DNS_PAYLOAD_LEN];
        assert!(dns_query(&d).question.is_err());
    }

    #[test]
    fn short_and_mis_sized_records_are_rejected() {
        let r = net_record(EventKind::Accept);
        let bytes = bytes_of(&r);
        for len in [0, 10, size_of::<NetRecord>() - 1] {
            assert!(decode(&bytes[..len]).is_err(), "len {len}");
        }
        let mut wrong = r;
        wrong.header.size = 12;
        assert!(matches!(
            decode(&bytes_of(&wrong)),
            Err(DecodeError::BadSize {
                kind: EventKind::Accept,
                ..
            })
        ));
        // A summary-sized buffer claiming to be a NetRecord kind.
        let mut s: TcpSummaryRecord = zeroed();
        s.header = header(EventKind::Connect, size_of::<TcpSummaryRecord>());
        assert!(decode(&bytes_of(&s)).is_err());
    }
}
