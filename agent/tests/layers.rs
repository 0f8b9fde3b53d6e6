//! The agent's imports run one way along the pipeline (docs/ARCHITECTURE.md):
//!
//! app → sink, observe → enforce → analyze, policy, anomaly, llm → enrich → ingest → kernel
//!
//! with `clock`, `event`, `alert` and `metrics` as leaves every stage may
//! use. This test parses every non-test source file of `agent/src` and fails
//! on a `crate::` path that points up the pipeline or sideways between
//! peers. Tests are exempt: they may compose stages.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use syn::visit::Visit;

/// The stage folders (and leaf modules), from the bottom of the pipeline up.
const LAYERS: &[&[&str]] = &[
    // The wall clock's typed instant is part of the event.
    &["clock"],
    &["event"],
    &["alert"],
    &["metrics"],
    &["kernel"],
    &["ingest"],
    &["enrich"],
    // `llm` reads ingest's clear text and the enricher's redactor, and
    // hands events to the pipeline like the analysers.
    &["analyze", "policy", "anomaly", "llm"],
    // Reads compiled policy and writes kernel maps: above the detectors,
    // below the edges that wire it in.
    &["enforce"],
    &["sink", "observe"],
    &["app"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// The top-level modules a file names through `crate::...`.
#[derive(Default)]
struct CrateRefs(BTreeSet<String>);

impl<'ast> Visit<'ast> for CrateRefs {
    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        if let syn::UseTree::Path(path) = &item.tree {
            if path.ident == "crate" {
                self.collect(&path.tree);
            }
        }
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let mut segments = path.segments.iter();
        if let (Some(first), Some(second)) = (segments.next(), segments.next()) {
            if first.ident == "crate" {
                self.0.insert(second.ident.to_string());
            }
        }
        syn::visit::visit_path(self, path);
    }

    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        if !is_test_only(&item.attrs) {
            syn::visit::visit_item_mod(self, item);
        }
    }

    fn visit_item_fn(&mut self, item: &'ast syn::ItemFn) {
        if !is_test_only(&item.attrs) {
            syn::visit::visit_item_fn(self, item);
        }
    }
}

impl CrateRefs {
    fn collect(&mut self, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(path) => {
                self.0.insert(path.ident.to_string());
            }
            syn::UseTree::Name(name) => {
                self.0.insert(name.ident.to_string());
            }
            syn::UseTree::Rename(rename) => {
                self.0.insert(rename.ident.to_string());
            }
            syn::UseTree::Group(group) => group.items.iter().for_each(|t| self.collect(t)),
            syn::UseTree::Glob(_) => {}
        }
    }
}

fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|attr| {
        attr.path().is_ident("cfg")
            && attr
                .parse_args::<syn::Ident>()
                .is_ok_and(|ident| ident == "test")
    })
}

fn source_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            source_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// top-level module → the modules it imports, with a file that does.
fn imports() -> BTreeMap<String, BTreeMap<String, PathBuf>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    source_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeMap<String, PathBuf>> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(&src).unwrap();
        let name = file.file_stem().unwrap().to_str().unwrap();
        let top = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_str()
            .unwrap();
        let top = top.trim_end_matches(".rs").to_string();
        if top == "bin" || top == "lib" || name == "tests" || name.ends_with("_tests") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let parsed =
            syn::parse_file(&text).unwrap_or_else(|err| panic!("{}: {err}", file.display()));
        let mut refs = CrateRefs::default();
        refs.visit_file(&parsed);
        for module in refs.0 {
            if module != top {
                graph
                    .entry(top.clone())
                    .or_default()
                    .entry(module)
                    .or_insert_with(|| relative.to_path_buf());
            }
        }
    }
    graph
}

#[test]
fn imports_run_one_way_along_the_pipeline() {
    let graph = imports();
    assert!(
        graph.contains_key("app") && graph.contains_key("enrich"),
        "the source walk found the stage folders: {:?}",
        graph.keys()
    );
    let mut back_edges = Vec::new();
    for (from, targets) in &graph {
        let from_layer =
            layer_of(from).unwrap_or_else(|| panic!("{from} is in no layer of this test"));
        for (to, file) in targets {
            let to_layer = layer_of(to).unwrap_or_else(|| panic!("{to} is in no layer"));
            if to_layer >= from_layer {
                back_edges.push(format!("{from} → {to} (in {})", file.display()));
            }
        }
    }
    assert!(
        back_edges.is_empty(),
        "imports against the pipeline:\n  {}",
        back_edges.join("\n  ")
    );
}

#[test]
fn every_module_of_the_crate_root_has_a_layer() {
    let lib = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/lib.rs")).unwrap();
    let parsed = syn::parse_file(&lib).unwrap();
    let modules: Vec<String> = parsed
        .items
        .iter()
        .filter_map(|item| match item {
            syn::Item::Mod(module) => Some(module.ident.to_string()),
            _ => None,
        })
        .collect();
    assert!(modules.len() > 5, "{modules:?}");
    for module in modules {
        assert!(layer_of(&module).is_some(), "add {module} to LAYERS");
    }
}

/// docs/ARCHITECTURE.md: an event's path is never stat'ed (it names a file
/// in the process's own mount namespace, and a stat on the pipeline thread
/// could hang on a dead mount). The code that turns records into events is
/// `enrich/mod.rs` and `enrich/file.rs`; neither calls a stat.
#[test]
fn event_paths_are_never_stated() {
    for file in ["src/enrich/mod.rs", "src/enrich/file.rs"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        for call in ["metadata(", "fs::stat", "statx", "fstatat", "::stat("] {
            assert!(
                !text.contains(call),
                "{file} calls `{call}`: event paths are never stat'ed (docs/ARCHITECTURE.md)"
            );
        }
    }
}
