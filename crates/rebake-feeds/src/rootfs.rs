//! The system files of an image built from packages, derived from its spec.
//!
//! Everything here is pure and deterministic: functions take the spec's values (and, where
//! relevant, the files the packages shipped) and return [`LayerEntry`]s with fixed modes
//! and owners; the mtime is set later by [`rebake_oci::build_layer`].
//!
//! - [`account_entries`]: `etc/passwd`, `etc/group`, `etc/shadow` and home directories
//!   from [`Accounts`], merged with the account files a package shipped (Alpine's
//!   `alpine-baselayout-data`, Wolfi's `wolfi-baselayout`, Debian's `base-passwd` does not
//!   ship live files);
//! - [`os_release_entries`]: `usr/lib/os-release` in the `os-release(5)` format and the
//!   `etc/os-release -> ../usr/lib/os-release` symlink;
//! - [`overlay`]: puts those entries over the packages' entries, replacing what a package
//!   shipped at the same paths and adding missing parent directories.
//!
//! # Ownership and modes
//!
//! The entries carry numeric owners and exact modes ([`LayerEntry::owned_by`],
//! [`LayerEntry::with_exact_mode`]), written as such into the layer:
//!
//! - a home directory is owned by its user's `uid:gid` with mode `0755` (like distroless'
//!   `/home/nonroot`: the user can write there, others can read), except the home of uid 0
//!   (`/root`), which is `0700` `root:root` as Debian's `base-files` and Alpine ship it;
//! - `etc/shadow` is `0640` owned by `root:shadow` when the merged `etc/group` has a group
//!   named `shadow` (Debian's and Alpine's convention, so `shadow`-group tools can read it),
//!   else `0600` `root:root`;
//! - `etc/passwd` and `etc/group` are `0644` `root:root`;
//! - `usr/lib/os-release` is `0644` `root:root`.
//!
//! Every account is locked (`*` in `etc/shadow`), so the shadow file holds no secret
//! either way.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;

use rebake_oci::{LayerEntry, LayerEntryKind};
use serde::{Deserialize, Serialize};

/// Everything that can be wrong with the spec's system files.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// Invalid users or groups, or unreadable account files shipped by a package.
    #[error("accounts: {0}")]
    Accounts(String),
    /// An invalid `os-release` key or value.
    #[error("os-release: {0}")]
    OsRelease(String),
}

/// Result alias for this module.
pub type Result<T, E = RootfsError> = std::result::Result<T, E>;

/// The line the root user gets when neither the spec nor a package defines `root`.
pub const DEFAULT_ROOT_PASSWD: &str = "root:x:0:0:root:/root:/bin/sh";

/// The line the root group gets when neither the spec nor a package defines a group named
/// `root` or with gid 0.
pub const DEFAULT_ROOT_GROUP: &str = "root:x:0:";

/// Longest user or group name accepted (shadow-utils' limit).
const MAX_NAME_LEN: usize = 32;

/// Home directories that are never created.
const NO_HOME: [&str; 3] = ["/", "/nonexistent", "/dev/null"];

/// A user account of the image.
///
/// In YAML only `name` and `uid` are required:
///
/// ```yaml
/// { name: nonroot, uid: 65532 }   # gid 65532, /home/nonroot, /sbin/nologin, gecos nonroot
/// ```
///
/// Defaults when a field is left out: `gid` = `uid`; `home` = `/root` for uid 0, else
/// `/home/<name>`; `shell` = `/bin/sh` for uid 0, else `/sbin/nologin` (the shell need not
/// exist in the image); `gecos` = the name. Unknown fields are rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "UserSpec")]
pub struct User {
    /// Login name, `[a-z_][a-z0-9_-]*`, at most 32 characters.
    pub name: String,
    /// Numeric user id.
    pub uid: u32,
    /// Primary group id (see [`account_entries`] for groups created on demand).
    pub gid: u32,
    /// Home directory, absolute.
    pub home: String,
    /// Login shell, absolute.
    pub shell: String,
    /// Comment field (full name); no `:` or newline.
    pub gecos: String,
}

impl User {
    /// A user with every optional field at its default (see [`User`]).
    pub fn new(name: &str, uid: u32) -> Self {
        Self::from(UserSpec {
            name: name.to_owned(),
            uid,
            gid: None,
            home: None,
            shell: None,
            gecos: None,
        })
    }

    fn passwd_line(&self) -> String {
        format!(
            "{}:x:{}:{}:{}:{}:{}",
            self.name, self.uid, self.gid, self.gecos, self.home, self.shell
        )
    }
}

/// The YAML form of a [`User`], with optional fields.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserSpec {
    name: String,
    uid: u32,
    #[serde(default)]
    gid: Option<u32>,
    #[serde(default)]
    home: Option<String>,
    #[serde(default)]
    shell: Option<String>,
    #[serde(default)]
    gecos: Option<String>,
}

