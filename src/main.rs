//! `halb`: the command line. See `halb --help`.

mod admin;
mod daemon;
mod demo;
mod logging;
mod parts;
mod shutdown;
mod stats_page;
mod status;
mod telemetry;
mod upgrade;
mod witness;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::admin::{NodeAction, Request, ServerAction};
use crate::daemon::{exit, ConfigSource, RunOptions};

const RUN_HELP: &str = "\
Signals:
  SIGHUP           re-read the config; a valid file is applied (generation + 1),
                   an invalid one is rejected and the running config is kept
  SIGTERM, SIGINT  graceful stop: VRRP masters resign (priority 0), listeners
                   drain, each part gets node.shutdown_timeout

Exit codes:
  0  stopped by SIGTERM/SIGINT after a graceful shutdown
  1  the config file is invalid (errors printed as FILE:LINE:COL: message)
  2  command-line usage error
  3  a part could not start (admin socket, metrics listener, a frontend, ...)
  4  shutdown did not finish within node.shutdown_timeout";

#[derive(Parser, Debug)]
#[command(
    name = "halb",
    version,
    about = "High-availability front door: VRRP, L4/L7 balancing, quorum and fencing in one daemon"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug, Clone)]
struct ClientOpts {
    /// Admin socket of the running daemon.
    #[arg(long, global = true, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Read the admin socket path from this config file.
    #[arg(short = 'c', long = "config", global = true, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon in the foreground.
    #[command(after_help = RUN_HELP)]
    Run {
        /// The config file.
        #[arg(short = 'c', long = "config", value_name = "FILE")]
        config: PathBuf,
        /// Replace the halb running with this config without dropping a
        /// connection: take over its listening sockets, admin socket, VRRP
        /// mastership and XDP links; it then drains and exits. Not
        /// available with `[cluster]`.
        #[arg(long)]
        upgrade: bool,
    },
    /// Validate a config file: exit 0 if valid, 1 with FILE:LINE:COL: message lines if not.
    CheckConfig {
        /// The config file.
        file: PathBuf,
    },
    /// Show the running daemon's status.
    Status {
        /// Print JSON for tools instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Re-read the config file, like SIGHUP, and print the outcome.
    Reload {
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Node modes: standby, unstandby, maintenance, unmaintenance, failback.
    Node {
        #[arg(value_enum)]
        action: NodeArg,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Runtime control of one server: drain, enable, disable BACKEND/SERVER.
    Server {
        #[arg(value_enum)]
        action: ServerArg,
        /// BACKEND/SERVER, e.g. web/a
        target: String,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// The embedded default: a balancer on 127.0.0.1 over built-in demo servers.
    Demo(demo::DemoArgs),
    /// A tie-breaking vote for the cluster (like corosync-qnetd), on a third
    /// machine: reads the same config and listens on cluster.witness.
    Witness {
        /// The cluster's config file.
        #[arg(short = 'c', long = "config", value_name = "FILE")]
        config: PathBuf,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum NodeArg {
    Standby,
    Unstandby,
    Maintenance,
    Unmaintenance,
    Failback,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum ServerArg {
    Drain,
    Enable,
    Disable,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::USAGE } else { 0 });
        }
    };
    ExitCode::from(match cli.command {
        Command::Run { config, upgrade } => cmd_run(config, upgrade),
        Command::CheckConfig { file } => cmd_check_config(&file),
        Command::Status { json, client } => {
            client_cmd(&client, Request::Status { text: !json }, print_status)
        }
        Command::Reload { client } => client_cmd(&client, Request::Reload {}, print_reload),
        Command::Node { action, client } => {
            let action = match action {
                NodeArg::Standby => NodeAction::Standby,
                NodeArg::Unstandby => NodeAction::Unstandby,
                NodeArg::Maintenance => NodeAction::Maintenance,
                NodeArg::Unmaintenance => NodeAction::Unmaintenance,
                NodeArg::Failback => NodeAction::Failback,
            };
            client_cmd(&client, Request::Node { action }, print_result)
        }
        Command::Server {
            action,
            target,
            client,
        } => {
            let Some((backend, server)) = target.split_once('/') else {
                eprintln!("halb: server target must be BACKEND/SERVER, got {target:?}");
                return ExitCode::from(exit::USAGE);
            };
            let action = match action {
                ServerArg::Drain => ServerAction::Drain,
                ServerArg::Enable => ServerAction::Enable,
                ServerArg::Disable => ServerAction::Disable,
            };
            let request = Request::Server {
                action,
                backend: backend.to_string(),
                server: server.to_string(),
            };
            client_cmd(&client, request, print_result)
        }
        Command::Demo(args) => demo::run(args),
        Command::Witness { config } => witness::run(config),
    })
}

fn cmd_check_config(file: &std::path::Path) -> u8 {
    match control::config::load(file) {
        Ok(cfg) => {
            println!(
                "{}: ok (node {}, {} vrrp instance(s), {} frontend(s), {} backend(s){})",
                file.display(),
                cfg.node.name,
                cfg.vrrp.len(),
                cfg.frontends.len(),
                cfg.backends.len(),
                if cfg.cluster.is_some() {
                    ", cluster"
                } else {
                    ""
                }
            );
            exit::OK
        }
        Err(errors) => {
            for e in &errors.errors {
                println!("{e}");
            }
            exit::CONFIG
        }
    }
}

fn runtime(threads: Option<usize>) -> Result<tokio::runtime::Runtime, u8> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = threads {
        builder.worker_threads(n.max(1));
    }
    builder.enable_all().build().map_err(|e| {
        eprintln!("halb: cannot start the runtime: {e}");
        exit::STARTUP
    })
}

fn cmd_run(path: PathBuf, upgrade: bool) -> u8 {
    let source = ConfigSource::File(path);
    let config = match source.load() {
        Ok(c) => c,
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            return exit::CONFIG;
        }
    };
    logging::init(config.node.log_level.map(|l| l.as_str()));
    let rt = match runtime(Some(usize::from(config.node.worker_threads))) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(daemon::run(source, config, RunOptions { upgrade }))
}

/// Runs one admin request and prints its answer with `print`.
fn client_cmd(
    opts: &ClientOpts,
    request: Request,
    print: impl FnOnce(&admin::Response) -> u8,
) -> u8 {
    let socket = match daemon::client_socket(opts.socket.clone(), opts.config.clone()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("halb: {e}");
            return exit::CONFIG;
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("halb: cannot start the runtime: {e}");
            return exit::STARTUP;
        }
    };
    match rt.block_on(daemon::client_request(&socket, &request)) {
        Ok(response) => print(&response),
        Err(e) => {
            eprintln!("halb: {e} (is the daemon running? try --socket PATH or -c CONFIG)");
            exit::STARTUP
        }
    }
}

