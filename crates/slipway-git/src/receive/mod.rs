//! A native server side of `git-receive-pack` (the push protocol, v0/v1).
//!
//! [`serve`] runs the whole conversation: ref advertisement, commands, push options, pack
//! (indexed while it streams in, into a quarantine object directory, thin packs completed from
//! the existing objects), object checks ([`fsck`], git's `receive.fsckObjects`), connectivity
//! check, installation of the pack, the [`PushHandler`], and report-status. A pack that fails
//! any check never reaches the repository. See git's `gitprotocol-pack` and
//! `gitprotocol-common` documentation.

mod connectivity;
pub mod fsck;
mod pack;
pub mod pktline;

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use gix::ObjectId;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use crate::Repo;
pub use pack::{PackError, PackStats, StoredPack};
use pktline::{Packet, PktError};

/// The agent string advertised to clients.
pub const AGENT: &str = "slipway/0.1";

/// The capabilities advertised on the first ref line.
fn capabilities() -> String {
    format!(
        "report-status report-status-v2 delete-refs side-band-64k atomic ofs-delta push-options object-format=sha1 agent={AGENT}"
    )
}

/// One ref update command sent by the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefUpdate {
    /// Full ref name, like `refs/heads/main`.
    pub refname: String,
    /// The value the client believes the ref has (all zeros: the ref does not exist).
    pub old: ObjectId,
    /// The value the client wants (all zeros: delete the ref).
    pub new: ObjectId,
}

impl RefUpdate {
    /// The client creates the ref.
    pub fn is_create(&self) -> bool {
        self.old.is_null()
    }

    /// The client deletes the ref.
    pub fn is_delete(&self) -> bool {
        self.new.is_null()
    }

    /// The branch name (`main` for `refs/heads/main`), `None` for other refs.
    pub fn branch(&self) -> Option<&str> {
        self.refname.strip_prefix("refs/heads/")
    }

    /// `old` as an option (`None` for a create), the form [`Repo::update_ref`] expects.
    pub fn old_target(&self) -> Option<ObjectId> {
        (!self.old.is_null()).then_some(self.old)
    }

    /// `new` as an option (`None` for a delete), the form [`Repo::update_ref`] expects.
    pub fn new_target(&self) -> Option<ObjectId> {
        (!self.new.is_null()).then_some(self.new)
    }
}

/// What the client sent, as given to the [`PushHandler`].
#[derive(Debug, Clone, Default)]
pub struct Push {
    /// The updates that passed the checks (ref name, connectivity), in the client's order.
    pub updates: Vec<RefUpdate>,
    /// Push options (`git push -o ...`), in order.
    pub options: Vec<String>,
    /// The client asked for an atomic push (all updates succeed or none).
    pub atomic: bool,
}

/// Sends progress text to the pusher (side-band channel 2; the client shows it as `remote: ...`).
/// Dropped silently when the client did not negotiate `side-band-64k`.
#[derive(Clone, Debug)]
pub struct Progress {
    tx: Option<mpsc::UnboundedSender<Vec<u8>>>,
}

impl Progress {
    /// A progress sink that discards everything.
    pub fn disabled() -> Progress {
        Progress { tx: None }
    }

    /// Sends `text` followed by a newline.
    pub fn line(&self, text: &str) {
        let mut bytes = Vec::with_capacity(text.len() + 1);
        bytes.extend_from_slice(text.as_bytes());
        bytes.push(b'\n');
        self.raw(&bytes);
    }

    /// Sends bytes as they are (use `\r` to redraw a line, `\n` to end one).
    pub fn raw(&self, bytes: &[u8]) {
        if let Some(tx) = &self.tx {
            if !bytes.is_empty() {
                let _ = tx.send(bytes.to_vec());
            }
        }
    }
}