impl From<UserSpec> for User {
    fn from(spec: UserSpec) -> Self {
        let root = spec.uid == 0;
        let home = spec.home.unwrap_or_else(|| {
            if root {
                "/root".to_owned()
            } else {
                format!("/home/{}", spec.name)
            }
        });
        let shell = spec
            .shell
            .unwrap_or_else(|| if root { "/bin/sh" } else { "/sbin/nologin" }.to_owned());
        User {
            gid: spec.gid.unwrap_or(spec.uid),
            gecos: spec.gecos.unwrap_or_else(|| spec.name.clone()),
            name: spec.name,
            uid: spec.uid,
            home,
            shell,
        }
    }
}

/// A group of the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// Group name, `[a-z_][a-z0-9_-]*`, at most 32 characters.
    pub name: String,
    /// Numeric group id.
    pub gid: u32,
    /// Supplementary members (user names); default none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
}

impl Group {
    fn group_line(&self) -> String {
        format!("{}:x:{}:{}", self.name, self.gid, self.members.join(","))
    }
}

/// The `accounts:` of an image spec: users and groups written into the image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Accounts {
    /// Users, in the order they are appended to `etc/passwd`.
    #[serde(default)]
    pub users: Vec<User>,
    /// Groups, in the order they are appended to `etc/group`.
    #[serde(default)]
    pub groups: Vec<Group>,
}

impl Accounts {
    /// Checks what can be checked without the packages' account files: names match
    /// `[a-z_][a-z0-9_-]*` (at most 32 characters); no user name or uid, and no group
    /// name or gid, appears twice; homes and shells are absolute; no field holds `:` or a
    /// control character; group members are valid names; a user whose gid has no group in
    /// the spec does not share its name with a spec group of another gid (that group would
    /// have to be created, see [`account_entries`]).
    ///
    /// The error is a human-readable reason.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let mut names = HashSet::new();
        let mut uids = HashSet::new();
        for user in &self.users {
            check_name("user", &user.name)?;
            if !names.insert(user.name.as_str()) {
                return Err(format!("user {} is defined twice", user.name));
            }
            if !uids.insert(user.uid) {
                return Err(format!("uid {} is used by two users (second: {})", user.uid, user.name));
            }
            check_field(&user.name, "gecos", &user.gecos)?;
            for (what, path) in [("home", &user.home), ("shell", &user.shell)] {
                check_field(&user.name, what, path)?;
                if !path.starts_with('/') {
                    return Err(format!("user {}: {what} {path:?} is not absolute", user.name));
                }
            }
        }
        let mut group_names = HashSet::new();
        let mut gids = HashMap::new();
        for group in &self.groups {
            check_name("group", &group.name)?;
            if !group_names.insert(group.name.as_str()) {
                return Err(format!("group {} is defined twice", group.name));
            }
            if gids.insert(group.gid, group.name.as_str()).is_some() {
                return Err(format!(
                    "gid {} is used by two groups (second: {})",
                    group.gid, group.name
                ));
            }
            for member in &group.members {
                check_name(&format!("group {} member", group.name), member)?;
            }
        }
        for user in &self.users {
            if !gids.contains_key(&user.gid)
                && let Some(group) = self.groups.iter().find(|g| g.name == user.name)
            {
                return Err(format!(
                    "user {}: no group has gid {}, and group {} (gid {}) is in the way of creating one",
                    user.name, user.gid, group.name, group.gid
                ));
            }
        }
        Ok(())
    }
}

fn check_name(what: &str, name: &str) -> std::result::Result<(), String> {
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        && name.len() <= MAX_NAME_LEN;
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{what} name {name:?} must match [a-z_][a-z0-9_-]* (at most {MAX_NAME_LEN} characters)"
        ))
    }
}

fn check_field(user: &str, what: &str, value: &str) -> std::result::Result<(), String> {
    if value.contains(':') || value.chars().any(char::is_control) {
        return Err(format!(
            "user {user}: {what} {value:?} contains ':' or a control character"
        ));
    }
    Ok(())
}

/// One parsed line of a shipped `etc/passwd` or `etc/group`.
struct Line {
    name: String,
    /// uid (passwd) or gid (group).
    id: u32,
    text: String,
}

/// Parses account file lines with `fields` colon-separated fields, the name first and the
/// numeric id at `id_field`. Empty lines are skipped.
fn parse_lines(file: &str, text: &str, fields: usize, id_field: usize) -> Result<Vec<Line>> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.trim().is_empty() {
            continue;
        }
        let bad = |why: &str| RootfsError::Accounts(format!("{file} shipped by the packages, line {}: {why}", i + 1));
        let parts: Vec<&str> = line.split(':').collect();
        if parts.len() != fields {
            return Err(bad(&format!("expected {fields} ':'-separated fields")));
        }
        let number = |s: &str| s.parse::<u32>().map_err(|_| bad(&format!("{s:?} is not a number")));
        out.push(Line {
            name: parts[0].to_owned(),
            id: number(parts[id_field])?,
            text: line.to_owned(),
        });
    }
    Ok(out)
}

