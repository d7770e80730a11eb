//! Harness for the end-to-end tests: runs the example worker in local workerd through
//! `wrangler dev`, drives it over HTTP, runs the real `durafetch-pull` binary and reads the SQLite
//! file it writes. Run through `scripts/test.sh`, which builds the example and puts the cached
//! tools on `PATH`.

pub mod postgres;
pub mod sql_tables;
pub mod tls;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub const WORKER: &str = "durafetch-example";
pub const TOKEN: &str = "e2e-token-0123456789abcdefghijklmnopqrstuvwxyz";
/// The restore secret of workers started to be restored into: another than [`TOKEN`].
pub const RESTORE_TOKEN: &str = "e2e-restore-0123456789abcdefghijklmnopqrstuvwxyz";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// The example worker running in local workerd. Stopped by its own process group on drop, so a
/// failing test never leaves it running.
pub struct LocalWorker {
    pub port: u16,
    child: Child,
    dir: tempfile::TempDir,
    secret: Option<String>,
    /// DURAFETCH_RESTORE_AUTH, for a worker a test restores into.
    restore_secret: Option<String>,
    config: Option<PathBuf>,
    /// Flags of `wrangler dev` beyond the harness's own.
    dev_flags: Vec<String>,
    /// The worker's name: its API answers on `durafetch_<name>`.
    name: String,
    /// Where the puller connects, when not through wrangler's dev proxy on `port` (see
    /// [`LocalWorker::pulls_via`]); every start goes back to the proxy.
    pull_port: Option<u16>,
    // Tests take turns, so that machine load stays predictable; a second worker for the same
    // test (`start_beside`) shares its turn.
    _turn: Option<MutexGuard<'static, ()>>,
}

/// This worker's workerd processes, found once, so that sampling their memory every few
/// milliseconds reads two small files rather than every process's.
pub struct WorkerdMemory(Vec<PathBuf>);

