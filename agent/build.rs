//! Builds the kernel programs (the `aiwatch-ebpf` crate) for the BPF target
//! and leaves the object in `OUT_DIR/aiwatch` for `include_bytes_aligned!`.
//!
//! With `AYA_BUILD_SKIP=1` (clippy or docs on a machine without bpf-linker)
//! an empty object is written instead; the agent then refuses to load it
//! with a clear message.

use std::{env, fs, path::PathBuf};

use anyhow::Context as _;
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    let object = out_dir.join("aiwatch");
    let skip = env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if skip {
        println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
        if !object.exists() {
            fs::write(&object, []).context("writing the empty eBPF object")?;
        }
        return Ok(());
    }
    let ebpf_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../ebpf");
    let root_dir = ebpf_dir.to_str().context("non-UTF-8 path")?;
    aya_build::build_ebpf(
        [Package {
            name: "aiwatch-ebpf",
            root_dir,
            ..Default::default()
        }],
        Toolchain::Nightly,
    )
}