/// Merges spec lines over shipped ones: a spec entry replaces the shipped line(s) of the
/// same name in place; the others are appended in spec order. A spec entry's id used by any
/// other name is an error (`kind`/`id_kind` name things in it); clashes among shipped lines
/// are the package's business and kept. Returns (name, id, text) in output order.
fn merge_lines(
    kind: &str,
    id_kind: &str,
    shipped: Vec<Line>,
    spec: Vec<(String, u32, String)>,
) -> Result<Vec<(String, u32, String)>> {
    let by_name: HashMap<&str, usize> = spec.iter().enumerate().map(|(i, (n, _, _))| (n.as_str(), i)).collect();
    let mut used = vec![false; spec.len()];
    let mut out = Vec::new();
    for line in shipped {
        match by_name.get(line.name.as_str()) {
            Some(&i) => {
                if !used[i] {
                    used[i] = true;
                    out.push(spec[i].clone());
                }
            }
            None => {
                if let Some((name, _, _)) = spec.iter().find(|(_, id, _)| *id == line.id) {
                    return Err(RootfsError::Accounts(format!(
                        "{id_kind} {} is used by both {} (shipped) and {kind} {name}",
                        line.id, line.name
                    )));
                }
                out.push((line.name, line.id, line.text));
            }
        }
    }
    for (i, entry) in spec.into_iter().enumerate() {
        if !used[i] {
            out.push(entry);
        }
    }
    Ok(out)
}

/// `etc/passwd`, `etc/group`, `etc/shadow` and the users' home directories.
///
/// `existing_passwd`/`existing_group` are the `etc/passwd`/`etc/group` contents the
/// packages shipped, if any. Their lines are kept verbatim and in order, except that a
/// spec user or group of the same name replaces the shipped line in place (the spec wins);
/// the spec's other users and groups are appended in spec order. A spec user's uid (spec
/// group's gid) that a shipped line of another name also uses is an error, as is a
/// malformed shipped line (not 7 resp. 4 `:`-separated fields, non-numeric id); clashes
/// among shipped lines alone are kept as shipped.
///
/// Always present: user `root` ([`DEFAULT_ROOT_PASSWD`], prepended unless the spec or a
/// package defines `root`) and a group with gid 0 ([`DEFAULT_ROOT_GROUP`], prepended unless
/// a group named `root` or with gid 0 exists).
///
/// A spec user's primary gid must belong to a group (spec or shipped); when none has it, a
/// group named after the user with that gid is created (appended after the spec groups),
/// and it is an error if a group of that name already exists with another gid. Spec group
/// members must name a user of the merged `etc/passwd`.
///
/// `etc/shadow` gets one locked line per user of the merged `etc/passwd`
/// (`name:*::0:::::`): no account can log in with a password, and nothing a package shipped
/// in `etc/shadow` survives (pass the result through [`overlay`]). It is `0640`
/// `root:<shadow gid>` when the merged `etc/group` has a group named `shadow`, else `0600`
/// `root:root`; `etc/passwd` and `etc/group` are `0644` `root:root` (all exact modes).
///
/// Home directories are created for the spec's users and the default root user, except
/// `/`, `/nonexistent` and `/dev/null`: owned by the user's `uid:gid`, mode `0755`, or
/// `0700` for uid 0 (see the [module documentation](self)); when several users share a
/// home, the first one owns it. Parent directories are not included; [`overlay`] (or
/// `build_layer`) adds them as `root:root` `0755`.
///
/// The spec is checked with [`Accounts::validate`] first.
pub fn account_entries(
    accounts: &Accounts,
    existing_passwd: Option<&str>,
    existing_group: Option<&str>,
) -> Result<Vec<LayerEntry>> {
    accounts.validate().map_err(RootfsError::Accounts)?;
    let shipped_users = parse_lines("etc/passwd", existing_passwd.unwrap_or(""), 7, 2)?;
    let shipped_groups = parse_lines("etc/group", existing_group.unwrap_or(""), 4, 2)?;

    // Groups first: users' gids are checked against them.
    let mut spec_groups: Vec<(String, u32, String)> = accounts
        .groups
        .iter()
        .map(|g| (g.name.clone(), g.gid, g.group_line()))
        .collect();
    let mut known_gids: HashSet<u32> = spec_groups.iter().map(|g| g.1).collect();
    let spec_group_names: HashSet<&str> = accounts.groups.iter().map(|g| g.name.as_str()).collect();
    for line in &shipped_groups {
        if !spec_group_names.contains(line.name.as_str()) {
            known_gids.insert(line.id);
        }
    }
    for user in &accounts.users {
        if known_gids.insert(user.gid) {
            let group = Group {
                name: user.name.clone(),
                gid: user.gid,
                members: Vec::new(),
            };
            if let Some(other) = shipped_groups.iter().find(|g| g.name == user.name) {
                return Err(RootfsError::Accounts(format!(
                    "user {}: no group has gid {}, and the shipped group {} (gid {}) is in the way of creating one",
                    user.name, user.gid, other.name, other.id
                )));
            }
            spec_groups.push((group.name.clone(), group.gid, group.group_line()));
        }
    }
    let mut groups = merge_lines("group", "gid", shipped_groups, spec_groups)?;
    if !groups.iter().any(|(name, gid, _)| name == "root" || *gid == 0) {
        groups.insert(0, ("root".to_owned(), 0, DEFAULT_ROOT_GROUP.to_owned()));
    }

    let spec_users: Vec<(String, u32, String)> = accounts
        .users
        .iter()
        .map(|u| (u.name.clone(), u.uid, u.passwd_line()))
        .collect();
    let mut users = merge_lines("user", "uid", shipped_users, spec_users)?;
    // (home, uid, gid)
    let mut homes: Vec<(&str, u32, u32)> = accounts.users.iter().map(|u| (u.home.as_str(), u.uid, u.gid)).collect();
    if !users.iter().any(|(name, _, _)| name == "root") {
        if let Some((name, _, _)) = users.iter().find(|(_, uid, _)| *uid == 0) {
            return Err(RootfsError::Accounts(format!(
                "uid 0 is used by {name}, but the root user must exist too"
            )));
        }
        users.insert(0, ("root".to_owned(), 0, DEFAULT_ROOT_PASSWD.to_owned()));
        homes.push(("/root", 0, 0));
    }

    let user_names: BTreeSet<&str> = users.iter().map(|(n, _, _)| n.as_str()).collect();
    for group in &accounts.groups {
        if let Some(member) = group.members.iter().find(|m| !user_names.contains(m.as_str())) {
            return Err(RootfsError::Accounts(format!(
                "group {}: member {member} is not a user",
                group.name
            )));
        }
    }

    let lines = |entries: &[(String, u32, String)]| -> String {
        entries.iter().fold(String::new(), |mut s, (_, _, line)| {
            let _ = writeln!(s, "{line}");
            s
        })
    };
    let shadow = users.iter().fold(String::new(), |mut s, (name, _, _)| {
        let _ = writeln!(s, "{name}:*::0:::::");
        s
    });

    let shadow_entry = match groups.iter().find(|(name, _, _)| name == "shadow") {
        Some((_, gid, _)) => LayerEntry::file("etc/shadow", 0o640, shadow)
            .with_exact_mode(0o640)
            .owned_by(0, *gid),
        None => LayerEntry::file("etc/shadow", 0o600, shadow).with_exact_mode(0o600),
    };
    let mut out = vec![
        LayerEntry::file("etc/passwd", 0o644, lines(&users)).with_exact_mode(0o644),
        LayerEntry::file("etc/group", 0o644, lines(&groups)).with_exact_mode(0o644),
        shadow_entry,
    ];
    let mut created = BTreeSet::new();
    for (home, uid, gid) in homes {
        if NO_HOME.contains(&home) {
            continue;
        }
        let path = normalise(home);
        if !path.is_empty() && created.insert(path.clone()) {
            let mode = if uid == 0 { 0o700 } else { 0o755 };
            out.push(LayerEntry::dir(path).with_exact_mode(mode).owned_by(uid, gid));
        }
    }
    Ok(out)
}