impl WorkerdMemory {
    /// Their resident memory together, in KiB (Linux).
    pub fn kib(&self) -> Option<u64> {
        let sizes: Vec<u64> = self
            .0
            .iter()
            .filter_map(|process| {
                let status = std::fs::read_to_string(process.join("status")).ok()?;
                status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
            })
            .collect();
        (!sizes.is_empty()).then(|| sizes.iter().sum())
    }
}

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl LocalWorker {
    /// Starts the worker with `secret` as DURAFETCH_AUTH (or none), and no restore secret.
    pub fn start(secret: Option<&str>) -> Self {
        Self::start_with(secret, None)
    }

    /// Starts the worker with [`TOKEN`] as DURAFETCH_AUTH and [`RESTORE_TOKEN`] as
    /// DURAFETCH_RESTORE_AUTH: one a restore may write into.
    pub fn start_restorable() -> Self {
        Self::start_with(Some(TOKEN), Some(RESTORE_TOKEN))
    }

    /// Starts the worker with `secret` as DURAFETCH_AUTH and `restore_secret` as
    /// DURAFETCH_RESTORE_AUTH.
    pub fn start_with(secret: Option<&str>, restore_secret: Option<&str>) -> Self {
        let root = repo_root();
        assert!(
            root.join("examples/counter/build/worker/shim.mjs").exists(),
            "the example worker is not built; run the tests through scripts/test.sh"
        );
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let secrets = Secrets { read: secret, restore: restore_secret };
        let child = spawn_wrangler(&root, dir.path(), port, &secrets, None, &[]);
        let mut worker = LocalWorker {
            port,
            child,
            dir,
            secret: secret.map(str::to_owned),
            restore_secret: restore_secret.map(str::to_owned),
            config: None,
            dev_flags: Vec::new(),
            name: WORKER.to_owned(),
            pull_port: None,
            _turn: Some(turn),
        };
        worker.wait_ready();
        worker
    }

    /// Stops workerd and starts it again on the same stored state, as a deploy or an eviction
    /// would: every object starts cold.
    pub fn restart(&mut self) {
        self.stop();
        self.port = free_port();
        self.launch();
    }

    /// Restarts on the same port, so a running puller can reconnect to the same URL.
    pub fn restart_on_same_port(&mut self) {
        self.stop();
        self.launch();
    }

    /// Stops workerd, runs `while_down`, then starts it again on the same state and port: for
    /// what a client does while the worker is away.
    pub fn while_down<T>(&mut self, while_down: impl FnOnce(&LocalWorker) -> T) -> T {
        self.stop();
        let result = while_down(self);
        self.launch();
        result
    }

    /// The process group of wrangler and workerd, for a test to signal.
    pub fn group(&self) -> u32 {
        self.child.id()
    }

    /// Kills workerd at once (SIGKILL, no shutdown), then starts it again on the same state and port.
    pub fn crash_and_restart(&mut self) {
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.group())]).status();
        let _ = self.child.wait();
        self.launch();
    }

    fn launch(&mut self) {
        self.pull_port = None;
        self.child = spawn_wrangler(&repo_root(), self.dir.path(), self.port, &self.secrets(), self.config.as_deref(), &self.dev_flags);
        self.wait_ready();
    }

    /// Restarts with the example's wrangler.toml edited by `edit` (or the original for `None`),
    /// keeping the stored state and the port (the file knows objects by their server's URL).
    pub fn restart_with_config(&mut self, edit: Option<&dyn Fn(String) -> String>) {
        self.restart_with_dev_flags(edit, &[]);
    }

    /// [`Self::restart_with_config`], with `flags` given to `wrangler dev` as well.
    pub fn restart_with_dev_flags(&mut self, edit: Option<&dyn Fn(String) -> String>, flags: &[&str]) {
        self.config = edit.map(|edit| write_config(self.dir.path(), edit));
        self.dev_flags = flags.iter().map(|f| f.to_string()).collect();
        self.restart_on_same_port();
    }

    fn secrets(&self) -> Secrets<'_> {
        Secrets { read: self.secret.as_deref(), restore: self.restore_secret.as_deref() }
    }

    /// A second worker, running beside this one for the same test: the example under another
    /// name, so its objects have other ids and its API answers on `durafetch_<name>`. It has
    /// this one's secrets.
    pub fn start_beside(&self, name: &str) -> LocalWorker {
        self.start_beside_with(name, self.restore_secret.as_deref())
    }

    /// [`Self::start_beside`], with [`RESTORE_TOKEN`] as its restore secret.
    pub fn start_beside_restorable(&self, name: &str) -> LocalWorker {
        self.start_beside_with(name, Some(RESTORE_TOKEN))
    }

    fn start_beside_with(&self, name: &str, restore_secret: Option<&str>) -> LocalWorker {
        let dir = tempfile::tempdir().expect("temp dir");
        let rename = |toml: String| toml.replace(&format!("\"{WORKER}\""), &format!("\"{name}\""));
        let config = write_config(dir.path(), &rename);
        let port = free_port();
        let secrets = Secrets { read: self.secret.as_deref(), restore: restore_secret };
        let child = spawn_wrangler(&repo_root(), dir.path(), port, &secrets, Some(&config), &[]);
        let mut worker = LocalWorker {
            port,
            child,
            dir,
            secret: self.secret.clone(),
            restore_secret: restore_secret.map(str::to_owned),
            config: Some(config),
            dev_flags: Vec::new(),
            name: name.to_owned(),
            pull_port: None,
            _turn: None,
        };
        worker.wait_ready();
        worker
    }

    fn stop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-INT", "--", &group]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("wrangler dev exited with {status}: {}", self.logs());
            }
            if let Ok(_) | Err(ureq::Error::Status(..)) = ureq::get(&format!("{}/", self.base())).call() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("wrangler dev did not become ready: {}", self.logs());
    }

    /// The `/proc` directories of this worker's workerd processes (Linux): the runtime, and
    /// wrangler's dev proxy in front of it.
    fn workerd_processes(&self) -> Vec<PathBuf> {
        let group = self.child.id().to_string();
        let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
        entries
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| {
                let Ok(stat) = std::fs::read_to_string(path.join("stat")) else { return false };
                // pid (comm) state ppid pgrp ...
                let Some((comm, rest)) = stat.split_once(" (").and_then(|(_, s)| s.rsplit_once(") ")) else { return false };
                comm == "workerd" && rest.split_whitespace().nth(2) == Some(group.as_str())
            })
            .collect()
    }

    /// The resident memory of this worker's workerd processes, to sample while a pull runs.
    pub fn workerd_memory(&self) -> WorkerdMemory {
        WorkerdMemory(self.workerd_processes())
    }

    /// The port of the runtime's own socket, behind wrangler's dev proxy (Linux): of the loopback
    /// ports this worker's workerd processes listen on, other than the proxy's, the one where the
    /// export API refuses a request without a token. Wrangler does not print it below debug logging.
    pub fn runtime_port(&self) -> u16 {
        let sockets: std::collections::HashSet<String> = self
            .workerd_processes()
            .iter()
            .filter_map(|process| std::fs::read_dir(process.join("fd")).ok())
            .flat_map(|fds| fds.flatten())
            .filter_map(|fd| {
                let target = std::fs::read_link(fd.path()).ok()?;
                Some(target.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
            })
            .collect();
        let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
        // sl local_address rem_address st ... inode: listening sockets have state 0A.
        let listening = table.lines().skip(1).filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let listens = fields.get(3) == Some(&"0A") && sockets.contains(*fields.get(9)?);
            listens.then(|| u16::from_str_radix(fields[1].rsplit_once(':')?.1, 16).ok()).flatten()
        });
        let candidates: Vec<u16> = listening.filter(|&port| port != self.port).collect();
        let host = |port: u16| format!("durafetch_{}.localhost:{port}", self.name);
        candidates
            .iter()
            .copied()
            .find(|&port| raw_get(port, &host(port), "/", &[]).0 == 401)
            .unwrap_or_else(|| panic!("no runtime socket among {candidates:?}"))
    }

    /// Sends every later pull to `port`: the runtime's own socket ([`Self::runtime_port`]), past
    /// wrangler's dev proxy, a second workerd that relays every byte and that a deployed worker
    /// does not have; or back to the proxy with [`LocalWorker::port`].
    pub fn pulls_via(&mut self, port: u16) {
        self.pull_port = Some(port);
    }

    /// Whether the worker's log shows `text` within 10 s: workerd writes a log line some time
    /// after the request that made it has been answered.
    pub fn logged(&self, text: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.logs().contains(text) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        self.logs().contains(text)
    }

    pub fn logs(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!("{}{}", read("wrangler.log"), read("wrangler.err"))
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The export API's URL as the puller is given it: through wrangler's dev proxy, as a user
    /// configures it, unless [`Self::pulls_via`] moved it.
    pub fn api_url(&self) -> String {
        format!("ws://durafetch_{}.localhost:{}", self.name, self.pull_port.unwrap_or(self.port))
    }

    pub fn api_host(&self) -> String {
        format!("durafetch_{}.localhost:{}", self.name, self.port)
    }

    /// POSTs to an example route (`kv/<name>/put?key=k`), panicking unless it answers 200.
    pub fn post(&self, path: &str, body: &str) {
        if let Err(e) = self.try_post(path, body) {
            panic!("POST {path}: {e:?}");
        }
    }

    /// POSTs to an example route; an error status comes back as `Err((status, body))`.
    pub fn try_post(&self, path: &str, body: &str) -> Result<(), (u16, String)> {
        self.try_post_text(path, body).map(drop)
    }

    /// POSTs `body`; answers the response's text, or its status and text when it is not 2xx.
    pub fn try_post_text(&self, path: &str, body: &str) -> Result<String, (u16, String)> {
        match ureq::post(&format!("{}/{path}", self.base())).send_string(body) {
            Ok(response) => Ok(response.into_string().unwrap_or_default()),
            Err(ureq::Error::Status(status, response)) => Err((status, response.into_string().unwrap_or_default())),
            Err(e) => Err((0, e.to_string())),
        }
    }

    /// Pulls into `db` until the file equals `expected` (objects report to the registry right
    /// after their writes are durable, so the registry may trail a write by a moment). Returns
    /// the pulls' runs.
    pub fn pull_until_file_equals(&self, db: &Path, expected: &Pulled, step: &str) -> Vec<PullRun> {
        self.pull_with_until_file_equals(db, &[], expected, step)
    }

    /// [`Self::pull_until_file_equals`] with extra puller flags.
    pub fn pull_with_until_file_equals(&self, db: &Path, flags: &[&str], expected: &Pulled, step: &str) -> Vec<PullRun> {
        let mut runs = Vec::new();
        for _ in 0..50 {
            let run = self.pull_with(db, TOKEN, flags);
            assert_eq!(run.code, Some(0), "{step}: durafetch-pull failed: {}", run.stderr);
            runs.push(run);
            if &read_db(db) == expected {
                return runs;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{step}: the pulled file never matched.\nexpected: {expected:?}\ngot: {:?}", read_db(db));
    }

    /// [`Self::pull_until_file_equals`], then checks that the objects themselves hold `expected`.
    pub fn pull_until_equal(&self, db: &Path, expected: &Pulled, step: &str) -> Vec<PullRun> {
        let runs = self.pull_until_file_equals(db, expected, step);
        for ((class, name), keys) in expected {
            assert_eq!(&self.object_state(route_of(class), name), keys, "{step}: {class} {name} as the object reads it");
        }
        runs
    }

    /// GETs an example route and returns the body.
    pub fn get_text(&self, path: &str) -> String {
        ureq::get(&format!("{}/{path}", self.base())).call().expect("get").into_string().unwrap()
    }

    /// POSTs to an example route and returns the body.
    pub fn post_text(&self, path: &str, body: &str) -> String {
        match ureq::post(&format!("{}/{path}", self.base())).send_string(body) {
            Ok(response) => response.into_string().unwrap(),
            Err(e) => panic!("POST {path}: {e}"),
        }
    }

    /// An object's user keys and values as it reads them itself (`kv/<name>/get`).
    pub fn object_state(&self, class: &str, name: &str) -> BTreeMap<String, String> {
        let url = format!("{}/{class}/{name}/get", self.base());
        // Read whole: a 50 MB object's state is over `into_string`'s 10 MB.
        let value: serde_json::Value = serde_json::from_reader(ureq::get(&url).call().expect("get").into_reader()).unwrap();
        // The example renders bytes as {"bytes": [..]}; the file's rows are read as <bytes:HEX>.
        let render = |v: &serde_json::Value| match v.get("bytes").and_then(|b| b.as_array()) {
            Some(bytes) => format!("<bytes:{}>", bytes.iter().map(|b| format!("{:02X}", b.as_u64().unwrap_or(0))).collect::<String>()),
            None => v.to_string(),
        };
        value.as_object().unwrap().iter().map(|(k, v)| (k.clone(), render(v))).collect()
    }

    /// Runs `statements` in the SQL object `object` (the example's `ops` route).
    pub fn sql(&self, object: &str, statements: &str) {
        self.post(&format!("sql/{object}/ops"), &serde_json::json!([{"op": "sql", "sql": statements}]).to_string());
    }

    /// Pulls into `db` with [`TOKEN`] until a pull finds nothing more to do.
    pub fn pull_settled(&self, db: &Path) {
        for _ in 0..20 {
            let run = self.pull(db, TOKEN);
            assert_eq!(run.code, Some(0), "pull failed: {}", run.stderr);
            if run.objects_pulled() == 0 {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("the pulls never settled");
    }

    /// Runs `durafetch-pull` once into `db` with `token`.
    pub fn pull(&self, db: &Path, token: &str) -> PullRun {
        self.pull_with(db, token, &[])
    }

    /// Runs `durafetch-pull` once into `db` with `token` and extra flags.
    pub fn pull_with(&self, db: &Path, token: &str, flags: &[&str]) -> PullRun {
        let out = finish_within(spawn_piped(self.puller(db, token, flags)), PULL_LIMIT, "durafetch-pull");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let summary = stdout.lines().rev().find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok());
        PullRun { code: out.status.code(), summary, stderr: String::from_utf8_lossy(&out.stderr).into_owned() }
    }

    /// The `durafetch-pull` command for this worker, to run or spawn.
    pub fn puller(&self, db: &Path, token: &str, flags: &[&str]) -> Command {
        puller_at(&self.api_url(), db, token, flags)
    }
}

impl Drop for LocalWorker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The example's wrangler.toml edited by `edit`, written into `dir`, with `main` made absolute.
fn write_config(dir: &Path, edit: &dyn Fn(String) -> String) -> PathBuf {
    let root = repo_root();
    let original = std::fs::read_to_string(root.join("wrangler.toml")).unwrap();
    let main = root.join("examples/counter/build/worker/shim.mjs");
    let text = edit(original).replace("examples/counter/build/worker/shim.mjs", main.to_str().unwrap());
    let path = dir.join("wrangler.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The secrets a worker starts with.
struct Secrets<'a> {
    read: Option<&'a str>,
    restore: Option<&'a str>,
}

fn spawn_wrangler(root: &Path, dir: &Path, port: u16, secrets: &Secrets<'_>, config: Option<&Path>, flags: &[String]) -> Child {
    let mut cmd = Command::new("wrangler");
    cmd.current_dir(root).args(["dev", "--ip", "127.0.0.1", "--port", &port.to_string(), "--log-level", "warn"]).args(flags);
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    // Port 0: workerd binds the inspector itself; a port chosen here could be taken before it binds.
    cmd.args(["--inspector-port", "0", "--persist-to"])
        .arg(dir.join("state"))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join("wrangler.log")).unwrap())
        .stderr(std::fs::File::create(dir.join("wrangler.err")).unwrap())
        .process_group(0);
    if let Some(secret) = secrets.read {
        cmd.args(["--var", &format!("DURAFETCH_AUTH:{secret}")]);
    }
    if let Some(secret) = secrets.restore {
        cmd.args(["--var", &format!("DURAFETCH_RESTORE_AUTH:{secret}")]);
    }
    cmd.spawn().expect("wrangler on PATH (run through scripts/test.sh)")
}

pub struct PullRun {
    pub code: Option<i32>,
    pub summary: Option<serde_json::Value>,
    pub stderr: String,
}

impl PullRun {
    pub fn objects_pulled(&self) -> u64 {
        self.count_of("objects_pulled")
    }

    /// Objects this run downloaded as full snapshots.
    pub fn snapshots(&self) -> u64 {
        self.count_of("snapshots")
    }

    /// A count from the run's JSON summary.
    pub fn count_of(&self, field: &str) -> u64 {
        self.summary.as_ref().and_then(|s| s[field].as_u64()).unwrap_or_else(|| panic!("no summary: {}", self.stderr))
    }
}

/// The longest any one run of the puller may take in a test. Its own retries give up after about
/// 13 s and its sessions after 60 s of silence, so a run past this is a hang: it must fail the
/// test loudly rather than stall the whole suite.
pub const PULL_LIMIT: Duration = Duration::from_secs(180);

/// Spawns `cmd` with stdout and stderr captured, for [`finish_within`].
pub fn spawn_piped(mut cmd: Command) -> Child {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn")
}

/// Waits for `child` and collects what it printed. Its pipes are drained meanwhile, so a chatty
/// child never blocks on a full pipe. Past `limit` the child is killed and the test fails with
/// its output.
pub fn finish_within(mut child: Child, limit: Duration, what: &str) -> std::process::Output {
    fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    }
    let (stdout, stderr) = (drain(child.stdout.take()), drain(child.stderr.take()));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let output = |status| std::process::Output { status, stdout: stdout.join().unwrap(), stderr: stderr.join().unwrap() };
    match status {
        Some(status) => output(status),
        None => {
            let out = output(std::process::ExitStatus::default());
            panic!("{what} ran longer than {limit:?} and was killed; it printed:\n{}", String::from_utf8_lossy(&out.stderr));
        }
    }
}

/// The `durafetch-pull` binary under test.
pub fn puller_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("DURAFETCH_PULL_BIN") {
        return path.into();
    }
    // target/<profile>/deps/<test binary> → target/<profile>/durafetch-pull
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().and_then(Path::parent).unwrap().join("durafetch-pull");
    assert!(bin.exists(), "{} is missing; build it with `cargo build -p durafetch-pull`", bin.display());
    bin
}

