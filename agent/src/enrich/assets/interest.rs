//! Reduces asset globs to what the kernel prefilter can test: file
//! extensions, base names and absolute path prefixes.
//!
//! The result is a necessary condition only: the kernel sends an open when
//! any entry matches, and user space classifies it for real. A glob that no
//! extension, base name or prefix can stand for is listed in
//! [`KernelInterest::unfilterable`] so the agent can say the prefilter will
//! miss it (or disable prefiltering).

pub use crate::kernel::interest::KernelInterest;

/// Globs whose final component is a wildcard but that the built-in hint
/// lists (base names, home prefixes) already cover.
const HINTED: &[&str] = &[
    "**/.env.*",
    "**/hub/models--*/{blobs,snapshots}/**",
    "**/hub/datasets--*/{blobs,snapshots}/**",
    "**/.git/hooks/*",
];

/// Home-relative folders the built-in hints add: the default `HF_HOME`.
const HINT_HOME_RELATIVE: &[&str] = &[".cache/huggingface/"];

/// Base names for `.env.*` variants that hold real values.
const HINT_ENV_BASENAMES: &[&str] = &[
    ".env.local",
    ".env.production",
    ".env.development",
    ".env.prod",
    ".env.dev",
    ".env.test",
    ".env.staging",
];

const META: &[char] = &['*', '?', '[', ']', '{', '}', '\\'];

fn is_literal(text: &str) -> bool {
    !text.contains(META)
}

/// Derives the interest of a list of globs.
pub fn derive<'a>(globs: impl Iterator<Item = &'a str>, homes: &[&str]) -> KernelInterest {
    let mut interest = KernelInterest::default();
    let mut saw_hinted = false;
    for glob in globs {
        if HINTED.contains(&glob) {
            saw_hinted = true;
            continue;
        }
        for expanded in expand_braces(glob) {
            derive_one(&expanded, &mut interest);
        }
    }
    if saw_hinted {
        interest
            .home_relative
            .extend(HINT_HOME_RELATIVE.iter().map(|s| s.to_string()));
        interest
            .basenames
            .extend(HINT_ENV_BASENAMES.iter().map(|s| s.to_string()));
    }
    interest.home_relative.sort();
    interest.home_relative.dedup();
    for home in homes {
        let home = home.trim_end_matches('/');
        for relative in &interest.home_relative {
            interest.prefixes.push(format!("{home}/{relative}"));
        }
    }
    interest
}

fn derive_one(glob: &str, interest: &mut KernelInterest) {
    let (dirs, last) = match glob.rsplit_once('/') {
        Some((dirs, last)) => (dirs, last),
        None => ("", glob),
    };
    if !last.is_empty() && is_literal(last) {
        interest.basenames.push(last.to_string());
        return;
    }
    if let Some((stem, ext)) = last.rsplit_once('.') {
        if !ext.is_empty() && is_literal(ext) && !stem.is_empty() {
            interest.extensions.push(ext.to_ascii_lowercase());
            return;
        }
    }
    if glob.starts_with('/') {
        let end = glob.find(META).unwrap_or(glob.len());
        interest.prefixes.push(glob[..end].to_string());
        return;
    }
    // `**/.folder/...`: a file under some home directory.
    if let Some(rest) = dirs.strip_prefix("**/").or((dirs == "**").then_some("")) {
        let chain: Vec<&str> = rest.split('/').take_while(|c| is_literal(c)).collect();
        let chain: Vec<&str> = chain.into_iter().filter(|c| !c.is_empty()).collect();
        if chain.first().is_some_and(|first| first.starts_with('.')) {
            interest.home_relative.push(format!("{}/", chain.join("/")));
            return;
        }
    }
    interest.unfilterable.push(glob.to_string());
}

/// Expands `{a,b}` alternatives (not nested) into every combination.
fn expand_braces(glob: &str) -> Vec<String> {
    let Some(open) = glob.find('{') else {
        return vec![glob.to_string()];
    };
    let Some(close_rel) = glob[open..].find('}') else {
        return vec![glob.to_string()];
    };
    let close = open + close_rel;
    let (head, alternatives, tail) = (&glob[..open], &glob[open + 1..close], &glob[close + 1..]);
    alternatives
        .split(',')
        .flat_map(|alt| expand_braces(&format!("{head}{alt}{tail}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn braces_expand_to_every_combination() {
        let mut out = expand_braces("/{var/,}run/{a,b}/x");
        out.sort();
        assert_eq!(
            out,
            vec!["/run/a/x", "/run/b/x", "/var/run/a/x", "/var/run/b/x"]
        );
    }

    #[test]
    fn each_glob_shape_reduces_to_its_cheapest_test() {
        let globs = [
            "**/*.onnx",
            "**/.aws/credentials",
            "/dev/nvidia*",
            "**/.config/gcloud/**",
            "srv/*/thing*",
        ];
        let interest = derive(globs.into_iter(), &["/root", "/home/ann/"]);
        assert_eq!(interest.extensions, vec!["onnx"]);
        assert_eq!(interest.basenames, vec!["credentials"]);
        assert!(interest.prefixes.contains(&"/dev/nvidia".to_string()));
        assert!(interest
            .prefixes
            .contains(&"/home/ann/.config/gcloud/".to_string()));
        assert!(interest
            .prefixes
            .contains(&"/root/.config/gcloud/".to_string()));
        assert_eq!(interest.unfilterable, vec!["srv/*/thing*"]);
    }
}
