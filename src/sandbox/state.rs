//! The sandbox's in-memory world: tokens, users, grants, upload tickets, multipart
//! uploads, files, instances, queued faults and QPS windows, all behind one mutex; beside it
//! the Stream gateway (with its own), the change signal tests wait on, and the background
//! tasks' stop.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::SandboxOptions;
use super::faults::Fault;
use super::ids;
use super::multipart::Multipart;
use super::process::{Decision, Process};
use super::records::{Endpoint, Instance, Received, StoredFile};
use super::stream::Gateway;

/// An instance to decide automatically: when, which, how.
pub(super) type AutoDecision = (tokio::time::Instant, String, Decision);

/// What every handler shares: fixed options plus the mutable state.
pub(super) struct Shared {
    pub(crate) options: SandboxOptions,
    /// `http://host:port` the clients reach us at; upload URLs are built from it.
    pub(crate) base_url: String,
    state: Mutex<State>,
    /// The Stream gateway.
    pub(crate) stream: Gateway,
    /// Bumped on every change tests may wait for (see `Sandbox::wait_for`).
    pub(crate) changes: watch::Sender<u64>,
    /// Cancelled when the sandbox stops: ends the gateway's and the auto-decider's tasks.
    pub(crate) closing: CancellationToken,
    /// Where instances are queued for automatic decision, when that is on.
    pub(crate) auto_decide: Option<mpsc::UnboundedSender<AutoDecision>>,
}

impl Shared {
    pub(super) fn new(
        options: SandboxOptions,
        base_url: String,
        stream_endpoint: String,
        auto_decide: Option<mpsc::UnboundedSender<AutoDecision>>,
    ) -> Self {
        let changes = watch::Sender::new(0);
        let stream = Gateway::new(
            options.stream.clone(),
            stream_endpoint,
            options.corp_id.clone(),
            &options.app_key,
            changes.clone(),
        );
        Self {
            options,
            base_url,
            state: Mutex::new(State::default()),
            stream,
            changes,
            closing: CancellationToken::new(),
            auto_decide,
        }
    }