/// The `os-release(5)` text for `fields`: one `KEY=value` line per field, sorted by key.
///
/// Keys must match `[A-Z0-9_]+`. Values made only of `[A-Za-z0-9._-]` (and not empty) are
/// written bare; others are double-quoted with `"`, `\`, `$` and `` ` `` backslash-escaped,
/// as the format (a subset of shell syntax) requires. Values may not contain newlines or
/// other control characters.
pub fn os_release_text(fields: &BTreeMap<String, String>) -> Result<String> {
    let mut out = String::new();
    for (key, value) in fields {
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(RootfsError::OsRelease(format!("{key:?} is not a key ([A-Z0-9_]+)")));
        }
        if value.chars().any(char::is_control) {
            return Err(RootfsError::OsRelease(format!(
                "{key}: the value contains a newline or control character"
            )));
        }
        let bare = !value.is_empty()
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if bare {
            let _ = writeln!(out, "{key}={value}");
        } else {
            let mut quoted = String::with_capacity(value.len() + 2);
            for c in value.chars() {
                if matches!(c, '"' | '\\' | '$' | '`') {
                    quoted.push('\\');
                }
                quoted.push(c);
            }
            let _ = writeln!(out, "{key}=\"{quoted}\"");
        }
    }
    Ok(out)
}

/// `usr/lib/os-release` (mode `0644`, `root:root`) with [`os_release_text`].
pub fn os_release_entry(fields: &BTreeMap<String, String>) -> Result<LayerEntry> {
    Ok(LayerEntry::file("usr/lib/os-release", 0o644, os_release_text(fields)?))
}

