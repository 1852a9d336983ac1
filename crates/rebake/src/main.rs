//! `rebake`: serve one service, run them all, or talk to the control API.

use std::process::ExitCode;

use clap::Parser;
use rebake::{
    Service,
    cli::{self, Cli, Command, EXIT_USAGE},
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    rebake_runtime::init_telemetry(cli.log_format, std::env::var("RUST_LOG").ok().as_deref());
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
    let result = runtime.block_on(async {
        match (cli.command, services) {
            (_, Some(services)) => {
                let config = match cli::load_config(cli.config.as_ref(), &env) {
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
            (
                Command::Images {
                    endpoint,
                    prefix,
                    status,
                    output,
                },
                _,
            ) => cli::images(&endpoint, &prefix, &status, output)
                .await
                .map_err(|e| (1, e)),
            (
                Command::Watch {
                    endpoint,
                    image,
                    kinds,
                    from,
                    output,
                },
                _,
            ) => cli::watch(&endpoint, &image, kinds, from, output)
                .await
                .map_err(|e| (1, e)),
            (
                Command::Findings {
                    image,
                    build,
                    endpoint,
                    output,
                },
                _,
            ) => cli::findings(&endpoint, &image, &build, output)
                .await
                .map_err(|e| (1, e)),
            (
                Command::Sbom {
                    image,
                    build,
                    format,
                    endpoint,
                },
                _,
            ) => cli::sbom(&endpoint, &image, &build, &format).await.map_err(|e| (1, e)),
            (Command::Serve { .. } | Command::Up, None) => unreachable!("serve and up always name services"),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, error)) => {
            eprintln!("error: {error:#}");
            ExitCode::from(code)
        }
    }
}
