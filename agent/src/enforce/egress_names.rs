//! Names in egress allowlists, carried out by address.
//!
//! The kernel's egress programs compare addresses: a name an allowlist lets
//! through (`net.dst_name: api.example.com`) is allowed by the addresses it
//! resolves to. Two sources give them, and each address found is added to
//! every allowlist that names it, with the name's port:
//!
//! - the agent's own resolution: a task resolves every allowlisted name
//!   when the lists change and again when its answer's TTL runs out
//!   (between [`MIN_REFRESH`] and [`MAX_REFRESH`]), through the host's
//!   resolvers or `enforcement.egress_name_servers`;
//! - verified DNS answers read on the wire (`enrich::names`): a workload
//!   whose resolver gives another address than the agent's (a CDN rotating
//!   its addresses) is allowed that address as soon as its answer has gone
//!   through the pipeline.
//!
//! An address stays allowed for [`ADDRESS_LIFE`] after it was last given
//! for the name, however short the TTL: clients keep addresses longer than
//! their TTL, and a refusal there would break a workload that did nothing
//! wrong. At most [`MAX_ADDRESSES_PER_NAME`] are kept per name; the one
//! seen longest ago goes first.
//!
//! What this cannot close: a workload that connects to a fresh answer's
//! address before the answer has crossed the ring buffer and the pipeline,
//! when the agent's own resolution did not give that address, is refused;
//! its retry is allowed.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use hickory_resolver::{
    config::{LookupIpStrategy, NameServerConfigGroup, ResolverConfig, ResolverOpts},
    name_server::TokioConnectionProvider,
    TokioResolver,
};
use ipnet::IpNet;
use tokio::sync::{mpsc, watch};

use crate::policy::kernel_plan::{EgressName, EgressPeer};

/// How long an address stays allowed after it was last given for a name.
pub const ADDRESS_LIFE: Duration = Duration::from_secs(3600);
/// Addresses kept per name.
pub const MAX_ADDRESSES_PER_NAME: usize = 64;
/// The agent resolves a name again no sooner than this after an answer...
pub const MIN_REFRESH: Duration = Duration::from_secs(5);
/// ...and no later than this, whatever its TTL, and this long after a
/// failure.
pub const MAX_REFRESH: Duration = Duration::from_secs(60);

/// What the agent's resolver found for one name.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub name: String,
    /// Empty when the lookup failed (`error` says why).
    pub addresses: Vec<IpAddr>,
    pub error: Option<String>,
}

/// The allowlisted names and the addresses they were given.
#[derive(Debug, Default)]
pub struct EgressNames {
    /// Name → the (scope, port) of every allowlist naming it.
    lists: HashMap<String, Vec<(u16, Option<u16>)>>,
    /// Name → address → when it was last given (an `Instant`).
    addresses: HashMap<String, HashMap<IpAddr, Instant>>,
}

impl EgressNames {
    /// Replaces the allowlists' names (at start-up and every reload).
    /// Addresses of names no list names any more are forgotten.
    pub fn set_lists(&mut self, lists: &[(u16, Vec<EgressName>)]) {
        self.lists.clear();
        for (scope, names) in lists {
            for name in names {
                self.lists
                    .entry(name.name.clone())
                    .or_default()
                    .push((*scope, name.port));
            }
        }
        self.addresses
            .retain(|name, _| self.lists.contains_key(name));
    }

