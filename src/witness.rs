//! `halb witness -c FILE`: the tie-breaking vote of a cluster, meant for a
//! third machine (like corosync-qnetd).
//!
//! It reads the same config file as the nodes (only `[cluster]` is used:
//! the node list, the key, the heartbeat timing, and `witness`, its own
//! listen address) and answers every authenticated heartbeat with its
//! vote: for the partition reported by the most nodes, on a tie the one it
//! already votes for, then the one with the lowest node id (see
//! `control::cluster::witness`). It holds no other state and can be
//! restarted at any time.
//!
//! Exit codes: 0 after SIGTERM/SIGINT, 1 config invalid (or no
//! `[cluster]` / `cluster.witness`), 3 startup failure (key file, bind).

use std::path::PathBuf;

use control::cluster::witness_server::WitnessServer;

const OK: u8 = 0;
const CONFIG: u8 = 1;
const STARTUP: u8 = 3;

/// Runs the witness until SIGTERM or SIGINT; returns the exit code.
pub fn run(config: PathBuf) -> u8 {
    let cfg = match control::config::load(&config) {
        Ok(c) => c,
        Err(errors) => {
            for e in &errors.errors {
                eprintln!("{e}");
            }
            return CONFIG;
        }
    };
    let Some(cluster) = cfg.cluster else {
        eprintln!("halb witness: {}: no [cluster] section", config.display());
        return CONFIG;
    };
    let Some(addr) = cluster.witness else {
        eprintln!(
            "halb witness: {}: cluster.witness (the witness's listen address) is not set",
            config.display()
        );
        return CONFIG;
    };
    let level = cfg.node.log_level.map_or("info", |l| l.as_str());
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("halb witness: cannot start the runtime: {e}");
            return STARTUP;
        }
    };
    rt.block_on(async {
        let server = match WitnessServer::bind(&cluster, None, None) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("halb witness: {e}");
                return STARTUP;
            }
        };
        eprintln!(
            "halb witness: listening on {addr} for {} node(s)",
            cluster.nodes.len()
        );
        let stats = server.run(shutdown_signal()).await;
        tracing::info!(
            answered = stats.answered,
            votes_given = stats.votes_given,
            rejected = stats.rejected,
            "witness stopped"
        );
        OK
    })
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "no SIGTERM handler; stop with SIGINT");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
