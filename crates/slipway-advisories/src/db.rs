//! The advisory database: `DATA/advisories/osv.db`, SQLite, one row per advisory and one
//! per affected (ecosystem, package), indexed for lookups by ecosystem and package name.
//!
//! Import reads every file first and writes in one transaction: a corrupt file refuses the
//! whole import, naming the file, and the database stays as it was.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::osv::Advisory;
use crate::version::Ecosystem;

/// The largest OSV JSON file (or zip entry) read, in bytes.
pub const MAX_ADVISORY_FILE: u64 = 16 << 20;

/// Errors of the advisory database.
#[derive(Debug, thiserror::Error)]
pub enum AdvisoryError {
    /// A file to import could not be read or parsed; nothing was imported.
    #[error("{path}: {reason}")]
    BadFile {
        /// The file (for zip dumps `FILE.zip:ENTRY`).
        path: String,
        /// Why.
        reason: String,
    },
    /// The database itself.
    #[error("advisory database {path}: {source}")]
    Db {
        /// Where it is.
        path: PathBuf,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// A stored advisory no longer decodes.
    #[error("advisory database {path}: stored advisory {id} does not decode: {reason}")]
    Corrupt {
        /// Where it is.
        path: PathBuf,
        /// The advisory.
        id: String,
        /// Why.
        reason: String,
    },
}

/// One ecosystem's line of `slipway advisories ls`.
#[derive(Debug, Clone, Serialize)]
pub struct EcosystemSummary {
    /// OSV ecosystem name.
    pub ecosystem: String,
    /// Advisories affecting packages of it.
    pub advisories: u64,
    /// Distinct packages.
    pub packages: u64,
    /// Newest `modified` of its advisories.
    pub newest_modified: String,
    /// When advisories of it were last imported (seconds since the epoch).
    pub imported_at: i64,
}

/// What an import did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportStats {
    /// Files (and zip entries) read.
    pub files: usize,
    /// Advisories written (new or replaced).
    pub advisories: usize,
    /// Withdrawn advisories removed or skipped.
    pub withdrawn: usize,
}

