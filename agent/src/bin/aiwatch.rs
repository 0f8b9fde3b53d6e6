use std::process::ExitCode;

use aiwatch::{
    anomaly::cli as profile,
    app::cli::{Cli, Command, PolicyAction, ProfileAction},
    app::run::{self, Overrides},
    app::{follow, replay, terminal},
    enforce::{switch_command, SwitchCommand},
    policy,
    sink::stream::Topic,
};
use clap::{CommandFactory, Parser};

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
            let body = match aiwatch::observe::http::client::get_json(args.listen, "/inventory") {
                Ok(body) => body,
                Err(err) => return fail(&err),
            };
            let format = terminal::OutputFormat::chosen(args.output);
            if format == terminal::OutputFormat::Json && args.workload.is_none() {
                // The document as the agent serves it.
                println!("{body}");
                return ExitCode::SUCCESS;
            }
            let snapshot: aiwatch::analyze::inventory::InventorySnapshot =
                match serde_json::from_str(&body) {
                    Ok(snapshot) => snapshot,
                    Err(err) => return fail(&err),
                };
            print_inventory(&snapshot, format, args.workload.as_deref())
        }
        Command::Alerts(args) => follow::run(Topic::Alerts, &args),
        Command::Events(args) => follow::run(Topic::Events, &args),
        Command::Top(args) => terminal::top::run(&args),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "aiwatch",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
        Command::Man { dir: None } => {
            // As `generate_to` does: `help` has no page of its own to point to.
            let command = Cli::command().disable_help_subcommand(true);
            match clap_mangen::Man::new(command).render(&mut std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => fail(&err),
            }
        }
        Command::Man { dir: Some(dir) } => {
            let written = std::fs::create_dir_all(&dir)
                .and_then(|()| clap_mangen::generate_to(Cli::command(), &dir));
            match written {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!(
                        "aiwatch: cannot write the man pages into {}: {err}",
                        dir.display()
                    );
                    ExitCode::FAILURE
                }
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
                ProfileAction::List { output } => {
                    let format = terminal::OutputFormat::chosen(output);
                    match profile::list_profiles(&dir) {
                        Ok(list) => print_as(&list, format, || {
                            terminal::profiles::render_list(&list, format)
                        }),
                        Err(err) => fail(&err),
                    }
                }
                ProfileAction::Show { workload, output } => {
                    let format = terminal::OutputFormat::chosen(output);
                    match profile::find_profile(&dir, &workload) {
                        Ok(found) => print_as(&found, format, || {
                            terminal::profiles::render_profile(&found)
                        }),
                        Err(err) => fail(&err),
                    }
                }
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
                ProfileAction::Enforce {
                    workload,
                    dry_run,
                    remove,
                } => profile::enforce(&dir, &args.state_dir, &workload, dry_run, remove),
            }
        }
    }
}

/// `value` in a structured format, or the table `draw` makes.
fn print_as<T: serde::Serialize>(
    value: &T,
    format: terminal::OutputFormat,
    draw: impl FnOnce() -> String,
) -> ExitCode {
    match terminal::structured(value, format) {
        Ok(Some(text)) => println!("{text}"),
        Ok(None) => print!("{}", draw()),
        Err(err) => return fail(&err),
    }
    ExitCode::SUCCESS
}

fn print_inventory(
    snapshot: &aiwatch::analyze::inventory::InventorySnapshot,
    format: terminal::OutputFormat,
    workload: Option<&str>,
) -> ExitCode {
    let Some(selector) = workload else {
        return print_as(snapshot, format, || {
            terminal::inventory::render(snapshot, format)
        });
    };
    let Some(one) = snapshot
        .workloads
        .iter()
        .find(|w| w.workload.name == selector || w.workload.id == selector)
    else {
        eprintln!("aiwatch: no workload named {selector:?} in the inventory");
        return ExitCode::FAILURE;
    };
    print_as(one, format, || {
        terminal::inventory::render_workload(snapshot, selector).unwrap_or_default()
    })
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