/// [`os_release_entry`] plus the symlink `etc/os-release -> ../usr/lib/os-release`, as
/// `os-release(5)` recommends. Pass them through [`overlay`] to replace what a package
/// (`alpine-release`, `wolfi-base`, `base-files`) shipped at either path.
pub fn os_release_entries(fields: &BTreeMap<String, String>) -> Result<Vec<LayerEntry>> {
    Ok(vec![
        os_release_entry(fields)?,
        LayerEntry::symlink("etc/os-release", "../usr/lib/os-release"),
    ])
}

/// `a/b/c` from `./a//b/c/` or `/a/b/c`.
fn normalise(path: &str) -> String {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/")
}

/// Puts `overrides` over `base`: an override replaces the base entry at the same path
/// (paths compared after dropping `./`, leading, repeated and trailing slashes).
///
/// When an override is not a directory, base entries below its path are dropped (they
/// would have no directory to live in). A non-directory base entry at a parent path of an
/// override is replaced by a `0755` directory. Every missing parent directory of every
/// entry is added (`0755`, e.g. `etc`, `usr/lib`, `home`).
///
/// The result is sorted by path, has one entry per path and depends only on the input.
pub fn overlay(base: Vec<LayerEntry>, overrides: Vec<LayerEntry>) -> Vec<LayerEntry> {
    let mut merged: BTreeMap<String, LayerEntry> = BTreeMap::new();
    for mut entry in base {
        entry.path = normalise(&entry.path);
        merged.insert(entry.path.clone(), entry);
    }
    for mut entry in overrides {
        entry.path = normalise(&entry.path);
        if entry.kind != LayerEntryKind::Dir {
            let prefix = format!("{}/", entry.path);
            let below: Vec<String> = merged
                .range(prefix.clone()..)
                .take_while(|(path, _)| path.starts_with(&prefix))
                .map(|(path, _)| path.clone())
                .collect();
            for path in below {
                merged.remove(&path);
            }
        }
        for parent in parents(&entry.path) {
            if merged.get(parent).is_some_and(|e| e.kind != LayerEntryKind::Dir) {
                merged.insert(parent.to_owned(), LayerEntry::dir(parent));
            }
        }
        merged.insert(entry.path.clone(), entry);
    }
    let missing: Vec<String> = merged
        .keys()
        .flat_map(|path| parents(path))
        .filter(|parent| !merged.contains_key(*parent))
        .map(str::to_owned)
        .collect();
    for parent in missing {
        merged.entry(parent.clone()).or_insert_with(|| LayerEntry::dir(parent));
    }
    merged.into_values().collect()
}

/// The parent directories of `path`, outermost first (`a/b/c` → `a`, `a/b`).
fn parents(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(index, _)| &path[..index])
}

