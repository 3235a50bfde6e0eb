//! What every configuration file accepts: the key tables behind validation and the JSON Schemas.

use crate::shape::{acted, ignored, Shape};

const STR_OR_NULL: Shape = Shape::OneOf(&[Shape::Str, Shape::Null]);

/// `web.commands`.
const WEB_COMMANDS: Shape = Shape::Obj(&[
    acted(
        "start",
        STR_OR_NULL,
        "Command that starts the app's server; it must listen on $PORT (TCP on 127.0.0.1), or on $SOCKET with `web.upstream.socket_family: unix`.",
    ),
    ignored(
        "pre_start",
        Shape::Str,
        "Command run before `start` in the container.",
    ),
    ignored(
        "post_start",
        Shape::Str,
        "Command run after `start` once the app answers.",
    ),
]);

/// `web.upstream`.
const WEB_UPSTREAM: Shape = Shape::Obj(&[
    acted(
        "socket_family",
        Shape::Str,
        "How the app listens: `tcp` (on 127.0.0.1:$PORT, the default) or `unix` (on the unix socket $SOCKET, `/run/app.sock`).",
    ),
    acted(
        "protocol",
        Shape::Str,
        "Protocol spoken on the socket: `http` (what Slipway does) or `fastcgi` (what a PHP app without a start command speaks: PHP-FPM).",
    ),
]);

/// One entry of a location's `rules`: the location keys a rule may override (Platform.sh: all
/// but `root`, `index`, `rules` and `request_buffering`).
const RULE: Shape = Shape::Obj(&[
    acted(
        "allow",
        Shape::Bool,
        "Whether static files matching the rule are served.",
    ),
    acted(
        "expires",
        Shape::OneOf(&[Shape::Str, Shape::Scalar]),
        "Cache lifetime of static files matching the rule (e.g. `1h`, `-1`).",
    ),
    acted(
        "passthru",
        Shape::OneOf(&[Shape::Bool, Shape::Str]),
        "Forward matching requests to the app (true) or to this URL path.",
    ),
    acted(
        "scripts",
        Shape::Bool,
        "Whether scripts (PHP) matching the rule may run.",
    ),
    acted(
        "headers",
        Shape::Map(&Shape::Str, "A header value."),
        "Extra response headers for static files matching the rule.",
    ),
]);

/// One entry of `web.locations`.
const LOCATION: Shape = Shape::Obj(&[
    acted(
        "root",
        STR_OR_NULL,
        "Folder (relative to the app's source root) served for this path.",
    ),
    acted(
        "passthru",
        Shape::OneOf(&[Shape::Bool, Shape::Str]),
        "Forward requests that match no static file to the app (true) or to this URL path.",
    ),
    acted(
        "index",
        Shape::OneOf(&[Shape::Seq(&Shape::Str, "An index file name."), Shape::Null]),
        "Files tried for a directory request.",
    ),
    acted(
        "expires",
        Shape::OneOf(&[Shape::Str, Shape::Scalar]),
        "Cache lifetime of static files (e.g. `1h`, `-1`).",
    ),
    acted(
        "scripts",
        Shape::Bool,
        "Whether scripts (PHP) may run under this path.",
    ),
    acted(
        "allow",
        Shape::Bool,
        "Whether static files not matched by a rule are served.",
    ),
    acted(
        "headers",
        Shape::Map(&Shape::Str, "A header value."),
        "Extra response headers for static files.",
    ),
    acted(
        "rules",
        Shape::Map(
            &RULE,
            "Overrides for paths matching this regular expression.",
        ),
        "Per-regular-expression overrides.",
    ),
    ignored(
        "request_buffering",
        Shape::Any,
        "Request body buffering settings.",
    ),
]);

/// One entry of `runtime.extensions` or `runtime.disabled_extensions`.
const PHP_EXTENSION: Shape = Shape::Any;

