//! How many bytes an event holds, heap included, for the queues
//! that are bounded in bytes (the sinks'): an estimate that follows the
//! fields that grow with their input (argv, paths, ancestry, names, LLM
//! text) and counts the rest as a fixed part.

use std::mem::size_of;

use super::{Ancestor, Cause, DnsInfo, Event, FileInfo, LlmInfo, NetInfo, Parent, ToolCall};

/// The small strings every event has (comm, ids, workload and container
/// names, kinds), at their usual lengths.
const SMALL_STRINGS: usize = 256;

fn text(value: &str) -> usize {
    value.len()
}

fn opt_text(value: Option<&String>) -> usize {
    value.map_or(0, |v| v.len())
}

/// The bytes of a list of strings, heap included.
pub fn texts(values: &[String]) -> usize {
    values.iter().map(|v| size_of::<String>() + v.len()).sum()
}

impl Event {
    /// An estimate of the bytes this event holds, heap included.
    pub fn held_bytes(&self) -> usize {
        let process = &self.process;
        let mut bytes = size_of::<Event>()
            + SMALL_STRINGS
            + text(&process.exe)
            + texts(&process.argv)
            + process
                .ancestors
                .iter()
                .map(|a| size_of::<Ancestor>() + a.exe.len() + a.comm.len())
                .sum::<usize>();
        if let Some(parent) = &self.parent {
            bytes += size_of::<Parent>() + text(&parent.exe) + texts(&parent.argv);
        }
        if let Some(file) = &self.file {
            bytes += size_of::<FileInfo>() + text(&file.path) + opt_text(file.target.as_ref());
        }
        if let Some(net) = &self.net {
            bytes += size_of::<NetInfo>()
                + opt_text(net.unix_path.as_ref())
                + opt_text(net.dst_name.as_ref())
                + opt_text(net.tls_server_name.as_ref())
                + opt_text(net.http_host.as_ref());
        }
        if let Some(dns) = &self.dns {
            bytes += size_of::<DnsInfo>()
                + text(&dns.name)
                + texts(&dns.cnames)
                + dns.answers.len() * size_of::<std::net::IpAddr>();
        }
        if let Some(llm) = &self.llm {
            bytes += size_of::<LlmInfo>()
                + opt_text(llm.content.as_ref())
                + texts(&llm.tools)
                + llm
                    .tool_calls
                    .iter()
                    .map(|call| size_of::<ToolCall>() + call.name.len() + call.arguments.len())
                    .sum::<usize>();
        }
        if let Some(cause) = &self.cause {
            bytes += size_of::<Cause>() + text(&cause.matched);
        }
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Kind, Process};

    #[test]
    fn the_estimate_grows_with_what_the_event_carries() {
        let small = Event {
            kind: Kind::Exec,
            ..Event::default()
        };
        let base = small.held_bytes();
        assert!(base >= size_of::<Event>());
        let big = Event {
            kind: Kind::Exec,
            process: Process {
                argv: vec!["x".repeat(1000); 16].into(),
                ..Process::default()
            },
            llm: Some(Box::new(LlmInfo {
                content: Some("y".repeat(64 * 1024)),
                ..LlmInfo::default()
            })),
            ..Event::default()
        };
        assert!(big.held_bytes() >= base + 16 * 1000 + 64 * 1024);
    }
}
