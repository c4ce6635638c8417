//! `sandbox` (the DingTalk-compatible server on its own, for trying producers and Stream
//! clients locally) and `sandbox decide` (deciding an instance on a running one).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::CliError;
use crate::sandbox::{Sandbox, SandboxOptions, StreamOptions};

/// Examples shown by `sandbox --help`.
pub(crate) const SANDBOX_EXAMPLES: &str = "Examples:
  approval-worker sandbox --port 8787
  approval-worker sandbox --qps 20 --ticket-ttl-secs 60   # throttling and short tickets
  approval-worker sandbox --auto-decide-ms 3000          # every instance decided after 3 s
  approval-worker sandbox decide 8c1e2f4a-0b9d-4c55-a1e3-7f2d9b6c4e10 agree --remark 同意

Instances stay RUNNING until decided: by `sandbox decide` (it calls the admin route
POST /sandbox/instances/INSTANCE_ID/decide {\"action\": \"agree\", \"remark\": \"…\"}), or by
--auto-decide-ms (every third instance created is refused, the others agreed). Outcomes show
in GetProcessInstance and as bpms_instance_change events on the Stream mode gateway
(POST /v1.0/gateway/connections/open).";
/// Examples shown by `sandbox decide --help`.
const DECIDE_EXAMPLES: &str = "Examples:
  approval-worker sandbox decide 8c1e2f4a-0b9d-4c55-a1e3-7f2d9b6c4e10 agree
  approval-worker sandbox decide 8c1e2f4a-0b9d-4c55-a1e3-7f2d9b6c4e10 refuse --remark 金额不符
  approval-worker sandbox decide 8c1e2f4a-0b9d-4c55-a1e3-7f2d9b6c4e10 terminate --url http://127.0.0.1:9000

Exit codes: 0 decided, 2 unknown or already decided instance, 1 sandbox unreachable.";

const DEFAULT_SANDBOX_PORT: u16 = 8787;
const DEFAULT_SANDBOX_URL: &str = "http://127.0.0.1:8787";
const DECIDE_TIMEOUT: Duration = Duration::from_secs(10);

/// `sandbox` arguments: serve, or one subcommand against a running sandbox.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct SandboxArgs {
    #[command(subcommand)]
    command: Option<SandboxCommand>,
    #[command(flatten)]
    serve: ServeArgs,
}

/// What to do with a running sandbox.
#[derive(Debug, Subcommand)]
enum SandboxCommand {
    /// Decide an approval instance on a running sandbox: agree, refuse, terminate, delete.
    #[command(after_help = DECIDE_EXAMPLES)]
    Decide(DecideArgs),
}

/// How to serve.
#[derive(Debug, Args)]
struct ServeArgs {
    /// Port on 127.0.0.1.
    #[arg(long, default_value_t = DEFAULT_SANDBOX_PORT)]
    port: u16,
    /// Port of the Stream mode WebSocket endpoint on 127.0.0.1 [default: any free one;
    /// clients learn it from connections/open].
    #[arg(long, default_value_t = 0)]
    stream_port: u16,
    /// Per-API calls per second before the sandbox answers with DingTalk's throttle error.
    #[arg(long)]
    qps: Option<u32>,
    /// Take each upload's bytes no faster than this, as a slow link to OSS would
    /// [default: as fast as they come].
    #[arg(long, value_name = "BYTES")]
    oss_bytes_per_sec: Option<u64>,
    /// Lifetime of access tokens in seconds.
    #[arg(long, default_value_t = 7200)]
    token_ttl_secs: u64,
    /// Lifetime of upload tickets in seconds.
    #[arg(long, default_value_t = 900)]
    ticket_ttl_secs: u64,
    /// Decide every instance this many milliseconds after it is created: every third one
    /// created is refused, the others agreed [default: never; use `sandbox decide`].
    #[arg(long, value_name = "MS")]
    auto_decide_ms: Option<u64>,
}

/// `sandbox decide` arguments.
#[derive(Debug, Args)]
struct DecideArgs {
    /// The instance's id, as the create call answered it.
    instance_id: String,
    /// What happens to it.
    #[arg(value_parser = ["agree", "refuse", "terminate", "delete"])]
    action: String,
    /// The running sandbox.
    #[arg(long, default_value = DEFAULT_SANDBOX_URL)]
    url: String,
    /// The approver's (or, for terminate, the originator's) comment.
    #[arg(long)]
    remark: Option<String>,
}

pub(crate) async fn sandbox(args: SandboxArgs) -> Result<(), CliError> {
    match args.command {
        Some(SandboxCommand::Decide(decide_args)) => decide(decide_args).await,
        None => serve(args.serve).await,
    }
}

async fn serve(args: ServeArgs) -> Result<(), CliError> {
    let options = SandboxOptions {
        bind: SocketAddr::from((Ipv4Addr::LOCALHOST, args.port)),
        qps_limit: args.qps,
        oss_bytes_per_sec: args.oss_bytes_per_sec,
        token_ttl: Duration::from_secs(args.token_ttl_secs),
        ticket_ttl: Duration::from_secs(args.ticket_ttl_secs),
        auto_decide_after: args.auto_decide_ms.map(Duration::from_millis),
        stream: StreamOptions {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, args.stream_port)),
            ..StreamOptions::default()
        },
        ..SandboxOptions::default()
    };
    let sandbox = Sandbox::start(options.clone())
        .await
        .with_context(|| format!("cannot start the sandbox on 127.0.0.1:{}", args.port))?;
    let url = sandbox.base_url();
    println!("DingTalk sandbox listening on {url}\n");
    println!("Point a worker at it with this worker.toml section:\n");
    println!(
        "[dingtalk]\napp_key = {:?}\napp_secret_env = \"DINGTALK_APP_SECRET\"   # export DINGTALK_APP_SECRET={}\nagent_id = {}\napi_base = {url:?}\noapi_base = {url:?}\n",
        options.app_key, options.app_secret, options.agent_id
    );
    println!(
        "Stream mode: POST {url}/v1.0/gateway/connections/open (clientId/clientSecret as above)\n\
         hands out tickets for the WebSocket endpoint {}\n",
        sandbox.stream_endpoint()
    );
    match args.auto_decide_ms {
        Some(ms) => println!(
            "Every instance is decided {ms} ms after its creation (every third one refused, the others\nagreed), or sooner by hand:"
        ),
        None => println!("Instances stay RUNNING until decided:"),
    }
    let exe = std::env::current_exe()
        .ok()
        .and_then(|path| path.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "approval-worker".to_owned());
    println!("  {exe} sandbox decide INSTANCE_ID agree|refuse|terminate|delete --url {url}");
    println!(
        "  (admin route: POST {url}/sandbox/instances/INSTANCE_ID/decide {{\"action\": \"agree\", \"remark\": \"…\"}};"
    );
    println!(
        "   GET {url}/sandbox/instances lists them, GET {url}/sandbox/stream shows the events)\n"
    );
    println!("Press Ctrl-C to stop.");
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    sandbox.shutdown().await;
    Ok(())
}