/// `runtime` (PHP apps).
const RUNTIME: Shape = Shape::Obj(&[
    acted(
        "extensions",
        Shape::Seq(
            &PHP_EXTENSION,
            "A PHP extension name (or `{name, configuration}`).",
        ),
        "PHP extensions to load; an unknown name is refused.",
    ),
    acted(
        "disabled_extensions",
        Shape::Seq(&PHP_EXTENSION, "A PHP extension name."),
        "PHP extensions not to load.",
    ),
    acted(
        "sizing_hints",
        Shape::Obj(&[
            acted(
                "request_memory",
                Shape::PosInt,
                "MB one PHP-FPM worker uses (default 45).",
            ),
            acted(
                "reserved_memory",
                Shape::PosInt,
                "MB of the container kept for everything else (default 70).",
            ),
        ]),
        "How the PHP-FPM pool is sized: (memory - reserved_memory) / request_memory workers.",
    ),
    acted(
        "request_terminate_timeout",
        Shape::PosInt,
        "Seconds one request may run before PHP-FPM kills its worker (PHP-FPM's `request_terminate_timeout`; default: off).",
    ),
    ignored("xdebug", Shape::Any, "Xdebug settings."),
    ignored(
        "quicklisten",
        Shape::Any,
        "Platform.sh's PHP-FPM quick-listen option.",
    ),
]);

/// `web`.
const WEB: Shape = Shape::Obj(&[
    acted(
        "commands",
        WEB_COMMANDS,
        "Commands that run the web server.",
    ),
    acted(
        "locations",
        Shape::Map(&LOCATION, "Rules for requests under this URL path."),
        "Static files and passthru rules by URL path prefix.",
    ),
    acted(
        "upstream",
        WEB_UPSTREAM,
        "How the router talks to the app (Slipway supports tcp + http).",
    ),
    ignored(
        "move_to_root",
        Shape::Bool,
        "Legacy: move the document root.",
    ),
    acted(
        "document_root",
        Shape::Str,
        "Legacy form of `locations./.root`.",
    ),
    acted(
        "passthru",
        Shape::Any,
        "Legacy form of `locations./.passthru`.",
    ),
    acted(
        "index_files",
        Shape::Any,
        "Legacy form of `locations./.index`.",
    ),
    acted(
        "whitelist",
        Shape::Any,
        "Legacy list of allowed static file patterns.",
    ),
    acted(
        "blacklist",
        Shape::Any,
        "Legacy list of refused static file patterns.",
    ),
    acted(
        "expires",
        Shape::Any,
        "Legacy form of `locations./.expires`.",
    ),
]);

/// `hooks`.
const HOOKS: Shape = Shape::Obj(&[
    acted(
        "build",
        STR_OR_NULL,
        "Shell script run while building the slug (no services available).",
    ),
    acted(
        "deploy",
        STR_OR_NULL,
        "Shell script run once per deploy, with services, before the app takes traffic.",
    ),
    acted(
        "post_deploy",
        STR_OR_NULL,
        "Shell script run after the routes switched to the new release.",
    ),
]);

/// One entry of `build.caches`.
const BUILD_CACHE: Shape = Shape::Obj(&[
    acted("directory", Shape::Str, "Folder of the app (relative to its root, inside it, no `..`) restored before the build steps and saved after a successful build."),
    acted(
        "watch",
        Shape::Seq(&Shape::Str, "A file, relative to the app's root."),
        "Files whose content (with the cache's name and directory) keys the cache: when one changes, the build starts without the saved folder (unless `allow_stale`).",
    ),
    acted("allow_stale", Shape::Bool, "Restore the newest saved folder even when the watched files changed (default false)."),
    acted("share_between_apps", Shape::Bool, "One cache per project and name, shared by every app naming it, instead of one per app and environment (default false)."),
]);

/// `build`.
const BUILD: Shape = Shape::Obj(&[
    acted(
        "flavor",
        STR_OR_NULL,
        "Default build steps, run after `dependencies` and before `hooks.build`: `default` (or absent) runs the type's steps (php: as `composer`; nodejs: `npm prune && npm install` when package.json exists; others: none), `composer` runs `composer install` when composer.json exists, `none` runs nothing.",
    ),
    acted(
        "caches",
        Shape::Map(&BUILD_CACHE, "A build cache, by name (letters, digits, `-`, `_`, `.`)."),
        "Folders kept between builds (like `node_modules`), restored before the build steps when the watched files did not change. They only speed builds up: they are not part of the build key.",
    ),
]);

/// Packages of one language in `dependencies`.
const PACKAGES: Shape = Shape::Map(&Shape::Str, "Version constraint of this package: `*` for any version, else in the package manager's syntax.");

