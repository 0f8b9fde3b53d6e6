//! Busybox container images of a test's own, for the suites that run
//! containers (podman, containerd).

use std::{path::Path, process::Command};

/// Builds `image` in podman's store from a busybox root file system in
/// `dir`. The root holds a file naming the image, so that its image id is
/// its own: another test's `podman rmi -f` of its image cannot reach this
/// one's containers. `change` is an optional `podman import --change`
/// (such as a `CMD`). The caller removes the image.
pub fn import_busybox_into_podman(dir: &Path, image: &str, change: Option<&str>) {
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.exists(),
        "no /bin/busybox (Debian busybox-static): run `cargo xtask setup --tests`"
    );
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).expect("rootfs");
    std::fs::create_dir_all(rootfs.join("tmp")).expect("rootfs /tmp");
    std::fs::write(rootfs.join("image-of"), image).expect("rootfs marker");
    std::fs::copy(busybox, rootfs.join("bin/busybox")).expect("copy /bin/busybox");
    let tarball = dir.join("rootfs.tar");
    run_ok(
        Command::new("tar")
            .arg("cf")
            .arg(&tarball)
            .arg("-C")
            .arg(&rootfs)
            .arg("."),
    );
    let mut import = Command::new("podman");
    import.args(["import", "-q"]);
    if let Some(change) = change {
        import.arg("--change").arg(change);
    }
    run_ok(import.arg(&tarball).arg(image));
}

/// Runs `command`; panics with its stderr unless it succeeds; returns its
/// stdout.
pub fn run_ok(command: &mut Command) -> String {
    let output = command.output().expect("run command");
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
