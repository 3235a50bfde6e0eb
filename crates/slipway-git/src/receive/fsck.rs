//! Checks of received objects, the equivalent of git's `receive.fsckObjects`: every commit, tree
//! and tag of a pack is parsed strictly, and `.gitmodules` blobs are checked for option
//! injection. A pack with one bad object is refused as a whole.
//!
//! The checks follow git's `fsck.c` for everything git reports as an error by default:
//! malformed headers and identities (`badTree`, `badParentSha1`, `missingAuthor`, `badEmail`,
//! `badDate`, `badTimezone`, `nulInHeader`, ...), tree entries that are empty, contain `/`, are
//! `.`, `..` or `.git` (in any case, with the HFS+ and NTFS variants), duplicate or unsorted
//! entries, bad modes, a `.gitmodules` that is a symlink, and `.gitmodules` files whose
//! submodule names escape (`..`) or whose `url`/`path` start with `-`.

use std::collections::HashSet;
use std::path::Path;

use gix::bstr::ByteSlice;
use gix::ObjectId;

/// Length of a hex object id (SHA-1).
const HEX_LEN: usize = 40;
/// Length of a binary object id (SHA-1).
const RAW_LEN: usize = 20;

/// Why an object was refused: `object <id>: <problem>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("object {id}: {problem}")]
pub struct FsckError {
    /// The offending object.
    pub id: ObjectId,
    /// What is wrong (git's message id first, like `hasDotgit: ...`).
    pub problem: String,
}

/// Checks every object of the pack indexed at `index` (a `.idx` file), reading objects through
/// `repo` (whose object database must see the pack). Runs on a blocking thread.
pub fn check_pack(repo: &gix::Repository, index: &Path) -> Result<(), FsckError> {
    let null = ObjectId::null(gix::hash::Kind::Sha1);
    let index =
        gix::odb::pack::index::File::at(index, gix::hash::Kind::Sha1).map_err(|e| FsckError {
            id: null,
            problem: format!("cannot read the pack index: {e}"),
        })?;
    let mut gitmodules = HashSet::new();
    for entry in index.iter() {
        let id = entry.oid;
        let unreadable = |e: &dyn std::fmt::Display| FsckError {
            id,
            problem: format!("cannot read: {e}"),
        };
        // The header alone tells the kind: blobs (most of the bytes) are not inflated again.
        let kind = repo.find_header(id).map_err(|e| unreadable(&e))?.kind();
        if kind == gix::object::Kind::Blob {
            continue;
        }
        let object = repo.find_object(id).map_err(|e| unreadable(&e))?;
        let bad = |problem: String| FsckError { id, problem };
        match object.kind {
            gix::object::Kind::Commit => check_commit(&object.data).map_err(bad)?,
            gix::object::Kind::Tag => check_tag(&object.data).map_err(bad)?,
            gix::object::Kind::Tree => check_tree(&object.data, &mut gitmodules).map_err(bad)?,
            gix::object::Kind::Blob => {}
        }
    }
    // `.gitmodules` blobs named by the pack's trees, whether the blob came in this pack or
    // already existed.
    for id in gitmodules {
        let Ok(object) = repo.find_object(id) else {
            // Missing: the connectivity check refuses the push.
            continue;
        };
        if object.kind != gix::object::Kind::Blob {
            return Err(FsckError {
                id,
                problem: "gitmodulesBlob: a .gitmodules entry is not a blob".into(),
            });
        }
        check_gitmodules(&object.data).map_err(|problem| FsckError { id, problem })?;
    }
    Ok(())
}

/// Reads `<name> <40 hex>\n` at the start of `data`; returns the rest.
fn id_line<'a>(data: &'a [u8], name: &str, problem: &str) -> Result<&'a [u8], String> {
    let rest = data
        .strip_prefix(name.as_bytes())
        .and_then(|r| r.strip_prefix(b" "))
        .ok_or_else(|| problem.to_string())?;
    if rest.len() < HEX_LEN + 1
        || rest[HEX_LEN] != b'\n'
        || !rest[..HEX_LEN]
            .iter()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return Err(problem.to_string());
    }
    Ok(&rest[HEX_LEN + 1..])
}

/// The header part of a commit or tag: up to the first empty line (or the end).
fn header(data: &[u8]) -> Result<&[u8], String> {
    let end = data.find(b"\n\n").map(|i| i + 1).unwrap_or(data.len());
    let head = &data[..end];
    if head.contains(&0) {
        return Err("nulInHeader: NUL byte in the object header".into());
    }
    Ok(head)
}

