//! Names of peers: DNS answers fill a bounded cache per network namespace,
//! address → name, which names the destination of later connections
//! (`net.dst_name`).
//!
//! Trust: any process can send a datagram to a socket, so an answer is
//! *verified* only when it matches a query seen leaving the same socket
//! (same socket cookie and message id), comes from the resolver that query
//! went to (same address and port) and answers the same name. Unverified
//! answers still name addresses, marked `dst_name_verified: false`, but
//! never replace a verified name, and the rules' trusted-host exceptions
//! accept only verified names.
//!
//! Bounds: pending queries and cached names are capped; the oldest entry
//! goes first, and every eviction is counted. A name lives for its answer's
//! TTL, raised to [`NameLimits::min_ttl_s`] (a client connects right after
//! a zero-TTL answer) and cut at [`NameLimits::max_ttl_s`].

use std::{
    collections::{HashMap, VecDeque},
    net::{IpAddr, SocketAddr},
};

use crate::ingest::decode::{dns, dns_answer::Answer, net::DnsWire};

const NS_PER_S: u64 = 1_000_000_000;

/// The network namespace key of names the agent resolved itself (the names
/// of egress allowlists): they name an address in any namespace that has no
/// answer of its own for it, as the kernel allows that address to the
/// allowlist's workload in any namespace. No namespace has inode 0.
const AGENT_RESOLVED: u32 = 0;

/// Bounds of the name cache; the `names:` section of the configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NameLimits {
    /// Addresses named at once, over all network namespaces.
    pub max_names: usize,
    /// Queries waiting for their answer.
    pub max_pending: usize,
    /// Seconds a query waits for its answer before it is forgotten.
    pub query_timeout_s: u64,
    /// The shortest life of a cached name, whatever the TTL said.
    pub min_ttl_s: u64,
    /// The longest life of a cached name.
    pub max_ttl_s: u64,
    /// The port DNS is read on, for queries and answers alike (a resolver
    /// on another port: a split-horizon stub, a test's own server).
    pub dns_port: u16,
}

impl Default for NameLimits {
    fn default() -> Self {
        Self {
            max_names: 65_536,
            max_pending: 4_096,
            // Resolvers give up after about 5 s per try and a few tries.
            query_timeout_s: 30,
            min_ttl_s: 60,
            max_ttl_s: 86_400,
            dns_port: 53,
        }
    }
}

/// What the cache has done since start-up, exported as metrics.
pub use crate::metrics::NameTotals as NameStats;

/// A name for an address, as the cache hands it out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerName {
    pub name: String,
    pub verified: bool,
}

struct Pending {
    server: Option<SocketAddr>,
    name: Option<String>,
    sent_ns: u64,
}

struct Cached {
    name: String,
    verified: bool,
    expires_ns: u64,
    /// Which insertion this is, so that stale entries of `order` are skipped.
    generation: u64,
}

type NameKey = (u32, IpAddr);

pub struct NameCache {
    limits: NameLimits,
    pending: HashMap<(u64, u16), Pending>,
    pending_order: VecDeque<(u64, u16, u64)>,
    names: HashMap<NameKey, Cached>,
    order: VecDeque<(NameKey, u64)>,
    generation: u64,
    stats: NameStats,
}

impl NameCache {
    pub fn new(limits: NameLimits) -> Self {
        Self {
            limits,
            pending: HashMap::new(),
            pending_order: VecDeque::new(),
            names: HashMap::new(),
            order: VecDeque::new(),
            generation: 0,
            stats: NameStats::default(),
        }
    }

    pub fn stats(&self) -> NameStats {
        self.stats
    }

    /// Remembers a query seen leaving a socket, so that its answer can be
    /// verified.
    pub fn query(&mut self, wire: &DnsWire, question: Option<&dns::Question>, now_ns: u64) {
        let Some(id) = wire.id else {
            return;
        };
        let key = (wire.socket_cookie, id);
        self.expire_pending(now_ns);
        while self.pending.len() >= self.limits.max_pending.max(1) {
            let Some((cookie, id, sent)) = self.pending_order.pop_front() else {
                break;
            };
            if self
                .pending
                .get(&(cookie, id))
                .is_some_and(|p| p.sent_ns == sent)
            {
                self.pending.remove(&(cookie, id));
                self.stats.evictions += 1;
            }
        }
        self.pending.insert(
            key,
            Pending {
                server: wire.server,
                name: question.map(|q| q.name.to_ascii_lowercase()),
                sent_ns: now_ns,
            },
        );
        self.pending_order.push_back((key.0, key.1, now_ns));
    }

    /// Takes in an answer; returns whether it is verified. Its addresses
    /// are named in the querier's network namespace.
    pub fn answer(&mut self, wire: &DnsWire, answer: &Answer, now_ns: u64) -> bool {
        self.expire_pending(now_ns);
        let verified = self
            .pending
            .remove(&(wire.socket_cookie, answer.id))
            .is_some_and(|query| {
                same_server(query.server, wire.server)
                    && query.name.as_deref().is_none_or(|name| name == answer.name)
            });
        if verified {
            self.stats.answers_verified += 1;
        } else {
            self.stats.answers_unverified += 1;
        }
        if answer.name.is_empty() {
            return verified;
        }
        let ttl_s = u64::from(answer.ttl.unwrap_or(0))
            .clamp(self.limits.min_ttl_s, self.limits.max_ttl_s.max(1));
        for &address in &answer.addresses {
            self.insert(
                (wire.netns, canonical(address)),
                &answer.name,
                verified,
                now_ns,
                now_ns.saturating_add(ttl_s * NS_PER_S),
            );
        }
        verified
    }

