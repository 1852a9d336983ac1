//! `rebake`: serve one service, run them all, or talk to the control API.

use std::process::ExitCode;

use clap::Parser;
use mimalloc::MiMalloc;
use rebake::{
    Service,
    cli::{self, Cli, Command, EXIT_USAGE},
};

/// Every service allocates per message and per request; mimalloc spends far less time
/// per allocation than glibc's malloc under that load (BENCHMARKS.md, ingress).
#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

/// Output piped into a reader that quit (`rebake builds -o json | head`) is not an error:
/// exit quietly with the status a SIGPIPE-killed process reports, as other tools do,
/// instead of the panic `println!` raises on a closed stdout.
fn exit_quietly_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.contains("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    exit_quietly_on_broken_pipe();
    let cli = Cli::parse();
    let env: std::collections::HashMap<String, String> = std::env::vars().collect();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: failed to start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let services: Option<Vec<Service>> = match &cli.command {
        Command::Serve { service } => Some(vec![*service]),
        Command::Up => Some(Service::ALL.to_vec()),
        _ => None,
    };
    // Services read the configuration first: it says where traces go. The OTLP exporter
    // lives on the runtime, so install it inside the runtime's context; the guard flushes
    // the last spans when it drops, before the runtime does.
    let config = services.as_ref().map(|_| cli::load_config(cli.config.as_ref(), &env));
    let telemetry = match &config {
        Some(Ok(config)) => config.telemetry.clone(),
        _ => rebake_config::TelemetryConfig::default(),
    };
    let telemetry = {
        let _context = runtime.enter();
        rebake_runtime::init_telemetry(cli.log_format, env.get("RUST_LOG").map(String::as_str), &telemetry)
    };
    let result = runtime.block_on(async {
        match (cli.command, services) {
            (_, Some(services)) => {
                let config = match config.expect("services read the configuration") {
                    Ok(config) => config,
                    Err(error) => return Err((EXIT_USAGE, error)),
                };
                cli::run_services(&services, config, env).await.map_err(|error| {
                    // Anything wrong with the configuration (catalog, secrets) is a usage error.
                    let is_config = error.chain().any(|cause| cause.is::<rebake_config::ConfigError>());
                    (if is_config { EXIT_USAGE } else { 1 }, error)
                })
            }
            (Command::Version, _) => {
                println!("{}", rebake_runtime::version_line());
                Ok(())
            }
            // Everything `rebake key` reads is input it was given: any failure is a usage error.
            (Command::Key { command }, _) => {
                rebake::keys::run(command, cli.config.as_ref(), &env).map_err(|error| (EXIT_USAGE, error))
            }
            (command, None) => match cli::run_client(command).await {
                Some(result) => result.map_err(|error| (1, error)),
                None => unreachable!("serve and up always name services; version and key are handled above"),
            },
        }
    });
    {
        let _context = runtime.enter();
        drop(telemetry);
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, error)) => {
            eprintln!("error: {error:#}");
            ExitCode::from(code)
        }
    }
}
