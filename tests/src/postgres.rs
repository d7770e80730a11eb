//! A real PostgreSQL server for the PostgreSQL sink's tests, from the machine's packages: a new
//! cluster (`initdb`) in a temporary folder, on a free loopback port, stopped by its own PID when
//! dropped, so a failing test never leaves it running.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, Pulled};

pub struct PostgresServer {
    pub port: u16,
    child: Child,
    /// Whether the server has rules of its own for TLS (the tests' own connections then go
    /// through its Unix socket in `dir`).
    tls_only: bool,
    dir: tempfile::TempDir,
}

/// A server certificate for `localhost` and the CA that signed it, made for one test.
pub struct TestCa {
    pub ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

impl TestCa {
    pub fn new() -> Self {
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap()).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap().signed_by(&key, &ca).unwrap();
        TestCa { ca_pem: ca.pem(), cert_pem: cert.pem(), key_pem: key.serialize_pem() }
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

/// The server's programs: the newest version the machine's packages installed.
fn server_bin(program: &str) -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("the PostgreSQL server package (scripts/bootstrap.sh installs it)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join(program).exists())
        .collect();
    versions.sort();
    versions.pop().unwrap_or_else(|| panic!("no {program} under /usr/lib/postgresql")).join(program)
}

/// PostgreSQL refuses to run as root: as root, the server runs as the package's `postgres` user.
fn unprivileged(cmd: &mut Command, owner: Option<(u32, u32)>) {
    if let Some((uid, gid)) = owner {
        cmd.uid(uid).gid(gid);
    }
}

/// The `postgres` user's ids when running as root, else `None`.
fn server_owner() -> Option<(u32, u32)> {
    let me = Command::new("id").arg("-u").output().expect("id");
    if String::from_utf8_lossy(&me.stdout).trim() != "0" {
        return None;
    }
    let id = |flag: &str| {
        let out = Command::new("id").args([flag, "postgres"]).output().expect("id");
        String::from_utf8_lossy(&out.stdout).trim().parse::<u32>().expect("a postgres user (made by the server package)")
    };
    Some((id("-u"), id("-g")))
}

impl PostgresServer {
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// A server with `ssl=on` presenting `ca`'s certificate for `localhost`, whose rules refuse
    /// every TCP connection without TLS.
    pub fn start_tls_only(ca: &TestCa) -> Self {
        Self::start_with(Some((ca, "hostssl")))
    }

    /// A server with `ssl=on` whose rules refuse every TCP connection over TLS.
    pub fn start_tls_refused(ca: &TestCa) -> Self {
        Self::start_with(Some((ca, "hostnossl")))
    }

    /// `tls`: the certificate, and the `pg_hba.conf` connection type TCP connections must be.
    fn start_with(tls: Option<(&TestCa, &str)>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let owner = server_owner();
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let data = dir.path().join("data");
        let mut initdb = Command::new(server_bin("initdb"));
        initdb.args(["--auth=trust", "--username=durafetch", "--encoding=UTF8", "--locale=C", "-D"]).arg(&data);
        unprivileged(&mut initdb, owner);
        let out = initdb.output().expect("initdb");
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));

        let mut settings: Vec<String> = Vec::new();
        if let Some((ca, connection_type)) = tls {
            let (cert, key) = (data.join("server.crt"), data.join("server.key"));
            std::fs::write(&cert, &ca.cert_pem).unwrap();
            std::fs::write(&key, &ca.key_pem).unwrap();
            std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
            for file in [&cert, &key] {
                if let Some((uid, gid)) = owner {
                    std::os::unix::fs::chown(file, Some(uid), Some(gid)).unwrap();
                }
            }
            let rules =
                format!("local all all trust\n{connection_type} all all 127.0.0.1/32 trust\n{connection_type} all all ::1/128 trust\n");
            std::fs::write(data.join("pg_hba.conf"), rules).unwrap();
            settings.extend(["-c", "ssl=on", "-c", "ssl_cert_file=server.crt", "-c", "ssl_key_file=server.key"].map(String::from));
        }

