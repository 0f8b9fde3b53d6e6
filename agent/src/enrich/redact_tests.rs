use super::*;

fn redact(argv: &[&str]) -> Vec<String> {
    let mut argv: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
    Redactor::default().redact_argv(&mut argv);
    argv
}

fn assert_redacted(argv: &[&str], expected: &[&str]) {
    assert_eq!(redact(argv), expected, "argv {argv:?}");
}

#[test]
fn password_flags_keep_the_key() {
    assert_redacted(
        &["app", "--password=hunter2", "--db-pass", "s3cret", "-v"],
        &[
            "app",
            "--password=[redacted]",
            "--db-pass",
            "[redacted]",
            "-v",
        ],
    );
    assert_redacted(
        &["psql", "--api-key", "abc", "--secret_key=x1"],
        &["psql", "--api-key", "[redacted]", "--secret_key=[redacted]"],
    );
}

#[test]
fn short_password_flags_only_for_programs_that_mean_it() {
    assert_redacted(
        &["/usr/bin/sshpass", "-p", "pw", "ssh", "host"],
        &["/usr/bin/sshpass", "-p", "[redacted]", "ssh", "host"],
    );
    assert_redacted(
        &["mysql", "-uroot", "-phunter2", "db"],
        &["mysql", "-uroot", "-p[redacted]", "db"],
    );
    assert_redacted(
        &["redis-cli", "-a", "pw"],
        &["redis-cli", "-a", "[redacted]"],
    );
    // `-p` is a port or "parents" elsewhere.
    assert_redacted(&["mkdir", "-p", "/a/b"], &["mkdir", "-p", "/a/b"]);
    assert_redacted(&["ssh", "-p", "22", "h"], &["ssh", "-p", "22", "h"]);
}

#[test]
fn environment_style_assignments() {
    assert_redacted(
        &[
            "env",
            "HF_TOKEN=hf_x",
            "OPENAI_API_KEY=abc",
            "PWD=/home",
            "python",
        ],
        &[
            "env",
            "HF_TOKEN=[redacted]",
            "OPENAI_API_KEY=[redacted]",
            "PWD=/home",
            "python",
        ],
    );
    assert_redacted(
        &["sh", "-c", "export GITHUB_TOKEN=abc123; git push"],
        &["sh", "-c", "export GITHUB_TOKEN=[redacted]; git push"],
    );
}

#[test]
fn ai_arguments_that_only_look_like_secrets_stay() {
    let argv = [
        "python",
        "serve.py",
        "--max-tokens=512",
        "--tokenizer=gpt2",
        "--token-file=/run/secrets/t",
        "--sort-key=name",
        "--author=me",
        "--max-tokens",
        "64",
    ];
    assert_eq!(redact(&argv), argv);
}

#[test]
fn credentials_in_urls_and_headers() {
    assert_redacted(
        &["git", "clone", "https://bob:pa55@git.example/r.git"],
        &["git", "clone", "https://bob:[redacted]@git.example/r.git"],
    );
    assert_redacted(
        &[
            "curl",
            "-H",
            "Authorization: Bearer eyJhbGciOi.x.y",
            "https://h/?access_token=abc&x=1",
        ],
        &[
            "curl",
            "-H",
            "Authorization: Bearer [redacted]",
            "https://h/?access_token=[redacted]&x=1",
        ],
    );
    assert_redacted(
        &["curl", "-H", "Authorization: Basic dXNlcjpwYXNz"],
        &["curl", "-H", "Authorization: Basic [redacted]"],
    );
}

#[test]
fn well_known_key_formats_keep_their_prefix() {
    let cases = [
        ("AKIAIOSFODNN7EXAMPLE", "AKIA[redacted]"),
        ("ghp_0123456789abcdefghijABCDEFGHIJ012345", "ghp_[redacted]"),
        (
            "github_pat_11ABCDEFG0123456789_abcdefghijklmnop",
            "github_pat_[redacted]",
        ),
        (
            "sk-proj-abcdefghijklmnopqrstuvwxyz012345",
            "sk-proj-[redacted]",
        ),
        (
            "sk-ant-api03-abcdefghijklmnopqrstuvwxyz",
            "sk-ant-[redacted]",
        ),
        ("hf_abcdefghijklmnopqrstuvwxyzABCDEFGH", "hf_[redacted]"),
        ("xoxb-1234567890-abcdefghij", "xoxb-[redacted]"),
    ];
    for (secret, expected) in cases {
        assert_redacted(&["tool", secret], &["tool", expected]);
        let embedded = format!("key:{secret}");
        assert_eq!(redact(&["tool", &embedded])[1], format!("key:{expected}"));
    }
    assert_redacted(
        &[
            "tool",
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIB\n-----END RSA PRIVATE KEY-----",
        ],
        &["tool", "-----BEGIN RSA PRIVATE KEY-----[redacted]"],
    );
    // A block cut by argv's size limit is redacted to its end.
    assert_redacted(
        &["tool", "x -----BEGIN PRIVATE KEY-----\nMIIEpAIB"],
        &["tool", "x -----BEGIN PRIVATE KEY-----[redacted]"],
    );
}

#[test]
fn configured_patterns_replace_their_value_group_or_the_match() {
    let redactor = Redactor::new(&RedactConfig {
        patterns: vec![r"corp-[0-9]{6}".into(), r"pin:(?P<value>\d+)".into()],
    })
    .unwrap();
    let mut argv = vec![
        "tool".to_string(),
        "corp-123456".into(),
        "pin:4242,ok".into(),
    ];
    assert!(redactor.redact_argv(&mut argv));
    assert_eq!(argv, ["tool", "[redacted]", "pin:[redacted],ok"]);
}

#[test]
fn a_bad_configured_pattern_is_one_sentence() {
    let err = Redactor::new(&RedactConfig {
        patterns: vec!["(unclosed".into()],
    })
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("redact.patterns: `(unclosed`"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn nothing_to_redact_is_unchanged() {
    let mut argv = vec!["/bin/ls".to_string(), "-la".into(), "/tmp".into()];
    assert!(!Redactor::default().redact_argv(&mut argv));
}

#[test]
fn key_words() {
    assert_eq!(split_words("--dbPassword"), ["db", "password"]);
    assert!(is_secret_key("AWS_SECRET_ACCESS_KEY"));
    assert!(is_secret_key("apiKey"));
    assert!(!is_secret_key("--max_tokens"));
    assert!(!is_secret_key("--key"));
}
