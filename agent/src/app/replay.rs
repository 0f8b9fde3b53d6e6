//! `aiwatch replay`: recorded events through the rules and, on request, the
//! anomaly detectors, offline. The clock is the events' own `ktime_ns`, so a
//! replay gives the same alerts as the live run did, whenever it runs.

use std::{
    io::{self, BufRead, BufWriter},
    path::Path,
    process::ExitCode,
    sync::Arc,
};

use crate::{
    anomaly::AnomalyEngine,
    app::cli::ReplayArgs,
    app::config::Config,
    policy::{replay, PolicyEngine, PolicySet},
};

pub fn run(args: ReplayArgs) -> ExitCode {
    let set = match PolicySet::load(&args.policies, !args.no_default_pack) {
        Ok(set) => Arc::new(set),
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    let mut engine = PolicyEngine::new(set);
    let mut anomaly = if args.anomaly {
        let config = match &args.config {
            Some(path) => match Config::load(path) {
                Ok(config) => config.anomaly,
                Err(err) => {
                    eprintln!("aiwatch: {err}");
                    return ExitCode::FAILURE;
                }
            },
            None => Config::embedded().anomaly,
        };
        match AnomalyEngine::new(config, args.profiles.clone()) {
            Ok(engine) => Some(engine),
            Err(err) => {
                eprintln!("aiwatch: {err}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let mut detect = |event: &crate::event::Event| match &mut anomaly {
        Some(anomaly) => anomaly.observe(event),
        None => Vec::new(),
    };
    let input: Box<dyn BufRead> = match args.events.as_deref() {
        Some(path) if path != Path::new("-") => match std::fs::File::open(path) {
            Ok(file) => Box::new(io::BufReader::new(file)),
            Err(err) => {
                eprintln!("aiwatch: cannot open {}: {err}", path.display());
                return ExitCode::FAILURE;
            }
        },
        _ => Box::new(io::stdin().lock()),
    };
    let output = BufWriter::new(io::stdout().lock());
    match replay(&mut engine, input, output, &mut detect) {
        Ok(stats) => {
            eprintln!(
                "{} events, {} alerts, {} bad lines",
                stats.events, stats.alerts, stats.bad_lines
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("aiwatch: replay failed: {err}");
            ExitCode::FAILURE
        }
    }
}