        let port = free_port();
        let mut server = Command::new(server_bin("postgres"));
        server
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-h", "127.0.0.1", "-k"])
            .arg(dir.path())
            // The tests kill pullers, never the server: durability to disk buys them nothing.
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"])
            .args(&settings)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.path().join("postgres.log")).unwrap())
            .stderr(std::fs::File::create(dir.path().join("postgres.err")).unwrap());
        unprivileged(&mut server, owner);
        let child = server.spawn().expect("postgres");
        let server = PostgresServer { port, child, tls_only: tls.is_some(), dir };
        server.wait_ready();
        server
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match postgres::Client::connect(&self.own_url("postgres"), postgres::NoTls) {
                Ok(_) => return,
                Err(e) if Instant::now() > deadline => panic!("PostgreSQL did not start: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// The URL of the database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://durafetch@127.0.0.1:{}/{name}", self.port)
    }

    /// A new empty database; answers its URL.
    pub fn create_database(&self, name: &str) -> String {
        // The name quoted as an identifier, never spliced as SQL.
        self.client("postgres").batch_execute(&format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""))).unwrap();
        self.url(name)
    }

    pub fn client(&self, name: &str) -> postgres::Client {
        postgres::Client::connect(&self.own_url(name), postgres::NoTls).unwrap()
    }

    /// How the tests reach the database `name` themselves: over TCP, or through the Unix socket
    /// of a server that takes TCP over TLS only.
    fn own_url(&self, name: &str) -> String {
        if self.tls_only {
            format!("host={} port={} user=durafetch dbname={name}", self.dir.path().display(), self.port)
        } else {
            self.url(name)
        }
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        // SIGINT: PostgreSQL's fast shutdown.
        let _ = Command::new("kill").args(["-INT", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The database's copy, in the form [`crate::read_db`] gives the SQLite file's: JSON values in
/// the spelling PostgreSQL's `jsonb` gives them back (keys sorted, spaces after separators),
/// so compare them with [`same_values`].
pub fn read_pg(url: &str) -> Pulled {
    let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
    let rows = client
        .query(
            "SELECT o.class_name, o.name, kv.key, kv.val::text, kv.val_type, upper(encode(kv.val_blob, 'hex'))
             FROM kv JOIN durable_objects o USING (do_id)",
            &[],
        )
        .unwrap();
    let mut out = Pulled::new();
    for r in rows {
        let (class, name, key): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        let (val, kind, hex): (Option<String>, String, Option<String>) = (r.get(3), r.get(4), r.get(5));
        let val = match kind.as_str() {
            "json" => val.unwrap_or_default(),
            "bytes" => format!("<bytes:{}>", hex.unwrap_or_default()),
            "tagged" => format!("<tagged:{}>", val.unwrap_or_default()),
            other => format!("<{other}>"),
        };
        out.entry((class, name)).or_default().insert(key, val);
    }
    out
}

/// Whether two copies hold the same keys with equal values, JSON compared as JSON (object key
/// order aside): how `jsonb` and the file's exact text are compared.
pub fn same_values(a: &Pulled, b: &Pulled) -> bool {
    fn normal(text: &str) -> String {
        let (prefix, json) = match text.strip_prefix("<tagged:").and_then(|t| t.strip_suffix('>')) {
            Some(inner) => ("tagged:", inner),
            None => ("", text),
        };
        match serde_json::from_str::<serde_json::Value>(json) {
            Ok(value) => format!("{prefix}{}", sorted(&value)),
            Err(_) => text.to_owned(),
        }
    }
    fn sorted(value: &serde_json::Value) -> String {
        match value {
            serde_json::Value::Object(map) => {
                let mut entries: Vec<(&String, &serde_json::Value)> = map.iter().collect();
                entries.sort_by(|x, y| x.0.cmp(y.0));
                let inner: Vec<String> =
                    entries.iter().map(|(k, v)| format!("{}:{}", serde_json::Value::from(k.as_str()), sorted(v))).collect();
                format!("{{{}}}", inner.join(","))
            }
            serde_json::Value::Array(items) => format!("[{}]", items.iter().map(sorted).collect::<Vec<_>>().join(",")),
            other => other.to_string(),
        }
    }
    let flat = |p: &Pulled| -> Vec<((String, String), String, String)> {
        p.iter().flat_map(|(o, keys)| keys.iter().map(move |(k, v)| (o.clone(), k.clone(), normal(v)))).collect()
    };
    flat(a) == flat(b)
}