fn print_error(r: &admin::Response) -> u8 {
    eprintln!(
        "halb: {}",
        r.error.as_deref().unwrap_or("the daemon reported an error")
    );
    for d in &r.details {
        eprintln!("{d}");
    }
    1
}

fn print_status(r: &admin::Response) -> u8 {
    if !r.ok {
        return print_error(r);
    }
    match &r.result {
        Some(serde_json::Value::String(text)) => print!("{text}"),
        Some(v) => println!(
            "{}",
            serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
        ),
        None => {
            eprintln!("halb: the daemon sent an empty status");
            return 1;
        }
    }
    0
}

fn print_reload(r: &admin::Response) -> u8 {
    let report = r
        .result
        .clone()
        .and_then(|v| serde_json::from_value::<status::ReloadReport>(v).ok());
    match (r.ok, report) {
        (true, Some(rep)) => {
            println!("reload applied: generation {}", rep.generation);
            for c in &rep.changes {
                println!("  {c}");
            }
            0
        }
        (false, Some(rep)) => {
            eprintln!(
                "reload rejected: generation {} keeps running",
                rep.generation
            );
            for e in &rep.errors {
                eprintln!("{e}");
            }
            1
        }
        _ if r.ok => print_result(r),
        _ => print_error(r),
    }
}

fn print_result(r: &admin::Response) -> u8 {
    if !r.ok {
        return print_error(r);
    }
    match &r.result {
        Some(serde_json::Value::String(s)) => println!("{s}"),
        Some(v) => println!(
            "{}",
            serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
        ),
        None => println!("ok"),
    }
    0
}
