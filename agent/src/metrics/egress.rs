//! Egress bytes per event, for `aiwatch_workload_egress_bytes_total`.
//!
//! A `tcp_summary` carries the running totals of one connection (periodic
//! reports while it is open, a last one at close), so the bytes a summary
//! adds are its growth since the previous summary of the same connection.
//! A `udp_send` carries the bytes of one send. Only traffic to external
//! addresses counts.

use std::collections::HashMap;

use crate::event::{Event, Kind};

/// Connections whose last total is remembered; past this, a new open
/// connection is counted at close only (its periodic reports add nothing).
const MAX_OPEN_CONNECTIONS: usize = 65_536;

/// One connection: process, source and destination.
type ConnectionKey = (
    u32,
    Option<std::net::IpAddr>,
    u16,
    Option<std::net::IpAddr>,
    u16,
);

#[derive(Debug, Default)]
pub struct EgressTotals {
    /// Bytes already counted per open connection.
    counted: HashMap<ConnectionKey, u64>,
}

impl EgressTotals {
    /// Bytes `event` sent to an external address that were not counted yet.
    pub fn new_bytes(&mut self, event: &Event) -> u64 {
        let Some(net) = event.net.as_ref().filter(|n| n.dst_external) else {
            return 0;
        };
        let sent = net.bytes_sent.unwrap_or(0);
        match event.kind {
            Kind::UdpSend => sent,
            Kind::TcpSummary => {
                let endpoint = |ep: Option<&crate::event::Endpoint>| {
                    ep.map(|e| (Some(e.ip), e.port)).unwrap_or_default()
                };
                let (src_ip, src_port) = endpoint(net.src.as_ref());
                let (dst_ip, dst_port) = endpoint(net.dst.as_ref());
                let key = (event.process.pid, src_ip, src_port, dst_ip, dst_port);
                let before = if net.closed == Some(false) {
                    let known = self.counted.len() < MAX_OPEN_CONNECTIONS
                        || self.counted.contains_key(&key);
                    if !known {
                        return 0;
                    }
                    self.counted.insert(key, sent).unwrap_or(0)
                } else {
                    self.counted.remove(&key).unwrap_or(0)
                };
                // Totals only grow; a smaller one is a new connection that
                // reused the ports.
                sent.checked_sub(before).unwrap_or(sent)
            }
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Endpoint, NetInfo};

    fn summary(pid: u32, sent: u64, closed: bool, external: bool) -> Event {
        Event {
            kind: Kind::TcpSummary,
            process: crate::event::Process {
                pid,
                ..Default::default()
            },
            net: Some(NetInfo {
                src: Some(Endpoint {
                    ip: "10.0.0.5".parse().unwrap(),
                    port: 40_000,
                }),
                dst: Some(Endpoint {
                    ip: "203.0.113.7".parse().unwrap(),
                    port: 443,
                }),
                bytes_sent: Some(sent),
                closed: Some(closed),
                dst_external: external,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn periodic_reports_add_their_growth_only() {
        let mut egress = EgressTotals::default();
        assert_eq!(egress.new_bytes(&summary(7, 1_000, false, true)), 1_000);
        assert_eq!(egress.new_bytes(&summary(7, 1_500, false, true)), 500);
        assert_eq!(egress.new_bytes(&summary(7, 4_000, true, true)), 2_500);
        // The connection is forgotten at close: the next one starts afresh.
        assert_eq!(egress.new_bytes(&summary(7, 300, true, true)), 300);
        assert!(egress.counted.is_empty());
    }

    #[test]
    fn loopback_and_local_traffic_is_not_egress() {
        let mut egress = EgressTotals::default();
        assert_eq!(egress.new_bytes(&summary(8, 9_999, true, false)), 0);
        let mut udp = summary(8, 512, false, true);
        udp.kind = Kind::UdpSend;
        assert_eq!(egress.new_bytes(&udp), 512);
    }
}
