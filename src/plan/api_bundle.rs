//! The served document bundled: `$ref`s into sibling files (`owner.yaml#/Owner`)
//! would not resolve for a reader of `<docs>/openapi.json` (the files are not
//! served). Each file referenced, directly or through another, is put whole
//! under the document's `x-portcullis-bundled` member, and every reference
//! to it rewritten to a pointer into the document itself.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Where the bundled files go in the document.
const BUNDLED: &str = "x-portcullis-bundled";

/// `doc` (read from `dir`) with its sibling-file references bundled. A file
/// that cannot be read leaves its references as they were. A reference
/// out of `dir` (whatever names it: a schema, an example, an extension) is
/// refused: the file would be served whole.
pub(super) fn bundle(doc: &mut Value, dir: &Path) -> Result<(), String> {
    let mut b = Bundler { root: normalize(dir), files: BTreeMap::new(), queue: Vec::new(), outside: Vec::new() };
    let root = b.root.clone();
    b.rewrite(doc, &root, None);
    // Files reached through other files, each once (a cycle stops at the second visit).
    while let Some(path) = b.queue.pop() {
        let Ok(mut content) = crate::config::load_document(&path) else { continue };
        let here = path.parent().map(Path::to_path_buf).unwrap_or_default();
        b.rewrite(&mut content, &here, Some(&path));
        b.files.insert(path, Some(content));
    }
    if let Some((r, holder)) = b.outside.first() {
        let holder = match holder {
            Some(file) => format!(" (in `{}`)", file.strip_prefix(&b.root).unwrap_or(file).display()),
            None => String::new(),
        };
        return Err(format!(
            "`$ref: {r}`{holder} names a file outside the document's folder: put it beside the document or in a \
             folder under it (the file is served with the document)"
        ));
    }
    let bundled: serde_json::Map<String, Value> =
        std::mem::take(&mut b.files).into_iter().filter_map(|(path, content)| Some((b.key(&path), content?))).collect();
    if !bundled.is_empty()
        && let Some(map) = doc.as_object_mut()
    {
        map.insert(BUNDLED.into(), Value::Object(bundled));
    }
    Ok(())
}

/// Whether `path` is `root` or under it: as written (`..` resolved), and,
/// when both exist, once their symbolic links are followed (a link inside
/// the folder to a file outside it is outside; a folder reached through a
/// link, as Kubernetes mounts a ConfigMap, is fine).
pub(super) fn inside(root: &Path, path: &Path) -> bool {
    let under = |root: &Path, path: &Path| {
        path.strip_prefix(root)
            .is_ok_and(|rest| rest.components().all(|c| matches!(c, std::path::Component::Normal(_))))
    };
    if !under(&normalize(root), &normalize(path)) {
        return false;
    }
    match (std::fs::canonicalize(root), std::fs::canonicalize(path)) {
        (Ok(root), Ok(path)) => under(&root, &path),
        _ => true,
    }
}

struct Bundler {
    /// The document's folder.
    root: PathBuf,
    files: BTreeMap<PathBuf, Option<Value>>,
    queue: Vec<PathBuf>,
    /// References that leave `root`, as written, and the bundled file that
    /// holds each (`None`: the document itself).
    outside: Vec<(String, Option<PathBuf>)>,
}

impl Bundler {
    /// The member a file is bundled under: its path from the document's
    /// folder (`schemas/Pets.yaml`).
    fn key(&self, path: &Path) -> String {
        let shown = path.strip_prefix(&self.root).map(Path::to_path_buf).unwrap_or_default();
        shown.to_string_lossy().into_owned()
    }

    /// That member as one JSON Pointer token, for references to it
    /// (`schemas~1Pets.yaml`: RFC 6901 escapes `~` and `/`).
    fn token(&self, path: &Path) -> String {
        self.key(path).replace('~', "~0").replace('/', "~1")
    }

    /// Rewrites the references in `v` (read from `dir`; `file`: the bundled
    /// file it is, `None` for the document) and queues the files they name.
    fn rewrite(&mut self, v: &mut Value, dir: &Path, file: Option<&Path>) {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get_mut("$ref") {
                    let (target, pointer) = r.split_once('#').unwrap_or((r.as_str(), ""));
                    let into = match (target, file) {
                        // A reference inside a bundled file to itself.
                        ("", Some(own)) => Some(own.to_path_buf()),
                        ("", None) => None,
                        // Another file (not a URL: those are refused when the document loads).
                        (t, _) if !t.contains("://") => Some(normalize(&dir.join(t))),
                        _ => None,
                    };
                    match into {
                        Some(path) if !inside(&self.root, &path) || Path::new(target).is_absolute() => {
                            self.outside.push((r.clone(), file.map(Path::to_path_buf)));
                        }
                        Some(path) => {
                            if !self.files.contains_key(&path) {
                                self.files.insert(path.clone(), None);
                                self.queue.push(path.clone());
                            }
                            *r = format!("#/{BUNDLED}/{}{pointer}", self.token(&path));
                        }
                        None => {}
                    }
                }
                for (_, child) in map.iter_mut() {
                    self.rewrite(child, dir, file);
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|i| self.rewrite(i, dir, file)),
            _ => {}
        }
    }
}

/// `a/./b/../c` as `a/c` (the same file named two ways is bundled once).
pub(super) fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir if out.file_name().is_some() => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}
