//! An app's `web.locations`, compiled for the router ([`WebSite`]), and the decision for
//! one request ([`WebSite::resolve`]): a static file (or the router's 304/206/416/404/403
//! answer) or on to the app.
//!
//! Platform.sh's order: the location with the longest matching prefix; its first rule
//! whose regular expression matches the decoded path overrides `allow`, `expires`,
//! `passthru`, `scripts` and `headers`; a `.php` file with `scripts` goes to the app; an
//! existing, allowed file under `root` (or a folder's `index` file) is served; a missing
//! or disallowed one goes to `passthru`, or gets 404 (missing) / 403 (disallowed).
//!
//! Paths never leave the root: the request path is percent-decoded once (a bad escape, a
//! NUL, bytes that are not UTF-8 (overlong forms included) or a `..` segment: 400), and
//! files are opened with `openat2(RESOLVE_BENEATH)` from the root's descriptor, so no
//! symbolic link leads out of it either.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Arc;

use fancy_regex::Regex;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, StatusCode};

use crate::fastcgi::ScriptCall;
use crate::file_cache::OpenFileCache;
use crate::files::{self, Beneath, Opened, StaticAnswer};
use crate::gzip_store::GzipStore;
use crate::routes::RouteError;
use crate::site::{Expires, Passthru, Site, SiteMount};
use crate::table::path_matches;

use slipway_config::web_locations::rule_regex;
/// Largest compiled size of one rule's regular expression: the config check's, which
/// compiles rules with the same [`rule_regex`] (and its backtracking limit).
pub use slipway_config::web_locations::MAX_RULE_REGEX_SIZE;

/// An app's locations, compiled: roots opened, regular expressions built.
#[derive(Debug)]
pub(crate) struct WebSite {
    tag: Box<str>,
    /// The app is PHP-FPM: requests for the app run a script over FastCGI.
    fastcgi: bool,
    /// The app runs no web process ([`Site::no_web_process`]): nothing goes to it.
    no_web_process: bool,
    /// Longest prefix first.
    locations: Box<[WebLocation]>,
    /// The router's gzipped copies of static files ([`crate::gzip_store`]), if any.
    gzip_store: Option<Arc<GzipStore>>,
}

#[derive(Debug)]
struct WebLocation {
    prefix: Box<str>,
    /// The root folder; `None`: no static files (no `root`, or a root that does not
    /// exist in this release).
    root: Option<RootDir>,
    /// The root as configured (normalized, relative to the app's folder).
    root_path: Option<String>,
    passthru: Passthru,
    index: Vec<String>,
    expires: Expires,
    allow: bool,
    scripts: bool,
    headers: Vec<(HeaderName, HeaderValue)>,
    rules: Vec<WebRule>,
}

/// Where a location's files are.
#[derive(Debug)]
enum RootDir {
    /// A folder of the release's slug (`O_PATH`), opened beneath the app's folder once,
    /// and the open-file cache of the files beneath it (the slug is read-only), unless
    /// the router runs without.
    Slug(OwnedFd, Option<Box<OpenFileCache>>),
    /// A folder of a persistent mount: opened at each request (the volume may be
    /// mounted again meanwhile; an open descriptor would keep serving the old one or
    /// keep it busy), `rel` beneath the volume's `files` folder.
    Mount {
        /// The volume's `files` folder on the host.
        volume_files: std::path::PathBuf,
        /// The mount's folder and the rest of the root beneath it.
        rel: String,
    },
}

impl RootDir {
    /// The root for `root` (normalized, relative to the app): the longest mount it is or
    /// is beneath, else the slug's folder opened beneath `app_dir` (`None` if missing).
    fn of(
        root: &str,
        app_dir: &OwnedFd,
        mounts: &[SiteMount],
        cache: bool,
    ) -> std::io::Result<Option<Self>> {
        let mount = mounts
            .iter()
            .filter(|m| {
                root == m.path
                    || (root.starts_with(m.path.as_str())
                        && root.as_bytes().get(m.path.len()) == Some(&b'/'))
            })
            .max_by_key(|m| m.path.len());
        if let Some(m) = mount {
            let below = root[m.path.len()..].trim_start_matches('/');
            let rel = if below.is_empty() {
                m.folder.clone()
            } else {
                format!("{}/{below}", m.folder)
            };
            return Ok(Some(RootDir::Mount {
                volume_files: m.volume_files.clone(),
                rel,
            }));
        }
        let rel = if root.is_empty() { "." } else { root };
        Ok(files::open_dir_beneath(app_dir, rel)?
            .map(|dir| RootDir::Slug(dir, cache.then(Box::default))))
    }

    /// The folder to open files beneath, now (a mount's is opened into `opened`, and
    /// has no cache); `None` if it does not exist (a mount not made yet, or a volume not
    /// mounted).
    fn open<'a>(&'a self, opened: &'a mut Option<OwnedFd>) -> Option<Beneath<'a>> {
        match self {
            RootDir::Slug(dir, cache) => Some(Beneath {
                dir,
                cache: cache.as_deref(),
                read_only: true,
            }),
            RootDir::Mount { volume_files, rel } => {
                let files = files::open_dir(volume_files).ok()?;
                let dir = files::open_dir_beneath(&files, rel).ok()??;
                Some(Beneath {
                    dir: opened.insert(dir),
                    cache: None,
                    read_only: false,
                })
            }
        }
    }
}

#[derive(Debug)]
struct WebRule {
    regex: Regex,
    allow: Option<bool>,
    expires: Option<Expires>,
    passthru: Option<Passthru>,
    scripts: Option<bool>,
    headers: Option<Vec<(HeaderName, HeaderValue)>>,
}