    /// Every allowlisted name, for the resolver.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.lists.keys().cloned().collect();
        names.sort();
        names
    }

    /// Takes in addresses given for `name`; returns the peers newly
    /// allowed, by scope. A name no allowlist names is ignored.
    pub fn learn(
        &mut self,
        name: &str,
        addresses: &[IpAddr],
        now: Instant,
    ) -> Vec<(u16, EgressPeer)> {
        let Some(lists) = self.lists.get(name) else {
            return Vec::new();
        };
        let known = self.addresses.entry(name.to_owned()).or_default();
        let mut new = Vec::new();
        for &address in addresses {
            let address = address.to_canonical();
            if known.insert(address, now).is_none() {
                new.extend(lists.iter().map(|&(scope, port)| {
                    (
                        scope,
                        EgressPeer {
                            net: IpNet::from(address),
                            port,
                        },
                    )
                }));
            }
        }
        while known.len() > MAX_ADDRESSES_PER_NAME {
            let Some(oldest) = known.iter().min_by_key(|(_, seen)| **seen).map(|(a, _)| *a) else {
                break;
            };
            known.remove(&oldest);
        }
        new
    }

    /// Forgets addresses not given for [`ADDRESS_LIFE`]; true when any went.
    pub fn expire(&mut self, now: Instant) -> bool {
        let mut expired = false;
        for known in self.addresses.values_mut() {
            let before = known.len();
            known.retain(|_, seen| now.saturating_duration_since(*seen) < ADDRESS_LIFE);
            expired |= known.len() != before;
        }
        expired
    }

    /// The peers the names of `scope`'s allowlist stand for now.
    pub fn peers(&self, scope: u16) -> Vec<EgressPeer> {
        let mut peers = Vec::new();
        for (name, lists) in &self.lists {
            let Some(known) = self.addresses.get(name) else {
                continue;
            };
            for &(_, port) in lists.iter().filter(|(s, _)| *s == scope) {
                peers.extend(known.keys().map(|&address| EgressPeer {
                    net: IpNet::from(address),
                    port,
                }));
            }
        }
        peers.sort();
        peers.dedup();
        peers
    }

    /// Addresses known per name, for the log.
    pub fn address_count(&self) -> usize {
        self.addresses.values().map(HashMap::len).sum()
    }
}

/// Could not set up the agent's resolver.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the resolver for egress allowlist names: {0}")]
pub struct ResolverError(String);

/// The running resolver of allowlisted names.
pub struct NameResolver {
    /// The names to resolve.
    pub names: watch::Sender<Vec<String>>,
    /// What it finds.
    pub found: mpsc::Receiver<Resolved>,
    pub task: tokio::task::JoinHandle<()>,
}

/// Starts the task that resolves the allowlists' names: it resolves the
/// names sent on `names` whenever they change and whenever an answer's TTL
/// runs out, and sends what it finds. `servers` empty: the host's resolvers
/// (`/etc/resolv.conf`).
pub fn spawn_resolver(servers: &[SocketAddr]) -> Result<NameResolver, ResolverError> {
    let mut builder = if servers.is_empty() {
        TokioResolver::builder_tokio().map_err(|e| ResolverError(e.to_string()))?
    } else {
        let mut group = NameServerConfigGroup::new();
        for server in servers {
            group.merge(NameServerConfigGroup::from_ips_clear(
                &[server.ip()],
                server.port(),
                true,
            ));
        }
        TokioResolver::builder_with_config(
            ResolverConfig::from_parts(None, Vec::new(), group),
            TokioConnectionProvider::default(),
        )
    };
    // The host's options (resolv.conf) stay, but for these: both
    // families, as the kernel checks IPv4 and IPv6 connects alike.
    let options: &mut ResolverOpts = builder.options_mut();
    options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    options.timeout = Duration::from_secs(3);
    options.attempts = 2;
    let resolver = builder.build();
    let (names_tx, names_rx) = watch::channel(Vec::new());
    let (found_tx, found_rx) = mpsc::channel(256);
    let task = tokio::spawn(resolve_forever(resolver, names_rx, found_tx));
    Ok(NameResolver {
        names: names_tx,
        found: found_rx,
        task,
    })
}

