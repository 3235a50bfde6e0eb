//! What the deploy side hands the router about an app's `web.locations`: the folder its
//! release's files are in (the unpacked slug, read-only) and the locations, typed.
//! The router serves static files from there itself ([`crate::locations`]).

use std::path::PathBuf;

/// The web side of one app of a release: where its files are and its locations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    /// The app's folder on the host: the release's unpacked slug (what is `/app` inside
    /// the container).
    pub app_dir: PathBuf,
    /// A short name of the slug's content (e.g. the start of its digest), part of every
    /// `ETag`, so that two releases never share a validator for different bytes.
    pub tag: String,
    /// The locations, in any order (the longest matching prefix wins).
    pub locations: Vec<Location>,
    /// Whether the app is PHP-FPM: what goes to the app goes as FastCGI, running the
    /// requested `.php` script or the `passthru` script.
    pub fastcgi: bool,
    /// The app runs no web process (a static site: no start command, not PHP): the router
    /// answers what would go to it. A `passthru` path is an internal rewrite to that
    /// file of the locations (a single-page app's fallback), `passthru: true` and a path
    /// no location matches are 404, and `.php` files are files.
    pub no_web_process: bool,
    /// The app's persistent mounts: a location whose root is a mount's path (or beneath
    /// one) serves the mount's current files, not the slug's folder under it.
    pub mounts: Vec<SiteMount>,
}

/// One persistent mount of an app, as the router reaches its files on the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteMount {
    /// Where the app sees it, relative to its folder (normalized, e.g. `web/uploads`).
    pub path: String,
    /// The volume's folder of mount folders on the host (`files/` of the mounted volume),
    /// made by Slipway: opened as it is.
    pub volume_files: PathBuf,
    /// The mount's folder inside `volume_files`: opened beneath it, so that nothing the
    /// app made there (a symbolic link) leads out of the volume.
    pub folder: String,
}

/// Where requests that are not answered with a static file go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Passthru {
    /// Nowhere: 404 for a missing file, 403 for a disallowed one.
    Off,
    /// To the app, as requested.
    App,
    /// To the app, as an internal rewrite to this script (e.g. `/index.php`); the
    /// original URI is kept (`REQUEST_URI`).
    Script(String),
}

/// How long clients may cache a static file (`expires`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expires {
    /// No caching headers (Platform.sh's default).
    Unset,
    /// `Cache-Control: no-cache` and an `Expires` in the past (nginx's `expires -1`;
    /// Platform.sh's `-1` is [`Expires::Unset`]).
    NoCache,
    /// That many seconds: `Cache-Control: max-age=N` and `Expires` N seconds ahead.
    Seconds(u64),
}

/// One entry of `web.locations`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The URL path prefix, starting with `/`.
    pub prefix: String,
    /// The folder served for this prefix, relative to the app's folder (normalized: no
    /// `.`/`..`, no leading slash; empty is the app's folder); `None`: no static files.
    pub root: Option<String>,
    /// Where missing, disallowed and script requests go.
    pub passthru: Passthru,
    /// Files tried, in order, for a request of a folder.
    pub index: Vec<String>,
    /// Cache lifetime of static files.
    pub expires: Expires,
    /// Whether files that match no rule are served.
    pub allow: bool,
    /// Whether scripts (`.php` files) are run by the app instead of being files.
    pub scripts: bool,
    /// Extra response headers of static files: (name, value).
    pub headers: Vec<(String, String)>,
    /// Overrides by regular expression on the request path; the first that matches wins.
    pub rules: Vec<LocationRule>,
}

impl Location {
    /// A location for `prefix` with Platform.sh's defaults: no root, no passthru, no
    /// index, no caching headers, files allowed, no scripts.
    pub fn new(prefix: &str) -> Location {
        Location {
            prefix: prefix.to_string(),
            root: None,
            passthru: Passthru::Off,
            index: Vec::new(),
            expires: Expires::Unset,
            allow: true,
            scripts: false,
            headers: Vec::new(),
            rules: Vec::new(),
        }
    }
}

/// One entry of a location's `rules`: what it sets overrides the location's value.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct LocationRule {
    /// The regular expression (`regex` crate syntax), matched against the decoded path.
    pub pattern: String,
    /// `allow`.
    pub allow: Option<bool>,
    /// `expires`.
    pub expires: Option<Expires>,
    /// `passthru`.
    pub passthru: Option<Passthru>,
    /// `scripts`.
    pub scripts: Option<bool>,
    /// `headers` (replace the location's).
    pub headers: Option<Vec<(String, String)>>,
}