/// The open advisory database.
pub struct Database {
    conn: Connection,
    path: PathBuf,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS advisory (
    id TEXT PRIMARY KEY,
    modified TEXT NOT NULL,
    json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS affected (
    ecosystem TEXT NOT NULL,
    package TEXT NOT NULL,
    advisory TEXT NOT NULL,
    idx INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS affected_by_package ON affected (ecosystem, package);
CREATE INDEX IF NOT EXISTS affected_by_advisory ON affected (advisory);
CREATE TABLE IF NOT EXISTS import (
    ecosystem TEXT PRIMARY KEY,
    imported_at INTEGER NOT NULL
);
";

impl Database {
    /// The database file under a data dir.
    pub fn path_in(data_dir: &Path) -> PathBuf {
        data_dir.join("advisories").join("osv.db")
    }

    /// Whether a data dir has an advisory database.
    pub fn exists_in(data_dir: &Path) -> bool {
        Self::path_in(data_dir).is_file()
    }

    /// Open (creating it and its folder, mode 0700, if missing) the database of `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Database, AdvisoryError> {
        let path = Self::path_in(data_dir);
        let db_err = |source| AdvisoryError::Db {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent() {
            if !dir.is_dir() {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(|e| AdvisoryError::BadFile {
                        path: dir.display().to_string(),
                        reason: e.to_string(),
                    })?;
            }
        }
        let conn = Connection::open(&path).map_err(db_err)?;
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA busy_timeout=5000;")
            .map_err(db_err)?;
        conn.execute_batch(SCHEMA).map_err(db_err)?;
        Ok(Database { conn, path })
    }

    fn db_err(&self) -> impl Fn(rusqlite::Error) -> AdvisoryError + '_ {
        |source| AdvisoryError::Db {
            path: self.path.clone(),
            source,
        }
    }

    /// Import advisories (from [`load_path`]) in one transaction. An advisory whose id is
    /// already stored is replaced; a withdrawn one is removed.
    pub fn import(&mut self, advisories: &[Advisory]) -> Result<ImportStats, AdvisoryError> {
        let path = self.path.clone();
        let db_err = |source| AdvisoryError::Db {
            path: path.clone(),
            source,
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let mut stats = ImportStats::default();
        let tx = self.conn.transaction().map_err(db_err)?;
        {
            let mut del_adv = tx
                .prepare("DELETE FROM advisory WHERE id = ?1")
                .map_err(db_err)?;
            let mut del_aff = tx
                .prepare("DELETE FROM affected WHERE advisory = ?1")
                .map_err(db_err)?;
            let mut ins_adv = tx
                .prepare("INSERT INTO advisory (id, modified, json) VALUES (?1, ?2, ?3)")
                .map_err(db_err)?;
            let mut ins_aff = tx
                .prepare(
                    "INSERT INTO affected (ecosystem, package, advisory, idx) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(db_err)?;
            let mut seen_eco = std::collections::BTreeSet::new();
            for adv in advisories {
                del_adv.execute(params![adv.id]).map_err(db_err)?;
                del_aff.execute(params![adv.id]).map_err(db_err)?;
                if adv.withdrawn.is_some() {
                    stats.withdrawn += 1;
                    continue;
                }
                let json = serde_json::to_string(adv).map_err(|e| AdvisoryError::BadFile {
                    path: adv.id.clone(),
                    reason: e.to_string(),
                })?;
                ins_adv
                    .execute(params![adv.id, adv.modified, json])
                    .map_err(db_err)?;
                for (idx, a) in adv.affected.iter().enumerate() {
                    let Some(pkg) = &a.package else { continue };
                    let name = match Ecosystem::from_osv(&pkg.ecosystem) {
                        Some(eco) => eco.normalize_name(&pkg.name),
                        None => pkg.name.clone(),
                    };
                    ins_aff
                        .execute(params![pkg.ecosystem, name, adv.id, idx as i64])
                        .map_err(db_err)?;
                    seen_eco.insert(pkg.ecosystem.clone());
                }
                stats.advisories += 1;
            }
            for eco in seen_eco {
                tx.execute(
                    "INSERT INTO import (ecosystem, imported_at) VALUES (?1, ?2)
                     ON CONFLICT(ecosystem) DO UPDATE SET imported_at = excluded.imported_at",
                    params![eco, now],
                )
                .map_err(db_err)?;
            }
        }
        tx.commit().map_err(db_err)?;
        Ok(stats)
    }

    /// Ecosystems with their counts and ages, by name.
    pub fn summary(&self) -> Result<Vec<EcosystemSummary>, AdvisoryError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT f.ecosystem, COUNT(DISTINCT f.advisory), COUNT(DISTINCT f.package),
                        MAX(a.modified), COALESCE(i.imported_at, 0)
                 FROM affected f JOIN advisory a ON a.id = f.advisory
                 LEFT JOIN import i ON i.ecosystem = f.ecosystem
                 GROUP BY f.ecosystem ORDER BY f.ecosystem",
            )
            .map_err(self.db_err())?;
        let rows = stmt
            .query_map([], |r| {
                Ok(EcosystemSummary {
                    ecosystem: r.get(0)?,
                    advisories: r.get::<_, i64>(1)? as u64,
                    packages: r.get::<_, i64>(2)? as u64,
                    newest_modified: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                    imported_at: r.get(4)?,
                })
            })
            .map_err(self.db_err())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.db_err())
    }

    /// The advisories affecting some version of package `name` of `eco`, each with the index
    /// of its `affected` entry for that package.
    pub fn lookup(
        &self,
        eco: Ecosystem,
        name: &str,
    ) -> Result<Vec<(Advisory, usize)>, AdvisoryError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT a.id, a.json, f.idx FROM affected f JOIN advisory a ON a.id = f.advisory
                 WHERE f.ecosystem = ?1 AND f.package = ?2 ORDER BY a.id",
            )
            .map_err(self.db_err())?;
        let rows = stmt
            .query_map(params![eco.osv_name(), eco.normalize_name(name)], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .map_err(self.db_err())?;
        let mut out = Vec::new();
        for row in rows {
            let (id, json, idx) = row.map_err(self.db_err())?;
            let adv: Advisory =
                serde_json::from_str(&json).map_err(|e| AdvisoryError::Corrupt {
                    path: self.path.clone(),
                    id,
                    reason: e.to_string(),
                })?;
            out.push((adv, idx.max(0) as usize));
        }
        Ok(out)
    }

    /// The stored advisory `id`, if any.
    pub fn get(&self, id: &str) -> Result<Option<Advisory>, AdvisoryError> {
        let json: Option<String> = self
            .conn
            .query_row(
                "SELECT json FROM advisory WHERE id = ?1",
                params![id],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.db_err())?;
        json.map(|j| {
            serde_json::from_str(&j).map_err(|e| AdvisoryError::Corrupt {
                path: self.path.clone(),
                id: id.to_string(),
                reason: e.to_string(),
            })
        })
        .transpose()
    }
}

fn bad(path: impl Into<String>, reason: impl std::fmt::Display) -> AdvisoryError {
    AdvisoryError::BadFile {
        path: path.into(),
        reason: reason.to_string(),
    }
}

/// Parse one OSV JSON document: an advisory, or an array of them.
fn parse_json(label: &str, bytes: &[u8]) -> Result<Vec<Advisory>, AdvisoryError> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| bad(label, e))?;
    let list = match value {
        serde_json::Value::Array(items) => items,
        v => vec![v],
    };
    list.into_iter()
        .map(|v| {
            let adv: Advisory = serde_json::from_value(v)
                .map_err(|e| bad(label, format!("not an OSV advisory: {e}")))?;
            if adv.id.trim().is_empty() {
                return Err(bad(label, "not an OSV advisory: empty id"));
            }
            Ok(adv)
        })
        .collect()
}

