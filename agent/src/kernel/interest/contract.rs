//! What the kernel reports, stated in user space: the [`KernelInterest`]
//! contract, the key encodings of its maps and prefilter words, and
//! [`kernel_would_report`], the kernel's test restated so that tests can
//! hold the two sides to each other.

use std::collections::BTreeSet;

use aiwatch_common::{
    filter_bit, SuffixKey, FILTER_WORDS, PREFIX_KEY_LEN, SUFFIX_BASENAME, SUFFIX_EXTENSION,
    SUFFIX_KEY_LEN,
};
use serde::{Deserialize, Serialize};

/// The entries of the path and device maps, as sets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Entries {
    pub(super) prefixes: BTreeSet<(u32, [u8; PREFIX_KEY_LEN])>,
    pub(super) suffixes: BTreeSet<(u8, [u8; SUFFIX_KEY_LEN])>,
    pub(super) gpu_majors: BTreeSet<u32>,
}

/// The two prefilter bitmaps (see `aiwatch_common::FILTER_WORDS`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filters {
    pub suffixes: Vec<u64>,
    pub prefixes: Vec<u64>,
}

impl Default for Filters {
    fn default() -> Self {
        Filters {
            suffixes: vec![0; FILTER_WORDS as usize],
            prefixes: vec![0; FILTER_WORDS as usize],
        }
    }
}

impl Filters {
    fn set(words: &mut [u64], first: u8, second: u8) {
        let (word, bit) = filter_bit(first, second);
        words[word as usize] |= bit;
    }

    /// The bits the kernel tests for `entries`.
    pub(crate) fn of(entries: &Entries) -> Filters {
        let mut filters = Filters::default();
        for (_, bytes) in &entries.suffixes {
            Self::set(&mut filters.suffixes, bytes[0], bytes[1]);
        }
        for (bits, data) in &entries.prefixes {
            // The kernel tests the two bytes after the leading '/'.
            match bits / 8 {
                0 | 1 => filters.prefixes.fill(u64::MAX),
                2 => {
                    for second in 0..=u8::MAX {
                        Self::set(&mut filters.prefixes, data[1], second);
                    }
                }
                _ => Self::set(&mut filters.prefixes, data[1], data[2]),
            }
        }
        filters
    }

    pub(super) fn union(&self, other: &Filters) -> Filters {
        let or = |a: &[u64], b: &[u64]| a.iter().zip(b).map(|(x, y)| x | y).collect();
        Filters {
            suffixes: or(&self.suffixes, &other.suffixes),
            prefixes: or(&self.prefixes, &other.prefixes),
        }
    }

    /// Whether the kernel's prefilter lets `name` on to the exact lookups.
    pub fn prefix_may_match(&self, name: &[u8]) -> bool {
        let first = name.get(1).copied().unwrap_or(0);
        let second = name.get(2).copied().unwrap_or(0);
        let (word, bit) = filter_bit(first, second);
        self.prefixes[word as usize] & bit != 0
    }

    pub fn suffix_may_match(&self, key: &[u8; SUFFIX_KEY_LEN]) -> bool {
        self.suffix_bit(key[0], key[1])
    }

    /// Whether the suffix filter has the bit of `first`, `second`.
    pub fn suffix_bit(&self, first: u8, second: u8) -> bool {
        let (word, bit) = filter_bit(first, second);
        self.suffixes[word as usize] & bit != 0
    }
}

/// What the kernel must send for user space to see every open that might
/// classify.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct KernelInterest {
    /// Extensions without the dot, lower case (`safetensors`, `pt`).
    pub extensions: Vec<String>,
    /// Exact base names (`credentials`, `.netrc`, `environ`).
    pub basenames: Vec<String>,
    /// Absolute path prefixes (`/dev/nvidia`, `/root/.azure/`).
    pub prefixes: Vec<String>,
    /// Folders relative to a home directory (`.azure/`); already expanded
    /// into `prefixes` for the homes given, kept so new homes can be added.
    pub home_relative: Vec<String>,
    /// Character device majors that are GPUs.
    pub device_majors: Vec<u32>,
    /// Globs the entries above cannot cover.
    pub unfilterable: Vec<String>,
}

impl KernelInterest {
    /// Sorts and removes duplicates.
    pub fn normalise(&mut self) {
        for list in [
            &mut self.extensions,
            &mut self.basenames,
            &mut self.prefixes,
            &mut self.home_relative,
            &mut self.unfilterable,
        ] {
            list.sort();
            list.dedup();
        }
        self.device_majors.sort_unstable();
        self.device_majors.dedup();
    }
}

/// An LPM key for an absolute prefix: its first [`PREFIX_KEY_LEN`] bytes
/// (a shorter prefix only lets more through).
pub fn prefix_key(prefix: &str) -> Option<(u32, [u8; PREFIX_KEY_LEN])> {
    let bytes = prefix.as_bytes();
    if !prefix.starts_with('/') {
        return None;
    }
    let used = bytes.len().min(PREFIX_KEY_LEN);
    let mut data = [0u8; PREFIX_KEY_LEN];
    data[..used].copy_from_slice(&bytes[..used]);
    Some((used as u32 * 8, data))
}