/// `dependencies`.
const DEPENDENCIES: Shape = Shape::Obj(&[
    acted("php", PACKAGES, "Composer packages: `composer global require NAME:VERSION` with COMPOSER_HOME=/app/.global (commands in /app/.global/vendor/bin)."),
    acted("python", PACKAGES, "pip packages: `pip install --user` with PYTHONUSERBASE=/app/.global; a bare version means `==VERSION`."),
    acted("python2", PACKAGES, "pip2 packages: `pip2 install --user` with PYTHONUSERBASE=/app/.global; a bare version means `==VERSION`."),
    acted("python3", PACKAGES, "pip3 packages: `pip3 install --user` with PYTHONUSERBASE=/app/.global; a bare version means `==VERSION`."),
    acted("nodejs", PACKAGES, "npm packages: `npm install -g --prefix /app/.global NAME@VERSION`."),
    acted("ruby", PACKAGES, "Gems: `gem install --install-dir /app/.global --bindir /app/.global/bin NAME -v VERSION` (GEM_HOME, GEM_PATH)."),
]);

/// `source`.
const SOURCE: Shape = Shape::Obj(&[
    acted(
        "root",
        STR_OR_NULL,
        "Folder holding the app's code, relative to the repository root.",
    ),
    ignored(
        "operations",
        Shape::Any,
        "Source operations (commands that update the code).",
    ),
]);

/// One mount: `{source, source_path}` or the legacy `"shared:files/x"` string.
const MOUNT: Shape = Shape::OneOf(&[
    Shape::Obj(&[
        acted(
            "source",
            Shape::Str,
            "Where the data lives: `local`, `storage`, `service`, `tmp`, `instance`.",
        ),
        acted(
            "source_path",
            Shape::Str,
            "Sub-folder of the source backing this mount.",
        ),
        acted(
            "service",
            Shape::Str,
            "Network storage service name (with `source: service`).",
        ),
    ]),
    Shape::Str,
]);

/// One relationship: `service:endpoint`, `{service, endpoint}`, or null (a service of the same name).
const RELATIONSHIP: Shape = Shape::OneOf(&[
    Shape::Str,
    Shape::Null,
    Shape::Obj(&[
        acted("service", Shape::Str, "The service (or app) name."),
        acted("endpoint", Shape::Str, "The endpoint of that service."),
    ]),
]);

const RELATIONSHIPS: Shape = Shape::Map(
    &RELATIONSHIP,
    "`service:endpoint` of a service (or app) this app talks to.",
);
const VARIABLES: Shape = Shape::Map(
    &Shape::Map(&Shape::Any, "A variable's value."),
    "Variables with this prefix (`env` become environment variables).",
);
const MOUNTS: Shape = Shape::Map(
    &MOUNT,
    "A writable mount at this path (relative to the app root).",
);
const COMMANDS: Shape = Shape::Obj(&[
    acted("start", Shape::Str, "Command to run."),
    acted("stop", Shape::Str, "Command run to stop it gracefully."),
]);

/// An app's `resources` (Platform.sh).
const RESOURCES: Shape = Shape::Obj(&[
    acted(
        "base_memory",
        Shape::PosInt,
        "MB of memory whatever the CPUs (default 64).",
    ),
    acted(
        "memory_ratio",
        Shape::PosInt,
        "MB of memory per CPU of the app's size (default 128).",
    ),
]);

/// One worker.
const WORKER: Shape = Shape::Obj(&[
    acted("commands", COMMANDS, "Commands that run the worker."),
    acted(
        "mounts",
        MOUNTS,
        "Mounts of the worker, in place of the app's (`local` ones on its own disk; `storage` and `service` ones shared; without this key, the app's mounts and their data).",
    ),
    acted(
        "relationships",
        RELATIONSHIPS,
        "Relationships of the worker, in place of the app's.",
    ),
    acted("variables", VARIABLES, "Extra variables of the worker."),
    acted(
        "disk",
        Shape::PosInt,
        "Disk in MB of the worker's own `local` mounts (default: the app's); a worker without its own `mounts` shares the app's volume, sized at the larger of the two.",
    ),
    acted("size", Shape::Str, "Container size (default: the app's)."),
    ignored("access", Shape::Any, "Who may SSH into the worker."),
    ignored("timezone", Shape::Str, "Time zone of the worker."),
    ignored("resources", Shape::Any, "CPU/memory sizing."),
    ignored("container_profile", Shape::Str, "Upsun CPU/memory profile."),
]);

