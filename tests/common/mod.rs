//! Helpers shared by the integration tests (and `benches/fleet.rs`): the simulated phone as a
//! child process, SIP responses built from a request, running the binary and asserting on
//! what it did, and a campaign's fixture (`campaign`).
#![allow(dead_code)]

pub mod campaign;
pub mod needs;
pub mod pki;

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// The password every simulated line in these tests has.
pub const PASSWORD: &str = "Pw-159-sEcReT";

/// How long a phone may take to print the line that says where it listens.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// The real binary under test.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sipnotify"))
}

/// The `openssl` command line, the compatibility peer of profile encryption: skipped with a
/// reason outside CI when missing, a failure in CI.
pub fn openssl() -> Option<Command> {
    if Command::new("openssl").arg("version").output().is_ok() {
        return Some(Command::new("openssl"));
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "openssl is missing (CI installs it)"
    );
    eprintln!("skipped: openssl is not installed");
    None
}

/// Whether this machine has IPv6 loopback (`[::1]`): without it a test says it skipped,
/// and fails in CI.
pub fn ipv6_loopback() -> bool {
    if std::net::TcpListener::bind("[::1]:0").is_ok() {
        return true;
    }
    assert!(std::env::var_os("CI").is_none(), "no IPv6 loopback in CI");
    eprintln!("SKIPPED: no IPv6 loopback on this machine");
    false
}

/// A port that was free a moment ago on each of `ips`, for both UDP and TCP (a peer may
/// listen on both). The kernel chooses it, so tests running in parallel get distinct ones.
pub fn free_port(ips: &[&str]) -> u16 {
    use std::net::{TcpListener, UdpSocket};
    for _ in 0..100 {
        let held = TcpListener::bind((ips[0], 0)).expect("bind an ephemeral TCP port");
        let port = held.local_addr().expect("its address").port();
        let free = |ip: &str| {
            UdpSocket::bind((ip, port)).is_ok()
                && (ip == ips[0] || TcpListener::bind((ip, port)).is_ok())
        };
        if ips.iter().all(|ip| free(ip)) {
            return port;
        }
    }
    panic!("no port free on {ips:?} for both UDP and TCP after 100 tries");
}