    /// Takes in addresses the agent resolved for `name` itself; they are
    /// verified (the agent asked), and live `life_s` seconds.
    pub fn resolved_by_agent(
        &mut self,
        name: &str,
        addresses: &[IpAddr],
        now_ns: u64,
        life_s: u64,
    ) {
        for &address in addresses {
            self.insert(
                (AGENT_RESOLVED, canonical(address)),
                name,
                true,
                now_ns,
                now_ns.saturating_add(life_s.saturating_mul(NS_PER_S)),
            );
        }
    }

    /// Counts an answer that could not be parsed.
    pub fn malformed(&mut self) {
        self.stats.answers_malformed += 1;
    }

    /// The name of `address` as seen from network namespace `netns`, if a
    /// live answer named it. Counted as a hit or a miss.
    pub fn lookup(&mut self, netns: u32, address: IpAddr, now_ns: u64) -> Option<PeerName> {
        let live = |key| self.names.get(&key).filter(|c| c.expires_ns > now_ns);
        let found = live((netns, canonical(address)))
            .or_else(|| live((AGENT_RESOLVED, canonical(address))))
            .map(|c| PeerName {
                name: c.name.clone(),
                verified: c.verified,
            });
        if found.is_some() {
            self.stats.hits += 1;
        } else {
            self.stats.misses += 1;
        }
        found
    }

    fn insert(&mut self, key: NameKey, name: &str, verified: bool, now_ns: u64, expires_ns: u64) {
        // An unverified answer never replaces a live verified name.
        if !verified
            && self
                .names
                .get(&key)
                .is_some_and(|c| c.verified && c.expires_ns > now_ns)
        {
            return;
        }
        while self.names.len() >= self.limits.max_names.max(1) && !self.names.contains_key(&key) {
            let Some((old, generation)) = self.order.pop_front() else {
                break;
            };
            if self
                .names
                .get(&old)
                .is_some_and(|c| c.generation == generation)
            {
                self.names.remove(&old);
                self.stats.evictions += 1;
            }
        }
        self.generation += 1;
        self.names.insert(
            key,
            Cached {
                name: name.to_owned(),
                verified,
                expires_ns,
                generation: self.generation,
            },
        );
        self.order.push_back((key, self.generation));
        // Stale order entries (replaced names) would otherwise pile up.
        if self.order.len() > 2 * self.limits.max_names.max(1) {
            let names = &self.names;
            self.order
                .retain(|(k, g)| names.get(k).is_some_and(|c| c.generation == *g));
        }
    }

    fn expire_pending(&mut self, now_ns: u64) {
        let timeout = self.limits.query_timeout_s.saturating_mul(NS_PER_S);
        while let Some(&(cookie, id, sent)) = self.pending_order.front() {
            if sent.saturating_add(timeout) > now_ns {
                break;
            }
            self.pending_order.pop_front();
            if self
                .pending
                .get(&(cookie, id))
                .is_some_and(|p| p.sent_ns == sent)
            {
                self.pending.remove(&(cookie, id));
            }
        }
    }
}

/// Same resolver: same address (v4-mapped or not) and port.
fn same_server(query: Option<SocketAddr>, answer: Option<SocketAddr>) -> bool {
    match (query, answer) {
        (Some(q), Some(a)) => canonical(q.ip()) == canonical(a.ip()) && q.port() == a.port(),
        _ => false,
    }
}