/// Checks a commit's headers.
pub fn check_commit(data: &[u8]) -> Result<(), String> {
    let head = header(data)?;
    let mut rest = id_line(head, "tree", "badTree: invalid or missing 'tree' line")?;
    while rest.starts_with(b"parent ") {
        rest = id_line(rest, "parent", "badParentSha1: invalid 'parent' line")?;
    }
    let (author, r) = line_after(rest, "author ")
        .ok_or_else(|| "missingAuthor: invalid or missing 'author' line".to_string())?;
    check_ident(author)?;
    rest = r;
    // git tolerates several author lines only as a warning; refuse them as it does by default.
    if rest.starts_with(b"author ") {
        return Err("multipleAuthors: more than one 'author' line".into());
    }
    let (committer, _) = line_after(rest, "committer ")
        .ok_or_else(|| "missingCommitter: invalid or missing 'committer' line".to_string())?;
    check_ident(committer)
}

/// Checks an annotated tag's headers.
pub fn check_tag(data: &[u8]) -> Result<(), String> {
    let head = header(data)?;
    let rest = id_line(
        head,
        "object",
        "missingObject: invalid or missing 'object' line",
    )?;
    let (kind, rest) = line_after(rest, "type ")
        .ok_or_else(|| "missingTypeEntry: invalid or missing 'type' line".to_string())?;
    if !matches!(kind, b"commit" | b"tree" | b"blob" | b"tag") {
        return Err(format!("badType: invalid tag type {:?}", kind.as_bstr()));
    }
    let (name, rest) = line_after(rest, "tag ")
        .ok_or_else(|| "missingTagEntry: invalid or missing 'tag' line".to_string())?;
    if name.is_empty() {
        return Err("badTagName: empty tag name".into());
    }
    if let Some((tagger, _)) = line_after(rest, "tagger ") {
        check_ident(tagger)?;
    }
    Ok(())
}

/// If `data` starts with `prefix`, the rest of that line and what follows the line.
fn line_after<'a>(data: &'a [u8], prefix: &str) -> Option<(&'a [u8], &'a [u8])> {
    let rest = data.strip_prefix(prefix.as_bytes())?;
    let nl = rest.find_byte(b'\n')?;
    Some((&rest[..nl], &rest[nl + 1..]))
}

/// Checks `Name <email> 1234567890 +0100` like git's `fsck_ident`.
pub fn check_ident(ident: &[u8]) -> Result<(), String> {
    let name_end = ident
        .iter()
        .position(|b| *b == b'<' || *b == b'>')
        .ok_or_else(|| "missingEmail: missing email in identity".to_string())?;
    if ident[name_end] == b'>' {
        return Err("badName: invalid author/committer name".into());
    }
    if name_end == 0 {
        return Err("missingNameBeforeEmail: missing name before email".into());
    }
    if ident[name_end - 1] != b' ' {
        return Err("missingSpaceBeforeEmail: missing space before email".into());
    }
    let email = &ident[name_end + 1..];
    let email_end = email
        .iter()
        .position(|b| *b == b'<' || *b == b'>')
        .ok_or_else(|| "badEmail: invalid email".to_string())?;
    if email[email_end] != b'>' {
        return Err("badEmail: invalid email".into());
    }
    let after = &email[email_end + 1..];
    let date = after
        .strip_prefix(b" ")
        .ok_or_else(|| "missingSpaceBeforeDate: missing space before date".to_string())?;
    let digits = date.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return Err("badDate: invalid date".into());
    }
    if date[0] == b'0' && digits > 1 {
        return Err("zeroPaddedDate: zero-padded date".into());
    }
    if digits > 19
        || date[..digits]
            .to_str()
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .is_none()
    {
        return Err("badDateOverflow: invalid date value".into());
    }
    let tz = date[digits..]
        .strip_prefix(b" ")
        .ok_or_else(|| "badDate: invalid date".to_string())?;
    if tz.len() != 5 || !matches!(tz[0], b'+' | b'-') || !tz[1..].iter().all(u8::is_ascii_digit) {
        return Err("badTimezone: invalid timezone".into());
    }
    Ok(())
}

/// One tree entry as stored.
struct Entry<'a> {
    mode: &'a [u8],
    name: &'a [u8],
    id: ObjectId,
}