/// What a request asks, as far as static files care.
#[derive(Debug, Default)]
pub(crate) struct Ask<'a> {
    /// The path as sent (percent-encoded), without the query.
    pub(crate) path: &'a str,
    /// The query, if any.
    pub(crate) query: Option<&'a str>,
    /// `GET` or `HEAD` (the only methods served from files).
    pub(crate) readable: bool,
    /// `HEAD`: the answer has no body.
    pub(crate) head: bool,
    pub(crate) if_none_match: Option<&'a [u8]>,
    pub(crate) if_modified_since: Option<&'a [u8]>,
    pub(crate) range: Option<&'a [u8]>,
    pub(crate) if_range: Option<&'a [u8]>,
    pub(crate) accept_encoding: Option<&'a [u8]>,
}

impl<'a> Ask<'a> {
    /// The facts of a request with this method, path, query and headers.
    pub(crate) fn of(
        method: &Method,
        path: &'a str,
        query: Option<&'a str>,
        headers: &'a hyper::HeaderMap,
    ) -> Ask<'a> {
        let get = |name: hyper::header::HeaderName| headers.get(name).map(HeaderValue::as_bytes);
        use hyper::header;
        Ask {
            path,
            query,
            readable: method == Method::GET || method == Method::HEAD,
            head: method == Method::HEAD,
            if_none_match: get(header::IF_NONE_MATCH),
            if_modified_since: get(header::IF_MODIFIED_SINCE),
            range: get(header::RANGE),
            if_range: get(header::IF_RANGE),
            accept_encoding: get(header::ACCEPT_ENCODING),
        }
    }
}

/// What becomes of a request on an app with locations.
#[derive(Debug)]
pub(crate) enum Resolved {
    /// The app answers it, as requested.
    Forward,
    /// The router answers it: a file, or one of its own short answers.
    Answer(StaticAnswer),
    /// The app (PHP-FPM) runs this script, over FastCGI.
    Script(ScriptCall),
}

/// The settings that apply to one request: the location's, overridden by its rule.
pub(crate) struct Effective<'s> {
    pub(crate) expires: Expires,
    pub(crate) headers: &'s [(HeaderName, HeaderValue)],
    pub(crate) tag: &'s str,
    /// The router's gzipped copies of static files, if any.
    pub(crate) gzip_store: Option<&'s GzipStore>,
}

impl WebSite {
    /// Compile `site` for the router: open each location's root beneath the app's folder
    /// (with an open-file cache for slug roots if `cache`) and build the rules' regular
    /// expressions.
    pub(crate) fn compile(app: &str, site: &Site, cache: bool) -> Result<WebSite, RouteError> {
        let bad = |prefix: &str, why: String| RouteError::BadLocation {
            app: app.to_string(),
            prefix: prefix.to_string(),
            why,
        };
        let app_dir = files::open_dir(&site.app_dir)
            .map_err(|e| bad("/", format!("{}: {e}", site.app_dir.display())))?;
        let mut locations = Vec::with_capacity(site.locations.len());
        for loc in &site.locations {
            if !loc.prefix.starts_with('/') {
                return Err(bad(&loc.prefix, "the path does not start with /".into()));
            }
            let root = match &loc.root {
                None => None,
                Some(root) => {
                    if Path::new(root).is_absolute()
                        || root.split('/').any(|s| s == ".." || s == ".")
                    {
                        return Err(bad(&loc.prefix, format!("root `{root}` leaves the app")));
                    }
                    match RootDir::of(root, &app_dir, &site.mounts, cache) {
                        Ok(dir) => dir,
                        Err(e) => return Err(bad(&loc.prefix, format!("root `{root}`: {e}"))),
                    }
                }
            };
            let headers = compile_headers(&loc.headers).map_err(|why| bad(&loc.prefix, why))?;
            let mut rules = Vec::with_capacity(loc.rules.len());
            for rule in &loc.rules {
                let regex = rule_regex(&rule.pattern)
                    .map_err(|why| bad(&loc.prefix, format!("rule: {why}")))?;
                let headers = match &rule.headers {
                    Some(h) => Some(compile_headers(h).map_err(|why| bad(&loc.prefix, why))?),
                    None => None,
                };
                rules.push(WebRule {
                    regex,
                    allow: rule.allow,
                    expires: rule.expires,
                    passthru: rule.passthru.clone(),
                    scripts: rule.scripts,
                    headers,
                });
            }
            locations.push(WebLocation {
                prefix: loc.prefix.clone().into_boxed_str(),
                root,
                root_path: loc.root.clone(),
                passthru: loc.passthru.clone(),
                index: loc.index.clone(),
                expires: loc.expires,
                allow: loc.allow,
                scripts: loc.scripts,
                headers,
                rules,
            });
        }
        // Longest prefix first; a stable sort keeps the given order otherwise.
        locations.sort_by_key(|l| std::cmp::Reverse(l.prefix.len()));
        Ok(WebSite {
            tag: site.tag.clone().into_boxed_str(),
            fastcgi: site.fastcgi,
            no_web_process: site.no_web_process,
            locations: locations.into_boxed_slice(),
            gzip_store: None,
        })
    }

    /// This site, with its text files of mounts and over [`files::GZIP_MAX`] answered
    /// from gzipped copies in `store` (none: compressed at each request).
    pub(crate) fn with_gzip_store(mut self, store: Option<Arc<GzipStore>>) -> WebSite {
        self.gzip_store = store;
        self
    }

    /// Decide what becomes of the request `ask`. Reads the file system (a few system
    /// calls on the page cache; slugs are local and unpacked).
    pub(crate) fn resolve(&self, ask: &Ask<'_>) -> Resolved {
        self.resolve_path(ask, ask.path, false)
    }