/// The example's route prefix for a class.
/// The `durafetch-pull` command for the export API at `url`.
pub fn puller_at(url: &str, db: &Path, token: &str, flags: &[&str]) -> Command {
    let mut cmd = Command::new(puller_binary());
    cmd.args(["--json", "--db"]).arg(db).args(["--server", url]).args(flags).env("DURAFETCH_AUTH", token);
    cmd
}

pub fn route_of(class: &str) -> &'static str {
    match class {
        "CounterKv" => "kv",
        "CounterSql" => "sql",
        other => panic!("unknown class {other}"),
    }
}

/// One object's expected copy: its class, its name and its `(key, val)` pairs.
pub type ExpectedObject<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);

/// Builds an expected copy from each object's.
pub fn pulled(objects: &[ExpectedObject<'_>]) -> Pulled {
    objects
        .iter()
        .map(|(class, name, keys)| {
            let keys = keys.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            ((class.to_string(), name.to_string()), keys)
        })
        .collect()
}

/// The pulled copy: (class, object name) → key → `val` (JSON text; `<bytes:hex>` for bytes).
pub type Pulled = BTreeMap<(String, String), BTreeMap<String, String>>;

pub fn read_db(db: &Path) -> Pulled {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT o.class_name, o.name, kv.key, kv.val, kv.val_type, hex(kv.val_blob)
             FROM kv JOIN durable_objects o USING (do_id)",
        )
        .unwrap();
    let mut out = Pulled::new();
    let rows = stmt
        .query_map([], |r| {
            let (class, name, key): (String, String, String) = (r.get(0)?, r.get(1)?, r.get(2)?);
            let (val, kind, hex): (Option<String>, String, Option<String>) = (r.get(3)?, r.get(4)?, r.get(5)?);
            let val = match kind.as_str() {
                "json" => val.unwrap_or_default(),
                "bytes" => format!("<bytes:{}>", hex.unwrap_or_default()),
                "tagged" => format!("<tagged:{}>", val.unwrap_or_default()),
                other => format!("<{other}>"),
            };
            Ok(((class, name), key, val))
        })
        .unwrap();
    for row in rows {
        let (object, key, val) = row.unwrap();
        out.entry(object).or_default().insert(key, val);
    }
    out
}

