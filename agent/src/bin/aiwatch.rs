use std::process::ExitCode;

use aiwatch::{
    cli::{Cli, Command},
    run::{self, Overrides},
};
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::new()
        .filter_level(cli.log_level)
        .format_target(false)
        .init();
    match cli.command {
        Command::Run(args) => {
            let overrides = Overrides {
                events: args.events,
                alerts: args.alerts,
                listen: args.listen,
            };
            let config = match run::resolve_config(args.config.as_deref(), &overrides) {
                Ok(config) => config,
                Err(err) => return fail(&err),
            };
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(err) => return fail(&err),
            };
            match runtime.block_on(run::run(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => fail(&err),
            }
        }
    }
}

/// One clear sentence, with its causes, and a non-zero exit.
fn fail(err: &dyn std::error::Error) -> ExitCode {
    let mut message = format!("aiwatch: {err}");
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    eprintln!("{message}");
    ExitCode::FAILURE
}
