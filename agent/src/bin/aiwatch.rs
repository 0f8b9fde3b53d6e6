use std::process::ExitCode;

use aiwatch::{
    anomaly::cli as profile,
    app::cli::{Cli, Command, PolicyAction, ProfileAction},
    app::replay,
    app::run::{self, Overrides},
    enforce::{switch_command, SwitchCommand},
    policy,
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
                bench_floor: args.bench_floor,
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
        Command::Inventory(args) => {
            match aiwatch::observe::http::client::get_json(args.listen, "/inventory") {
                Ok(body) => {
                    println!("{body}");
                    ExitCode::SUCCESS
                }
                Err(err) => fail(&err),
            }
        }
        Command::Policy(args) => match args.action {
            PolicyAction::Check {
                paths,
                no_default_pack,
            } => policy::check_command(&paths, !no_default_pack),
            PolicyAction::Test {
                paths,
                no_default_pack,
            } => policy::test_command(&paths, !no_default_pack),
        },
        Command::Replay(args) => replay::run(args),
        Command::Enforcement(args) => {
            let command = match args.switch.as_str() {
                "on" => SwitchCommand::On,
                "off" => SwitchCommand::Off,
                _ => SwitchCommand::Status,
            };
            switch_command(&args.state_dir, command)
        }
        Command::Profile(args) => {
            let dir = args.state_dir.join("profiles");
            match args.action {
                ProfileAction::List => profile::list(&dir),
                ProfileAction::Show { workload } => profile::show(&dir, &workload),
                ProfileAction::Reset { workload } => profile::reset(&dir, &workload),
                ProfileAction::Export {
                    workload,
                    as_policy,
                    output,
                } => profile::export(&dir, &workload, as_policy, output.as_deref()),
                ProfileAction::Import { file } => profile::import(&dir, &file),
                ProfileAction::Freeze { workload } => profile::freeze(&dir, &workload),
                ProfileAction::Unfreeze { workload } => profile::unfreeze(&dir, &workload),
                ProfileAction::Mode { workload, mode } => profile::set_mode(&dir, &workload, &mode),
            }
        }
    }
}

/// One clear sentence, with its causes, and a non-zero exit.
fn fail(err: &dyn std::error::Error) -> ExitCode {
    let mut message = format!("aiwatch: {err}");
    let mut source = err.source();
    while let Some(cause) = source {
        // Many errors already print their cause; add only what is new.
        let cause_text = cause.to_string();
        if !message.contains(&cause_text) {
            message.push_str(&format!(": {cause_text}"));
        }
        source = cause.source();
    }
    eprintln!("{message}");
    ExitCode::FAILURE
}