/// Checks a tree's entries; adds the ids of `.gitmodules` blobs to `gitmodules`.
pub fn check_tree(data: &[u8], gitmodules: &mut HashSet<ObjectId>) -> Result<(), String> {
    let mut rest = data;
    let mut previous: Option<Entry<'_>> = None;
    while !rest.is_empty() {
        let sp = rest
            .find_byte(b' ')
            .ok_or_else(|| "badTree: cannot parse tree entry".to_string())?;
        let mode = &rest[..sp];
        let after = &rest[sp + 1..];
        let nul = after
            .find_byte(0)
            .ok_or_else(|| "badTree: cannot parse tree entry".to_string())?;
        let name = &after[..nul];
        if after.len() < nul + 1 + RAW_LEN {
            return Err("badTree: truncated tree entry".into());
        }
        let id = ObjectId::try_from(&after[nul + 1..nul + 1 + RAW_LEN])
            .map_err(|_| "badTree: bad object id in tree entry".to_string())?;
        rest = &after[nul + 1 + RAW_LEN..];
        let entry = Entry { mode, name, id };
        check_entry(&entry, gitmodules)?;
        if let Some(prev) = &previous {
            match compare_entries(prev, &entry) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => {
                    return Err(format!(
                        "duplicateEntries: contains duplicate file entries ({:?})",
                        entry.name.as_bstr()
                    ))
                }
                std::cmp::Ordering::Greater => {
                    return Err("treeNotSorted: not properly sorted".into());
                }
            }
            // A file and a folder of the same name sort apart but are duplicates too.
            if prev.name == entry.name {
                return Err(format!(
                    "duplicateEntries: contains duplicate file entries ({:?})",
                    entry.name.as_bstr()
                ));
            }
        }
        previous = Some(entry);
    }
    Ok(())
}

fn is_tree_mode(mode: &[u8]) -> bool {
    mode == b"40000" || mode == b"040000"
}

/// git's tree order: names compared bytewise, a tree's name as if it ended in `/`.
fn compare_entries(a: &Entry<'_>, b: &Entry<'_>) -> std::cmp::Ordering {
    let key = |e: &Entry<'_>| {
        let mut k = e.name.to_vec();
        if is_tree_mode(e.mode) {
            k.push(b'/');
        }
        k
    };
    key(a).cmp(&key(b))
}

fn check_entry(entry: &Entry<'_>, gitmodules: &mut HashSet<ObjectId>) -> Result<(), String> {
    let name = entry.name;
    let shown = name.as_bstr();
    match entry.mode {
        b"100644" | b"100755" | b"120000" | b"40000" | b"160000" | b"100664" => {}
        b"040000" => return Err("zeroPaddedFilemode: contains zero-padded file modes".into()),
        other => {
            return Err(format!(
                "badFilemode: contains bad file mode {:?} ({shown:?})",
                other.as_bstr()
            ))
        }
    }
    if name.is_empty() {
        return Err("emptyName: contains empty pathname".into());
    }
    if name.contains(&b'/') {
        return Err(format!("fullPathname: contains full pathname {shown:?}"));
    }
    if name == b"." {
        return Err("hasDot: contains '.'".into());
    }
    if name == b".." {
        return Err("hasDotdot: contains '..'".into());
    }
    if is_dot_git(name) {
        return Err(format!("hasDotgit: contains '.git' ({shown:?})"));
    }
    if is_gitmodules(name) {
        if entry.mode == b"120000" {
            return Err("gitmodulesSymlink: .gitmodules is a symbolic link".into());
        }
        if !is_tree_mode(entry.mode) && entry.mode != b"160000" {
            gitmodules.insert(entry.id);
        }
    }
    Ok(())
}

/// Removes characters HFS+ ignores in file names (zero-width joiners and the like).
fn strip_hfs_ignorable(name: &[u8]) -> Vec<u8> {
    let Ok(text) = std::str::from_utf8(name) else {
        return name.to_vec();
    };
    text.chars()
        .filter(|c| {
            !matches!(
                *c as u32,
                0x200c..=0x200f | 0x202a..=0x202e | 0x206a..=0x206f | 0xfeff
            )
        })
        .collect::<String>()
        .into_bytes()
}

/// Whether a name would be `.git` on some file system: any case, HFS+ ignorable characters,
/// NTFS trailing dots and spaces, NTFS short name `git~1`, NTFS stream suffixes.
pub fn is_dot_git(name: &[u8]) -> bool {
    is_ntfs_or_hfs_name(name, b"git", b"git~1")
}

/// Whether a name would be `.gitmodules` on some file system (see [`is_dot_git`]).
pub fn is_gitmodules(name: &[u8]) -> bool {
    is_ntfs_or_hfs_name(name, b"gitmodules", b"gitmod~1")
        || name.to_ascii_lowercase().starts_with(b"gi7eba~")
}

