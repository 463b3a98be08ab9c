//! `halb demo`: the embedded default. Three demo HTTP servers on 127.0.0.1,
//! each answering with its own name, and the daemon in front of them with
//! HTTP health checks, metrics and the stats page. No root, no config file.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::daemon::{self, exit, ConfigSource, RunOptions};
use crate::shutdown::Shutdown;

/// Options of `halb demo`.
#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Where the balancer listens.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Where metrics and the stats page are served.
    #[arg(long, default_value = "127.0.0.1:9100")]
    pub metrics: SocketAddr,
    /// Admin socket (default: a per-user path that `halb` commands find by themselves).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
}

/// The demo's admin socket when `--socket` is not given.
pub fn admin_socket_path() -> PathBuf {
    if let Ok(dir) = std::env::var("XDG_RUNTIME_DIR") {
        if !dir.is_empty() {
            return PathBuf::from(dir).join("halb-demo.sock");
        }
    }
    let uid = nix::unistd::Uid::current();
    PathBuf::from(format!("/tmp/halb-demo-{uid}.sock"))
}

/// The embedded config, with the demo servers' real addresses filled in.
pub fn config_text(
    args: &DemoArgs,
    socket: &std::path::Path,
    servers: &[(String, SocketAddr)],
) -> String {
    let mut servers_toml = String::new();
    for (name, addr) in servers {
        servers_toml.push_str(&format!(
            "  {{ name = \"{name}\", address = \"{addr}\", weight = 1 }},\n"
        ));
    }
    format!(
        r#"# halb demo: the embedded default config
[node]
name = "demo"
admin_socket = "{socket}"
metrics_listen = "{metrics}"
worker_threads = 2
shutdown_timeout = "5s"

[[frontend]]
name = "web"
bind = "{listen}"
mode = "http"
backend = "demo"

[[backend]]
name = "demo"
algorithm = "round-robin"
servers = [
{servers_toml}]
health = {{ kind = "http", path = "/healthz", expect_status = [200], interval = "1s", timeout = "500ms", rise = 2, fall = 2 }}
drain_timeout = "10s"
"#,
        socket = socket.display(),
        metrics = args.metrics,
        listen = args.listen,
    )
}

pub fn run(args: DemoArgs) -> u8 {
    crate::logging::init(None);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("halb demo: cannot start the runtime: {e}");
            return exit::STARTUP;
        }
    };
    rt.block_on(async move {
        let (servers_trigger, servers_shutdown) = crate::shutdown::channel();
        let mut servers = Vec::new();
        for name in ["s1", "s2", "s3"] {
            match TcpListener::bind("127.0.0.1:0").await.and_then(|l| {
                let addr = l.local_addr()?;
                Ok((l, addr))
            }) {
                Ok((listener, addr)) => {
                    tokio::spawn(demo_server(name, listener, servers_shutdown.clone()));
                    servers.push((name.to_string(), addr));
                }
                Err(e) => {
                    eprintln!("halb demo: cannot start demo server {name}: {e}");
                    return exit::STARTUP;
                }
            }
        }
        let socket = args.socket.clone().unwrap_or_else(admin_socket_path);
        let text = config_text(&args, &socket, &servers);
        let source = ConfigSource::Embedded {
            name: "<embedded demo config>".to_string(),
            text,
        };
        let config = match source.load() {
            Ok(c) => c,
            Err(errors) => {
                for e in errors {
                    eprintln!("{e}");
                }
                return exit::CONFIG;
            }
        };
        print_intro(&args, &socket, &servers);
        let code = daemon::run(source, config, RunOptions::default()).await;
        servers_trigger.trigger();
        code
    })
}

fn print_intro(args: &DemoArgs, socket: &std::path::Path, servers: &[(String, SocketAddr)]) {
    let list: Vec<String> = servers.iter().map(|(n, a)| format!("{n}={a}")).collect();
    println!(
        "halb demo: balancer on http://{listen} over demo servers {servers}
  stats page  http://{metrics}/      metrics  http://{metrics}/metrics
  admin socket {socket}

Try, in another terminal:
  curl -s http://{listen}/              # run it a few times: s1, s2, s3 take turns
  halb status
  halb server disable demo/s2           # s2 leaves the rotation (maintenance)
  halb server enable demo/s2            # back under health-check control
  halb server drain demo/s1             # no new requests; requests in flight finish
  curl -s 'http://{listen}/slow?ms=3000' # a slow request, to watch draining
Stop with Ctrl-C.",
        listen = args.listen,
        metrics = args.metrics,
        servers = list.join(" "),
        socket = socket.display(),
    );
}

/// One demo backend: answers every path with its name; `/healthz` says ok;
/// `/slow?ms=N` waits N milliseconds (at most 60 s) before answering.
pub async fn demo_server(name: &'static str, listener: TcpListener, shutdown: Shutdown) {
    loop {
        let stream = tokio::select! {
            _ = shutdown.wait() => return,
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| async move {
                Ok::<_, Infallible>(demo_response(name, req).await)
            });
            let conn = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned();
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = shutdown.wait() => {}
            }
        });
    }
}

async fn demo_response(name: &str, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let body = match path {
        "/healthz" => "ok\n".to_string(),
        "/slow" => {
            let ms = req
                .uri()
                .query()
                .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("ms=")))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(1000)
                .min(60_000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            format!("hello from {name} (after {ms} ms)\n")
        }
        _ => format!("hello from {name}\n"),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(
        "x-demo-server",
        hyper::header::HeaderValue::from_str(name)
            .unwrap_or(hyper::header::HeaderValue::from_static("demo")),
    );
    resp
}
