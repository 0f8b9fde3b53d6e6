//! The kind of a credential (`cloud`, `huggingface`, `ssh`, ...), derived
//! from the path of a file in the `secret` class.
//!
//! A harvest is one process reading credentials of several kinds; two files
//! of one kind (`~/.aws/credentials` and `~/.aws/config`) are one tool doing
//! its job. The kind is a pure function of the path so that replayed events
//! get the same answer as live ones.

/// The credential kinds, in the order they are tested.
const KINDS: &[(&str, &[&str])] = &[
    ("cloud", &["/.aws/", "/.config/gcloud/", "/.azure/"]),
    (
        "huggingface",
        &["/huggingface/token", "/huggingface/stored_tokens"],
    ),
    (
        "kubernetes",
        &["/.kube/config", "/secrets/kubernetes.io/", "/.kube/"],
    ),
    ("ssh", &["/.ssh/id_"]),
    ("netrc", &["/.netrc", "/.git-credentials"]),
    ("docker", &["/.docker/config.json"]),
    (
        "llm-api",
        &["/.config/openai/", "/.config/anthropic/", "/.openai/"],
    ),
];

/// The kind of the credential at `path`, a path the classifier put in the
/// `secret` class. Paths of no known kind are `other`.
pub fn secret_kind(path: &str) -> &'static str {
    for (kind, needles) in KINDS {
        if needles.iter().any(|needle| path.contains(needle)) {
            return kind;
        }
    }
    let name = path.rsplit('/').next().unwrap_or(path);
    if name == ".env" || name.starts_with(".env.") {
        return "dotenv";
    }
    if path.starts_with("/proc/") && name == "environ" {
        return "process-environment";
    }
    "other"
}

#[cfg(test)]
mod tests {
    use super::secret_kind;

    #[test]
    fn each_kind_is_named_by_its_path() {
        for (path, kind) in [
            ("/root/.aws/credentials", "cloud"),
            (
                "/home/u/.config/gcloud/application_default_credentials.json",
                "cloud",
            ),
            ("/home/u/.azure/msal_token_cache.json", "cloud"),
            ("/root/.cache/huggingface/token", "huggingface"),
            ("/root/.kube/config", "kubernetes"),
            (
                "/var/run/secrets/kubernetes.io/serviceaccount/token",
                "kubernetes",
            ),
            ("/home/u/.ssh/id_ed25519", "ssh"),
            ("/root/.netrc", "netrc"),
            ("/root/.docker/config.json", "docker"),
            ("/srv/app/.env", "dotenv"),
            ("/srv/app/.env.production", "dotenv"),
            ("/root/.config/openai/api_key", "llm-api"),
            ("/proc/77/environ", "process-environment"),
            ("/run/secrets/db-password", "other"),
        ] {
            assert_eq!(secret_kind(path), kind, "{path}");
        }
    }
}