async fn resolve_forever(
    resolver: TokioResolver,
    mut names: watch::Receiver<Vec<String>>,
    found: mpsc::Sender<Resolved>,
) {
    // Name → when it is due again.
    let mut due: HashMap<String, Instant> = HashMap::new();
    loop {
        let now = Instant::now();
        let wanted = names.borrow_and_update().clone();
        due.retain(|name, _| wanted.contains(name));
        for name in &wanted {
            if due.get(name).is_some_and(|at| *at > now) {
                continue;
            }
            // A fully qualified name: no search domain is appended.
            let (resolved, refresh) = match resolver.lookup_ip(format!("{name}.")).await {
                Ok(lookup) => {
                    let ttl = lookup
                        .valid_until()
                        .saturating_duration_since(Instant::now());
                    (
                        Resolved {
                            name: name.clone(),
                            addresses: lookup.iter().collect(),
                            error: None,
                        },
                        ttl.clamp(MIN_REFRESH, MAX_REFRESH),
                    )
                }
                Err(error) => (
                    Resolved {
                        name: name.clone(),
                        addresses: Vec::new(),
                        error: Some(error.to_string()),
                    },
                    MAX_REFRESH,
                ),
            };
            due.insert(name.clone(), Instant::now() + refresh);
            if found.send(resolved).await.is_err() {
                return;
            }
        }
        let next = due.values().min().copied();
        tokio::select! {
            changed = names.changed() => if changed.is_err() { return },
            _ = sleep_until(next) => {}
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(name: &str, port: Option<u16>) -> EgressName {
        EgressName {
            name: name.into(),
            port,
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_address_is_allowed_to_every_list_naming_it_with_its_port() {
        let mut names = EgressNames::default();
        names.set_lists(&[
            (1, vec![name("hub.test", Some(443))]),
            (
                2,
                vec![name("hub.test", None), name("other.test", Some(80))],
            ),
        ]);
        assert_eq!(names.names(), ["hub.test", "other.test"]);
        let now = Instant::now();
        let new = names.learn("hub.test", &[ip("10.0.0.3")], now);
        assert_eq!(new.len(), 2, "{new:?}");
        assert!(new.contains(&(
            1,
            EgressPeer {
                net: "10.0.0.3/32".parse().unwrap(),
                port: Some(443)
            }
        )));
        // Known already: nothing new; an IPv4-mapped form is the same.
        assert!(names
            .learn("hub.test", &[ip("::ffff:10.0.0.3")], now)
            .is_empty());
        // A name no list names is ignored.
        assert!(names.learn("evil.test", &[ip("10.6.6.6")], now).is_empty());
        assert_eq!(names.peers(2).len(), 1);
        assert!(names.peers(3).is_empty());
    }

    #[test]
    fn addresses_expire_and_are_bounded_per_name() {
        let mut names = EgressNames::default();
        names.set_lists(&[(1, vec![name("hub.test", Some(443))])]);
        let start = Instant::now();
        for i in 0..(MAX_ADDRESSES_PER_NAME + 10) {
            let address = IpAddr::from([10, 0, (i / 256) as u8, (i % 256) as u8]);
            names.learn(
                "hub.test",
                &[address],
                start + Duration::from_millis(i as u64),
            );
        }
        assert_eq!(names.address_count(), MAX_ADDRESSES_PER_NAME);
        // The first ten, seen longest ago, went first.
        assert!(!names
            .peers(1)
            .iter()
            .any(|p| p.net == "10.0.0.0/32".parse::<IpNet>().unwrap()));
        assert!(!names.expire(start + Duration::from_secs(60)));
        assert!(names.expire(start + ADDRESS_LIFE + Duration::from_secs(1)));
        assert!(names.peers(1).is_empty());
    }

    #[test]
    fn a_name_dropped_from_the_lists_forgets_its_addresses() {
        let mut names = EgressNames::default();
        names.set_lists(&[(1, vec![name("hub.test", None)])]);
        names.learn("hub.test", &[ip("10.0.0.3")], Instant::now());
        names.set_lists(&[(1, vec![name("other.test", None)])]);
        assert_eq!(names.address_count(), 0);
        assert!(names.peers(1).is_empty());
    }
}
