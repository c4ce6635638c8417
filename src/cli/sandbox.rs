//! `sandbox` (the DingTalk-compatible server on its own, for trying producers and Stream
//! clients locally), `sandbox decide` (deciding an instance on a running one) and
//! `sandbox fault` (queueing a fault on a running one).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::CliError;
use crate::config::ConfigError;
use crate::sandbox::{
    Directory, DirectoryError, FaultSpec, Latency, Sandbox, SandboxOptions, StreamOptions,
};

/// Examples shown by `sandbox --help`.
pub(crate) const SANDBOX_EXAMPLES: &str = "Examples:
  approval-worker sandbox --port 8787
  approval-worker sandbox --directory sandbox.toml        # your own users and templates
  approval-worker sandbox --qps 20 --latency-ms 150 --latency-jitter-ms 50   # like DingTalk
  approval-worker sandbox --fault 'create_instance:server_error(503):2' --fault commit:lose_response
  approval-worker sandbox --auto-decide-ms 3000          # every instance decided after 3 s
  approval-worker sandbox decide 8c1e2f4a-0b9d-4c55-a1e3-7f2d9b6c4e10 agree --remark 同意
  approval-worker sandbox fault upload_info:throttle:3   # on a running sandbox

At start it prints the credentials (AppKey dingsandboxkey, AppSecret sandbox-secret, AgentId
3012345678) and its directory: the users (userId, unionId, departments) and templates
(process code, fields) it knows. Like DingTalk it refuses everyone and everything else: an
unknown userId or a unionId passed as one (topapi/v2/user/get errcode 33012; userNotExist;
processInstanceInvalidParameter), an originator outside deptId (-1 is the root department),
an unknown process code (processCodeError), a missing required field (formConverterError).
Without --directory it uses a built-in one; docs/sandbox-directory.toml shows the format.

Faults are ENDPOINT:KIND[:COUNT]: ENDPOINT one of token, legacy_token, user_get, space,
upload_info, multipart_init, multipart_query, oss_put, commit, create_instance, get_instance,
list_instance_ids, form_schema, open_connection; KIND one of server_error, server_error(5xx),
throttle, throttle_pascal_case, throttle_page, token_revoked, drop_connection, lose_response,
latency(MS); COUNT calls in a row (default 1). While it runs: `sandbox fault`, or the admin
routes POST /sandbox/faults {\"endpoint\", \"fault\", \"count\"}, GET /sandbox/faults,
DELETE /sandbox/faults (loopback only).

Instances stay RUNNING until decided: by `sandbox decide` (it calls the admin route
POST /sandbox/instances/INSTANCE_ID/decide {\"action\": \"agree\", \"remark\": \"…\"}), or by
--auto-decide-ms (every third instance created is refused, the others agreed). Outcomes show
in GetProcessInstance and as bpms_instance_change events on the Stream mode gateway
(POST /v1.0/gateway/connections/open).";
/// Examples shown by `sandbox fault --help`.
const FAULT_EXAMPLES: &str = "Examples:
  approval-worker sandbox fault 'create_instance:server_error(503):2'   # quoted for the shell
  approval-worker sandbox fault commit:lose_response --url http://127.0.0.1:9000
  approval-worker sandbox fault --list
  approval-worker sandbox fault --clear

Exit codes: 0 done, 2 a bad fault, 1 sandbox unreachable.";
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
    /// Queue a fault for the next calls of an endpoint on a running sandbox, or list or
    /// clear the queued ones.
    #[command(after_help = FAULT_EXAMPLES)]
    Fault(FaultArgs),
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
    /// Users, departments and templates the sandbox knows (TOML; see
    /// docs/sandbox-directory.toml) [default: the built-in directory].
    #[arg(long, value_name = "FILE")]
    directory: Option<PathBuf>,
    /// Per-API calls per second before the sandbox answers with DingTalk's throttle error.
    #[arg(long)]
    qps: Option<u32>,
    /// Delay every DingTalk API answer by this many milliseconds (OSS PUTs excepted), as
    /// the real service's round trip would [default: answer at once].
    #[arg(long, value_name = "MS")]
    latency_ms: Option<u64>,
    /// Vary each call's delay by up to this many milliseconds either way.
    #[arg(long, value_name = "MS", requires = "latency_ms")]
    latency_jitter_ms: Option<u64>,
    /// A fault for the first calls of an endpoint: ENDPOINT:KIND[:COUNT] (repeatable; see
    /// below).
    #[arg(long = "fault", value_name = "ENDPOINT:KIND[:COUNT]", value_parser = parse_fault)]
    faults: Vec<FaultSpec>,
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

/// `sandbox fault` arguments.
#[derive(Debug, Args)]
struct FaultArgs {
    /// ENDPOINT:KIND[:COUNT], e.g. create_instance:server_error(503):2.
    #[arg(
        value_name = "ENDPOINT:KIND[:COUNT]",
        value_parser = parse_fault,
        required_unless_present_any = ["list", "clear"]
    )]
    fault: Option<FaultSpec>,
    /// List the faults still queued instead.
    #[arg(long, conflicts_with_all = ["fault", "clear"])]
    list: bool,
    /// Drop every queued fault instead.
    #[arg(long, conflicts_with = "fault")]
    clear: bool,
    /// The running sandbox.
    #[arg(long, default_value = DEFAULT_SANDBOX_URL)]
    url: String,
}

fn parse_fault(text: &str) -> Result<FaultSpec, String> {
    text.parse()
        .map_err(|e: crate::sandbox::FaultSpecError| e.to_string())
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
        Some(SandboxCommand::Fault(fault_args)) => fault(fault_args).await,
        None => serve(args.serve).await,
    }
}

