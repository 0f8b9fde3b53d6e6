//! Declared workloads: processes the configuration names as AI workloads,
//! whatever discovery would say. Declarations take precedence over
//! discovery; the first declaration that matches wins.
//!
//! ```yaml
//! workloads:
//!   declared:
//!     - name: fraud-model
//!       kind: inference
//!       match:
//!         cgroup: "/kubepods/**/pod*/*"
//!         exe: "**/python3*"
//!         argv: "*serve_fraud.py*"
//! ```
//!
//! Every matcher given must match (they are ANDed); at least one is needed.

use aho_corasick::AhoCorasick;
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};

use super::signals::WorkloadKind;

/// One declaration as written in the configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclaredWorkload {
    pub name: String,
    pub kind: WorkloadKind,
    #[serde(rename = "match")]
    pub matcher: DeclaredMatch,
}

impl DeclaredWorkload {
    /// The declaration names a container (`match.cgroup` or
    /// `match.container_id`): its processes' cgroups are the workload's as a
    /// whole.
    pub fn names_container(&self) -> bool {
        self.matcher.cgroup.is_some() || self.matcher.container_id.is_some()
    }
}

/// What a declared workload's processes look like.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeclaredMatch {
    /// Glob over the cgroup path (`/kubepods/**`).
    pub cgroup: Option<String>,
    /// Container id, full or a prefix of at least 12 characters.
    pub container_id: Option<String>,
    /// Glob over the executable path.
    pub exe: Option<String>,
    /// Glob over the arguments joined by single spaces (`*serve.py*`).
    pub argv: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DeclaredError {
    #[error("declared workload `{name}`: `{pattern}` is not a valid glob: {source}")]
    BadGlob {
        name: String,
        pattern: String,
        source: globset::Error,
    },
    #[error("declared workloads' globs cannot be built into one set: {0}")]
    Build(globset::Error),
    #[error("declared workloads' `*text*` patterns cannot be built into one automaton: {0}")]
    Substrings(aho_corasick::BuildError),
    #[error("declared workload `{name}` has no matcher (cgroup, container_id, exe or argv)")]
    NoMatcher { name: String },
    #[error("declared workload `{name}`: container_id `{id}` is shorter than 12 characters")]
    ShortContainerId { name: String, id: String },
}

/// The facts a declaration is matched against.
#[derive(Clone, Copy, Debug)]
pub struct MatchFacts<'a> {
    pub exe: &'a str,
    pub argv: &'a [String],
    pub cgroup: &'a str,
    pub container_id: Option<&'a str>,
}

/// One fact's globs of every declaration that has one, as one set: a
/// thousand declarations are one matcher per fact, not a thousand (each
/// compiled glob keeps its own regex and match caches, some 50 KiB apiece
/// once used).
#[derive(Clone, Debug, Default)]
struct FactGlobs {
    set: GlobSet,
    /// The declaration (index into `DeclaredSet::declarations`) of each
    /// glob of `set`, in the set's order.
    owners: Vec<usize>,
    /// `*text*` patterns over free text, where `*` crosses `/` (arguments):
    /// substrings, found by one automaton. A glob set turns each into a
    /// regex: a thousand of them held about 9 MiB once used (regexes and
    /// their lazy DFA's cache); the automaton holds some 24 KiB.
    substrings: Option<AhoCorasick>,
    /// The declaration of each pattern of `substrings`, in its order.
    substring_owners: Vec<usize>,
}

/// The text of a `*text*` pattern with no other glob syntax in it.
fn substring_pattern(pattern: &str) -> Option<&str> {
    let text = pattern.strip_prefix('*')?.strip_suffix('*')?;
    let plain = !text.is_empty() && !text.contains(['*', '?', '[', ']', '{', '}', '\\']);
    plain.then_some(text)
}

impl FactGlobs {
    fn build(
        declarations: &[DeclaredWorkload],
        pattern_of: impl Fn(&DeclaredMatch) -> &Option<String>,
        separator: bool,
    ) -> Result<Self, DeclaredError> {
        let mut builder = GlobSetBuilder::new();
        let mut owners = Vec::new();
        let mut substrings = Vec::new();
        let mut substring_owners = Vec::new();
        for (index, declaration) in declarations.iter().enumerate() {
            let Some(pattern) = pattern_of(&declaration.matcher) else {
                continue;
            };
            // With a literal separator, `*` stops at `/`: not a substring.
            if let Some(text) = substring_pattern(pattern).filter(|_| !separator) {
                substrings.push(text);
                substring_owners.push(index);
                continue;
            }
            let glob = GlobBuilder::new(pattern)
                .literal_separator(separator)
                .build()
                .map_err(|source| DeclaredError::BadGlob {
                    name: declaration.name.clone(),
                    pattern: pattern.clone(),
                    source,
                })?;
            builder.add(glob);
            owners.push(index);
        }
        let set = builder.build().map_err(DeclaredError::Build)?;
        let substrings = if substrings.is_empty() {
            None
        } else {
            Some(AhoCorasick::new(&substrings).map_err(DeclaredError::Substrings)?)
        };
        Ok(FactGlobs {
            set,
            owners,
            substrings,
            substring_owners,
        })
    }