fn open_read_only(db: &Path) -> rusqlite::Result<rusqlite::Connection> {
    rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
}

/// Rows in the file's `kv` table, read beside a running puller (0 while there is no file yet).
pub fn kv_rows(db: &Path) -> i64 {
    open_read_only(db).and_then(|c| c.query_row("SELECT count(*) FROM kv", [], |r| r.get(0))).unwrap_or(0)
}

/// The `val` of `key` in the object `(class, name)`, read beside a running puller.
pub fn row_value(db: &Path, (class, name): (&str, &str), key: &str) -> Option<String> {
    open_read_only(db)
        .and_then(|c| c.query_row("SELECT val FROM kv WHERE class_name = ?1 AND name = ?2 AND key = ?3", [class, name, key], |r| r.get(0)))
        .ok()
}

/// Row counts of every table, to show a file was left untouched.
pub fn dump(db: &Path) -> String {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut out = String::new();
    for table in ["durable_objects", "kv", "durafetch_servers"] {
        let mut stmt = conn.prepare(&format!("SELECT * FROM {table} ORDER BY 1")).unwrap();
        let columns = stmt.column_count();
        let rows = stmt
            .query_map([], |r| {
                (0..columns).map(|i| r.get::<_, rusqlite::types::Value>(i).map(|v| format!("{v:?}"))).collect::<Result<Vec<_>, _>>()
            })
            .unwrap();
        for row in rows {
            out.push_str(&format!("{table}: {}\n", row.unwrap().join("|")));
        }
    }
    out
}