/// One cron job.
const CRON: Shape = Shape::Obj(&[
    acted(
        "spec",
        Shape::Str,
        "Schedule in crontab syntax (`*/5 * * * *`).",
    ),
    acted(
        "cmd",
        Shape::Str,
        "Command to run (legacy form of `commands.start`).",
    ),
    acted("commands", COMMANDS, "Commands of the job."),
    acted(
        "shutdown_timeout",
        Shape::Uint,
        "Seconds between SIGTERM and SIGKILL when the job is stopped (default 10).",
    ),
    acted(
        "timeout",
        Shape::Uint,
        "Maximum run time in seconds (default 86400): then `commands.stop`, SIGTERM, SIGKILL.",
    ),
]);

macro_rules! app_fields {
    ($($extra:expr),* $(,)?) => {
        &[
            $($extra,)*
            acted("type", Shape::Str, "Runtime and version, e.g. `python:3.11`, `php:8.3`, `nodejs:20`."),
            acted("source", SOURCE, "Where the app's code is."),
            acted("build", BUILD, "How the app is built."),
            acted(
                "dependencies",
                DEPENDENCIES,
                "Global packages by language, installed into /app/.global before the build flavor and `hooks.build`; they are part of the slug and their commands are on PATH in the build and at run time.",
            ),
            acted("hooks", HOOKS, "Scripts run at build and deploy time."),
            acted("web", WEB, "How the app serves HTTP."),
            acted("variables", VARIABLES, "Variables by prefix (`env`, `php`, ...)."),
            acted("mounts", MOUNTS, "Writable folders (everything else is read-only at run time)."),
            acted("disk", Shape::PosInt, "Persistent disk in MB for `local` mounts."),
            acted("relationships", RELATIONSHIPS, "Services (and apps) this app talks to; exposed in PLATFORM_RELATIONSHIPS."),
            acted("workers", Shape::Map(&WORKER, "A background process of the app."), "Background processes run from the same slug."),
            acted("crons", Shape::Map(&CRON, "A scheduled job."), "Scheduled jobs."),
            acted("stack", Shape::Any, "Upsun composable image packages: the `LANGUAGE@VERSION` entries (e.g. `[php@8.4, nodejs@22]`) are the app's stack when `type` is absent or `composable:*`: one stack with every language, the first the app's (their Debian packages from one Debian release; Node.js from the npm registry fits either); other entries (Nix packages) are ignored with a warning."),
            acted("runtime", RUNTIME, "Runtime settings of PHP apps: extensions and PHP-FPM pool sizing."),
            acted("timezone", Shape::Str, "Time zone of crons (an IANA name such as `Europe/Paris`; default UTC)."),
            ignored("access", Shape::Any, "Who may SSH into the app."),
            ignored("firewall", Shape::Any, "Outbound firewall rules."),
            ignored("additional_hosts", Shape::Any, "Extra /etc/hosts entries."),
            acted("resources", RESOURCES, "How the app's memory follows its CPUs: `base_memory + memory_ratio x CPUs` MB."),
            acted("size", Shape::Str, "Container size (S, M, L, XL, 2XL, 4XL, AUTO): the CPU, memory and process limits of its containers."),
            ignored("container_profile", Shape::Str, "Upsun CPU/memory profile."),
            ignored("preflight", Shape::Any, "Pre-deploy configuration checks."),
            ignored("operations", Shape::Any, "Runtime operations (commands run on demand)."),
            ignored("tasks", Shape::Any, "Scheduled tasks."),
        ]
    };
}

/// A Platform.sh / Magento Cloud app (`.platform.app.yaml`, an item of `.platform/applications.yaml`).
pub(crate) const APP: Shape = Shape::Obj(app_fields!(acted(
    "name",
    Shape::Str,
    "The app's unique name (used in routes and relationships)."
)));

/// An Upsun / Slipway app (a value under `applications:`, named by its key).
pub(crate) const UPSUN_APP: Shape = Shape::Obj(app_fields!());

