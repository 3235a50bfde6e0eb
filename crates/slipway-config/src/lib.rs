//! The configuration language: Platform.sh, Upsun, Magento Cloud, Slipway and Procfile layouts
//! read from an abstract [`ConfigSource`] into one normalized [`Topology`], with positioned
//! [`Diagnostic`]s (`FILE:LINE:COL: error: MESSAGE (at KEY.PATH)`), every problem of a tree at once.
//!
//! How a file is checked:
//! 1. read (at most 1 MiB, UTF-8) and parsed keeping positions; duplicate keys, tabs, several
//!    documents, nesting deeper than 64 and aliases expanding past 100 000 values are errors;
//! 2. validated against its JSON Schema in `config-schemas/` (the `jsonschema` crate) and by the
//!    hand-written structural checks generated from the same tables (did-you-mean, warnings for
//!    keys Slipway does not act on yet), each problem reported once;
//! 3. semantic checks the schemas cannot express: names unique, relationships and mounts name an
//!    existing service and endpoint, routes an existing app, `source.root` exists, mount paths
//!    stay in the app, service `type:version` in the [`catalog`], cron specs parse ([`cron`]).
//!
//! Beside loading: [`diff()`] (the infrastructure diff of a push, with data-losing changes
//! refused) and [`platform_env`] (`PLATFORM_ROUTES`, `PLATFORM_RELATIONSHIPS` in Platform.sh's shapes).
//!
//! ```no_run
//! let src = slipway_config::DirSource::new(std::path::Path::new("."));
//! match slipway_config::load(&src) {
//!     Ok(loaded) => println!("{} apps", loaded.topology.applications.len()),
//!     Err(problems) => eprintln!("{problems}"),
//! }
//! ```

#![warn(missing_docs)]

pub mod app_json;
pub mod background;
pub mod catalog;
mod checks;
mod convert;
pub mod cron;
pub mod databases;
pub mod detect;
mod diag;
pub mod diff;
mod files;
mod formats;
#[doc(hidden)]
pub mod fuzzing;
mod include;
mod keypath;
mod model;
pub mod mounts;
pub mod php;
pub mod platform_env;
mod procfile;
pub mod schemas;
mod shape;
mod source;
pub mod suggest;
mod tables;
mod validate;
pub mod web_locations;
mod yaml;

pub use diag::{Diagnostic, Diagnostics, Scope, Severity};
pub use diff::{diff, DiffOptions, Refusal, TopologyDiff};
pub use files::MAX_FILE_SIZE;
pub use model::{
    Application, BuildCache, ContainerSize, Format, Hooks, Hsts, Resources, Route, RouteKind,
    Service, SocketFamily, Topology, Web, BUILD_FLAVORS, DEPENDENCY_LANGUAGES,
    ROUTABLE_SERVICE_TYPES,
};
pub use source::{ConfigSource, DirEntry, DirSource, MemSource};

use serde::{Deserialize, Serialize};

/// A configuration that loaded without errors.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Loaded {
    /// The normalized apps, services and routes.
    pub topology: Topology,
    /// Problems that do not stop a deploy (e.g. keys Slipway does not act on yet).
    pub warnings: Vec<Diagnostic>,
    /// Which layout the configuration was read from.
    pub format: Format,
}

/// Which configuration layout the tree uses (first match wins, spec section 4); Err when none.
pub fn detect(source: &dyn ConfigSource) -> Result<Format, Diagnostics> {
    match formats::detect(source) {
        Ok(Some(f)) => Ok(f),
        Ok(None) => Err(Diagnostics(vec![Diagnostic::error(
            "",
            0,
            0,
            "",
            "no configuration found: add .slipway/config.yaml, .upsun/config.yaml, .platform.app.yaml, .magento.app.yaml or a Procfile",
        )])),
        Err(d) => Err(Diagnostics(vec![d])),
    }
}

/// Load and validate. Ok carries the topology and warnings; Err carries every problem found (errors and warnings).
/// The files of other layouts the tree holds, which are not read, are warnings too.
pub fn load(source: &dyn ConfigSource) -> Result<Loaded, Diagnostics> {
    let format = detect(source)?;
    let ignored = formats::ignored_layouts(source, format);
    match load_as(source, format) {
        Ok(mut loaded) => {
            loaded.warnings.extend(ignored);
            Ok(loaded)
        }
        Err(Diagnostics(mut all)) => {
            all.extend(ignored);
            Err(Diagnostics(all))
        }
    }
}

/// Load the configuration of one given layout, ignoring detection (e.g. to check the `.platform/`
/// files of a repository that also holds a `.upsun/config.yaml`).
pub fn load_as(source: &dyn ConfigSource, format: Format) -> Result<Loaded, Diagnostics> {
    let mut diags = Vec::new();
    let topology = match format {
        Format::Slipway => formats::load_single_file(source, ".slipway/config.yaml", &mut diags),
        Format::Upsun => formats::load_single_file(source, ".upsun/config.yaml", &mut diags),
        Format::PlatformSh => {
            formats::load_platform(source, ".platform", ".platform.app.yaml", &mut diags)
        }
        Format::MagentoCloud => {
            formats::load_platform(source, ".magento", ".magento.app.yaml", &mut diags)
        }
        Format::Procfile => procfile::load(source, &mut diags),
    };
    // Stable order: by file, then position; the same problem is reported once.
    diags.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    diags.dedup();
    if diags.iter().any(Diagnostic::is_error) {
        return Err(Diagnostics(diags));
    }
    Ok(Loaded {
        topology,
        warnings: diags,
        format,
    })
}