    /// Marks in `matched` the declarations whose glob matches `text`.
    fn mark(&self, text: &str, matched: &mut [bool]) {
        if let Some(substrings) = &self.substrings {
            for found in substrings.find_overlapping_iter(text) {
                matched[self.substring_owners[found.pattern().as_usize()]] = true;
            }
        }
        if self.owners.is_empty() {
            return;
        }
        for glob in self.set.matches(text) {
            matched[self.owners[glob]] = true;
        }
    }
}

/// The compiled declarations, in configuration order.
#[derive(Clone, Debug, Default)]
pub struct DeclaredSet {
    declarations: Vec<DeclaredWorkload>,
    cgroup: FactGlobs,
    exe: FactGlobs,
    argv: FactGlobs,
}

impl DeclaredSet {
    pub fn new(declarations: &[DeclaredWorkload]) -> Result<Self, DeclaredError> {
        for declaration in declarations {
            let name = &declaration.name;
            let m = &declaration.matcher;
            if m.cgroup.is_none() && m.container_id.is_none() && m.exe.is_none() && m.argv.is_none()
            {
                return Err(DeclaredError::NoMatcher { name: name.clone() });
            }
            if let Some(id) = &m.container_id {
                if id.len() < 12 {
                    return Err(DeclaredError::ShortContainerId {
                        name: name.clone(),
                        id: id.clone(),
                    });
                }
            }
        }
        Ok(DeclaredSet {
            declarations: declarations.to_vec(),
            cgroup: FactGlobs::build(declarations, |m| &m.cgroup, true)?,
            exe: FactGlobs::build(declarations, |m| &m.exe, true)?,
            // Arguments are free text: `*` crosses `/`.
            argv: FactGlobs::build(declarations, |m| &m.argv, false)?,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.declarations.is_empty()
    }

    /// The first declaration the process matches.
    pub fn find(&self, facts: &MatchFacts<'_>) -> Option<&DeclaredWorkload> {
        if self.declarations.is_empty() {
            return None;
        }
        let count = self.declarations.len();
        let (mut cgroup, mut exe, mut argv) =
            (vec![false; count], vec![false; count], vec![false; count]);
        self.cgroup.mark(facts.cgroup, &mut cgroup);
        self.exe.mark(facts.exe, &mut exe);
        self.argv.mark(&facts.argv.join(" "), &mut argv);
        self.declarations
            .iter()
            .enumerate()
            .find(|(index, declaration)| {
                let m = &declaration.matcher;
                (m.cgroup.is_none() || cgroup[*index])
                    && (m.exe.is_none() || exe[*index])
                    && (m.argv.is_none() || argv[*index])
                    && m.container_id.as_ref().is_none_or(|wanted| {
                        facts
                            .container_id
                            .is_some_and(|actual| actual.starts_with(wanted.as_str()))
                    })
            })
            .map(|(_, declaration)| declaration)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
- name: fraud-model
  kind: inference
  match:
    argv: "*serve_fraud.py*"
    exe: "**/python3*"
- name: research-pod
  kind: notebook
  match:
    container_id: "4f1c2a3b5d6e"
- name: batch
  kind: pipeline
  match:
    cgroup: "/system.slice/batch-*.service"
"#;

    fn set() -> DeclaredSet {
        let declarations: Vec<DeclaredWorkload> =
            serde_saphyr::from_str(YAML).expect("declarations parse");
        DeclaredSet::new(&declarations).expect("declarations compile")
    }

    fn facts<'a>(
        exe: &'a str,
        argv: &'a [String],
        cgroup: &'a str,
        id: Option<&'a str>,
    ) -> MatchFacts<'a> {
        MatchFacts {
            exe,
            argv,
            cgroup,
            container_id: id,
        }
    }

    #[test]
    fn matchers_are_anded() {
        let set = set();
        let argv = vec!["python3".to_string(), "/srv/serve_fraud.py".to_string()];
        let hit = set.find(&facts("/usr/bin/python3.11", &argv, "/", None));
        assert_eq!(hit.map(|d| d.name.as_str()), Some("fraud-model"));
        // Right argv, wrong exe.
        assert!(set
            .find(&facts("/usr/bin/node", &argv, "/", None))
            .is_none());
    }

    #[test]
    fn container_id_prefix_and_cgroup_glob() {
        let set = set();
        let id = "4f1c2a3b5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7a8";
        let hit = set.find(&facts("/bin/sh", &[], "/docker/x", Some(id)));
        assert_eq!(hit.map(|d| d.kind), Some(WorkloadKind::Notebook));
        let hit = set.find(&facts(
            "/bin/sh",
            &[],
            "/system.slice/batch-nightly.service",
            None,
        ));
        assert_eq!(hit.map(|d| d.name.as_str()), Some("batch"));
        assert!(set
            .find(&facts("/bin/sh", &[], "/system.slice/sshd.service", None))
            .is_none());
    }

    #[test]
    fn a_thousand_declarations_find_the_first_that_matches_every_matcher() {
        let mut declarations: Vec<DeclaredWorkload> = (0..1000)
            .map(|index| DeclaredWorkload {
                name: format!("model-{index}"),
                kind: WorkloadKind::Inference,
                matcher: DeclaredMatch {
                    argv: Some(format!("* --marker-{index}")),
                    ..DeclaredMatch::default()
                },
            })
            .collect();
        // A later declaration with the same argv but an exe that must match
        // too, and one that matches anything python: order decides.
        declarations.push(DeclaredWorkload {
            name: "python-anything".into(),
            kind: WorkloadKind::Agent,
            matcher: DeclaredMatch {
                exe: Some("**/python3*".into()),
                ..DeclaredMatch::default()
            },
        });
        let set = DeclaredSet::new(&declarations).expect("declarations compile");
        let argv = vec!["serve".to_string(), "--marker-731".to_string()];
        let hit = set.find(&facts("/usr/bin/python3", &argv, "/", None));
        assert_eq!(hit.map(|d| d.name.as_str()), Some("model-731"));
        let other = vec!["serve".to_string(), "--nothing".to_string()];
        let hit = set.find(&facts("/usr/bin/python3", &other, "/", None));
        assert_eq!(hit.map(|d| d.name.as_str()), Some("python-anything"));
        assert!(set
            .find(&facts("/usr/bin/node", &other, "/", None))
            .is_none());
    }

    #[test]
    fn invalid_declarations_are_rejected_with_their_name() {
        let empty = DeclaredWorkload {
            name: "nothing".into(),
            kind: WorkloadKind::Agent,
            matcher: DeclaredMatch::default(),
        };
        let error = DeclaredSet::new(&[empty]).expect_err("no matcher");
        assert!(error.to_string().contains("nothing"));
        let short = DeclaredWorkload {
            name: "short".into(),
            kind: WorkloadKind::Agent,
            matcher: DeclaredMatch {
                container_id: Some("abc".into()),
                ..DeclaredMatch::default()
            },
        };
        assert!(matches!(
            DeclaredSet::new(&[short]),
            Err(DeclaredError::ShortContainerId { .. })
        ));
    }

    /// `*text*` argv patterns go to the substring automaton, everything else
    /// to the glob set, and both find what one glob set would.
    #[test]
    fn substring_patterns_match_as_their_globs_do() {
        let patterns = [
            "*serve.py*",
            "*--model /models/*",
            "*a*",
            "*serve.py",
            "serve*",
            "*se?ve*",
            "*[s]erve*",
            "**",
        ];
        assert_eq!(substring_pattern("*serve.py*"), Some("serve.py"));
        assert_eq!(substring_pattern("*se?ve*"), None);
        assert_eq!(substring_pattern("**"), None);
        let declarations: Vec<DeclaredWorkload> = patterns
            .iter()
            .enumerate()
            .map(|(index, pattern)| DeclaredWorkload {
                name: format!("w{index}"),
                kind: WorkloadKind::Inference,
                matcher: DeclaredMatch {
                    argv: Some(pattern.to_string()),
                    ..DeclaredMatch::default()
                },
            })
            .collect();
        let globs = FactGlobs::build(&declarations, |m| &m.argv, false).expect("compile");
        assert_eq!(globs.substring_owners, vec![0, 1, 2]);
        let texts = [
            "python3 serve.py --port 8000",
            "python3 /srv/serve.py",
            "serve --model /models/llama",
            "x",
            "",
            "SERVE.PY",
        ];
        for text in texts {
            let mut matched = vec![false; patterns.len()];
            globs.mark(text, &mut matched);
            for (index, pattern) in patterns.iter().enumerate() {
                let glob = GlobBuilder::new(pattern)
                    .literal_separator(false)
                    .build()
                    .expect("glob")
                    .compile_matcher();
                assert_eq!(
                    matched[index],
                    glob.is_match(text),
                    "{pattern:?} on {text:?}"
                );
            }
        }
        // With a literal separator `*` stops at `/`: no substring there.
        let exe = FactGlobs::build(&declarations, |m| &m.argv, true).expect("compile");
        assert!(exe.substring_owners.is_empty());
    }
}
