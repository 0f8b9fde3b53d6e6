//! What the read commands print at a terminal: tables by default on a TTY,
//! JSON in a pipe (so scripts keep working), and `-o json|yaml|wide` to
//! choose. Alerts and events get compact one-line forms for the live
//! stream.

pub mod compact;
pub mod inventory;
pub mod profiles;
pub mod top;

use std::io::IsTerminal;

use comfy_table::{presets, ContentArrangement, Table};
use serde::Serialize;

pub use crate::policy::human_bytes as bytes;

/// `-o/--output` of the read commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Columns for people (the default on a terminal).
    Table,
    /// The table with more columns.
    Wide,
    /// JSON (the default in a pipe).
    Json,
    Yaml,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("cannot write JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("cannot write YAML: {0}")]
    Yaml(String),
}

impl OutputFormat {
    /// The format asked for, else a table on a terminal and JSON elsewhere.
    pub fn chosen(explicit: Option<OutputFormat>) -> OutputFormat {
        explicit.unwrap_or(if std::io::stdout().is_terminal() {
            OutputFormat::Table
        } else {
            OutputFormat::Json
        })
    }

    pub fn is_table(self) -> bool {
        matches!(self, OutputFormat::Table | OutputFormat::Wide)
    }
}

/// `value` as JSON (pretty) or YAML; `None` for the table formats, which
/// each command draws itself.
pub fn structured<T: Serialize>(
    value: &T,
    format: OutputFormat,
) -> Result<Option<String>, RenderError> {
    match format {
        OutputFormat::Json => Ok(Some(serde_json::to_string_pretty(value)?)),
        OutputFormat::Yaml => serde_saphyr::to_string(value)
            .map(Some)
            .map_err(|err| RenderError::Yaml(err.to_string())),
        OutputFormat::Table | OutputFormat::Wide => Ok(None),
    }
}

/// A borderless table with a header row, as `kubectl get` prints them.
pub fn table(headers: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(headers.iter().map(|h| h.to_string()));
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_short() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }

    #[test]
    fn tables_have_their_header_and_rows() {
        let mut t = table(&["NAME", "KIND"]);
        t.add_row(vec!["onnx", "inference"]);
        let text = t.to_string();
        assert!(
            text.contains("NAME") && text.contains("inference"),
            "{text}"
        );
    }
}