fn read_capped(label: &str, r: impl Read) -> Result<Vec<u8>, AdvisoryError> {
    let mut buf = Vec::new();
    r.take(MAX_ADVISORY_FILE + 1)
        .read_to_end(&mut buf)
        .map_err(|e| bad(label, e))?;
    if buf.len() as u64 > MAX_ADVISORY_FILE {
        return Err(bad(
            label,
            format!("larger than {} MiB", MAX_ADVISORY_FILE >> 20),
        ));
    }
    Ok(buf)
}

fn load_zip(path: &Path, stats: &mut ImportStats) -> Result<Vec<Advisory>, AdvisoryError> {
    let label = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| bad(&label, e))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| bad(&label, e))?;
    let mut out = Vec::new();
    for i in 0..archive.len() {
        let entry = archive.by_index(i).map_err(|e| bad(&label, e))?;
        let name = entry.name().map_err(|e| bad(&label, e))?.into_owned();
        if !entry.is_file() || !name.ends_with(".json") {
            continue;
        }
        let entry_label = format!("{label}:{name}");
        let bytes = read_capped(&entry_label, entry)?;
        out.extend(parse_json(&entry_label, &bytes)?);
        stats.files += 1;
    }
    Ok(out)
}

/// Read every advisory of `path`: an OSV JSON file, a zip dump (`all.zip`), or a folder
/// of them (recursively; other files are skipped). The first bad file fails the whole load.
pub fn load_path(path: &Path) -> Result<(Vec<Advisory>, ImportStats), AdvisoryError> {
    let mut stats = ImportStats::default();
    let mut out = Vec::new();
    load_into(path, true, &mut out, &mut stats)?;
    Ok((out, stats))
}

fn load_into(
    path: &Path,
    top: bool,
    out: &mut Vec<Advisory>,
    stats: &mut ImportStats,
) -> Result<(), AdvisoryError> {
    let label = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| bad(&label, e))?;
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| bad(&label, e))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(|e| bad(&label, e))?;
        entries.sort();
        for p in entries {
            load_into(&p, false, out, stats)?;
        }
        return Ok(());
    }
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    match ext {
        "zip" => out.extend(load_zip(path, stats)?),
        "json" => {
            let f = std::fs::File::open(path).map_err(|e| bad(&label, e))?;
            let bytes = read_capped(&label, f)?;
            out.extend(parse_json(&label, &bytes)?);
            stats.files += 1;
        }
        _ if top => {
            return Err(bad(
                label,
                "not an OSV file: expected FILE.json, FILE.zip or a folder",
            ))
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn advisory(id: &str, eco: &str, name: &str, fixed: &str) -> String {
        serde_json::json!({
            "id": id, "modified": "2024-01-01T00:00:00Z", "summary": format!("{id} summary"),
            "affected": [{"package": {"ecosystem": eco, "name": name},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}]}]
        })
        .to_string()
    }

    #[test]
    fn import_files_folders_and_zips_then_look_up() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir_all(src.join("nested")).unwrap();
        std::fs::write(
            src.join("a.json"),
            advisory("GHSA-a", "PyPI", "Django_Rest", "2.0"),
        )
        .unwrap();
        std::fs::write(src.join("nested/notes.txt"), "skipped").unwrap();
        let zip_path = src.join("nested/all.zip");
        let mut z = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        z.start_file("GHSA-b.json", opts).unwrap();
        z.write_all(advisory("GHSA-b", "npm", "lodash", "4.17.21").as_bytes())
            .unwrap();
        z.finish().unwrap();

        let data = tmp.path().join("data");
        let mut db = Database::open(&data).unwrap();
        let (advs, stats) = load_path(&src).unwrap();
        assert_eq!(stats.files, 2);
        assert_eq!(db.import(&advs).unwrap().advisories, 2);
        let found = db.lookup(Ecosystem::PyPI, "django-rest").unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0.id, "GHSA-a");
        assert_eq!(db.lookup(Ecosystem::Npm, "lodash").unwrap().len(), 1);
        assert!(db.lookup(Ecosystem::Npm, "Lodash").unwrap().is_empty());
        let summary = db.summary().unwrap();
        assert_eq!(summary.len(), 2);

        // A corrupt file refuses the whole import and names itself; nothing changes.
        let bad_dir = tmp.path().join("bad");
        std::fs::create_dir_all(&bad_dir).unwrap();
        std::fs::write(
            bad_dir.join("1.json"),
            advisory("GHSA-c", "npm", "left-pad", "2.0"),
        )
        .unwrap();
        std::fs::write(bad_dir.join("2.json"), "{\"id\": 5}").unwrap();
        let err = load_path(&bad_dir).unwrap_err().to_string();
        assert!(
            err.contains("2.json") && err.contains("not an OSV advisory"),
            "{err}"
        );
        assert!(db.lookup(Ecosystem::Npm, "left-pad").unwrap().is_empty());

        // Re-importing replaces; a withdrawn advisory is removed.
        let mut w: Advisory =
            serde_json::from_str(&advisory("GHSA-b", "npm", "lodash", "4.17.21")).unwrap();
        w.withdrawn = Some("2024-02-01T00:00:00Z".into());
        db.import(&[w]).unwrap();
        assert!(db.lookup(Ecosystem::Npm, "lodash").unwrap().is_empty());
    }
}