fn is_ntfs_or_hfs_name(name: &[u8], base: &[u8], short: &[u8]) -> bool {
    let stripped = strip_hfs_ignorable(name).to_ascii_lowercase();
    // NTFS ignores trailing dots and spaces, and anything from a ':' on (alternate streams).
    let mut n: &[u8] = &stripped;
    if let Some(colon) = n.find_byte(b':') {
        n = &n[..colon];
    }
    while let Some(r) = n.strip_suffix(b".").or_else(|| n.strip_suffix(b" ")) {
        n = r;
    }
    if n == short {
        return true;
    }
    matches!(n.strip_prefix(b"."), Some(rest) if rest == base)
}

/// Checks a `.gitmodules` blob: submodule names must not escape, `url` and `path` must not
/// look like options. A file that does not parse as git config is left alone (git does the same).
pub fn check_gitmodules(data: &[u8]) -> Result<(), String> {
    let Ok(file) = gix::config::File::from_bytes_no_includes(
        data,
        gix::config::file::Metadata::from(gix::config::Source::Local),
        Default::default(),
    ) else {
        return Ok(());
    };
    let Some(sections) = file.sections_by_name("submodule") else {
        return Ok(());
    };
    for section in sections {
        let name = section
            .header()
            .subsection_name()
            .map(|n| n.to_vec())
            .unwrap_or_default();
        if name
            .split(|b| *b == b'/' || *b == b'\\')
            .any(|part| part == b"..")
            || name.starts_with(b"-")
        {
            return Err(format!(
                "gitmodulesName: disallowed submodule name {:?}",
                name.as_bstr()
            ));
        }
        for key in ["url", "path"] {
            for value in section.values(key) {
                let v = value.trim_start();
                if v.starts_with(b"-") {
                    return Err(format!(
                        "gitmodules{}: disallowed submodule {key} {:?}",
                        if key == "url" { "Url" } else { "Path" },
                        value.as_bstr()
                    ));
                }
                if key == "url" && value.contains(&b'\n') {
                    return Err("gitmodulesUrl: submodule url holds a newline".into());
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, (mode, name)) in entries.iter().enumerate() {
            out.extend_from_slice(mode.as_bytes());
            out.push(b' ');
            out.extend_from_slice(name);
            out.push(0);
            out.extend_from_slice(&[i as u8 + 1; RAW_LEN]);
        }
        out
    }

    #[test]
    fn idents() {
        assert!(check_ident(b"A U Thor <a@example.com> 1700000000 +0100").is_ok());
        assert!(check_ident(b" <a@b> 0 +0000").is_ok());
        for (bad, id) in [
            (&b"A U Thor a@example.com 1 +0000"[..], "missingEmail"),
            (b"<a@b> 1 +0000", "missingNameBeforeEmail"),
            (b"A<a@b> 1 +0000", "missingSpaceBeforeEmail"),
            (b"A > <a@b> 1 +0000", "badName"),
            (b"A <a@b 1 +0000", "badEmail"),
            (b"A <a@b>1 +0000", "missingSpaceBeforeDate"),
            (b"A <a@b> x +0000", "badDate"),
            (b"A <a@b> 01 +0000", "zeroPaddedDate"),
            (b"A <a@b> 99999999999999999999999 +0000", "badDateOverflow"),
            (b"A <a@b> 1 0000", "badTimezone"),
            (b"A <a@b> 1 +00", "badTimezone"),
            (b"A <a@b> 1", "badDate"),
        ] {
            let err = check_ident(bad).expect_err(&String::from_utf8_lossy(bad));
            assert!(err.starts_with(id), "{err} for {:?}", bad.as_bstr());
        }
    }

    #[test]
    fn commits() {
        let t = "a".repeat(40);
        let ok = format!(
            "tree {t}\nparent {t}\nauthor A <a@b> 1 +0000\ncommitter C <c@d> 2 -0130\n\nmsg\n"
        );
        assert!(check_commit(ok.as_bytes()).is_ok());
        for (bad, id) in [
            (format!("tree {}\nauthor A <a@b> 1 +0000\ncommitter C <c@d> 2 +0000\n\n", "A".repeat(40)), "badTree"),
            (format!("tree {t}\nparent xyz\nauthor A <a@b> 1 +0000\ncommitter C <c@d> 2 +0000\n\n"), "badParentSha1"),
            (format!("tree {t}\ncommitter C <c@d> 2 +0000\n\n"), "missingAuthor"),
            (format!("tree {t}\nauthor A <a@b> 1 +0000\n\n"), "missingCommitter"),
            (format!("tree {t}\nauthor A <a@b> 1 +0000\nauthor A <a@b> 1 +0000\ncommitter C <c@d> 2 +0000\n\n"), "multipleAuthors"),
            (format!("tree {t}\nauthor A <a@b> 1 +0000\ncommitter C <c@d> 2 +0000\x00\n\n"), "nulInHeader"),
            ("author A <a@b> 1 +0000\n".to_string(), "badTree"),
        ] {
            let err = check_commit(bad.as_bytes()).expect_err(&bad);
            assert!(err.starts_with(id), "{err} for {bad:?}");
        }
    }

    #[test]
    fn tags() {
        let t = "b".repeat(40);
        assert!(check_tag(
            format!("object {t}\ntype commit\ntag v1\ntagger T <t@t> 1 +0000\n\nm").as_bytes()
        )
        .is_ok());
        assert!(check_tag(format!("object {t}\ntype car\ntag v1\n\n").as_bytes()).is_err());
        assert!(check_tag(
            format!("object {t}\ntype commit\ntag v1\ntagger T t@t 1 +0000\n\n").as_bytes()
        )
        .is_err());
        assert!(check_tag(b"type commit\n").is_err());
    }

    #[test]
    fn trees() {
        let mut gm = HashSet::new();
        assert!(
            check_tree(
                &tree(&[("100644", b"a"), ("40000", b"b"), ("100644", b"b.txt")]),
                &mut gm
            )
            .is_err(),
            "b/ sorts after b.txt"
        );
        assert!(check_tree(
            &tree(&[("100644", b"a"), ("100644", b"b.txt"), ("40000", b"b")]),
            &mut gm
        )
        .is_ok());
        assert!(check_tree(&[], &mut gm).is_ok());
        for (entries, id) in [
            (vec![("100644", &b".git"[..])], "hasDotgit"),
            (vec![("40000", &b".GIT"[..])], "hasDotgit"),
            (vec![("40000", &b"git~1"[..])], "hasDotgit"),
            (vec![("40000", &b".git. . "[..])], "hasDotgit"),
            (vec![("40000", ".g\u{200c}it".as_bytes())], "hasDotgit"),
            (vec![("100644", &b".."[..])], "hasDotdot"),
            (vec![("100644", &b"."[..])], "hasDot"),
            (vec![("100644", &b""[..])], "emptyName"),
            (vec![("100644", &b"a/b"[..])], "fullPathname"),
            (vec![("100645", &b"a"[..])], "badFilemode"),
            (vec![("040000", &b"a"[..])], "zeroPaddedFilemode"),
            (
                vec![("100644", &b"a"[..]), ("100644", &b"a"[..])],
                "duplicateEntries",
            ),
            (
                vec![("100644", &b"a"[..]), ("40000", &b"a"[..])],
                "duplicateEntries",
            ),
            (
                vec![("100644", &b"b"[..]), ("100644", &b"a"[..])],
                "treeNotSorted",
            ),
            (vec![("120000", &b".gitmodules"[..])], "gitmodulesSymlink"),
        ] {
            let err = check_tree(&tree(&entries), &mut gm).expect_err(id);
            assert!(err.starts_with(id), "{err} (expected {id})");
        }
        let mut truncated = tree(&[("100644", b"a")]);
        truncated.pop();
        assert!(check_tree(&truncated, &mut gm)
            .unwrap_err()
            .starts_with("badTree"));
        let mut gm = HashSet::new();
        check_tree(&tree(&[("100644", b".gitmodules")]), &mut gm).unwrap();
        assert_eq!(gm.len(), 1);
    }

    #[test]
    fn gitmodules() {
        assert!(check_gitmodules(
            b"[submodule \"lib\"]\n\tpath = lib\n\turl = https://example.com/lib.git\n"
        )
        .is_ok());
        assert!(check_gitmodules(b"not [ a config").is_ok());
        for (bad, id) in [
            (
                &b"[submodule \"x\"]\n\turl = --upload-pack=touch /tmp/pwned\n"[..],
                "gitmodulesUrl",
            ),
            (b"[submodule \"x\"]\n\tpath = -x\n", "gitmodulesPath"),
            (
                b"[submodule \"../../hooks\"]\n\tpath = a\n",
                "gitmodulesName",
            ),
            (b"[submodule \"a\\\\..\"]\n\tpath = a\n", "gitmodulesName"),
        ] {
            let err = check_gitmodules(bad).expect_err(id);
            assert!(err.starts_with(id), "{err}");
        }
        assert!(is_gitmodules(b".GitModules"));
        assert!(is_gitmodules(b"GITMOD~1"));
        assert!(!is_gitmodules(b"gitmodules"));
    }
}
