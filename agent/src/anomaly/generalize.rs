//! Generalisation: turns one concrete observation (a path, an address, a
//! port) into the learned item that stands for it, so that profiles stay
//! small and ordinary churn (new shard numbers, pod IPs, ephemeral ports,
//! hashed directories) is not novel.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// Asset classes whose file name is not part of the learned item: any file
/// with the same extension in a learned folder is the same kind of access
/// (`/models/llama/shard-00017.safetensors` → `/models/llama/*.safetensors`).
const FOLDER_CLASSES: [&str; 3] = ["model", "pickle-model", "dataset"];

/// Ephemeral port range (Linux default `ip_local_port_range`).
pub const EPHEMERAL_PORTS: std::ops::RangeInclusive<u16> = 32768..=60999;

/// `*` for uuid-like or hash-like components; digit runs become `*` otherwise.
pub fn generalize_component(component: &str) -> String {
    if is_generalised(component) {
        return "*".to_string();
    }
    let mut out = String::with_capacity(component.len());
    let mut in_digits = false;
    for ch in component.chars() {
        if ch.is_ascii_digit() {
            if !in_digits {
                out.push('*');
            }
            in_digits = true;
        } else {
            out.push(ch);
            in_digits = false;
        }
    }
    out
}

fn is_uuid_like(s: &str) -> bool {
    // 8-4-4-4-12 hex digits: tested without splitting, since every
    // component of every path an event names comes through here.
    s.len() == 36
        && s.bytes().enumerate().all(|(index, byte)| match index {
            8 | 13 | 18 | 23 => byte == b'-',
            _ => byte.is_ascii_hexdigit(),
        })
}

/// Hex of 12+ characters with a digit (git/sha/container ids), or a long
/// random-looking alphanumeric token with both letters and digits.
fn is_hash_like(s: &str) -> bool {
    // Most path components are short: decided without a scan.
    if s.len() < 12 {
        return false;
    }
    let has_digit = s.chars().any(|c| c.is_ascii_digit());
    let has_alpha = s.chars().any(|c| c.is_ascii_alphabetic());
    let all_hex = s.chars().all(|c| c.is_ascii_hexdigit());
    let all_alnum = s.chars().all(|c| c.is_ascii_alphanumeric());
    (s.len() >= 12 && all_hex && has_digit)
        || (s.len() >= 24 && all_alnum && has_digit && has_alpha)
}

/// Executables keep their digits (`python3.11` is not `python*.*`); only
/// uuid- and hash-like directory components are generalised.
pub fn generalize_exe(exe: &str, max_bytes: usize) -> String {
    if !has_generalised_component(exe) {
        return truncate_item(exe.to_string(), max_bytes);
    }
    let generalized: Vec<&str> = exe
        .split('/')
        .map(|c| if is_generalised(c) { "*" } else { c })
        .collect();
    truncate_item(generalized.join("/"), max_bytes)
}

/// `generalize_exe(exe)` is `exe` itself: true for nearly every executable,
/// and decided without a copy (the anomaly engine asks for every event of a
/// learning workload).
pub fn exe_is_its_own_pattern(exe: &str, max_bytes: usize) -> bool {
    exe.len() <= max_bytes && !has_generalised_component(exe)
}

/// A uuid- or hash-like path component: `*` in every learned pattern.
fn is_generalised(component: &str) -> bool {
    is_uuid_like(component) || is_hash_like(component)
}

fn has_generalised_component(exe: &str) -> bool {
    exe.split('/').any(is_generalised)
}

/// The learned pattern of a classified file path.
pub fn generalize_file_path(path: &str, class: &str, max_bytes: usize) -> String {
    let (dir, file) = match path.rsplit_once('/') {
        Some((dir, file)) => (dir, file),
        None => ("", path),
    };
    let mut parts: Vec<String> = dir.split('/').map(generalize_component).collect();
    let file_pattern = if FOLDER_CLASSES.contains(&class) {
        match file.rsplit_once('.') {
            Some((stem, ext)) if !stem.is_empty() && is_plain_extension(ext) => {
                format!("*.{ext}")
            }
            _ => "*".to_string(),
        }
    } else {
        generalize_component(file)
    };
    parts.push(file_pattern);
    truncate_item(parts.join("/"), max_bytes)
}