async fn serve(args: ServeArgs) -> Result<(), CliError> {
    let directory = match &args.directory {
        Some(path) => Directory::load(path).map_err(directory_error)?,
        None => Directory::builtin(),
    };
    let options = SandboxOptions {
        bind: SocketAddr::from((Ipv4Addr::LOCALHOST, args.port)),
        directory,
        faults: args.faults.clone(),
        latency: args.latency_ms.map(|ms| Latency {
            base: Duration::from_millis(ms),
            jitter: Duration::from_millis(args.latency_jitter_ms.unwrap_or(0)),
        }),
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
    print_banner(&sandbox, &options, &args);
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    sandbox.shutdown().await;
    Ok(())
}

/// A directory file that cannot be used is a configuration error (exit 78), named by file
/// and key.
fn directory_error(error: DirectoryError) -> CliError {
    CliError::Config(match error {
        DirectoryError::Read { path, source } => ConfigError::Read { path, source },
        DirectoryError::Parse { path, message } => ConfigError::Parse { path, message },
        DirectoryError::Invalid { path, problems } => ConfigError::Invalid { path, problems },
    })
}

/// What an integrator needs at start: where, the credentials, the directory, the knobs in
/// effect, and how to decide instances and add faults.
fn print_banner(sandbox: &Sandbox, options: &SandboxOptions, args: &ServeArgs) {
    let url = sandbox.base_url();
    println!("DingTalk sandbox listening on {url}\n");
    println!("Credentials:");
    println!("  AppKey (Client ID)  {}", options.app_key);
    println!("  AppSecret           {}", options.app_secret);
    println!("  AgentId             {}", options.agent_id);
    println!("  corpId              {}", options.corp_id);
    println!("  approval spaceId    {}\n", options.space_id);
    println!("Point a worker at it with this worker.toml section:\n");
    println!(
        "[dingtalk]\napp_key = {:?}\napp_secret_env = \"DINGTALK_APP_SECRET\"   # export DINGTALK_APP_SECRET={}\nagent_id = {}\napi_base = {url:?}\noapi_base = {url:?}\n",
        options.app_key, options.app_secret, options.agent_id
    );
    let source = match &args.directory {
        Some(path) => path.display().to_string(),
        None => "built-in; --directory FILE for your own".to_owned(),
    };
    println!("Directory ({source}); any other user or process code is refused as DingTalk does:");
    print!("{}", options.directory.summary("  "));
    if !options
        .directory
        .users()
        .any(|u| u.user_id() == options.default_approver)
    {
        println!(
            "  (instances created without approvers wait on {}, who is not in this directory)",
            options.default_approver
        );
    }
    println!();
    println!(
        "Stream mode: POST {url}/v1.0/gateway/connections/open (clientId/clientSecret as above)\n\
         hands out tickets for the WebSocket endpoint {}\n",
        sandbox.stream_endpoint()
    );
    if let Some(latency) = &options.latency {
        println!(
            "Every DingTalk API answer takes {} ± {} ms (OSS PUTs excepted).",
            latency.base.as_millis(),
            latency.jitter.as_millis()
        );
    }
    if let Some(qps) = options.qps_limit {
        println!("Each API allows {qps} calls per second; more get DingTalk's throttle error.");
    }
    for spec in &args.faults {
        println!(
            "Fault queued: the next {} call(s) to {} get {}.",
            spec.count, spec.endpoint, spec.fault
        );
    }
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
        "   GET {url}/sandbox/instances lists them, GET {url}/sandbox/stream shows the events)"
    );
    println!("Faults while it runs: {exe} sandbox fault ENDPOINT:KIND[:COUNT] --url {url}");
    println!(
        "  (admin route: POST {url}/sandbox/faults {{\"endpoint\": \"commit\", \"fault\": \"lose_response\", \"count\": 1}})\n"
    );
    println!("Press Ctrl-C to stop.");
}