    /// [`Self::resolve`] for the path `asked` (percent-encoded): the request's, or the
    /// `passthru` file of a static site it was rewritten to (`rewritten`: no further
    /// passthru, a missing file is 404).
    fn resolve_path(&self, ask: &Ask<'_>, asked: &str, rewritten: bool) -> Resolved {
        let Ok(path) = decode_path(asked) else {
            return Resolved::Answer(StaticAnswer::page(
                StatusCode::BAD_REQUEST,
                "400 Bad Request: the path is not valid.\n",
            ));
        };
        let Some(loc) = self
            .locations
            .iter()
            .find(|l| path_matches(&l.prefix, &path.decoded))
        else {
            return if self.fastcgi || self.no_web_process {
                Resolved::Answer(StaticAnswer::status_page(StatusCode::NOT_FOUND))
            } else {
                Resolved::Forward
            };
        };
        // A match over the backtracking limit counts as no match.
        let rule = loc
            .rules
            .iter()
            .find(|r| r.regex.is_match(&path.decoded).unwrap_or(false));
        let passthru = if rewritten {
            &Passthru::Off
        } else {
            rule.and_then(|r| r.passthru.as_ref())
                .unwrap_or(&loc.passthru)
        };
        let allow = rule.and_then(|r| r.allow).unwrap_or(loc.allow);
        // A static site runs no scripts: its `.php` files are files.
        let scripts = !self.no_web_process && rule.and_then(|r| r.scripts).unwrap_or(loc.scripts);
        let effective = Effective {
            expires: rule.and_then(|r| r.expires).unwrap_or(loc.expires),
            headers: rule
                .and_then(|r| r.headers.as_deref())
                .unwrap_or(&loc.headers),
            tag: &self.tag,
            gzip_store: self.gzip_store.as_deref(),
        };
        let elsewhere = |status: StatusCode| match passthru {
            Passthru::Off => Resolved::Answer(StaticAnswer::status_page(status)),
            Passthru::App | Passthru::Script(_) => self.to_app(ask, passthru),
        };
        let rel = relative_to(&loc.prefix, &path.decoded);
        if scripts && is_script(rel) && loc.root_path.is_some() {
            return self.run_script(loc, &path.decoded, rel);
        }
        if !ask.readable {
            return match passthru {
                Passthru::Off => Resolved::Answer(StaticAnswer::not_allowed()),
                _ => self.to_app(ask, passthru),
            };
        }
        let mut opened = None;
        let Some(root) = loc.root.as_ref().and_then(|r| r.open(&mut opened)) else {
            return elsewhere(StatusCode::NOT_FOUND);
        };
        match root.open(if rel.is_empty() { "." } else { rel }) {
            Opened::File(file) => {
                if !allow {
                    return elsewhere(StatusCode::FORBIDDEN);
                }
                Resolved::Answer(files::answer(root, rel, file, ask, &effective))
            }
            Opened::Dir => {
                for index in &loc.index {
                    let candidate = if rel.is_empty() {
                        index.clone()
                    } else {
                        format!("{rel}/{index}")
                    };
                    let Opened::File(file) = root.open(&candidate) else {
                        continue;
                    };
                    if !path.trailing_slash && path.decoded != "/" {
                        return Resolved::Answer(StaticAnswer::to_folder(&path.decoded, ask.query));
                    }
                    if scripts && is_script(index) {
                        let url = format!("{}/{index}", path.decoded.trim_end_matches('/'));
                        return self.run_script(loc, &url, &candidate);
                    }
                    // The index file is served as a request for it would be (nginx's
                    // internal redirect): the rules see its path (`/index.html`), so
                    // `allow: false` with a rule allowing `\.html$` serves a folder's index.
                    let url = format!("{}/{index}", path.decoded.trim_end_matches('/'));
                    let index_rule = loc
                        .rules
                        .iter()
                        .find(|r| r.regex.is_match(&url).unwrap_or(false));
                    if !index_rule.and_then(|r| r.allow).unwrap_or(loc.allow) {
                        return elsewhere(StatusCode::FORBIDDEN);
                    }
                    let effective = Effective {
                        expires: index_rule.and_then(|r| r.expires).unwrap_or(loc.expires),
                        headers: index_rule
                            .and_then(|r| r.headers.as_deref())
                            .unwrap_or(&loc.headers),
                        tag: &self.tag,
                        gzip_store: self.gzip_store.as_deref(),
                    };
                    return Resolved::Answer(files::answer(
                        root, &candidate, file, ask, &effective,
                    ));
                }
                elsewhere(StatusCode::NOT_FOUND)
            }
            Opened::Missing => elsewhere(StatusCode::NOT_FOUND),
        }
    }
}

impl WebSite {
    /// A request that goes to the app through `passthru` (not [`Passthru::Off`]): as it is
    /// (an HTTP app), or, for PHP-FPM, running the passthru script (`passthru: true`
    /// runs `/index.php`), found through the locations like a request for it. A static
    /// site ([`Site::no_web_process`]) has no app: a passthru path is an internal rewrite
    /// to that file (served as a request for it would be, nginx's `try_files $uri
    /// PATH`), `passthru: true` is 404.
    fn to_app(&self, ask: &Ask<'_>, passthru: &Passthru) -> Resolved {
        if self.no_web_process {
            return match passthru {
                Passthru::Script(file) => self.resolve_path(ask, file, true),
                Passthru::App | Passthru::Off => {
                    Resolved::Answer(StaticAnswer::status_page(StatusCode::NOT_FOUND))
                }
            };
        }
        if !self.fastcgi {
            return Resolved::Forward;
        }
        let script = match passthru {
            Passthru::Script(s) => s.as_str(),
            _ => "/index.php",
        };
        let Ok(path) = decode_path(script) else {
            return Resolved::Answer(StaticAnswer::status_page(StatusCode::NOT_FOUND));
        };
        let Some(loc) = self
            .locations
            .iter()
            .find(|l| path_matches(&l.prefix, &path.decoded))
        else {
            return Resolved::Answer(StaticAnswer::status_page(StatusCode::NOT_FOUND));
        };
        let rel = relative_to(&loc.prefix, &path.decoded);
        self.run_script(loc, &path.decoded, rel)
    }