/// `sipnotify batch ARGS...` with nothing on its stdin, run to its end.
pub fn batch(args: &[&str]) -> Output {
    bin()
        .arg("batch")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// `sipnotify ARGS...` with [`PASSWORD`] in its environment, run to its end.
pub fn send(args: &[&str]) -> Output {
    bin()
        .args(args)
        .env("SIPNOTIFY_PASSWORD", PASSWORD)
        .output()
        .expect("run sipnotify")
}

/// [`send`] of a single-target command with `--output json`: its record, exit code and
/// standard error.
pub fn send_json(args: &[&str]) -> (serde_json::Value, i32, String) {
    let out = send(&[args, &["--output", "json"]].concat());
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (json_line(&out.stdout), out.status.code().unwrap(), stderr)
}

/// `sipnotify ARGS... --dry-run`, which must exit 0: the request it printed.
pub fn dry_run(args: &[&str]) -> String {
    let out = bin().args(args).arg("--dry-run").output().unwrap();
    let request = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{args:?}: {request}");
    request
}

/// Runs `command` to its end, which must succeed (if not, says its stderr): its output.
#[track_caller]
pub fn run_ok(command: &mut Command) -> Output {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Starts `command` with its stdout and stderr piped.
pub fn spawn_piped(command: &mut Command) -> Child {
    command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Runs `command` to its end with `input` on its stdin, its stdout and stderr piped.
pub fn output_with_stdin(command: &mut Command, input: &[u8]) -> Output {
    let mut child = spawn_piped(command.stdin(Stdio::piped()));
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// What `child` printed on its piped stdout and stderr, each read to its end (empty when
/// not piped). Read one after the other: for a child that has exited, or one whose stderr
/// is not piped.
pub fn read_pipes(child: &mut Child) -> (Vec<u8>, Vec<u8>) {
    fn read_all(pipe: Option<impl Read>) -> Vec<u8> {
        let mut all = Vec::new();
        if let Some(mut pipe) = pipe {
            pipe.read_to_end(&mut all).unwrap();
        }
        all
    }
    (read_all(child.stdout.take()), read_all(child.stderr.take()))
}

/// The first line `child` printed on its piped stdout, with its newline (empty if it
/// printed none); its stdout is closed after it.
pub fn first_line(child: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("a piped stdout"))
        .read_line(&mut line)
        .unwrap();
    line
}

/// The run exited with `code`; if not, says what it printed (stdout cut at 2000 bytes).
#[track_caller]
pub fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout[..out.stdout.len().min(2000)]),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `text` (`what` it is, for the message) contains each of `parts`.
#[track_caller]
pub fn assert_contains_all(what: &str, text: &str, parts: &[&str]) {
    for part in parts {
        assert!(text.contains(part), "{what}: no {part:?} in:\n{text}");
    }
}

/// `request` is a NOTIFY to `target` (its request line) holding each of `parts`.
#[track_caller]
pub fn assert_notify(request: &str, target: &str, parts: &[&str]) {
    let request_line = format!("NOTIFY {target} SIP/2.0\r\n");
    assert!(request.starts_with(&request_line), "{request}");
    assert_contains_all("the request", request, parts);
}

/// The run was refused (exit 2), saying `message` on stderr.
#[track_caller]
pub fn assert_refused(out: &Output, message: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(message), "{stderr}");
}

/// A fresh directory for one test's files, `sipnotify-CRATE-NAME-PID` in the temporary
/// directory, kept after the run to be looked at. Those that earlier runs of the same test
/// left (their process gone) are removed, so that runs do not fill the disk.
pub fn temp_dir(name: &str) -> PathBuf {
    let prefix = format!("sipnotify-{}-{name}-", env!("CARGO_CRATE_NAME"));
    if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let pid = file_name
                .to_str()
                .and_then(|n| n.strip_prefix(&prefix))
                .and_then(|rest| rest.parse::<u32>().ok());
            if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let dir = std::env::temp_dir().join(format!("{prefix}{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `sipnotify batch INPUT --channel http --action background` with the images of `files`,
/// user `admin` and [`PASSWORD`], JSON output, and `extra`; stdin closed.
pub fn background_batch(input: &Path, files: &FileServer, extra: &[&str]) -> Command {
    let mut command = bin();
    command
        .args(["batch", input.to_str().unwrap(), "--channel", "http"])
        .args(["--action", "background", "--image", &files.url("/bg.png")])
        .args(["--icon", &files.url("/tn.png")])
        .args(["--user", "admin", "--output", "json"])
        .args(extra)
        .env("SIPNOTIFY_PASSWORD", PASSWORD)
        .stdin(Stdio::null());
    command
}

/// The options of a `sipnotify phone` to start: [`PhoneProcess::builder`].
#[derive(Debug, Clone)]
pub struct PhoneBuilder {
    listen: Vec<String>,
    transport: Option<String>,
    users: Vec<(&'static str, String)>,
    password_template: String,
    threads: Option<u16>,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    stderr: Option<PathBuf>,
}

impl PhoneBuilder {
    /// Listens on `addr` (repeatable); without it, on a free loopback port (`127.0.0.1:0`).
    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.listen.push(addr.into());
        self
    }

    /// `udp`, `tcp`, `both` (the phone's default) or `tls`.
    pub fn transport(mut self, transport: &str) -> Self {
        self.transport = Some(transport.to_string());
        self
    }

    /// A line the phone answers for (repeatable). Without `user` or `users`: user 159.
    pub fn user(mut self, user: &str) -> Self {
        self.users.push(("--user", user.to_string()));
        self
    }

    /// A range of numeric users, e.g. `1000-1999` (repeatable).
    pub fn users(mut self, range: &str) -> Self {
        self.users.push(("--users", range.to_string()));
        self
    }

    /// Each line's password (`{user}` is replaced by the user); by default [`PASSWORD`].
    pub fn password_template(mut self, template: &str) -> Self {
        self.password_template = template.to_string();
        self
    }

    /// The challenge: md5, md5-qop (the phone's default), sha256 or none.
    pub fn challenge(self, mode: &str) -> Self {
        self.args(["--challenge", mode])
    }

    /// Answers on `n` threads.
    pub fn threads(mut self, n: u16) -> Self {
        self.threads = Some(n);
        self
    }

    /// Appends one JSON line per exchange to `path` (`--log`).
    pub fn log(self, path: &Path) -> Self {
        self.args([OsString::from("--log"), path.into()])
    }

    /// Any other arguments of `sipnotify phone`, e.g. `["--delay", "100"]`.
    pub fn args<S: Into<OsString>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// An environment variable of the phone's process.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Writes the phone's stderr to the file `path` (created anew) instead of discarding it.
    pub fn stderr_to(mut self, path: &Path) -> Self {
        self.stderr = Some(path.to_path_buf());
        self
    }

    /// The command line after `sipnotify`.
    fn command_args(&self) -> Vec<OsString> {
        let mut out: Vec<OsString> = vec!["phone".into()];
        let mut push = |flag: &str, value: &str| out.extend([flag.into(), value.into()]);
        if self.listen.is_empty() {
            push("--listen", "127.0.0.1:0");
        }
        for addr in &self.listen {
            push("--listen", addr);
        }
        if let Some(transport) = &self.transport {
            push("--transport", transport);
        }
        if self.users.is_empty() {
            push("--user", "159");
        }
        for (flag, value) in &self.users {
            push(flag, value);
        }
        push("--password-template", &self.password_template);
        if let Some(n) = self.threads {
            push("--threads", &n.to_string());
        }
        out.extend(self.args.iter().cloned());
        out
    }

    /// Starts the phone and waits (at most 30 s) until it says where it listens.
    pub fn start(self) -> PhoneProcess {
        let stderr = match &self.stderr {
            Some(path) => {
                Stdio::from(std::fs::File::create(path).expect("create the phone's stderr file"))
            }
            None => Stdio::null(),
        };
        let mut child = bin()
            .args(self.command_args())
            .envs(self.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start sipnotify phone");
        // Its stdout is read on a thread, to the end, so that the phone never blocks on it:
        // the first line is handed over at once, each later one as it comes
        // ([`PhoneProcess::line`]) and all of them when the phone exits.
        let stdout = child.stdout.take().expect("the phone's stdout");
        let (first_tx, first_rx) = mpsc::channel();
        let (lines_tx, lines) = mpsc::channel();
        let rest = thread::spawn(move || {
            let mut stdout = BufReader::new(stdout);
            let mut first = String::new();
            let _ = stdout.read_line(&mut first);
            let _ = first_tx.send(first);
            let mut rest = Vec::new();
            let mut line = Vec::new();
            while matches!(stdout.read_until(b'\n', &mut line), Ok(n) if n > 0) {
                rest.extend_from_slice(&line);
                let _ = lines_tx.send(String::from_utf8_lossy(&line).into_owned());
                line.clear();
            }
            rest
        });
        let mut phone = PhoneProcess {
            child: Some(child),
            addrs: Vec::new(),
            first_line: String::new(),
            lines,
            rest: Some(rest),
            stderr: self.stderr,
        };
        phone.first_line =
            match first_rx.recv_timeout(READY_WITHIN) {
                Ok(line) if !line.is_empty() => line,
                // `phone` is dropped by the panic: killed.
                _ => panic!(
                "sipnotify phone {:?} printed no first line within {READY_WITHIN:?} (exit: {:?}); \
                 stderr:\n{}",
                self.args,
                phone.child.as_mut().and_then(|c| c.try_wait().ok().flatten()),
                phone.stderr_text()
            ),
            };
        phone.addrs = parse_listening(&phone.first_line)
            .unwrap_or_else(|| panic!("unexpected first line: {}", phone.first_line));
        phone
    }
}

/// `phone listening on udp 127.0.0.1:5060, tcp 127.0.0.1:5060`: the transports and addresses.
fn parse_listening(line: &str) -> Option<Vec<(String, SocketAddr)>> {
    let list = line.trim().strip_prefix("phone listening on ")?;
    let addrs = list
        .split(", ")
        .map(|part| {
            let (transport, addr) = part.split_once(' ')?;
            Some((transport.to_string(), addr.parse().ok()?))
        })
        .collect::<Option<Vec<_>>>()?;
    (!addrs.is_empty()).then_some(addrs)
}

/// `sipnotify phone` running as a child; killed on drop.
pub struct PhoneProcess {
    /// None once handed over or stopped.
    child: Option<Child>,
    addrs: Vec<(String, SocketAddr)>,
    first_line: String,
    /// The lines after the first, as the phone prints them.
    lines: mpsc::Receiver<String>,
    /// The thread reading stdout after the first line.
    rest: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<PathBuf>,
}

impl PhoneProcess {
    /// A phone on a free loopback port, both transports, user 159 with [`PASSWORD`], its
    /// stderr discarded, until the builder says otherwise.
    pub fn builder() -> PhoneBuilder {
        PhoneBuilder {
            listen: Vec::new(),
            transport: None,
            users: Vec::new(),
            password_template: PASSWORD.to_string(),
            threads: None,
            args: Vec::new(),
            env: Vec::new(),
            stderr: None,
        }
    }

    /// The phone's first address for `transport` ("udp" or "tcp").
    pub fn addr(&self, transport: &str) -> SocketAddr {
        self.addrs
            .iter()
            .find(|(t, _)| t == transport)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("phone listens on {transport}: {}", self.first_line))
    }

    /// What the phone printed first: where it listens, with a newline.
    pub fn first_line(&self) -> &str {
        &self.first_line
    }

    /// The next line the phone prints after the first (with its newline), waiting at most
    /// `within`; the lines read this way are still in what [`terminate`](Self::terminate)
    /// returns.
    pub fn line(&self, within: Duration) -> Option<String> {
        self.lines.recv_timeout(within).ok()
    }

    /// What the phone wrote to the file given to [`PhoneBuilder::stderr_to`] so far.
    pub fn stderr_text(&self) -> String {
        self.stderr
            .as_deref()
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .unwrap_or_default()
    }

    /// Stops the phone with SIGTERM (it prints its counters) and returns all it printed on
    /// stdout after the first line.
    pub fn terminate(mut self) -> Vec<u8> {
        let mut child = self.child.take().expect("a running phone");
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        child.wait().expect("wait for the phone");
        self.rest
            .take()
            .expect("the stdout reader")
            .join()
            .expect("the stdout reader")
    }

    /// The child process, no longer killed on drop: for a caller that stops it its own way.
    pub fn into_child(mut self) -> Child {
        self.child.take().expect("a running phone")
    }
}

impl Drop for PhoneProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The builder of a simulated phone over UDP with a web server on a free loopback port
/// (`--http-auth auth`), for more options.
pub fn web_builder(auth: &str) -> PhoneBuilder {
    PhoneProcess::builder()
        .transport("udp")
        .args(["--http", "127.0.0.1:0", "--http-auth", auth])
}

/// A simulated phone with a web server (`--http-auth auth`) and more `args`.
pub fn web_phone(auth: &str, args: &[&str]) -> PhoneProcess {
    web_builder(auth).args(args.iter().copied()).start()
}

/// What the phone printed when it stopped: its `web stopped:` line.
pub fn web_stopped(phone: PhoneProcess) -> String {
    let out = String::from_utf8(phone.terminate()).unwrap();
    out.lines()
        .find(|l| l.starts_with("web stopped:"))
        .unwrap_or_else(|| panic!("no web counters in {out}"))
        .to_string()
}

/// The SHA-256 fingerprint that a phone's `tls certificate ...` line names.
#[track_caller]
pub fn certificate_fingerprint(line: &str) -> String {
    line.split("SHA-256 ")
        .nth(1)
        .and_then(|rest| rest.split([' ', ')']).next())
        .unwrap_or_else(|| panic!("no fingerprint: {line}"))
        .to_string()
}

/// A SIP response to `request`: `SIP/2.0 {status} {reason}`, the request's Via, From, To,
/// Call-ID and CSeq lines copied in their order, then `headers` (whole `Name: value` lines,
/// without line ends), a `Content-Length` that is the length of `body`, and `body`.
pub fn response(
    request: &[u8],
    status: u16,
    reason: &str,
    headers: &[&str],
    body: &[u8],
) -> Vec<u8> {
    let text = String::from_utf8_lossy(request);
    let mut out = format!("SIP/2.0 {status} {reason}\r\n");
    for line in text.lines() {
        if ["Via:", "From:", "To:", "Call-ID:", "CSeq:"]
            .iter()
            .any(|name| line.starts_with(name))
        {
            out += line;
            out += "\r\n";
        }
    }
    for header in headers {
        out += header;
        out += "\r\n";
    }
    out += &format!("Content-Length: {}\r\n\r\n", body.len());
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// Parses the single JSON line a single-target command prints.
pub fn json_line(stdout: &[u8]) -> serde_json::Value {
    let text = String::from_utf8_lossy(stdout);
    let line = text
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no output: {text}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

/// The single-target run exited with `code`, and its record (returned) says `outcome`.
#[track_caller]
pub fn assert_outcome(out: &Output, code: i32, outcome: &str) -> serde_json::Value {
    let record = json_line(&out.stdout);
    assert_eq!(out.status.code(), Some(code), "{record}");
    assert_eq!(record["outcome"], outcome, "{record}");
    record
}

/// Reads one whole SIP message (framed by its Content-Length) from `stream`; what was read
/// beyond it stays in `pending` for the next call. `None` at the end of the stream, on an
/// error, or on bytes that cannot be framed.
pub fn read_message(stream: &mut impl Read, pending: &mut Vec<u8>) -> Option<Vec<u8>> {
    loop {
        match sipnotify::sip::codec::frame(pending) {
            Ok(Some(n)) => return Some(pending.drain(..n).collect()),
            Ok(None) => {}
            Err(_) => return None,
        }
        let mut chunk = [0u8; 8192];
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => pending.extend_from_slice(&chunk[..n]),
        }
    }
}

/// How a child process ended.
#[derive(Debug, Clone, Copy)]
pub struct Exited {
    /// How it ended, as `std::process` reports it.
    pub status: std::process::ExitStatus,
    /// The exit code; `None` if a signal ended it.
    pub code: Option<i32>,
    /// Its peak resident memory in KiB (wait4's `ru_maxrss`).
    pub max_rss_kib: i64,
}

/// Waits for `child` to exit, at most `within`, calling `watch(pid)` every 10 ms meanwhile.
/// Kills the child and panics when time runs out or `watch` returns an error (e.g. memory
/// past a limit: a regression then fails at once instead of exhausting the machine).
pub fn wait_watching(
    child: &mut Child,
    within: Duration,
    mut watch: impl FnMut(u32) -> Result<(), String>,
) -> Exited {
    let pid = child.id() as libc::pid_t;
    let started = std::time::Instant::now();
    loop {
        let mut status = 0;
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        assert!(rc >= 0, "wait4: {}", std::io::Error::last_os_error());
        if rc == pid {
            let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
            return Exited {
                status: std::os::unix::process::ExitStatusExt::from_raw(status),
                code,
                max_rss_kib: usage.ru_maxrss,
            };
        }
        let stop = match watch(child.id()) {
            Err(why) => Some(why),
            Ok(()) if started.elapsed() > within => Some(format!("still running after {within:?}")),
            Ok(()) => None,
        };
        if let Some(why) = stop {
            unsafe { libc::kill(pid, libc::SIGKILL) };
            unsafe { libc::waitpid(pid, &mut status, 0) };
            panic!("killed pid {pid}: {why}");
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// The resident memory of process `pid` now, in KiB (Linux).
pub fn rss_kib(pid: u32) -> Option<i64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// How many descriptors process `pid` has open now (Linux).
pub fn open_descriptors(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// Downloads by source address and path.
type Hits =
    std::sync::Arc<std::sync::Mutex<std::collections::HashMap<(std::net::IpAddr, String), u32>>>;

/// The files served, by path.
type Files = std::sync::Arc<std::collections::HashMap<&'static str, Vec<u8>>>;

/// A web server for the files the simulated phones download (backgrounds), on loopback,
/// on a thread of its own: it counts each download by the address it came from and the
/// path, and answers 404 for paths it does not have.
pub struct FileServer {
    /// Where it listens.
    pub addr: SocketAddr,
    hits: std::sync::Arc<
        std::sync::Mutex<std::collections::HashMap<(std::net::IpAddr, String), u32>>,
    >,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FileServer {
    /// Serves `files` (path, bytes) as `image/png` on a free port of 127.0.0.1.
    pub fn start(files: Vec<(&'static str, Vec<u8>)>) -> FileServer {
        use axum::extract::{ConnectInfo, State};
        use axum::http::{StatusCode, Uri};
        let files: Files = std::sync::Arc::new(files.into_iter().collect());
        let hits: Hits = Default::default();
        let (addr_tx, addr_rx) = mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let state = (files, hits.clone());
        let thread = thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                async fn serve(
                    State((files, hits)): State<(Files, Hits)>,
                    ConnectInfo(from): ConnectInfo<SocketAddr>,
                    uri: Uri,
                ) -> axum::response::Response {
                    use axum::response::IntoResponse;
                    let path = uri.path().to_string();
                    *hits
                        .lock()
                        .unwrap()
                        .entry((from.ip(), path.clone()))
                        .or_default() += 1;
                    match files.get(path.as_str()) {
                        Some(bytes) => {
                            ([("content-type", "image/png")], bytes.clone()).into_response()
                        }
                        None => StatusCode::NOT_FOUND.into_response(),
                    }
                }
                let app = axum::Router::new()
                    .fallback(serve)
                    .with_state(state)
                    .into_make_service_with_connect_info::<SocketAddr>();
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        FileServer {
            addr: addr_rx
                .recv_timeout(READY_WITHIN)
                .expect("the file server's address"),
            hits,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT/path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Downloads so far, by source address and path.
    pub fn hits(&self) -> std::collections::HashMap<(std::net::IpAddr, String), u32> {
        self.hits.lock().unwrap().clone()
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A PNG of `width` x `height` pixels of one colour.
pub fn solid_png(width: u32, height: u32, rgb: [u8; 3]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let pixels: Vec<u8> = (0..width * height).flat_map(|_| rgb).collect();
    encoder
        .write_header()
        .expect("a PNG header")
        .write_image_data(&pixels)
        .expect("PNG data");
    out
}

/// A PNG's size and the colour of the pixel at (x, y); panics if it is not a PNG.
pub fn png_pixel(bytes: &[u8], x: u32, y: u32) -> ((u32, u32), [u8; 3]) {
    let (size, rgb) = png_rgb(bytes);
    let at = (y as usize * size.0 as usize + x as usize) * 3;
    (size, [rgb[at], rgb[at + 1], rgb[at + 2]])
}

/// A PNG's size and its pixels as RGB; panics if it is not a PNG.
pub fn png_rgb(bytes: &[u8]) -> ((u32, u32), Vec<u8>) {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("a size")];
    let info = reader.next_frame(&mut buf).expect("a PNG frame");
    let channels = info.color_type.samples();
    let mut rgb = Vec::with_capacity((info.width * info.height * 3) as usize);
    for y in 0..info.height as usize {
        let row = &buf[y * info.line_size..];
        for x in 0..info.width as usize {
            let px = &row[x * channels..][..channels];
            match channels {
                1 | 2 => rgb.extend_from_slice(&[px[0]; 3]),
                _ => rgb.extend_from_slice(&px[..3]),
            }
        }
    }
    ((info.width, info.height), rgb)
}