/// Calls the running sandbox's admin route and prints where the instance now stands.
async fn decide(args: DecideArgs) -> Result<(), CliError> {
    let mut url = reqwest::Url::parse(&args.url)
        .map_err(|e| CliError::Usage(format!("--url {}: {e}", args.url)))?;
    url.path_segments_mut()
        .map_err(|()| CliError::Usage(format!("--url {}: not an http URL", args.url)))?
        .pop_if_empty()
        .extend(["sandbox", "instances", &args.instance_id, "decide"]);
    let mut body = json!({"action": args.action});
    if let Some(remark) = &args.remark {
        body["remark"] = json!(remark);
    }
    // The sandbox is local: a proxy from the environment must not capture the call.
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(DECIDE_TIMEOUT)
        .build()
        .context("building the HTTP client")?;
    let response = client.post(url).json(&body).send().await.map_err(|e| {
        CliError::Runtime(anyhow::anyhow!(
            "cannot reach a sandbox at {}: {e} (is `approval-worker sandbox` running there?)",
            args.url
        ))
    })?;
    let status = response.status();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let message = answer["message"].as_str().map_or_else(
            || format!("the sandbox answered HTTP {status}"),
            str::to_owned,
        );
        return Err(if status.is_client_error() {
            CliError::Usage(message)
        } else {
            CliError::Runtime(anyhow::anyhow!(message))
        });
    }
    let state = answer["status"].as_str().unwrap_or("?");
    match answer["result"].as_str().filter(|r| !r.is_empty()) {
        Some(result) => println!("{}: {state} ({result})", args.instance_id),
        None => println!("{}: {state}", args.instance_id),
    }
    Ok(())
}
