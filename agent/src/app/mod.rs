//! The edges: the command line, the configuration, `aiwatch run` (which
//! wires the stages together), the pipeline task, and the offline `replay`.

pub mod cli;
pub mod config;
pub mod detectors;
pub mod follow;
pub mod kernel_side;
pub mod locks;
pub mod outputs;
pub mod pipeline;
pub mod privileges;
pub mod remote_stream;
pub mod replay;
pub mod run;
pub mod terminal;