fn is_plain_extension(ext: &str) -> bool {
    !ext.is_empty() && ext.len() <= 16 && ext.chars().all(|c| c.is_ascii_alphanumeric())
}

/// Cuts an item to `max_bytes` on a character boundary, ending it in `*` so
/// that it reads (and exports) as a prefix.
pub fn truncate_item(item: String, max_bytes: usize) -> String {
    if item.len() <= max_bytes || max_bytes < 2 {
        return item;
    }
    let mut cut = max_bytes - 1;
    while !item.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}*", &item[..cut])
}

/// How a network peer is learned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerForms {
    /// `<cidr>:<port>` or `loopback:<port>`.
    pub network: String,
    /// `<dns name>:<port>`, when the destination's name is known.
    pub name: Option<String>,
}

/// Loopback stays exact per port; private IPv4 generalises to its RFC 1918
/// (or CGNAT) block, since pod and node addresses churn inside it; other
/// IPv4 to its /24; IPv6 to its /64.
pub fn generalize_peer(ip: IpAddr, port: u16, dns_name: Option<&str>) -> Option<PeerForms> {
    let ip = ip.to_canonical();
    let network = match ip {
        IpAddr::V4(v4) if v4.is_loopback() => format!("loopback:{port}"),
        IpAddr::V6(v6) if v6.is_loopback() => format!("loopback:{port}"),
        IpAddr::V4(v4) => format!("{}:{port}", ipv4_block(v4)),
        IpAddr::V6(v6) => format!("{}:{port}", ipv6_block(v6)),
    };
    let name = dns_name
        .map(|n| n.trim_end_matches('.').to_ascii_lowercase())
        .filter(|n| !n.is_empty())
        .map(|n| format!("{}:{port}", generalize_dns_name(&n)));
    Some(PeerForms { network, name })
}

fn ipv4_block(v4: Ipv4Addr) -> IpNet {
    const WIDE_BLOCKS: [(Ipv4Addr, u8); 5] = [
        (Ipv4Addr::new(10, 0, 0, 0), 8),
        (Ipv4Addr::new(172, 16, 0, 0), 12),
        (Ipv4Addr::new(192, 168, 0, 0), 16),
        (Ipv4Addr::new(100, 64, 0, 0), 10),
        (Ipv4Addr::new(169, 254, 0, 0), 16),
    ];
    for (addr, len) in WIDE_BLOCKS {
        if let Ok(block) = Ipv4Net::new(addr, len) {
            if block.contains(&v4) {
                return IpNet::V4(block);
            }
        }
    }
    Ipv4Net::new(v4, 24)
        .map(|n| IpNet::V4(n.trunc()))
        .unwrap_or(IpNet::V4(Ipv4Net::from(v4)))
}

fn ipv6_block(v6: Ipv6Addr) -> IpNet {
    Ipv6Net::new(v6, 64)
        .map(|n| IpNet::V6(n.trunc()))
        .unwrap_or(IpNet::V6(Ipv6Net::from(v6)))
}