    /// Wakes whoever waits for a change.
    pub(super) fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Locks the state. Never hold the guard across an await.
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking handler must not wedge the sandbox for the rest of a test run.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An upload ticket from uploadInfos/query and what became of it (multipart uploads are
/// `multipart::Multipart`).
pub(super) struct Ticket {
    pub(crate) upload_key: String,
    pub(crate) union_id: String,
    pub(crate) expires_at: Instant,
    /// Headers the PUT must carry verbatim (names as given to the client).
    pub(crate) signed_headers: BTreeMap<String, String>,
    pub(crate) pre_md5: Option<String>,
    pub(crate) pre_size: Option<i64>,
    /// Last successful PUT.
    pub(crate) upload: Option<Upload>,
    pub(crate) committed: bool,
}

/// The bytes of one successful PUT (a whole file or one part).
#[derive(Clone)]
pub(super) struct Upload {
    pub(crate) len: u64,
    pub(crate) md5: String,
    /// Kept only up to the in-memory cap.
    pub(crate) content: Option<Bytes>,
}

/// A committed file with the dentry fields the public record leaves out.
pub(super) struct FileRecord {
    pub(crate) file: StoredFile,
    pub(crate) content: Option<Bytes>,
    pub(crate) version: i64,
    pub(crate) creator: String,
    pub(crate) created_ms: i64,
    pub(crate) modified_ms: i64,
    pub(crate) uuid: String,
}

/// Committed files in commit order, found by id and by name in constant time: DingPan's own
/// lookups do not slow down as a space fills, and a scan here made a long benchmark measure
/// the sandbox more than the worker.
#[derive(Default)]
pub(super) struct Files {
    records: Vec<FileRecord>,
    by_id: HashMap<String, usize>,
    by_name: HashMap<String, usize>,
    /// Per name asked for, the copy number AUTO_RENAME tries first (files are never removed,
    /// so every lower one is taken).
    next_copy: HashMap<String, u64>,
}

impl Files {
    /// All of them, oldest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &FileRecord> {
        self.records.iter()
    }

    pub(crate) fn by_id(&self, file_id: &str) -> Option<&FileRecord> {
        self.by_id.get(file_id).map(|&index| &self.records[index])
    }

    /// The position of the file named `name`.
    pub(crate) fn position_of_name(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// The file at `index` (from [`Files::position_of_name`] or [`Files::push`]).
    pub(crate) fn get(&self, index: usize) -> &FileRecord {
        &self.records[index]
    }

    /// The file at `index`, to overwrite its content (its id and name stay).
    pub(crate) fn get_mut(&mut self, index: usize) -> &mut FileRecord {
        &mut self.records[index]
    }

    /// Adds a file; its name must be free (see [`Files::free_name`]).
    pub(crate) fn push(&mut self, record: FileRecord) -> usize {
        let index = self.records.len();
        self.by_id.insert(record.file.file_id.clone(), index);
        self.by_name.insert(record.file.name.clone(), index);
        self.records.push(record);
        index
    }

    /// AUTO_RENAME: `a.pdf` → `a(1).pdf`, `a(2).pdf`, … first free.
    pub(crate) fn free_name(&mut self, name: &str) -> String {
        let (stem, suffix) = match name.rfind('.') {
            Some(dot) if dot > 0 => (&name[..dot], &name[dot..]),
            _ => (name, ""),
        };
        let next = self.next_copy.entry(name.to_owned()).or_insert(1);
        loop {
            let candidate = format!("{stem}({next}){suffix}");
            *next += 1;
            if !self.by_name.contains_key(&candidate) {
                return candidate;
            }
        }
    }
}

/// One form component as GetProcessInstance returns it.
pub(super) struct Component {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) value: String,
    pub(crate) component_type: String,
    pub(crate) biz_alias: Option<String>,
    pub(crate) ext_value: Option<String>,
}

/// A created instance with the fields only GetProcessInstance shows.
pub(super) struct InstanceRecord {
    pub(crate) instance: Instance,
    pub(crate) components: Vec<Component>,
    pub(crate) title: String,
    pub(crate) business_id: String,
    /// Its approval flow: tasks and operation records.
    pub(crate) process: Process,
}

/// Task ids in the shape of DingTalk's (11-digit numbers), never repeated.
#[derive(Default)]
pub(super) struct TaskIds {
    issued: i64,
}

impl TaskIds {
    pub(crate) fn next(&mut self) -> i64 {
        self.issued += 1;
        FIRST_TASK_ID + self.issued
    }
}

/// A fixed one-second window of calls to one endpoint.
struct Window {
    started: Instant,
    calls: u32,
}

/// Everything mutable.
#[derive(Default)]
pub(super) struct State {
    pub(crate) requests: Vec<Received>,
    current_token: Option<String>,
    tokens: HashMap<String, Instant>,
    /// unionId → end of its upload grant.
    grants: HashMap<String, Instant>,
    /// uploadKey → ticket.
    pub(crate) tickets: HashMap<String, Ticket>,
    /// uploadKey → multipart upload.
    pub(crate) multiparts: HashMap<String, Multipart>,
    /// OSS object key → uploadKey (of a ticket or a multipart upload).
    pub(crate) objects: HashMap<String, String>,
    pub(crate) files: Files,
    pub(crate) instances: Vec<InstanceRecord>,
    pub(crate) task_ids: TaskIds,
    faults: HashMap<Endpoint, VecDeque<Fault>>,
    windows: HashMap<Endpoint, Window>,
    issued_dentries: u64,
    issued_instances: u64,
    /// How far tests moved the sandbox's clock ahead of the real one (see [`State::now`]).
    clock_ahead: Duration,
}

/// First dentry id handed out; real ids are 12-digit decimals.
const FIRST_DENTRY_ID: u64 = 120_349_587_612;
/// Task ids count up from here.
const FIRST_TASK_ID: i64 = 71_403_256_000;

impl State {
    /// The sandbox's clock: the real one plus what tests advanced it by, so a test sees
    /// tokens, grants and tickets expire, and QPS windows pass, without waiting for them.
    pub(crate) fn now(&self) -> Instant {
        Instant::now() + self.clock_ahead
    }