/// Last byte first, NUL-padded: the kernel's key layout.
fn reversed_tail(text: &[u8]) -> [u8; SUFFIX_KEY_LEN] {
    let mut bytes = [0u8; SUFFIX_KEY_LEN];
    for (slot, byte) in bytes.iter_mut().zip(text.iter().rev()) {
        *slot = *byte;
    }
    bytes
}

/// The key of an extension (without the dot). The kernel finds the dot only
/// within the last [`SUFFIX_KEY_LEN`] + 1 bytes, so longer extensions
/// cannot be tested.
pub fn extension_key(extension: &str) -> Option<SuffixKey> {
    let lower = extension.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    if bytes.is_empty() || bytes.len() > SUFFIX_KEY_LEN || bytes.contains(&b'/') {
        return None;
    }
    Some(SuffixKey {
        kind: SUFFIX_EXTENSION,
        bytes: reversed_tail(bytes),
    })
}

/// The key of a base name: its last [`SUFFIX_KEY_LEN`] bytes.
pub fn basename_key(basename: &str) -> Option<SuffixKey> {
    let bytes = basename.as_bytes();
    if bytes.is_empty() || bytes.contains(&b'/') {
        return None;
    }
    Some(SuffixKey {
        kind: SUFFIX_BASENAME,
        bytes: reversed_tail(bytes),
    })
}

/// The kernel's test for an untracked process, restated: does `name` (as
/// passed to the syscall) match a prefix, extension or base name of
/// `interest`?
pub fn kernel_would_report(interest: &KernelInterest, name: &str) -> bool {
    let (entries, _) = entries(interest);
    let filters = Filters::of(&entries);
    let bytes = name.as_bytes();
    if bytes.is_empty() {
        return false;
    }
    if bytes[0] == b'/' && filters.prefix_may_match(bytes) {
        let used = bytes.len().min(PREFIX_KEY_LEN);
        let hit = entries.prefixes.iter().any(|(bits, data)| {
            *bits as usize / 8 <= used && data[..*bits as usize / 8] == bytes[..*bits as usize / 8]
        });
        if hit {
            return true;
        }
    }
    // The kernel's first look at the last two bytes, in every spelling the
    // keys can start with.
    let last = bytes[bytes.len() - 1];
    let before = if bytes.len() > 1 {
        bytes[bytes.len() - 2]
    } else {
        0
    };
    let (last_lower, before_lower) = (last.to_ascii_lowercase(), before.to_ascii_lowercase());
    let quick = [
        (last, before),
        (last, 0),
        (last_lower, before_lower),
        (last_lower, 0),
    ];
    if !quick.iter().any(|&(a, b)| filters.suffix_bit(a, b)) {
        return false;
    }
    let (basename, extension, dot) = scan_tail(bytes);
    if dot.is_some_and(|d| d > 0)
        && filters.suffix_may_match(&extension)
        && entries.suffixes.contains(&(SUFFIX_EXTENSION, extension))
    {
        return true;
    }
    filters.suffix_may_match(&basename) && entries.suffixes.contains(&(SUFFIX_BASENAME, basename))
}

/// The kernel's suffix keys of `name`, built the plain way: a backward scan
/// of at most [`SUFFIX_KEY_LEN`] + 1 bytes, stopping at '/'. Returns the
/// base name key, the extension key and the scan step of the dot. The
/// kernel builds the same keys without a loop
/// (`aiwatch_common::suffix::tail_keys`); tests hold the two together.
pub fn scan_tail(bytes: &[u8]) -> ([u8; SUFFIX_KEY_LEN], [u8; SUFFIX_KEY_LEN], Option<usize>) {
    let mut basename = [0u8; SUFFIX_KEY_LEN];
    let mut extension = [0u8; SUFFIX_KEY_LEN];
    let mut dot = None;
    for step in 0..=SUFFIX_KEY_LEN {
        let Some(at) = bytes.len().checked_sub(1 + step) else {
            break;
        };
        let byte = bytes[at];
        if byte == b'/' {
            break;
        }
        if byte == b'.' && dot.is_none() {
            dot = Some(step);
        }
        if step < SUFFIX_KEY_LEN {
            basename[step] = byte;
            if dot.is_none() {
                extension[step] = byte.to_ascii_lowercase();
            }
        }
    }
    (basename, extension, dot)
}

/// The map entries for `interest`, and the entries that cannot be tested.
pub(super) fn entries(interest: &KernelInterest) -> (Entries, Vec<String>) {
    let mut out = Entries::default();
    let mut skipped = Vec::new();
    for prefix in &interest.prefixes {
        match prefix_key(prefix) {
            Some(key) => {
                out.prefixes.insert(key);
            }
            None => skipped.push(format!("prefix {prefix:?}")),
        }
    }
    for extension in &interest.extensions {
        match extension_key(extension) {
            Some(key) => {
                out.suffixes.insert((key.kind, key.bytes));
            }
            None => skipped.push(format!("extension {extension:?}")),
        }
    }
    for basename in &interest.basenames {
        match basename_key(basename) {
            Some(key) => {
                out.suffixes.insert((key.kind, key.bytes));
            }
            None => skipped.push(format!("base name {basename:?}")),
        }
    }
    out.gpu_majors
        .extend(interest.device_majors.iter().copied());
    (out, skipped)
}