/// Decides every update after the pack was stored and connectivity-checked.
///
/// The handler itself moves the refs it accepts (with [`Repo::update_ref`], compare-and-swap on
/// [`RefUpdate::old_target`]), because Slipway moves a branch only after that branch's deploy
/// succeeded. It returns one result per update of [`Push::updates`], in the same order:
/// `Ok(())` or `Err(reason)`; the reason goes to the client as `ng <ref> <reason>`.
pub trait PushHandler: Send + Sync {
    /// Handles the push; progress goes to the pusher as it is produced.
    fn handle(
        &self,
        repo: &Repo,
        push: &Push,
        progress: Progress,
    ) -> impl Future<Output = Vec<Result<(), String>>> + Send;
}

/// Limits of one push. Defaults, and the environment variables [`Limits::from_env`] reads:
///
/// | limit | default | variable |
/// |---|---|---|
/// | pack size | 2 GiB | `SLIPWAY_MAX_PACK_BYTES` |
/// | object size (after inflating and applying deltas: bounds delta and zlib bombs) | 256 MiB | `SLIPWAY_MAX_OBJECT_BYTES` |
/// | ref updates (and push options) per push | 1000 | `SLIPWAY_MAX_REFS_PER_PUSH` |
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest pack accepted, in bytes.
    pub max_pack_bytes: u64,
    /// Most ref update commands (and most push options) in one push.
    pub max_refs: usize,
    /// A keepalive goes to the client when nothing was sent for this long while the
    /// connectivity check or the handler run (default 5 s).
    pub keepalive: Duration,
    /// Largest single object (or delta result, or delta base) the pack indexer allocates, in
    /// bytes. A pack holding a bigger one is refused.
    pub max_object_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_pack_bytes: 2 * 1024 * 1024 * 1024,
            max_refs: 1000,
            keepalive: Duration::from_secs(5),
            max_object_bytes: 256 * 1024 * 1024,
        }
    }
}

impl Limits {
    /// The defaults, overridden by the `SLIPWAY_MAX_*` environment variables (see the table
    /// above) where they are set to a positive integer. Invalid values are ignored with a warning.
    pub fn from_env() -> Limits {
        let mut limits = Limits::default();
        if let Some(v) = env_number("SLIPWAY_MAX_PACK_BYTES") {
            limits.max_pack_bytes = v;
        }
        if let Some(v) = env_number("SLIPWAY_MAX_OBJECT_BYTES") {
            limits.max_object_bytes = usize::try_from(v).unwrap_or(usize::MAX);
        }
        if let Some(v) = env_number("SLIPWAY_MAX_REFS_PER_PUSH") {
            limits.max_refs = usize::try_from(v).unwrap_or(usize::MAX);
        }
        limits
    }
}

/// A positive integer from the environment variable `name`; `None` when unset or invalid.
pub fn env_number(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    match value.trim().parse::<u64>() {
        Ok(v) if v > 0 => Some(v),
        _ => {
            tracing::warn!("ignoring {name}={value:?}: expected a positive integer");
            None
        }
    }
}

/// The outcome of a conversation that got as far as the report.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Every update the client sent, with its result (`Err` carries the reason sent as `ng`).
    pub updates: Vec<(RefUpdate, Result<(), String>)>,
    /// The options the client sent.
    pub options: Vec<String>,
    /// The stored pack, if one was sent.
    pub pack: Option<PackStats>,
    /// The report reached the client (false: the client went away while the handler ran).
    pub reported: bool,
}