/// The registrable domain stays as it is (the public suffix plus one label,
/// from the Public Suffix List: `huggingface.co`, `example.co.uk`, and for
/// the list's private suffixes `my-bucket.s3.amazonaws.com`, whose owner is
/// the bucket's); the labels before it generalise like path components
/// (`cdn-lfs-7.hf.co` → `cdn-lfs-*.hf.co`). A name under no known suffix
/// keeps its last two labels.
pub fn generalize_dns_name(name: &str) -> String {
    let labels: Vec<&str> = name.split('.').collect();
    let registrable_labels = psl::domain_str(name)
        .map(|domain| domain.split('.').count())
        .unwrap_or(2);
    let keep_from = labels.len().saturating_sub(registrable_labels);
    labels
        .iter()
        .enumerate()
        .map(|(i, l)| {
            if i < keep_from {
                generalize_component(l)
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// `tcp/8000`; ports of the ephemeral range become `tcp/ephemeral`.
pub fn listen_port_item(protocol: &str, port: u16) -> String {
    let protocol = if protocol.is_empty() { "tcp" } else { protocol };
    if EPHEMERAL_PORTS.contains(&port) {
        format!("{protocol}/ephemeral")
    } else {
        format!("{protocol}/{port}")
    }
}

/// Splits a learned peer item back into host part and port.
pub fn split_peer_item(item: &str) -> Option<(&str, u16)> {
    let (host, port) = item.rsplit_once(':')?;
    Some((host, port.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_paths_generalise_to_folder_and_extension() {
        assert_eq!(
            generalize_file_path("/models/llama/shard-00017.safetensors", "model", 256),
            "/models/llama/*.safetensors"
        );
        assert_eq!(
            generalize_file_path("/ckpt/run-42/step-1000/optim.pt", "pickle-model", 256),
            "/ckpt/run-*/step-*/*.pt"
        );
        assert_eq!(
            generalize_file_path(
                "/cache/5f0c8a3e-1b2c-4d5e-8f90-123456789abc/token",
                "secret",
                256
            ),
            "/cache/*/token"
        );
        assert_eq!(
            generalize_file_path("/dev/nvidia3", "gpu-device", 256),
            "/dev/nvidia*"
        );
    }

    #[test]
    fn executables_keep_versions_but_not_hashes() {
        assert_eq!(
            generalize_exe("/usr/bin/python3.11", 256),
            "/usr/bin/python3.11"
        );
        assert_eq!(
            generalize_exe("/nix/store/0123456789abcdef0123/bin/x", 256),
            "/nix/store/*/bin/x"
        );
    }

    #[test]
    fn uuid_components_are_told_from_their_near_misses() {
        assert!(is_uuid_like("5f0c8a3e-1b2c-4d5e-8f90-123456789abc"));
        assert!(is_uuid_like("5F0C8A3E-1B2C-4D5E-8F90-123456789ABC"));
        // One group short, a dash out of place, a letter that is not hex.
        assert!(!is_uuid_like("5f0c8a3e-1b2c-4d5e-8f90-123456789ab"));
        assert!(!is_uuid_like("5f0c8a3e1-b2c-4d5e-8f90-123456789abc"));
        assert!(!is_uuid_like("5f0c8a3e-1b2c-4d5e-8f90-123456789abg"));
        assert_eq!(
            generalize_exe("/opt/5f0c8a3e-1b2c-4d5e-8f90-123456789abc/bin/serve", 256),
            "/opt/*/bin/serve"
        );
    }

    #[test]
    fn peers_generalise_by_address_class() {
        let forms = |ip: &str, port| {
            let ip = ip.parse().ok()?;
            generalize_peer(ip, port, None).map(|p| p.network)
        };
        assert_eq!(
            forms("203.0.113.9", 443).as_deref(),
            Some("203.0.113.0/24:443")
        );
        assert_eq!(forms("10.3.4.5", 6379).as_deref(), Some("10.0.0.0/8:6379"));
        assert_eq!(forms("127.0.0.1", 6379).as_deref(), Some("loopback:6379"));
        assert_eq!(
            forms("2001:db8:1:2:3:4:5:6", 443).as_deref(),
            Some("2001:db8:1:2::/64:443")
        );
        assert_eq!(
            forms("::ffff:8.8.8.8", 53).as_deref(),
            Some("8.8.8.0/24:53")
        );
        assert_eq!(forms("not-an-ip", 1), None);
        let named = generalize_peer(
            "18.1.2.3".parse().unwrap(),
            443,
            Some("cdn-lfs-7.HuggingFace.co."),
        );
        assert_eq!(
            named.and_then(|p| p.name).as_deref(),
            Some("cdn-lfs-*.huggingface.co:443")
        );
        // The registrable domain comes from the public suffix list.
        assert_eq!(
            generalize_dns_name("eu-7.models.example.co.uk"),
            "eu-*.models.example.co.uk"
        );
        assert_eq!(
            generalize_dns_name("shard-3.my-bucket.s3.amazonaws.com"),
            "shard-*.my-bucket.s3.amazonaws.com"
        );
        assert_eq!(generalize_dns_name("a-1.node-12.test"), "a-*.node-12.test");
        assert_eq!(
            split_peer_item("2001:db8::/64:443"),
            Some(("2001:db8::/64", 443))
        );
    }

    #[test]
    fn long_items_are_cut_as_prefixes() {
        let long = format!("/data/{}", "a".repeat(300));
        let item = generalize_file_path(&long, "secret", 64);
        assert_eq!(item.len(), 64);
        assert!(item.ends_with('*'));
        assert_eq!(listen_port_item("", 40000), "tcp/ephemeral");
        assert_eq!(listen_port_item("udp", 8125), "udp/8125");
    }
}