    /// Run the script `rel` (below `loc`'s root, possibly followed by a path:
    /// `index.php/a/b`) requested as the URL path `url`.
    fn run_script(&self, loc: &WebLocation, url: &str, rel: &str) -> Resolved {
        if !self.fastcgi {
            return Resolved::Forward;
        }
        let (file, info) = match rel.find(".php/") {
            Some(i) => rel.split_at(i + 4),
            None => (rel, ""),
        };
        let script_name = url.strip_suffix(info).unwrap_or(url).to_string();
        let root = loc.root_path.as_deref().unwrap_or("");
        let document_root = if root.is_empty() {
            "/app".to_string()
        } else {
            format!("/app/{root}")
        };
        Resolved::Script(ScriptCall {
            script_filename: format!("{document_root}/{file}"),
            document_root,
            script_name,
            path_info: info.to_string(),
        })
    }
}

fn compile_headers(headers: &[(String, String)]) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    headers
        .iter()
        .map(|(name, value)| {
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("`{name}` is not a header name"))?;
            let v = HeaderValue::from_str(value)
                .map_err(|_| format!("the value of header `{name}` is not a header value"))?;
            Ok((n, v))
        })
        .collect()
}

/// Whether the file named `rel` is a script the app runs (`.php`, possibly followed by
/// a path: `/index.php/a/b`).
fn is_script(rel: &str) -> bool {
    rel.ends_with(".php") || rel.contains(".php/")
}

/// `path` (decoded, normalized) below the location `prefix`, without a leading slash.
fn relative_to<'p>(prefix: &str, path: &'p str) -> &'p str {
    path.strip_prefix(prefix)
        .unwrap_or("")
        .trim_start_matches('/')
}

/// A request path, percent-decoded and normalized.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct DecodedPath {
    /// `/` and the segments joined by `/` (no empty or `.` segments).
    pub(crate) decoded: String,
    /// Whether the request path ends in `/` (a folder was asked for).
    pub(crate) trailing_slash: bool,
}

/// Why a request path was refused (answered 400).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct BadPath;

/// Percent-decode `raw` once and normalize it. Refused: a `%` not followed by two hex
/// digits, a NUL, bytes that are not UTF-8 (overlong encodings included), a `..`
/// segment (`%2e%2e` and `..%2f` too, since decoding comes first), a backslash.
pub(crate) fn decode_path(raw: &str) -> Result<DecodedPath, BadPath> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = |c: u8| (c as char).to_digit(16);
            let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(BadPath);
            };
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    if out.contains(&0) || out.contains(&b'\\') || out.first() != Some(&b'/') {
        return Err(BadPath);
    }
    let text = String::from_utf8(out).map_err(|_| BadPath)?;
    let mut decoded = String::with_capacity(text.len());
    for segment in text.split('/') {
        match segment {
            "" | "." => {}
            ".." => return Err(BadPath),
            s => {
                decoded.push('/');
                decoded.push_str(s);
            }
        }
    }
    let trailing_slash = text.ends_with('/');
    if decoded.is_empty() {
        decoded.push('/');
    }
    Ok(DecodedPath {
        decoded,
        trailing_slash,
    })
}