/// Errors that end a receive-pack conversation early.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    /// Reading a pkt-line failed (client gone, bad framing).
    #[error(transparent)]
    Pkt(#[from] PktError),
    /// The client sent something that is not the push protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// More ref update commands or options than [`Limits::max_refs`].
    #[error("too many ref updates or push options (limit {0})")]
    TooManyRefs(usize),
    /// The pack was not stored (the client got `unpack <reason>` if it was still there).
    #[error("pack not stored: {0}")]
    Pack(#[from] pack::PackError),
    /// Writing to the client failed.
    #[error("cannot write to the client: {0}")]
    Write(std::io::Error),
    /// Reading the repository failed.
    #[error(transparent)]
    Git(#[from] crate::GitError),
    /// A blocking task panicked or was cancelled.
    #[error("internal task failed: {0}")]
    Task(String),
}

/// Capabilities the client asked for.
#[derive(Debug, Default, Clone)]
struct ClientCaps {
    report_status: bool,
    side_band: bool,
    atomic: bool,
    push_options: bool,
}

impl ClientCaps {
    fn parse(caps: &str) -> Result<ClientCaps, ReceiveError> {
        let mut out = ClientCaps::default();
        for cap in caps.split(' ').filter(|c| !c.is_empty()) {
            match cap {
                "report-status" | "report-status-v2" => out.report_status = true,
                "side-band-64k" => out.side_band = true,
                "atomic" => out.atomic = true,
                "push-options" => out.push_options = true,
                "object-format=sha1" => {}
                c if c.starts_with("object-format=") => {
                    return Err(ReceiveError::Protocol(format!("unsupported {c}")));
                }
                _ => {}
            }
        }
        Ok(out)
    }
}

/// The connection to the client: writes plain or side-band data and remembers a broken pipe.
struct Conn<W> {
    output: W,
    side_band: bool,
    broken: bool,
}

impl<W: AsyncWrite + Unpin> Conn<W> {
    /// Writes bytes; after a failure, later writes are skipped.
    async fn write(&mut self, bytes: &[u8]) {
        if self.broken {
            return;
        }
        if let Err(e) = pktline::send(&mut self.output, bytes).await {
            tracing::debug!("client connection broken: {e}");
            self.broken = true;
        }
    }

    /// Sends progress on band 2 (only with side-band).
    async fn progress(&mut self, bytes: &[u8]) {
        if self.side_band {
            let mut out = Vec::with_capacity(bytes.len() + 16);
            pktline::encode_band(2, bytes, &mut out);
            self.write(&out).await;
        }
    }

    async fn keepalive(&mut self) {
        if self.side_band {
            self.write(pktline::KEEPALIVE).await;
        }
    }
}

/// Runs the whole receive-pack conversation on (`input`, `output`): advertisement, commands,
/// push options, pack, connectivity check, handler, report-status.
///
/// Returns `Ok` when the conversation ended normally, including when every update was
/// refused (see [`Summary::updates`]), and when the client had nothing to push. Returns `Err`
/// when the client broke the protocol, went away before the pack was complete, or the pack was
/// invalid (the repository is then unchanged).
pub async fn serve<R, W, H>(
    repo: &Repo,
    input: R,
    output: W,
    handler: &H,
    limits: &Limits,
) -> Result<Summary, ReceiveError>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
    H: PushHandler,
{
    let mut input = tokio::io::BufReader::with_capacity(64 * 1024, input);
    let mut conn = Conn {
        output,
        side_band: false,
        broken: false,
    };

    // 1. Ref advertisement.
    let refs = repo.refs()?;
    let advertisement = advertisement(&refs);
    pktline::send(&mut conn.output, &advertisement)
        .await
        .map_err(ReceiveError::Write)?;

    // 2. Commands.
    let (updates, caps) = read_commands(&mut input, limits.max_refs).await?;
    if updates.is_empty() {
        tracing::debug!("client had nothing to push");
        return Ok(Summary {
            reported: true,
            ..Summary::default()
        });
    }
    conn.side_band = caps.side_band;
    let options = if caps.push_options {
        read_options(&mut input, limits.max_refs).await?
    } else {
        Vec::new()
    };
    tracing::info!(repo = %repo.path().display(), updates = updates.len(), "push received");

    // 3. Pack, into a quarantine.
    let mut stored = None;
    if updates.iter().any(|u| !u.is_delete()) {
        match pack::receive(
            repo,
            &mut input,
            limits.max_pack_bytes,
            limits.max_object_bytes,
        )
        .await
        {
            Ok(s) => stored = Some(s),
            Err(err) => {
                tracing::warn!(repo = %repo.path().display(), "pack refused: {err}");
                refuse_pack(&mut conn, &caps, &updates, &err).await;
                return Err(err.into());
            }
        }
    }
    let stats = stored.as_ref().map(|s| s.stats);

    // 4. Checks: names, duplicates, stale old values; then (on a blocking thread, against the
    //    quarantine) the objects themselves and connectivity.
    let mut results: Vec<Option<Result<(), String>>> = vec![None; updates.len()];
    let mut seen_names = HashSet::new();
    let current: std::collections::HashMap<&str, ObjectId> =
        refs.iter().map(|(name, id)| (name.as_str(), *id)).collect();
    for (i, update) in updates.iter().enumerate() {
        if let Err(reason) = check_refname(&update.refname) {
            results[i] = Some(Err(reason));
        } else if !seen_names.insert(update.refname.as_str()) {
            results[i] = Some(Err("duplicate update of the same ref".into()));
        } else if current.get(update.refname.as_str()).copied() != update.old_target() {
            results[i] = Some(Err("stale info (the ref moved; fetch first)".into()));
        }
    }
    let to_check: Vec<(usize, ObjectId, bool)> = updates
        .iter()
        .enumerate()
        .filter(|(i, u)| results[*i].is_none() && !u.is_delete())
        .map(|(i, u)| (i, u.new, u.branch().is_some()))
        .collect();
    if let Some(pack) = stored {
        let check_repo = repo.clone();
        let existing: Vec<ObjectId> = refs.iter().map(|(_, id)| *id).collect();
        let task = tokio::task::spawn_blocking(move || {
            let outcome = verify(&check_repo, &pack, &existing, &to_check);
            (pack, outcome)
        });
        let (_tx, mut rx) = mpsc::unbounded_channel();
        let joined = drive(task, &mut conn, &mut rx, limits.keepalive).await;
        let (pack, checked) = joined.map_err(|e| ReceiveError::Task(e.to_string()))?;
        let checked = match checked {
            Ok(checked) => checked,
            Err(err) => {
                tracing::warn!(repo = %repo.path().display(), "pack refused: {err}");
                refuse_pack(&mut conn, &caps, &updates, &err).await;
                return Err(err.into());
            }
        };
        for (i, res) in checked {
            if let Err(reason) = res {
                results[i] = Some(Err(reason));
            }
        }
        let atomic_failed = caps.atomic && results.iter().any(|r| matches!(r, Some(Err(_))));
        if results.iter().any(Option::is_none) && !atomic_failed {
            let install_repo = repo.clone();
            tokio::task::spawn_blocking(move || pack.install(&install_repo))
                .await
                .map_err(|e| ReceiveError::Task(e.to_string()))?
                .map_err(|e| {
                    ReceiveError::Pack(PackError::Invalid(format!("cannot store the pack: {e}")))
                })?;
        }
    }
    if caps.atomic && results.iter().any(|r| matches!(r, Some(Err(_)))) {
        for r in results.iter_mut().filter(|r| r.is_none()) {
            *r = Some(Err("atomic push failed".into()));
        }
    }

    // 5. The handler decides the rest.
    let accepted: Vec<usize> = (0..updates.len())
        .filter(|i| results[*i].is_none())
        .collect();
    if !accepted.is_empty() {
        let push = Push {
            updates: accepted.iter().map(|i| updates[*i].clone()).collect(),
            options: options.clone(),
            atomic: caps.atomic,
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        let progress = Progress {
            tx: caps.side_band.then_some(tx),
        };
        let decided = drive(
            handler.handle(repo, &push, progress),
            &mut conn,
            &mut rx,
            limits.keepalive,
        )
        .await;
        let mut decided = decided.into_iter();
        for i in accepted {
            results[i] = Some(
                decided
                    .next()
                    .unwrap_or_else(|| Err("internal error: no result for this ref".into())),
            );
        }
    }

    // 6. Report.
    let results: Vec<Result<(), String>> = results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err("internal error: not decided".into())))
        .map(|r| r.map_err(|reason| pack::one_line(&reason)))
        .collect();
    if caps.report_status {
        let report = report("unpack ok", &updates, &results, conn.side_band);
        conn.write(&report).await;
    } else if conn.side_band {
        conn.write(pktline::FLUSH).await;
    }
    for (update, result) in updates.iter().zip(&results) {
        match result {
            Ok(()) => tracing::info!(refname = %update.refname, new = %update.new, "ref updated"),
            Err(reason) => tracing::info!(refname = %update.refname, "ref refused: {reason}"),
        }
    }
    Ok(Summary {
        updates: updates.into_iter().zip(results).collect(),
        options,
        pack: stats,
        reported: !conn.broken,
    })
}

/// Runs `fut` while forwarding progress from `rx` on band 2 and sending keepalives when nothing
/// was sent for `keepalive`. Write failures do not stop `fut`: it always runs to completion.
async fn drive<F: Future, W: AsyncWrite + Unpin>(
    fut: F,
    conn: &mut Conn<W>,
    rx: &mut mpsc::UnboundedReceiver<Vec<u8>>,
    keepalive: Duration,
) -> F::Output {
    tokio::pin!(fut);
    let mut last = tokio::time::Instant::now();
    let mut rx_open = true;
    let output = loop {
        tokio::select! {
            biased;
            out = &mut fut => break out,
            msg = rx.recv(), if rx_open => match msg {
                Some(bytes) => {
                    conn.progress(&bytes).await;
                    last = tokio::time::Instant::now();
                }
                None => rx_open = false,
            },
            _ = tokio::time::sleep_until(last + keepalive), if conn.side_band && !conn.broken => {
                conn.keepalive().await;
                last = tokio::time::Instant::now();
            }
        }
    };
    while let Ok(bytes) = rx.try_recv() {
        conn.progress(&bytes).await;
    }
    output
}

/// The ref advertisement: refs/heads/* and refs/tags/*, capabilities on the first line, flush.
fn advertisement(refs: &[(String, ObjectId)]) -> Vec<u8> {
    let caps = capabilities();
    let mut out = Vec::new();
    let mut first = true;
    for (name, id) in refs
        .iter()
        .filter(|(n, _)| n.starts_with("refs/heads/") || n.starts_with("refs/tags/"))
    {
        let line = if first {
            format!("{id} {name}\0{caps}\n")
        } else {
            format!("{id} {name}\n")
        };
        first = false;
        pktline::encode(line.as_bytes(), &mut out);
    }
    if first {
        let line = format!(
            "{} capabilities^{{}}\0{caps}\n",
            ObjectId::null(gix::hash::Kind::Sha1)
        );
        pktline::encode(line.as_bytes(), &mut out);
    }
    out.extend_from_slice(pktline::FLUSH);
    out
}

/// Reads the command list up to the flush. An empty list (flush or end of stream right away)
/// means the client has nothing to push.
async fn read_commands<R: AsyncRead + Unpin>(
    input: &mut R,
    max_refs: usize,
) -> Result<(Vec<RefUpdate>, ClientCaps), ReceiveError> {
    let mut updates = Vec::new();
    let mut caps = None;
    loop {
        let data = match pktline::read_packet(input).await {
            Ok(Packet::Flush) => break,
            Err(PktError::Eof) if updates.is_empty() && caps.is_none() => break,
            Ok(Packet::Delim) => {
                return Err(ReceiveError::Protocol("unexpected delim packet".into()))
            }
            Ok(Packet::Data(data)) => data,
            Err(e) => return Err(e.into()),
        };
        let data = data.strip_suffix(b"\n").unwrap_or(&data);
        let (line, cap_text) = match data.iter().position(|b| *b == 0) {
            Some(nul) => (&data[..nul], Some(&data[nul + 1..])),
            None => (data, None),
        };
        if let Some(cap_text) = cap_text {
            if caps.is_some() {
                return Err(ReceiveError::Protocol("capabilities sent twice".into()));
            }
            caps = Some(ClientCaps::parse(&String::from_utf8_lossy(cap_text))?);
        }
        let line = std::str::from_utf8(line)
            .map_err(|_| ReceiveError::Protocol("command is not UTF-8".into()))?;
        if line.starts_with("shallow ") {
            continue;
        }
        if line.starts_with("push-cert") {
            return Err(ReceiveError::Protocol(
                "signed pushes are not supported".into(),
            ));
        }
        updates.push(parse_command(line)?);
        if updates.len() > max_refs {
            return Err(ReceiveError::TooManyRefs(max_refs));
        }
    }
    Ok((updates, caps.unwrap_or_default()))
}

/// Parses `<old-oid> SP <new-oid> SP <refname>`.
fn parse_command(line: &str) -> Result<RefUpdate, ReceiveError> {
    let bad = || ReceiveError::Protocol(format!("bad command {:?}", pack::one_line(line)));
    let mut parts = line.splitn(3, ' ');
    let (Some(old), Some(new), Some(refname)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let parse = |hex: &str| -> Result<ObjectId, ReceiveError> {
        if hex.len() != 40 {
            return Err(bad());
        }
        ObjectId::from_hex(hex.as_bytes()).map_err(|_| bad())
    };
    let update = RefUpdate {
        refname: refname.to_string(),
        old: parse(old)?,
        new: parse(new)?,
    };
    if update.refname.is_empty() {
        return Err(bad());
    }
    Ok(update)
}

/// Reads push options up to the flush.
async fn read_options<R: AsyncRead + Unpin>(
    input: &mut R,
    max: usize,
) -> Result<Vec<String>, ReceiveError> {
    let mut options = Vec::new();
    loop {
        match pktline::read_packet(input).await? {
            Packet::Flush => return Ok(options),
            Packet::Delim => return Err(ReceiveError::Protocol("unexpected delim packet".into())),
            Packet::Data(data) => {
                let data = data.strip_suffix(b"\n").unwrap_or(&data);
                options.push(String::from_utf8_lossy(data).into_owned());
                if options.len() > max {
                    return Err(ReceiveError::TooManyRefs(max));
                }
            }
        }
    }
}

/// Refuses ref names that are invalid or outside refs/heads/ and refs/tags/.
fn check_refname(name: &str) -> Result<(), String> {
    let funny = || Err("funny refname".to_string());
    if gix::validate::reference::name(name.into()).is_err() {
        return funny();
    }
    if let Some(branch) = name.strip_prefix("refs/heads/") {
        if branch.is_empty() || branch == "HEAD" {
            return funny();
        }
        return Ok(());
    }
    if let Some(tag) = name.strip_prefix("refs/tags/") {
        if tag.is_empty() {
            return funny();
        }
        return Ok(());
    }
    Err("only refs/heads/* and refs/tags/* can be pushed".into())
}

/// Refuses the pack: every update gets `ng ... unpacker error` after `unpack <reason>`.
async fn refuse_pack<W: AsyncWrite + Unpin>(
    conn: &mut Conn<W>,
    caps: &ClientCaps,
    updates: &[RefUpdate],
    err: &PackError,
) {
    if caps.report_status {
        let reason = pack::one_line(&err.to_string());
        let results: Vec<_> = updates
            .iter()
            .map(|_| Err("unpacker error".to_string()))
            .collect();
        let report = report(
            &format!("unpack {reason}"),
            updates,
            &results,
            conn.side_band,
        );
        conn.write(&report).await;
    }
}

/// The result of each checked update: (index in the push, accepted or the reason).
type Checked = Vec<(usize, Result<(), String>)>;

/// Checks the quarantined pack: every object ([`fsck::check_pack`], failing the whole pack),
/// then connectivity of each update ([`check_connectivity`]).
fn verify(
    repo: &Repo,
    pack: &StoredPack,
    existing: &[ObjectId],
    tips: &[(usize, ObjectId, bool)],
) -> Result<Checked, PackError> {
    let quarantined = pack.repo(repo).map_err(PackError::Invalid)?;
    if let Some(index) = pack.index_path() {
        fsck::check_pack(&quarantined, index).map_err(|e| PackError::Invalid(e.to_string()))?;
    }
    Ok(check_connectivity(&quarantined, existing, tips))
}

/// Checks each (index, new tip, is a branch): branches must point at commits, and everything
/// reachable must exist.
fn check_connectivity(
    repo: &gix::Repository,
    existing: &[ObjectId],
    tips: &[(usize, ObjectId, bool)],
) -> Vec<(usize, Result<(), String>)> {
    let complete = connectivity::complete_tips(repo, existing.iter().copied());
    let mut seen = HashSet::new();
    tips.iter()
        .map(|(i, tip, is_branch)| {
            if *is_branch {
                match repo.find_header(*tip) {
                    Ok(header) if header.kind() != gix::object::Kind::Commit => {
                        return (*i, Err("a branch must point at a commit".to_string()));
                    }
                    Ok(_) => {}
                    Err(_) => return (*i, Err(connectivity::MISSING.to_string())),
                }
            }
            (*i, connectivity::check(repo, *tip, &complete, &mut seen))
        })
        .collect()
}

/// The report-status block (`unpack ...`, `ok`/`ng` per ref, flush), wrapped in band 1 with
/// side-band and followed by a flush.
fn report(
    unpack: &str,
    updates: &[RefUpdate],
    results: &[Result<(), String>],
    side_band: bool,
) -> Vec<u8> {
    let mut block = Vec::new();
    pktline::encode(format!("{unpack}\n").as_bytes(), &mut block);
    for (update, result) in updates.iter().zip(results) {
        let line = match result {
            Ok(()) => format!("ok {}\n", update.refname),
            Err(reason) => format!("ng {} {}\n", update.refname, reason),
        };
        let line = line.as_bytes();
        pktline::encode(&line[..line.len().min(pktline::MAX_DATA_LEN)], &mut block);
    }
    block.extend_from_slice(pktline::FLUSH);
    if !side_band {
        return block;
    }
    let mut out = Vec::new();
    pktline::encode_band(1, &block, &mut out);
    out.extend_from_slice(pktline::FLUSH);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refnames() {
        assert!(check_refname("refs/heads/main").is_ok());
        assert!(check_refname("refs/heads/feature/x").is_ok());
        assert!(check_refname("refs/tags/v1.0").is_ok());
        for bad in [
            "refs/heads/a..b",
            "refs/heads/",
            "refs/heads/HEAD",
            "refs/heads/x.lock",
            "refs/heads/a b",
            "refs/heads/a~1",
            "refs/heads/@{x}",
            "refs/notes/commits",
            "HEAD",
            "refs/heads//x",
        ] {
            assert!(check_refname(bad).is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn commands() {
        let ok = parse_command(&format!(
            "{} {} refs/heads/main",
            "0".repeat(40),
            "a".repeat(40)
        ))
        .unwrap();
        assert!(ok.is_create() && !ok.is_delete());
        assert_eq!(ok.branch(), Some("main"));
        for bad in [
            "",
            "x y z",
            &format!("{} {}", "0".repeat(40), "a".repeat(40)),
            &format!("{} {} ", "0".repeat(40), "g".repeat(40)),
        ] {
            assert!(parse_command(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn empty_advertisement() {
        let adv = advertisement(&[]);
        let text = String::from_utf8_lossy(&adv);
        assert!(text.starts_with(&format!(
            "{:04x}0000000000000000000000000000000000000000 capabilities^{{}}\0",
            adv.len() - 4
        )));
        assert!(text.ends_with("\n0000"));
    }

    #[test]
    fn report_with_side_band() {
        let updates = vec![RefUpdate {
            refname: "refs/heads/main".into(),
            old: ObjectId::null(gix::hash::Kind::Sha1),
            new: ObjectId::null(gix::hash::Kind::Sha1),
        }];
        let plain = report("unpack ok", &updates, &[Err("nope".into())], false);
        assert_eq!(plain, b"000eunpack ok\n001cng refs/heads/main nope\n0000");
        let banded = report("unpack ok", &updates, &[Ok(())], true);
        assert!(banded.starts_with(b"002e\x01000eunpack ok\n0017ok refs/heads/main\n0000"));
        assert!(banded.ends_with(b"0000"));
    }
}
