//! Persistence writes on the real kernel: a relative name resolved after the
//! call (the kernel's interest sets cannot test `cron.d/x` from `/etc`), and
//! the near miss, a relative write of an ordinary file, which must leave no
//! event at all.

use std::process::Command;

use aiwatch_tests::{get, kind_of, pid_of, Agent, TempDir};

#[test]
fn a_relative_write_into_cron_d_is_resolved_and_alerts_and_an_ordinary_one_is_dropped() {
    let agent = Agent::start();
    let scratch = TempDir::new("relative");
    let name = format!("aiwatch-relative-test-{}", std::process::id());
    // One process: the ordinary relative write first, then the cron job. The
    // cron alert is the sentinel: once it is in, the first write has been
    // through the pipeline too.
    let script = format!(
        "import os\nos.chdir({scratch:?})\nopen('notes.txt', 'w').write('x')\nos.chdir('/etc')\nopen('cron.d/{name}', 'w').write('# nothing\\n')\nos.remove('/etc/cron.d/{name}')\n",
        scratch = scratch.path().display().to_string(),
    );
    let status = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(&script)
        .status()
        .expect("python3");
    assert!(status.success());
    let cron = format!("/etc/cron.d/{name}");
    let alert = agent.wait_alert("host.persistence-write of the relative cron job", |a| {
        a["rule"] == "host.persistence-write" && get(a, "event.file.path").as_str() == Some(&cron)
    });
    assert_eq!(get(&alert, "event.file.class"), "persistence");
    let pid = get(&alert, "event.process.pid").as_u64().expect("pid");
    let notes = scratch.path().join("notes.txt").display().to_string();
    let leaked: Vec<_> = agent
        .events()
        .into_iter()
        .filter(|e| pid_of(e) == pid && kind_of(e) == "open")
        .filter(|e| get(e, "file.path").as_str() == Some(&notes))
        .collect();
    assert!(
        leaked.is_empty(),
        "an ordinary relative write reached the events: {leaked:?}"
    );
}

#[test]
fn a_symbolic_link_into_cron_d_is_a_link_event_that_alerts() {
    let agent = Agent::start();
    let scratch = TempDir::new("symlink");
    let job = scratch.path().join("job");
    std::fs::write(&job, "# nothing\n").expect("write job");
    let link = format!("/etc/cron.d/aiwatch-link-test-{}", std::process::id());
    let status = Command::new("/bin/ln")
        .arg("-s")
        .arg(&job)
        .arg(&link)
        .status()
        .expect("ln");
    assert!(status.success());
    let _ = std::fs::remove_file(&link);
    let alert = agent.wait_alert("host.persistence-write of the symlink", |a| {
        a["rule"] == "host.persistence-write" && get(a, "event.file.target").as_str() == Some(&link)
    });
    assert_eq!(kind_of(&alert["event"]), "link");
    assert_eq!(get(&alert, "event.file.mode").as_u64(), Some(0o120000));
    assert_eq!(
        get(&alert, "event.file.path").as_str(),
        Some(job.display().to_string().as_str())
    );
}