/// IPv4-mapped IPv6 addresses as IPv4, so both spellings share an entry.
fn canonical(address: IpAddr) -> IpAddr {
    address.to_canonical()
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = NS_PER_S;

    fn wire(cookie: u64, server: &str, id: u16, netns: u32) -> DnsWire {
        DnsWire {
            server: Some(server.parse().unwrap()),
            local: None,
            socket_cookie: cookie,
            netns,
            tcp: false,
            id: Some(id),
        }
    }

    fn question(name: &str) -> dns::Question {
        dns::Question {
            name: name.into(),
            qtype: 1,
        }
    }

    fn answer(id: u16, name: &str, addresses: &[&str], ttl: u32) -> Answer {
        Answer {
            id,
            name: name.into(),
            qtype: 1,
            rcode: 0,
            cnames: vec![],
            addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
            ttl: Some(ttl),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn names_the_agent_resolved_name_addresses_in_every_namespace_without_their_own() {
        let mut cache = NameCache::new(NameLimits::default());
        cache.resolved_by_agent("hub.example.test", &[ip("10.0.0.3")], S, 60);
        let named = cache.lookup(100, ip("10.0.0.3"), 2 * S).unwrap();
        assert_eq!(named.name, "hub.example.test");
        assert!(named.verified);
        // A namespace's own answer comes first.
        let q = wire(7, "127.0.0.53:53", 1, 200);
        cache.query(&q, Some(&question("local.test")), 2 * S);
        cache.answer(&q, &answer(1, "local.test", &["10.0.0.3"], 300), 3 * S);
        assert_eq!(
            cache.lookup(200, ip("10.0.0.3"), 4 * S).unwrap().name,
            "local.test"
        );
        assert_eq!(
            cache.lookup(100, ip("10.0.0.3"), 4 * S).unwrap().name,
            "hub.example.test"
        );
        // It lives as long as it was given.
        assert!(cache.lookup(100, ip("10.0.0.3"), 62 * S).is_none());
    }

    #[test]
    fn an_answer_to_a_query_names_its_addresses_in_its_namespace() {
        let mut cache = NameCache::new(NameLimits::default());
        let q = wire(7, "127.0.0.53:53", 0x42, 100);
        cache.query(&q, Some(&question("Models.Example.Test")), S);
        let verified = cache.answer(
            &q,
            &answer(0x42, "models.example.test", &["10.0.0.9"], 300),
            2 * S,
        );
        assert!(verified);
        let name = cache.lookup(100, ip("10.0.0.9"), 3 * S).unwrap();
        assert_eq!(
            (name.name.as_str(), name.verified),
            ("models.example.test", true)
        );
        // Another namespace, or after the TTL: no name.
        assert_eq!(cache.lookup(200, ip("10.0.0.9"), 3 * S), None);
        assert_eq!(cache.lookup(100, ip("10.0.0.9"), 400 * S), None);
        // The v4-mapped spelling of the address is the same peer.
        assert!(cache.lookup(100, ip("::ffff:10.0.0.9"), 3 * S).is_some());
        let stats = cache.stats();
        assert_eq!(
            (stats.hits, stats.misses, stats.answers_verified),
            (2, 2, 1)
        );
    }

    #[test]
    fn forged_answers_are_not_verified() {
        let mut cache = NameCache::new(NameLimits::default());
        // No query on that socket.
        let forged = wire(9, "10.0.0.53:53", 1, 100);
        assert!(!cache.answer(
            &forged,
            &answer(1, "api.example.test", &["10.6.6.6"], 60),
            S
        ));
        // A query, but the answer comes from another address, has another
        // id, or names another name.
        let q = wire(10, "10.0.0.53:53", 2, 100);
        cache.query(&q, Some(&question("api.example.test")), S);
        let elsewhere = wire(10, "10.0.0.66:53", 2, 100);
        assert!(!cache.answer(
            &elsewhere,
            &answer(2, "api.example.test", &["10.6.6.7"], 60),
            S
        ));
        cache.query(&q, Some(&question("api.example.test")), S);
        assert!(!cache.answer(&q, &answer(3, "api.example.test", &["10.6.6.8"], 60), S));
        cache.query(&q, Some(&question("api.example.test")), S);
        assert!(!cache.answer(&q, &answer(2, "other.example.test", &["10.6.6.9"], 60), S));
        for a in ["10.6.6.6", "10.6.6.7", "10.6.6.8", "10.6.6.9"] {
            assert!(!cache.lookup(100, ip(a), 2 * S).unwrap().verified, "{a}");
        }
        // A forged answer does not replace a verified name.
        cache.query(&q, Some(&question("good.example.test")), S);
        assert!(cache.answer(&q, &answer(2, "good.example.test", &["10.1.1.1"], 60), S));
        cache.answer(
            &forged,
            &answer(1, "evil.example.test", &["10.1.1.1"], 60),
            2 * S,
        );
        let name = cache.lookup(100, ip("10.1.1.1"), 3 * S).unwrap();
        assert_eq!(
            (name.name.as_str(), name.verified),
            ("good.example.test", true)
        );
    }

    #[test]
    fn queries_time_out() {
        let mut cache = NameCache::new(NameLimits::default());
        let q = wire(7, "10.0.0.53:53", 5, 1);
        cache.query(&q, None, S);
        assert!(!cache.answer(&q, &answer(5, "late.test", &["10.0.0.1"], 60), 40 * S));
    }

    #[test]
    fn the_cache_is_bounded_and_counts_evictions() {
        let limits = NameLimits {
            max_names: 4,
            max_pending: 2,
            ..NameLimits::default()
        };
        let mut cache = NameCache::new(limits);
        for i in 0..10u8 {
            let q = wire(u64::from(i), "10.0.0.53:53", 1, 1);
            cache.query(&q, None, S);
            cache.answer(&q, &answer(1, "n.test", &[&format!("10.0.1.{i}")], 60), S);
        }
        assert!(cache.names.len() <= 4);
        assert_eq!(cache.stats().evictions, 6);
        // The newest names stay.
        assert!(cache.lookup(1, ip("10.0.1.9"), S).is_some());
        assert!(cache.lookup(1, ip("10.0.1.0"), S).is_none());
        for i in 0..10u16 {
            cache.query(&wire(99, "10.0.0.53:53", i, 1), None, S);
        }
        assert!(cache.pending.len() <= 2);
    }
}