    pub(super) fn advance_clock(&mut self, by: Duration) {
        self.clock_ahead += by;
    }

    /// Like DingTalk: while a token is valid the same one comes back, with its life renewed.
    pub(super) fn issue_token(&mut self, ttl: Duration) -> String {
        let now = self.now();
        let until = now + ttl;
        if let Some(token) = &self.current_token
            && let Some(expiry) = self.tokens.get_mut(token)
            && *expiry > now
        {
            *expiry = until;
            return token.clone();
        }
        let token = ids::random_hex(16);
        self.tokens.insert(token.clone(), until);
        self.current_token = Some(token.clone());
        token
    }

    pub(super) fn token_valid(&self, token: &str) -> bool {
        self.tokens
            .get(token)
            .is_some_and(|expiry| *expiry > self.now())
    }

    pub(super) fn expire_tokens(&mut self) {
        self.tokens.clear();
        self.current_token = None;
    }

    pub(super) fn grant_upload(&mut self, union_id: String, ttl: Duration) {
        self.grants.insert(union_id, self.now() + ttl);
    }

    pub(super) fn may_upload(&self, union_id: &str) -> bool {
        self.grants
            .get(union_id)
            .is_some_and(|until| *until > self.now())
    }

    pub(super) fn expire_tickets(&mut self) {
        let now = self.now();
        for ticket in self.tickets.values_mut() {
            ticket.expires_at = now;
        }
        let parts = self
            .multiparts
            .values_mut()
            .flat_map(|upload| upload.signatures.values_mut());
        for signature in parts {
            signature.expires_at = now;
        }
    }

    pub(super) fn inject(&mut self, endpoint: Endpoint, fault: Fault, times: u32) {
        let queue = self.faults.entry(endpoint).or_default();
        queue.extend(std::iter::repeat_n(fault, times as usize));
    }

    /// Faults still queued, per endpoint in order, runs of the same fault counted.
    pub(super) fn pending_faults(&self) -> Vec<(Endpoint, Fault, u32)> {
        let mut pending: Vec<(Endpoint, Fault, u32)> = Vec::new();
        let mut endpoints: Vec<&Endpoint> = self.faults.keys().collect();
        endpoints.sort();
        for endpoint in endpoints {
            for fault in &self.faults[endpoint] {
                match pending.last_mut() {
                    Some((e, f, n)) if e == endpoint && f == fault => *n += 1,
                    _ => pending.push((*endpoint, fault.clone(), 1)),
                }
            }
        }
        pending
    }

    /// Drops every queued fault; returns how many there were.
    pub(super) fn clear_faults(&mut self) -> usize {
        self.faults.drain().map(|(_, queue)| queue.len()).sum()
    }

    pub(super) fn take_fault(&mut self, endpoint: Endpoint) -> Option<Fault> {
        self.faults.get_mut(&endpoint)?.pop_front()
    }

    /// Counts this call; true when it is over `limit` in the current one-second window.
    pub(super) fn over_qps(&mut self, endpoint: Endpoint, limit: u32) -> bool {
        let now = self.now();
        let window = self.windows.entry(endpoint).or_insert(Window {
            started: now,
            calls: 0,
        });
        if now.duration_since(window.started) >= Duration::from_secs(1) {
            window.started = now;
            window.calls = 0;
        }
        window.calls = window.calls.saturating_add(1);
        window.calls > limit
    }

    pub(super) fn next_dentry_id(&mut self) -> String {
        let id = FIRST_DENTRY_ID + self.issued_dentries;
        self.issued_dentries += 1;
        id.to_string()
    }

    pub(super) fn next_instance_seq(&mut self) -> u64 {
        self.issued_instances += 1;
        self.issued_instances
    }
}