/// The fuzz check of [`decode_path`] and the file answer's field parsers on `data`.
pub(crate) fn check_static_request(data: &[u8]) {
    if let Ok(raw) = std::str::from_utf8(data) {
        if let Ok(path) = decode_path(raw) {
            let p = &path.decoded;
            assert!(p.starts_with('/'), "{raw:?} -> {p:?}");
            assert!(!p.contains('\0') && !p.contains('\\'), "{raw:?} -> {p:?}");
            assert!(p == "/" || !p.ends_with('/'), "{raw:?} -> {p:?}");
            for segment in p.split('/').skip(1) {
                assert!(
                    p == "/" || !matches!(segment, "" | "." | ".."),
                    "{raw:?} -> {p:?}"
                );
            }
        }
    }
    files::check_fields(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_decoded_once_and_traversal_is_refused() {
        let ok = |raw: &str| decode_path(raw).map(|p| p.decoded);
        assert_eq!(ok("/a/b.css"), Ok("/a/b.css".into()));
        assert_eq!(ok("/a//./b%20c"), Ok("/a/b c".into()));
        assert_eq!(ok("/"), Ok("/".into()));
        assert!(decode_path("/a/").unwrap().trailing_slash);
        assert!(!decode_path("/a").unwrap().trailing_slash);
        for bad in [
            "/../etc/passwd",
            "/a/../../etc/passwd",
            "/%2e%2e/etc/passwd",
            "/%2E%2E%2Fetc%2Fpasswd",
            "/..%2fetc/passwd",
            "/.%2e/etc/passwd",
            "/%c0%ae%c0%ae/etc/passwd",
            "/%c0%af..%c0%afetc",
            "/a%00.css",
            "/a%",
            "/a%2",
            "/a%zz",
            "/..\\etc",
            "/%5c..%5cetc",
            "/%252e%252e/x/..",
        ] {
            assert_eq!(decode_path(bad), Err(BadPath), "{bad}");
        }
        // Decoded once: `%252e` is the three characters `%2e`, a plain file name.
        assert_eq!(ok("/%252e%252e/x"), Ok("/%2e%2e/x".into()));
    }

    #[test]
    fn scripts_and_relative_paths() {
        assert!(is_script("index.php"));
        assert!(is_script("index.php/a/b"));
        assert!(!is_script("a.phps"));
        assert_eq!(relative_to("/", "/a/b"), "a/b");
        assert_eq!(relative_to("/static", "/static/a"), "a");
        assert_eq!(relative_to("/static", "/static"), "");
    }
}

#[cfg(test)]
mod site_tests {
    use super::*;
    use crate::files::StaticBody;
    use crate::site::{Location, LocationRule};

    fn status(r: &Resolved) -> Option<StatusCode> {
        match r {
            Resolved::Forward | Resolved::Script(_) => None,
            Resolved::Answer(a) => Some(a.status),
        }
    }

    fn header<'r>(r: &'r Resolved, name: &str) -> Option<&'r str> {
        match r {
            Resolved::Forward | Resolved::Script(_) => None,
            Resolved::Answer(a) => a
                .headers
                .iter()
                .find(|(n, _)| n.as_str() == name)
                .and_then(|(_, v)| v.to_str().ok()),
        }
    }

    fn body(r: Resolved) -> Vec<u8> {
        use std::os::unix::fs::FileExt;
        match r {
            Resolved::Answer(a) => match a.body {
                StaticBody::File { file, offset, len } => {
                    let mut buf = vec![0; len as usize];
                    file.read_exact_at(&mut buf, offset).unwrap();
                    buf
                }
                StaticBody::Text(t) => t.to_vec(),
                StaticBody::Produced(mut p) => {
                    let mut out = Vec::new();
                    while let Some(chunk) = p.next_chunk() {
                        out.extend_from_slice(&chunk.unwrap());
                    }
                    out
                }
                StaticBody::Empty => vec![],
            },
            Resolved::Forward | Resolved::Script(_) => panic!("forwarded"),
        }
    }

    fn get(path: &str) -> Ask<'_> {
        Ask {
            path,
            readable: true,
            ..Ask::default()
        }
    }

    /// An app folder: web/ with files, a secret outside it, a link out of the root.
    fn app() -> (tempfile::TempDir, Site) {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("web/css")).unwrap();
        std::fs::create_dir_all(d.join("web/docs")).unwrap();
        std::fs::create_dir_all(d.join("web/empty")).unwrap();
        std::fs::write(d.join("secret.txt"), "secret").unwrap();
        std::fs::write(d.join("web/index.php"), "<?php echo 1;").unwrap();
        std::fs::write(d.join("web/css/site.css"), "body{}").unwrap();
        std::fs::write(d.join("web/css/site.css.gz"), "gzipped").unwrap();
        std::fs::write(d.join("web/docs/index.html"), "<h1>docs</h1>").unwrap();
        std::fs::write(d.join("web/big.txt"), "0123456789").unwrap();
        std::fs::write(d.join("web/private.ini"), "x=1").unwrap();
        std::os::unix::fs::symlink("../secret.txt", d.join("web/out.txt")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.join("web/passwd")).unwrap();
        std::os::unix::fs::symlink("css/site.css", d.join("web/in.css")).unwrap();
        let mut root = Location::new("/");
        root.root = Some("web".into());
        root.passthru = Passthru::Script("/index.php".into());
        root.index = vec!["index.html".into()];
        root.expires = Expires::Seconds(3600);
        root.scripts = true;
        root.headers = vec![("X-Frame-Options".into(), "SAMEORIGIN".into())];
        root.rules = vec![LocationRule {
            pattern: r"\.ini$".into(),
            allow: Some(false),
            passthru: Some(Passthru::Off),
            ..LocationRule::default()
        }];
        let mut statics = Location::new("/static");
        statics.root = Some("web/css".into());
        statics.allow = false;
        statics.rules = vec![LocationRule {
            pattern: r"\.css$".into(),
            allow: Some(true),
            expires: Some(Expires::NoCache),
            ..LocationRule::default()
        }];
        let site = Site {
            app_dir: d.to_path_buf(),
            tag: "abc".into(),
            locations: vec![root, statics],
            fastcgi: false,
            no_web_process: false,
            mounts: Vec::new(),
        };
        (dir, site)
    }

    /// A static site (no web process) of the bigfoot admin's shape: `passthru:
    /// "/admin/index.html"` on `/admin` serves that file for a path that is no file (a
    /// single-page app's fallback), `passthru: true` and a path no location matches are
    /// 404, a `.php` file with `scripts` is a file, and nothing is forwarded.
    #[test]
    fn a_static_sites_passthru_is_a_rewrite_to_a_file_never_the_app() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // `/admin/X` is `build/X` (the location's prefix is not part of the file's path).
        std::fs::create_dir_all(d.join("build")).unwrap();
        std::fs::create_dir_all(d.join("dist")).unwrap();
        std::fs::write(d.join("build/index.html"), "<div id=root>").unwrap();
        std::fs::write(d.join("build/app.js"), "run()").unwrap();
        std::fs::write(d.join("build/x.php"), "<?php").unwrap();
        std::fs::write(d.join("dist/index.html"), "<h1>main</h1>").unwrap();
        let mut admin = Location::new("/admin");
        admin.root = Some("build".into());
        admin.index = vec!["index.html".into()];
        admin.scripts = true;
        admin.passthru = Passthru::Script("/admin/index.html".into());
        let mut main = Location::new("/main");
        main.root = Some("dist".into());
        main.index = vec!["index.html".into()];
        main.passthru = Passthru::App;
        let site = Site {
            app_dir: d.to_path_buf(),
            tag: "abc".into(),
            locations: vec![admin, main],
            fastcgi: false,
            no_web_process: true,
            mounts: Vec::new(),
        };
        let web = WebSite::compile("admin", &site, false).unwrap();
        assert_eq!(body(web.resolve(&get("/admin/app.js"))), b"run()");
        for path in ["/admin/users/42", "/admin/", "/admin/no-such.js"] {
            let r = web.resolve(&get(path));
            assert_eq!(status(&r), Some(StatusCode::OK), "{path}");
            assert_eq!(body(r), b"<div id=root>", "{path}");
        }
        assert_eq!(body(web.resolve(&get("/admin/x.php"))), b"<?php");
        assert_eq!(body(web.resolve(&get("/main/"))), b"<h1>main</h1>");
        for path in ["/main/route", "/elsewhere"] {
            let r = web.resolve(&get(path));
            assert_eq!(status(&r), Some(StatusCode::NOT_FOUND), "{path}");
        }
        let post = Ask {
            path: "/admin/users",
            ..Ask::default()
        };
        assert_eq!(
            status(&web.resolve(&post)),
            Some(StatusCode::METHOD_NOT_ALLOWED)
        );
        // The same locations of an app with a web process go to it.
        let with_app = Site {
            no_web_process: false,
            ..site
        };
        let web = WebSite::compile("admin", &with_app, false).unwrap();
        assert!(matches!(
            web.resolve(&get("/admin/users/42")),
            Resolved::Forward
        ));
        assert!(matches!(web.resolve(&get("/elsewhere")), Resolved::Forward));
    }

    /// A mount's file rewritten in place twice within one second at the same size: the
    /// first version's validators (its `ETag`, its `Last-Modified` date, either as
    /// `If-Range`) do not validate the second, which is answered whole with its new
    /// bytes (whole-second validators called it unmodified); its own `ETag` still does.
    #[test]
    fn a_mount_file_rewritten_within_one_second_is_answered_anew() {
        use std::io::Write as _;
        use std::os::unix::fs::MetadataExt as _;
        let (dir, mut site) = app();
        let volume_files = dir.path().join("volume/files");
        std::fs::create_dir_all(volume_files.join("uploads")).unwrap();
        std::fs::create_dir_all(dir.path().join("web/uploads")).unwrap();
        let mut uploads = Location::new("/uploads");
        uploads.root = Some("web/uploads".into());
        site.locations.push(uploads);
        site.mounts = vec![SiteMount {
            path: "web/uploads".into(),
            volume_files: volume_files.clone(),
            folder: "uploads".into(),
        }];
        let site = WebSite::compile("app", &site, true).unwrap();
        let path = volume_files.join("uploads/note.txt");
        // In place: the same inode, the same size.
        let write = |text: &str| {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .unwrap();
            f.write_all(text.as_bytes()).unwrap();
        };
        let changed_secs = || {
            let m = std::fs::metadata(&path).unwrap();
            (m.mtime().max(m.ctime()), m.ino())
        };
        // Both writes within one second (the clock may tick between them: again).
        let (etag, modified) = (0..20)
            .find_map(|_| {
                write("version 1");
                let before = changed_secs();
                let r = site.resolve(&get("/uploads/note.txt"));
                let etag = header(&r, "etag").unwrap().to_string();
                let modified = header(&r, "last-modified").unwrap().to_string();
                assert_eq!(body(r), b"version 1");
                write("version 2");
                (changed_secs() == before).then_some((etag, modified))
            })
            .expect("two writes within one second");

        let r = site.resolve(&Ask {
            if_none_match: Some(etag.as_bytes()),
            ..get("/uploads/note.txt")
        });
        assert_eq!(status(&r), Some(StatusCode::OK), "not 304 for the old ETag");
        let new_etag = header(&r, "etag").unwrap().to_string();
        assert_ne!(new_etag, etag);
        assert_eq!(header(&r, "last-modified"), Some(modified.as_str()));
        assert_eq!(body(r), b"version 2");

        let r = site.resolve(&Ask {
            if_modified_since: Some(modified.as_bytes()),
            ..get("/uploads/note.txt")
        });
        assert_eq!(status(&r), Some(StatusCode::OK), "not 304 for the date");
        assert_eq!(body(r), b"version 2");

        for if_range in [&etag, &modified] {
            let r = site.resolve(&Ask {
                range: Some(b"bytes=0-6"),
                if_range: Some(if_range.as_bytes()),
                ..get("/uploads/note.txt")
            });
            assert_eq!(status(&r), Some(StatusCode::OK), "If-Range: {if_range}");
            assert_eq!(body(r), b"version 2");
        }

        // The new version's own ETag validates it.
        let r = site.resolve(&Ask {
            if_none_match: Some(new_etag.as_bytes()),
            ..get("/uploads/note.txt")
        });
        assert_eq!(status(&r), Some(StatusCode::NOT_MODIFIED));
        let r = site.resolve(&Ask {
            range: Some(b"bytes=0-6"),
            if_range: Some(new_etag.as_bytes()),
            ..get("/uploads/note.txt")
        });
        assert_eq!(status(&r), Some(StatusCode::PARTIAL_CONTENT));
        assert_eq!(body(r), b"version");
    }

    /// A slug's text file gzipped on the fly is compressed once per worker: the second
    /// answer is the same bytes (not compressed again), another release's or a changed
    /// file is compressed anew, and a site without the open-file cache (as a mount's
    /// root) compresses at each request.
    #[test]
    fn gzip_on_the_fly_is_cached_per_release_and_file() {
        use crate::files::StaticBody;
        let (dir, site) = app();
        let text = "line of text\n".repeat(400);
        std::fs::write(dir.path().join("web/page.txt"), &text).unwrap();
        let ask = |path| Ask {
            accept_encoding: Some(b"gzip"),
            ..get(path)
        };
        let gzipped = |site: &WebSite| match site.resolve(&ask("/page.txt")) {
            Resolved::Answer(a) => {
                assert_eq!(a.status, StatusCode::OK);
                match a.body {
                    StaticBody::Text(gz) => gz,
                    _ => panic!("not compressed whole"),
                }
            }
            _ => panic!("not a file"),
        };
        let unzip = |gz: &bytes::Bytes| {
            let mut back = String::new();
            std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut back)
                .unwrap();
            back
        };
        let compiled = WebSite::compile("app", &site, true).unwrap();
        let first = gzipped(&compiled);
        let second = gzipped(&compiled);
        assert_eq!(unzip(&first), text);
        assert_eq!(first.as_ptr(), second.as_ptr(), "compressed again");
        // Another release of the same files: its own entry.
        let next = Site {
            tag: "def".into(),
            ..site.clone()
        };
        let other = WebSite::compile("app", &next, true).unwrap();
        assert_ne!(gzipped(&other).as_ptr(), first.as_ptr());
        // The file changed (its size): compressed anew, the new text.
        let longer = format!("{text}more\n");
        std::fs::write(dir.path().join("web/page.txt"), &longer).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let changed = gzipped(&compiled);
        assert_eq!(unzip(&changed), longer);
        // Without the open-file cache: never kept.
        let uncached = WebSite::compile("app", &site, false).unwrap();
        assert_ne!(gzipped(&uncached).as_ptr(), gzipped(&uncached).as_ptr());
    }

    #[test]
    fn static_files_passthru_and_rules() {
        let (_dir, site) = app();
        let site = WebSite::compile("app", &site, true).unwrap();
        let r = site.resolve(&get("/css/site.css"));
        assert_eq!(status(&r), Some(StatusCode::OK));
        assert_eq!(header(&r, "content-type"), Some("text/css"));
        assert_eq!(header(&r, "cache-control"), Some("max-age=3600"));
        assert_eq!(header(&r, "x-frame-options"), Some("SAMEORIGIN"));
        let etag = header(&r, "etag").unwrap().to_string();
        assert!(etag.starts_with("\"abc-"), "{etag}");
        assert_eq!(body(r), b"body{}");

        // Missing and scripts go to the app; the rule sends .ini nowhere (403).
        assert!(matches!(site.resolve(&get("/missing")), Resolved::Forward));
        assert!(matches!(
            site.resolve(&get("/index.php")),
            Resolved::Forward
        ));
        assert!(matches!(site.resolve(&get("/")), Resolved::Forward));
        let r = site.resolve(&get("/private.ini"));
        assert_eq!(status(&r), Some(StatusCode::FORBIDDEN));
        let r = site.resolve(&get("/nope.ini"));
        assert_eq!(status(&r), Some(StatusCode::NOT_FOUND));

        // Folders: the index file, after a redirect to the trailing slash.
        let r = site.resolve(&get("/docs"));
        assert_eq!(status(&r), Some(StatusCode::MOVED_PERMANENTLY));
        assert_eq!(header(&r, "location"), Some("/docs/"));
        assert_eq!(body(site.resolve(&get("/docs/"))), b"<h1>docs</h1>");
        assert!(matches!(site.resolve(&get("/empty/")), Resolved::Forward));

        // The longer prefix wins; its allow: false refuses what its rule does not allow.
        let r = site.resolve(&get("/static/site.css"));
        assert_eq!(header(&r, "cache-control"), Some("no-cache"));
        assert_eq!(header(&r, "x-frame-options"), None);
        assert_eq!(body(r), b"body{}");
        let r = site.resolve(&get("/static/site.css.gz"));
        assert_eq!(status(&r), Some(StatusCode::FORBIDDEN));

        // Not GET/HEAD: to the app with passthru, 405 without.
        let post = Ask {
            path: "/static/site.css",
            ..Ask::default()
        };
        assert_eq!(
            status(&site.resolve(&post)),
            Some(StatusCode::METHOD_NOT_ALLOWED)
        );
    }

    #[test]
    fn a_folder_index_is_allowed_by_the_rules_on_its_own_path() {
        // pelican's shape: nothing allowed but what a rule allows (`\.html$`), index.html.
        let (_dir, mut site) = app();
        let root = &mut site.locations[0];
        root.passthru = Passthru::Off;
        root.allow = false;
        root.rules = vec![LocationRule {
            pattern: r"\.(css|html)$".into(),
            allow: Some(true),
            expires: Some(Expires::Seconds(300)),
            ..LocationRule::default()
        }];
        let site = WebSite::compile("app", &site, true).unwrap();
        let r = site.resolve(&get("/docs/"));
        assert_eq!(header(&r, "cache-control"), Some("max-age=300"));
        assert_eq!(body(r), b"<h1>docs</h1>");
        assert_eq!(
            body(site.resolve(&get("/docs/index.html"))),
            b"<h1>docs</h1>"
        );
        // What no rule allows stays refused, and so does an index no rule allows.
        let r = site.resolve(&get("/big.txt"));
        assert_eq!(status(&r), Some(StatusCode::FORBIDDEN));
        let (_dir, mut site) = app();
        site.locations[0].passthru = Passthru::Off;
        site.locations[0].allow = false;
        site.locations[0].rules = vec![LocationRule {
            pattern: r"/$".into(),
            allow: Some(true),
            ..LocationRule::default()
        }];
        let site = WebSite::compile("app", &site, true).unwrap();
        let r = site.resolve(&get("/docs/"));
        assert_eq!(status(&r), Some(StatusCode::FORBIDDEN));
    }

    #[test]
    fn conditional_range_head_and_precompressed() {
        let (_dir, site) = app();
        let site = WebSite::compile("app", &site, true).unwrap();
        let r = site.resolve(&get("/big.txt"));
        let etag = header(&r, "etag").unwrap().to_string();
        let modified = header(&r, "last-modified").unwrap().to_string();
        let ask = Ask {
            if_none_match: Some(etag.as_bytes()),
            ..get("/big.txt")
        };
        let r = site.resolve(&ask);
        assert_eq!(status(&r), Some(StatusCode::NOT_MODIFIED));
        assert_eq!(header(&r, "cache-control"), Some("max-age=3600"));
        assert!(body(r).is_empty());
        let ask = Ask {
            if_modified_since: Some(modified.as_bytes()),
            ..get("/big.txt")
        };
        assert_eq!(status(&site.resolve(&ask)), Some(StatusCode::NOT_MODIFIED));
        let ask = Ask {
            if_none_match: Some(b"\"other\""),
            if_modified_since: Some(modified.as_bytes()),
            ..get("/big.txt")
        };
        assert_eq!(status(&site.resolve(&ask)), Some(StatusCode::OK));

        let ask = Ask {
            range: Some(b"bytes=2-4"),
            ..get("/big.txt")
        };
        let r = site.resolve(&ask);
        assert_eq!(status(&r), Some(StatusCode::PARTIAL_CONTENT));
        assert_eq!(header(&r, "content-range"), Some("bytes 2-4/10"));
        assert_eq!(body(r), b"234");
        let ask = Ask {
            range: Some(b"bytes=20-"),
            ..get("/big.txt")
        };
        let r = site.resolve(&ask);
        assert_eq!(status(&r), Some(StatusCode::RANGE_NOT_SATISFIABLE));
        assert_eq!(header(&r, "content-range"), Some("bytes */10"));
        // If-Range with another validator: the whole file.
        let ask = Ask {
            range: Some(b"bytes=2-4"),
            if_range: Some(b"\"old\""),
            ..get("/big.txt")
        };
        assert_eq!(status(&site.resolve(&ask)), Some(StatusCode::OK));

        let ask = Ask {
            head: true,
            ..get("/big.txt")
        };
        let Resolved::Answer(a) = site.resolve(&ask) else {
            panic!("forwarded")
        };
        assert_eq!(a.length, Some(10));
        assert!(matches!(a.body, StaticBody::Empty));

        let ask = Ask {
            accept_encoding: Some(b"gzip, deflate"),
            ..get("/css/site.css")
        };
        let r = site.resolve(&ask);
        assert_eq!(header(&r, "content-encoding"), Some("gzip"));
        assert_eq!(header(&r, "content-type"), Some("text/css"));
        assert!(header(&r, "etag").unwrap().ends_with("-gz\""));
        assert_eq!(body(r), b"gzipped");
    }

    #[test]
    fn nothing_outside_the_root_is_read() {
        let (_dir, mut site) = app();
        site.locations[0].passthru = Passthru::Off;
        let site = WebSite::compile("app", &site, true).unwrap();
        for path in ["/out.txt", "/passwd"] {
            let r = site.resolve(&get(path));
            assert_eq!(status(&r), Some(StatusCode::NOT_FOUND), "{path}");
        }
        for path in [
            "/../secret.txt",
            "/%2e%2e/secret.txt",
            "/..%2fsecret.txt",
            "/css/..%2f..%2fsecret.txt",
            "/%c0%ae%c0%ae/secret.txt",
            "/secret.txt%00.css",
        ] {
            let r = site.resolve(&get(path));
            assert_eq!(status(&r), Some(StatusCode::BAD_REQUEST), "{path}");
        }
        // A link that stays beneath the root is followed.
        assert_eq!(body(site.resolve(&get("/in.css"))), b"body{}");
        assert_eq!(
            status(&site.resolve(&get("/secret.txt"))),
            Some(StatusCode::NOT_FOUND)
        );
    }

    #[test]
    fn bad_locations_are_refused() {
        let (_dir, mut site) = app();
        site.locations[0].root = Some("../..".into());
        assert!(WebSite::compile("app", &site, true).is_err());
        let (_dir, mut site) = app();
        site.locations[0].rules[0].pattern = "(".into();
        assert!(WebSite::compile("app", &site, true).is_err());
        let (_dir, mut site) = app();
        site.locations[0].rules[0].pattern = r"\w{1000}\w{1000}\w{1000}".into();
        assert!(WebSite::compile("app", &site, true).is_err());
        // A root that this release lacks serves no files.
        let (_dir, mut site) = app();
        site.locations[0].root = Some("public".into());
        let site = WebSite::compile("app", &site, true).unwrap();
        assert!(matches!(site.resolve(&get("/big.txt")), Resolved::Forward));
    }

    #[test]
    fn fastcgi_sites_run_the_requested_or_passthru_script() {
        let (_dir, mut site) = app();
        site.fastcgi = true;
        let site = WebSite::compile("app", &site, true).unwrap();
        let script = |r: Resolved| match r {
            Resolved::Script(c) => c,
            other => panic!("not a script: {other:?}"),
        };
        // A missing file runs the passthru script, with the original URI left to the caller.
        let c = script(site.resolve(&get("/node/1")));
        assert_eq!(c.script_name, "/index.php");
        assert_eq!(c.script_filename, "/app/web/index.php");
        assert_eq!(c.document_root, "/app/web");
        assert_eq!(c.path_info, "");
        // A script with a path after it.
        let c = script(site.resolve(&get("/index.php/a/b")));
        assert_eq!(
            (c.script_name.as_str(), c.path_info.as_str()),
            ("/index.php", "/a/b")
        );
        // A POST goes to the passthru script; static files are still files.
        let post = Ask {
            path: "/form",
            ..Ask::default()
        };
        assert_eq!(script(site.resolve(&post)).script_name, "/index.php");
        assert_eq!(
            status(&site.resolve(&get("/big.txt"))),
            Some(StatusCode::OK)
        );
        // A disallowed file with `passthru: false` stays refused.
        assert_eq!(
            status(&site.resolve(&get("/private.ini"))),
            Some(StatusCode::FORBIDDEN)
        );
    }
}