/// Adds `entry` (shipped by `owner`) to `merged`, deduplicating directories and identical
/// files/symlinks; anything else at an occupied path is a conflict naming both packages.
/// Shared by the Debian and APK assemblers.
pub(crate) fn merge_entry(
    merged: &mut BTreeMap<String, (String, LayerEntry)>,
    owner: &str,
    entry: LayerEntry,
) -> std::result::Result<(), String> {
    match merged.get(&entry.path) {
        None => {
            merged.insert(entry.path.clone(), (owner.to_owned(), entry));
            Ok(())
        }
        Some((_, existing)) if existing.kind == entry.kind => Ok(()),
        Some((first, _)) => Err(format!("{} is shipped by both {first} and {owner}", entry.path)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content<'a>(entries: &'a [LayerEntry], path: &str) -> &'a str {
        match &entries.iter().find(|e| e.path == path).unwrap().kind {
            LayerEntryKind::File { content } => std::str::from_utf8(content).unwrap(),
            other => panic!("{path} is {other:?}"),
        }
    }

    fn paths(entries: &[LayerEntry]) -> Vec<&str> {
        entries.iter().map(|e| e.path.as_str()).collect()
    }

    fn nonroot() -> Accounts {
        Accounts {
            users: vec![User::new("nonroot", 65532)],
            groups: vec![Group {
                name: "nonroot".into(),
                gid: 65532,
                members: vec![],
            }],
        }
    }

    /// A map value for deserializing without a format crate.
    #[derive(Clone, Copy)]
    enum V<'a> {
        S(&'a str),
        N(u32),
    }

    impl<'de> serde::Deserializer<'de> for V<'_> {
        type Error = serde::de::value::Error;

        fn deserialize_any<W: serde::de::Visitor<'de>>(self, visitor: W) -> Result<W::Value, Self::Error> {
            match self {
                V::S(s) => visitor.visit_str(s),
                V::N(n) => visitor.visit_u32(n),
            }
        }

        fn deserialize_option<W: serde::de::Visitor<'de>>(self, visitor: W) -> Result<W::Value, Self::Error> {
            visitor.visit_some(self)
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            unit unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier
            ignored_any
        }
    }

    impl<'de, 'a> serde::de::IntoDeserializer<'de, serde::de::value::Error> for V<'a> {
        type Deserializer = V<'a>;

        fn into_deserializer(self) -> Self {
            self
        }
    }

    fn from_map<T: serde::de::DeserializeOwned>(fields: &[(&str, V<'_>)]) -> Result<T, serde::de::value::Error> {
        T::deserialize(serde::de::value::MapDeserializer::new(fields.iter().copied()))
    }

    #[test]
    fn deserialize_defaults_and_unknown_fields() {
        let user: User = from_map(&[("name", V::S("nonroot")), ("uid", V::N(65532))]).unwrap();
        assert_eq!(user, User::new("nonroot", 65532));
        assert_eq!(
            user,
            User {
                name: "nonroot".into(),
                uid: 65532,
                gid: 65532,
                home: "/home/nonroot".into(),
                shell: "/sbin/nologin".into(),
                gecos: "nonroot".into(),
            }
        );
        let admin: User = from_map(&[
            ("name", V::S("admin")),
            ("uid", V::N(0)),
            ("gid", V::N(10)),
            ("gecos", V::S("The Admin")),
        ])
        .unwrap();
        assert_eq!(
            (admin.gid, admin.home.as_str(), admin.shell.as_str()),
            (10, "/root", "/bin/sh")
        );
        assert_eq!(admin.gecos, "The Admin");
        let explicit: User = from_map(&[
            ("name", V::S("app")),
            ("uid", V::N(1)),
            ("home", V::S("/srv/app")),
            ("shell", V::S("/bin/sh")),
        ])
        .unwrap();
        assert_eq!(
            (explicit.home.as_str(), explicit.shell.as_str()),
            ("/srv/app", "/bin/sh")
        );

        assert!(from_map::<User>(&[("name", V::S("a")), ("uid", V::N(1)), ("password", V::S("x"))]).is_err());
        assert!(from_map::<User>(&[("name", V::S("a"))]).is_err());
        let group: Group = from_map(&[("name", V::S("a")), ("gid", V::N(1))]).unwrap();
        assert!(group.members.is_empty());
        assert!(from_map::<Group>(&[("name", V::S("a")), ("gid", V::N(1)), ("extra", V::N(1))]).is_err());
        assert_eq!(from_map::<Accounts>(&[]).unwrap(), Accounts::default());
        assert!(from_map::<Accounts>(&[("people", V::N(1))]).is_err());
    }

    #[test]
    fn fresh_accounts() {
        let out = account_entries(&nonroot(), None, None).unwrap();
        assert_eq!(
            paths(&out),
            ["etc/passwd", "etc/group", "etc/shadow", "home/nonroot", "root"]
        );
        assert_eq!(
            content(&out, "etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
        );
        assert_eq!(content(&out, "etc/group"), "root:x:0:\nnonroot:x:65532:\n");
        assert_eq!(content(&out, "etc/shadow"), "root:*::0:::::\nnonroot:*::0:::::\n");
        // (path, mode, uid, gid); every mode is exact.
        let owners: Vec<(&str, u32, u32, u32)> = out
            .iter()
            .inspect(|e| assert!(e.exact_mode, "{}", e.path))
            .map(|e| (e.path.as_str(), e.mode, e.uid, e.gid))
            .collect();
        assert_eq!(
            owners,
            [
                ("etc/passwd", 0o644, 0, 0),
                ("etc/group", 0o644, 0, 0),
                ("etc/shadow", 0o600, 0, 0),
                ("home/nonroot", 0o755, 65532, 65532),
                ("root", 0o700, 0, 0),
            ]
        );
    }

    #[test]
    fn owners_and_modes_in_the_layer() {
        let accounts = Accounts {
            users: vec![
                User::new("nonroot", 65532),
                User {
                    gid: 100,
                    home: "/srv/app/".into(),
                    ..User::new("app", 1000)
                },
                User {
                    home: "/srv/app".into(),
                    ..User::new("other", 1001)
                },
            ],
            groups: vec![],
        };
        let group = "root:x:0:\nshadow:x:42:\nusers:x:100:\n";
        let out = account_entries(&accounts, None, Some(group)).unwrap();
        let find = |p: &str| out.iter().find(|e| e.path == p).unwrap();
        let shadow = find("etc/shadow");
        assert_eq!(
            (shadow.mode, shadow.uid, shadow.gid, shadow.exact_mode),
            (0o640, 0, 42, true)
        );
        let app = find("srv/app");
        // Shared home: the first user owns it.
        assert_eq!((app.mode, app.uid, app.gid), (0o755, 1000, 100));
        assert_eq!(
            content(&out, "etc/group"),
            format!("{group}nonroot:x:65532:\nother:x:1001:\n")
        );

        let layer = rebake_oci::build_layer(overlay(Vec::new(), out), 9).unwrap();
        let mut tar_bytes = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&layer.compressed[..]), &mut tar_bytes).unwrap();
        let mut archive = tar::Archive::new(&tar_bytes[..]);
        let headers: Vec<(String, u32, u64, u64)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    h.gid().unwrap(),
                )
            })
            .collect();
        let want: Vec<(String, u32, u64, u64)> = [
            ("etc/", 0o755, 0, 0),
            ("etc/group", 0o644, 0, 0),
            ("etc/passwd", 0o644, 0, 0),
            ("etc/shadow", 0o640, 0, 42),
            ("home/", 0o755, 0, 0),
            ("home/nonroot/", 0o755, 65532, 65532),
            ("root/", 0o700, 0, 0),
            ("srv/", 0o755, 0, 0),
            ("srv/app/", 0o755, 1000, 100),
        ]
        .into_iter()
        .map(|(p, m, u, g)| (p.to_owned(), m, u, g))
        .collect();
        assert_eq!(headers, want);
    }

    #[test]
    fn merges_with_shipped_files() {
        let passwd = "root:x:0:0:root:/root:/bin/ash\nbin:x:1:1:bin:/bin:/sbin/nologin\nnonroot:x:1000:1000::/nonexistent:/bin/false\nnobody:x:65534:65534:nobody:/:/sbin/nologin\n";
        let group = "root:x:0:root\nbin:x:1:root,bin\nwheel:x:10:root\nnonroot:x:1000:\nnogroup:x:65533:\n";
        let accounts = Accounts {
            users: vec![
                User::new("nonroot", 65532),
                User {
                    gid: 2000,
                    ..User::new("app", 2000)
                },
            ],
            groups: vec![
                Group {
                    name: "nonroot".into(),
                    gid: 65532,
                    members: vec![],
                },
                Group {
                    name: "wheel".into(),
                    gid: 10,
                    members: vec!["root".into(), "app".into()],
                },
            ],
        };
        let out = account_entries(&accounts, Some(passwd), Some(group)).unwrap();
        assert_eq!(
            content(&out, "etc/passwd"),
            "root:x:0:0:root:/root:/bin/ash\nbin:x:1:1:bin:/bin:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\nnobody:x:65534:65534:nobody:/:/sbin/nologin\napp:x:2000:2000:app:/home/app:/sbin/nologin\n"
        );
        assert_eq!(
            content(&out, "etc/group"),
            "root:x:0:root\nbin:x:1:root,bin\nwheel:x:10:root,app\nnonroot:x:65532:\nnogroup:x:65533:\napp:x:2000:\n"
        );
        assert_eq!(
            content(&out, "etc/shadow"),
            "root:*::0:::::\nbin:*::0:::::\nnonroot:*::0:::::\nnobody:*::0:::::\napp:*::0:::::\n"
        );
        // Homes of spec users only; root comes from the package.
        assert_eq!(
            paths(&out),
            ["etc/passwd", "etc/group", "etc/shadow", "home/nonroot", "home/app"]
        );
    }

    #[test]
    fn spec_may_define_root() {
        let accounts = Accounts {
            users: vec![User {
                shell: "/bin/bash".into(),
                ..User::new("root", 0)
            }],
            groups: vec![],
        };
        let out = account_entries(&accounts, None, None).unwrap();
        assert_eq!(content(&out, "etc/passwd"), "root:x:0:0:root:/root:/bin/bash\n");
        assert_eq!(content(&out, "etc/group"), "root:x:0:\n");
        assert_eq!(paths(&out), ["etc/passwd", "etc/group", "etc/shadow", "root"]);
    }

    #[test]
    fn validation_errors() {
        let err = |accounts: Accounts| account_entries(&accounts, None, None).unwrap_err().to_string();
        let user = |name: &str, uid| Accounts {
            users: vec![User::new(name, uid)],
            groups: vec![],
        };
        for bad in ["Nonroot", "1user", "", "a:b", "with space", &"a".repeat(33)] {
            assert!(err(user(bad, 1)).contains("must match"), "{bad:?}");
        }
        assert!(user("_svc-1", 1).validate().is_ok());

        let mut twice = nonroot();
        twice.users.push(User::new("nonroot", 1));
        assert!(err(twice).contains("nonroot is defined twice"));
        let mut same_uid = nonroot();
        same_uid.users.push(User::new("other", 65532));
        assert!(err(same_uid).contains("uid 65532 is used by two users"));
        let mut same_gid = nonroot();
        same_gid.groups.push(Group {
            name: "other".into(),
            gid: 65532,
            members: vec![],
        });
        assert!(err(same_gid).contains("gid 65532 is used by two groups"));
        let mut same_group = nonroot();
        same_group.groups.push(same_group.groups[0].clone());
        assert!(err(same_group).contains("group nonroot is defined twice"));

        let mut relative = nonroot();
        relative.users[0].home = "home/x".into();
        assert!(err(relative).contains("not absolute"));
        let mut colon = nonroot();
        colon.users[0].gecos = "a:b".into();
        assert!(err(colon).contains("':'"));

        let mut in_the_way = nonroot();
        in_the_way.groups[0].gid = 1;
        assert!(err(in_the_way).contains("in the way"));
        let shipped = account_entries(&user("nonroot", 5), None, Some("nonroot:x:7:\n")).unwrap_err();
        assert!(shipped.to_string().contains("in the way"), "{shipped}");

        let mut member = nonroot();
        member.groups[0].members.push("ghost".into());
        assert!(err(member).contains("member ghost is not a user"));

        let clash = account_entries(&user("app", 1), Some("bin:x:1:1::/:/sbin/nologin\n"), None).unwrap_err();
        assert!(
            clash
                .to_string()
                .contains("uid 1 is used by both bin (shipped) and user app"),
            "{clash}"
        );
        let toor = account_entries(&user("toor", 0), None, None).unwrap_err();
        assert!(toor.to_string().contains("root user must exist"), "{toor}");

        let shipped_dups =
            "root:x:0:0::/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\nnobody2:x:65534:65534::/:/bin/false\n";
        let kept = account_entries(&nonroot(), Some(shipped_dups), None).unwrap();
        assert!(content(&kept, "etc/passwd").starts_with(shipped_dups));
        let gid_clash = account_entries(&nonroot(), None, Some("users:x:65532:\n")).unwrap_err();
        assert!(
            gid_clash
                .to_string()
                .contains("gid 65532 is used by both users (shipped) and group nonroot"),
            "{gid_clash}"
        );

        assert!(account_entries(&nonroot(), Some("root:x:0:0\n"), None).is_err());
        assert!(account_entries(&nonroot(), Some("root:x:zero:0:::\n"), None).is_err());
        assert!(account_entries(&nonroot(), None, Some("root:x:0\n")).is_err());
    }

    #[test]
    fn os_release_quoting() {
        let fields: BTreeMap<String, String> = [
            ("ID", "acme"),
            ("VERSION_ID", "1.2_3-rc"),
            ("NAME", "Acme Base"),
            ("PRETTY_NAME", r#"Acme "Base" $HOME `x` \n"#),
            ("HOME_URL", "https://acme.example/"),
            ("VARIANT", ""),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(
            os_release_text(&fields).unwrap(),
            "HOME_URL=\"https://acme.example/\"\nID=acme\nNAME=\"Acme Base\"\nPRETTY_NAME=\"Acme \\\"Base\\\" \\$HOME \\`x\\` \\\\n\"\nVARIANT=\"\"\nVERSION_ID=1.2_3-rc\n"
        );
        let entries = os_release_entries(&fields).unwrap();
        assert_eq!(entries[0].path, "usr/lib/os-release");
        assert_eq!(
            entries[1],
            LayerEntry::symlink("etc/os-release", "../usr/lib/os-release")
        );

        let one = |k: &str, v: &str| BTreeMap::from([(k.to_owned(), v.to_owned())]);
        for bad_key in ["id", "", "A-B", "A B"] {
            assert!(os_release_text(&one(bad_key, "x")).is_err(), "{bad_key:?}");
        }
        assert!(os_release_text(&one("NAME", "a\nb")).is_err());
        assert!(os_release_text(&one("NAME", "a\tb")).is_err());
    }

    #[test]
    fn overlay_replaces_and_adds_parents() {
        let base = vec![
            LayerEntry::dir("etc"),
            LayerEntry::file("etc/os-release", 0o644, "ID=alpine\n"),
            LayerEntry::file("etc/passwd", 0o644, "root:x:0:0::/root:/bin/sh\n"),
            LayerEntry::file("bin/busybox", 0o755, "ELF"),
            LayerEntry::dir("usr/lib/os-release"),
            LayerEntry::file("usr/lib/os-release/junk", 0o644, "x"),
            LayerEntry::file("home", 0o644, "not a dir"),
        ];
        let fields = BTreeMap::from([("ID".to_owned(), "acme".to_owned())]);
        let mut overrides = os_release_entries(&fields).unwrap();
        overrides.extend(account_entries(&nonroot(), None, None).unwrap());
        let out = overlay(base.clone(), overrides.clone());
        assert_eq!(out, overlay(base, overrides));
        assert_eq!(
            paths(&out),
            [
                "bin",
                "bin/busybox",
                "etc",
                "etc/group",
                "etc/os-release",
                "etc/passwd",
                "etc/shadow",
                "home",
                "home/nonroot",
                "root",
                "usr",
                "usr/lib",
                "usr/lib/os-release",
            ]
        );
        let find = |p: &str| out.iter().find(|e| e.path == p).unwrap();
        assert_eq!(
            find("etc/os-release"),
            &LayerEntry::symlink("etc/os-release", "../usr/lib/os-release")
        );
        assert_eq!(content(&out, "usr/lib/os-release"), "ID=acme\n");
        assert!(content(&out, "etc/passwd").contains("nonroot"));
        assert_eq!(find("home"), &LayerEntry::dir("home"));
        assert_eq!(find("usr/lib"), &LayerEntry::dir("usr/lib"));
        rebake_oci::build_layer(out, 0).unwrap();

        let normalised = overlay(
            vec![LayerEntry::file("./a/b/", 0o644, "1")],
            vec![LayerEntry::file("a//b", 0o644, "2")],
        );
        assert_eq!(
            normalised,
            vec![LayerEntry::dir("a"), LayerEntry::file("a/b", 0o644, "2")]
        );
    }
}