/// A raw HTTP/1.1 GET with a chosen `Host` header: status and body.
pub fn raw_get(port: u16, host: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let (status, _, body) = raw_request(port, "GET", host, path, headers, "");
    (status, body)
}

/// [`raw_get`] for a POST of `body`: status, the answer's headers (lowercase) and its body.
pub fn raw_post(port: u16, host: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String, String) {
    raw_request(port, "POST", host, path, headers, body)
}

fn raw_request(port: u16, method: &str, host: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if method != "GET" {
        request.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((response.as_str(), ""));
    let head = head.to_ascii_lowercase();
    let body = if head.contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_owned() };
    (status, head, body)
}

/// The data of a chunked body.
fn dechunk(mut raw: &str) -> String {
    let mut data = String::new();
    while let Some((size, rest)) = raw.split_once("\r\n") {
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        data.push_str(&rest[..size]);
        raw = rest[size..].strip_prefix("\r\n").unwrap_or(&rest[size..]);
    }
    data
}

/// `durafetch-pull restore` from `db` into the API at `url`, with `token` as its restore token
/// and [`TOKEN`] as the reading token its undo copy is pulled with, NDJSON output; `flags` after.
pub fn restorer(url: &str, db: &Path, token: &str, flags: &[&str]) -> Command {
    let mut cmd = Command::new(puller_binary());
    cmd.args(["restore", "--json", "--db"])
        .arg(db)
        .args(["--to", url])
        .args(flags)
        .env("DURAFETCH_RESTORE_AUTH", token)
        .env("DURAFETCH_AUTH", TOKEN);
    cmd
}