/// Calls an admin route of the sandbox at `base` (path `segments` under it) and returns
/// its JSON answer; a refusal (4xx) is a usage error, anything else a runtime one.
async fn admin_call(
    base: &str,
    segments: &[&str],
    method: reqwest::Method,
    body: Option<Value>,
) -> Result<Value, CliError> {
    let mut url =
        reqwest::Url::parse(base).map_err(|e| CliError::Usage(format!("--url {base}: {e}")))?;
    url.path_segments_mut()
        .map_err(|()| CliError::Usage(format!("--url {base}: not an http URL")))?
        .pop_if_empty()
        .extend(segments);
    // The sandbox is local: a proxy from the environment must not capture the call.
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(DECIDE_TIMEOUT)
        .build()
        .context("building the HTTP client")?;
    let mut request = client.request(method, url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.map_err(|e| {
        CliError::Runtime(anyhow::anyhow!(
            "cannot reach a sandbox at {base}: {e} (is `approval-worker sandbox` running there?)"
        ))
    })?;
    let status = response.status();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(answer);
    }
    let message = answer["message"].as_str().map_or_else(
        || format!("the sandbox answered HTTP {status}"),
        str::to_owned,
    );
    Err(if status.is_client_error() {
        CliError::Usage(message)
    } else {
        CliError::Runtime(anyhow::anyhow!(message))
    })
}

/// Calls the running sandbox's admin route and prints where the instance now stands.
async fn decide(args: DecideArgs) -> Result<(), CliError> {
    let mut body = json!({"action": args.action});
    if let Some(remark) = &args.remark {
        body["remark"] = json!(remark);
    }
    let answer = admin_call(
        &args.url,
        &["sandbox", "instances", &args.instance_id, "decide"],
        reqwest::Method::POST,
        Some(body),
    )
    .await?;
    let state = answer["status"].as_str().unwrap_or("?");
    match answer["result"].as_str().filter(|r| !r.is_empty()) {
        Some(result) => println!("{}: {state} ({result})", args.instance_id),
        None => println!("{}: {state}", args.instance_id),
    }
    Ok(())
}

/// Queues, lists or clears faults on a running sandbox.
async fn fault(args: FaultArgs) -> Result<(), CliError> {
    let path = ["sandbox", "faults"];
    if args.clear {
        let answer = admin_call(&args.url, &path, reqwest::Method::DELETE, None).await?;
        println!("cleared {} queued fault(s)", answer["cleared"]);
        return Ok(());
    }
    let Some(spec) = args.fault.filter(|_| !args.list) else {
        let answer = admin_call(&args.url, &path, reqwest::Method::GET, None).await?;
        let faults = answer["faults"].as_array().cloned().unwrap_or_default();
        if faults.is_empty() {
            println!("no fault queued");
        }
        for fault in faults {
            println!(
                "{}:{}:{}",
                fault["endpoint"].as_str().unwrap_or("?"),
                fault["fault"].as_str().unwrap_or("?"),
                fault["count"]
            );
        }
        return Ok(());
    };
    let body =
        json!({"endpoint": spec.endpoint, "fault": spec.fault.to_string(), "count": spec.count});
    let answer = admin_call(&args.url, &path, reqwest::Method::POST, Some(body)).await?;
    println!(
        "queued {spec}: the next {} call(s) to {} get {} ({} fault(s) now wait on {})",
        spec.count, spec.endpoint, spec.fault, answer["queued"], spec.endpoint
    );
    Ok(())
}