/// `.platform/applications.yaml`: a list of apps, or a mapping of apps by name.
pub(crate) const APPLICATIONS: Shape = Shape::OneOf(&[
    Shape::Seq(&APP, "One application (with `name`)."),
    Shape::Map(&APP, "An application named by its key."),
]);

/// One service.
pub(crate) const SERVICE: Shape = Shape::Obj(&[
    acted(
        "type",
        Shape::Str,
        "Service kind and version, e.g. `mariadb:10.6`, `redis:7.0`.",
    ),
    acted("disk", Shape::PosInt, "Persistent disk in MB."),
    acted(
        "configuration",
        Shape::Any,
        "Service-specific settings: the keys Slipway acts on per type (mariadb schemas and endpoints, postgresql extensions, rabbitmq vhosts, varnish vcl); others are warned as ignored.",
    ),
    acted(
        "relationships",
        RELATIONSHIPS,
        "A varnish service's backends: `REL: APP:http`, a director named `REL` in its VCL (other types: warned as ignored).",
    ),
    ignored("size", Shape::Str, "Container size."),
    ignored("resources", Shape::Any, "CPU/memory sizing."),
    ignored("container_profile", Shape::Str, "Upsun CPU/memory profile."),
]);

/// `services.yaml`.
pub(crate) const SERVICES: Shape = Shape::Map(&SERVICE, "A service, named by its key.");

/// A route's `tls.strict_transport_security`.
const STRICT_TRANSPORT_SECURITY: Shape = Shape::Obj(&[
    acted(
        "enabled",
        Shape::Bool,
        "Send `Strict-Transport-Security: max-age=31536000` on the route's HTTPS answers (never on plain HTTP).",
    ),
    acted(
        "include_subdomains",
        Shape::Bool,
        "Add `includeSubDomains`: the policy covers the host's subdomains.",
    ),
    acted(
        "preload",
        Shape::Bool,
        "Add `preload` (needs `include_subdomains: true` for browsers' preload lists).",
    ),
]);

/// A route's `tls`.
const TLS: Shape = Shape::Obj(&[
    acted(
        "strict_transport_security",
        STRICT_TRANSPORT_SECURITY,
        "HSTS of the route's HTTPS answers.",
    ),
    ignored(
        "min_version",
        Shape::Any,
        "The lowest TLS version (the router offers TLS 1.2 and 1.3).",
    ),
    ignored(
        "client_authentication",
        Shape::Any,
        "Client certificates: `request` or `require`.",
    ),
    ignored(
        "client_certificate_authorities",
        Shape::Any,
        "The CAs client certificates are checked against.",
    ),
]);

/// One route.
pub(crate) const ROUTE: Shape = Shape::Obj(&[
    acted("type", Shape::Str, "`upstream` (to an app) or `redirect`."),
    acted(
        "upstream",
        Shape::Str,
        "`app:endpoint` (endpoint `http`) for `type: upstream`.",
    ),
    acted("to", Shape::Str, "Target URL pattern for `type: redirect`."),
    acted("id", Shape::Str, "Identifier to look the route up by."),
    acted(
        "primary",
        Shape::Bool,
        "Whether this is the primary route (the environment's URL).",
    ),
    ignored("cache", Shape::Any, "HTTP cache settings."),
    ignored("ssi", Shape::Any, "Server-side includes."),
    ignored("redirects", Shape::Any, "Partial redirects by path."),
    acted(
        "tls",
        TLS,
        "TLS settings: HSTS is acted on (client certificates and `min_version` are warned as ignored).",
    ),
    acted(
        "attributes",
        Shape::Map(&Shape::Scalar, "An attribute's value."),
        "Free-form attributes passed to the app in PLATFORM_ROUTES.",
    ),
]);

/// `routes.yaml`.
pub(crate) const ROUTES: Shape = Shape::Map(
    &ROUTE,
    "A route, keyed by its URL pattern (`https://{default}/`).",
);

/// `.upsun/config.yaml` and `.slipway/config.yaml`.
pub(crate) const UPSUN_CONFIG: Shape = Shape::Obj(&[
    acted(
        "applications",
        Shape::Map(&UPSUN_APP, "An application, named by its key."),
        "The applications.",
    ),
    acted("services", SERVICES, "The services."),
    acted(
        "routes",
        ROUTES,
        "The routes (default: `http://{default}/` to the only app).",
    ),
]);
