use which::which;

/// Rebuild the programs when bpf-linker changes: it does the final link, so a
/// new linker can produce a different object.
fn main() {
    if let Ok(bpf_linker) = which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", bpf_linker.display());
    }
}