/// `durafetch-pull restore` from `db` into `target` with [`RESTORE_TOKEN`], run to its end.
pub fn restore_into(target: &LocalWorker, db: &Path, flags: &[&str]) -> RestoreRun {
    RestoreRun::run(restorer(&target.api_url(), db, RESTORE_TOKEN, flags))
}

/// One run of `durafetch-pull restore`: its exit code, its per-object lines and its summary.
pub struct RestoreRun {
    pub code: Option<i32>,
    pub objects: Vec<serde_json::Value>,
    pub summary: serde_json::Value,
    pub stderr: String,
}

impl RestoreRun {
    pub fn run(cmd: Command) -> Self {
        let output = finish_within(spawn_piped(cmd), PULL_LIMIT, "durafetch-pull restore");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let lines: Vec<serde_json::Value> = stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        let objects = lines.iter().filter(|l| l["event"] == "object").map(|l| l["object"].clone()).collect();
        let summary = lines.iter().find(|l| l["event"] == "summary").cloned().unwrap_or_default();
        RestoreRun { code: output.status.code(), objects, summary, stderr: String::from_utf8_lossy(&output.stderr).into_owned() }
    }

    /// A count from the summary.
    pub fn count(&self, field: &str) -> u64 {
        self.summary[field].as_u64().unwrap_or_else(|| panic!("no {field} in the summary: {:?} {}", self.summary, self.stderr))
    }

