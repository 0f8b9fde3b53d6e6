//! Kernel module loads end to end: `init_module` (an image in memory) and
//! `finit_module` (a file) of a real module of the running kernel, each
//! reported as a `module_load` event with its parameters and result.
//!
//! Kernels built without module support have no `init_module` tracepoints,
//! and then the test prints that it is skipped. `cargo xtask vm` boots
//! kernels that have them and sets `AIWATCH_REQUIRE_MODULE_LOADS`, which turns
//! such a skip into a failure.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use aiwatch_tests::{get, kind_of, pid_of, Agent, TempDir};

const PYTHON: &str = "/usr/bin/python3";
/// A module with no dependencies whose parameter makes it create nothing.
const MODULE: &str = "dummy";
const PARAMS: &str = "numdummies=0";
const TEST_NAME: &str = "kernel_module_loads_are_reported";

/// Loads the module from memory, unloads it, loads it from the file, unloads
/// it. argv: the module image (maybe compressed), the plain copy to write.
const LOAD_SCRIPT: &str = r#"
import ctypes, gzip, lzma, os, sys
source, plain, name, params = sys.argv[1], sys.argv[2], sys.argv[3].encode(), sys.argv[4].encode()
data = open(source, "rb").read()
if source.endswith(".xz"):
    data = lzma.decompress(data)
elif source.endswith(".gz"):
    data = gzip.decompress(data)
with open(plain, "wb") as f:
    f.write(data)
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
SYS_INIT_MODULE, SYS_DELETE_MODULE, SYS_FINIT_MODULE = 175, 176, 313
def check(rc, what):
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
image = ctypes.create_string_buffer(data, len(data))
check(libc.syscall(ctypes.c_long(SYS_INIT_MODULE), image, ctypes.c_ulong(len(data)), ctypes.c_char_p(params)), "init_module")
check(libc.syscall(ctypes.c_long(SYS_DELETE_MODULE), ctypes.c_char_p(name), ctypes.c_long(os.O_NONBLOCK)), "delete_module")
fd = os.open(plain, os.O_RDONLY)
check(libc.syscall(ctypes.c_long(SYS_FINIT_MODULE), ctypes.c_long(fd), ctypes.c_char_p(params), ctypes.c_long(0)), "finit_module")
check(libc.syscall(ctypes.c_long(SYS_DELETE_MODULE), ctypes.c_char_p(name), ctypes.c_long(os.O_NONBLOCK)), "delete_module")
"#;

/// Why this kernel cannot run the test, if it cannot.
fn unsupported_because() -> Option<String> {
    let tracepoint = Path::new("/sys/kernel/tracing/events/syscalls/sys_enter_finit_module");
    if !tracepoint.exists() {
        return Some(format!(
            "this kernel has no module support ({} is absent)",
            tracepoint.display()
        ));
    }
    if module_file().is_none() {
        return Some(format!(
            "no {MODULE}.ko for this kernel under /lib/modules/{}",
            kernel_release()
        ));
    }
    None
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .expect("read the kernel release")
        .trim()
        .to_owned()
}

/// The module's file for the running kernel, compressed or not.
fn module_file() -> Option<PathBuf> {
    let dir = Path::new("/lib/modules")
        .join(kernel_release())
        .join("kernel/drivers/net");
    ["ko", "ko.xz", "ko.gz"]
        .iter()
        .map(|ext| dir.join(format!("{MODULE}.{ext}")))
        .find(|path| path.exists())
}

#[test]
fn kernel_module_loads_are_reported() {
    if let Some(why) = unsupported_because() {
        assert!(
            std::env::var_os("AIWATCH_REQUIRE_MODULE_LOADS").is_none(),
            "{TEST_NAME} must run here, but {why}"
        );
        eprintln!("skipped: {TEST_NAME}: {why}");
        return;
    }
    let module = module_file().expect("checked above");
    let dir = TempDir::new("module");
    let plain = dir.path().join(format!("{MODULE}.ko"));
    let agent = Agent::start();
    let child = Command::new(PYTHON)
        .arg("-c")
        .arg(LOAD_SCRIPT)
        .arg(&module)
        .arg(&plain)
        .arg(MODULE)
        .arg(PARAMS)
        .stdout(Stdio::null())
        .spawn()
        .expect("start python3");
    let pid = child.id() as u64;
    let output = child.wait_with_output().expect("wait");
    assert!(output.status.success(), "loading {MODULE} failed");

    let from_memory = agent.wait_event("init_module", |e| {
        kind_of(e) == "module_load"
            && pid_of(e) == pid
            && get(e, "syscall.syscall") == "init_module"
    });
    assert_eq!(get(&from_memory, "syscall.name"), PARAMS, "{from_memory}");
    assert_eq!(get(&from_memory, "syscall.result").as_i64(), Some(0));

    let from_file = agent.wait_event("finit_module", |e| {
        kind_of(e) == "module_load"
            && pid_of(e) == pid
            && get(e, "syscall.syscall") == "finit_module"
    });
    let canonical = std::fs::canonicalize(&plain).expect("the plain module file");
    assert_eq!(
        get(&from_file, "syscall.path").as_str(),
        canonical.to_str(),
        "{from_file}"
    );
    assert_eq!(get(&from_file, "syscall.name"), PARAMS, "{from_file}");
    assert_eq!(get(&from_file, "syscall.flags").as_u64(), Some(0));
    assert_eq!(get(&from_file, "syscall.result").as_i64(), Some(0));
}