    /// The objects whose outcome is `outcome`.
    pub fn with_outcome(&self, outcome: &str) -> Vec<&serde_json::Value> {
        self.objects.iter().filter(|o| o["outcome"] == outcome).collect()
    }
}

/// Everything a file holds of its named objects, one line per key, SQL row and table schema,
/// each value with its exact type: two files of the same objects, pulled from two workers (other
/// ids, other row stamps), give the same lines.
pub fn named_contents(db: &Path) -> std::collections::BTreeSet<String> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut lines = std::collections::BTreeSet::new();
    let mut stmt = conn
        .prepare(
            "SELECT class_name, name, key, val_type, quote(val), hex(val_blob), quote(val_error) FROM kv
             WHERE name IS NOT NULL",
        )
        .unwrap();
    let rows = stmt.query_map([], |r| (0..7).map(|i| r.get::<_, String>(i)).collect::<Result<Vec<_>, _>>()).unwrap();
    lines.extend(rows.map(|r| format!("kv {}", r.unwrap().join(" | "))));
    let tables: Vec<(String, String, String)> = conn
        .prepare("SELECT class_name, table_name, local_table FROM sql_tables")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for (class, table, local) in tables {
        let mut columns: Vec<String> = conn
            .prepare("SELECT name FROM pragma_table_info(?1) WHERE name NOT IN ('do_id', '_pull_gen')")
            .unwrap()
            .query_map([&local], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        columns.sort();
        let exact: Vec<String> = columns
            .iter()
            .map(|name| {
                let label = format!("'{}'", name.replace('\'', "''"));
                let c = format!("t.\"{}\"", name.replace('"', "\"\""));
                format!(
                    "{label} || '=' || typeof({c}) || ':' || CASE typeof({c}) WHEN 'real' THEN printf('%!.17g', {c}) ELSE quote({c}) END"
                )
            })
            .collect();
        let query = format!(
            "SELECT o.name || ' ' || {} FROM \"{}\" t JOIN durable_objects o USING (do_id) WHERE o.name IS NOT NULL",
            exact.join(" || ' ' || "),
            local.replace('"', "\"\"")
        );
        let rows = conn.prepare(&query).unwrap().query_map([], |r| r.get::<_, String>(0)).unwrap().map(Result::unwrap).collect::<Vec<_>>();
        lines.extend(rows.into_iter().map(|r| format!("sql {class}.{table} {r}")));
    }
    let mut stmt = conn
        .prepare("SELECT o.class_name, o.name, s.table_name, s.statements FROM sql_schemas s JOIN durable_objects o USING (do_id) WHERE o.name IS NOT NULL")
        .unwrap();
    let rows = stmt.query_map([], |r| (0..4).map(|i| r.get::<_, String>(i)).collect::<Result<Vec<_>, _>>()).unwrap();
    lines.extend(rows.map(|r| format!("schema {}", r.unwrap().join(" | "))));
    lines
}

/// A WebSocket to the API of `worker` at `path`, with `token`.
pub type ApiSocket = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>;

/// Opens a session of the API of `worker` at `path`, straight to its port with the API's host.
pub fn api_socket(worker: &LocalWorker, path: &str, token: &str) -> ApiSocket {
    use tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://127.0.0.1:{}{path}", worker.port).into_client_request().unwrap();
    request.headers_mut().insert("host", worker.api_host().parse().unwrap());
    request.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    tungstenite::connect(request).expect("upgrade").0
}

/// Reads until the server closes; answers the `error` message it sent and the close code.
pub fn session_outcome(socket: &mut ApiSocket) -> (String, Option<tungstenite::protocol::frame::coding::CloseCode>) {
    let mut error = String::new();
    loop {
        match socket.read() {
            Ok(tungstenite::Message::Text(text)) => {
                let msg: serde_json::Value = serde_json::from_str(&text).unwrap();
                if msg["type"] == "error" {
                    error = msg["message"].as_str().unwrap().to_owned();
                }
            }
            Ok(tungstenite::Message::Close(frame)) => return (error, frame.map(|f| f.code)),
            Ok(_) => {}
            Err(_) => return (error, None),
        }
    }
}
