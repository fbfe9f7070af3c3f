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
/// that cannot be read leaves its references as they were.
pub(super) fn bundle(doc: &mut Value, dir: &Path) {
    let root = normalize(dir);
    let mut files: BTreeMap<PathBuf, Option<Value>> = BTreeMap::new();
    let mut queue: Vec<PathBuf> = Vec::new();
    let key = |path: &Path| key(&root, path);
    rewrite(doc, &root, None, &key, &mut files, &mut queue);
    // Files reached through other files, each once (a cycle stops at the second visit).
    while let Some(path) = queue.pop() {
        let Ok(mut content) = crate::config::load_document(&path) else { continue };
        let here = path.parent().map(Path::to_path_buf).unwrap_or_default();
        rewrite(&mut content, &here, Some(&path), &key, &mut files, &mut queue);
        files.insert(path, Some(content));
    }
    let bundled: serde_json::Map<String, Value> =
        files.into_iter().filter_map(|(path, content)| Some((key(&path), content?))).collect();
    if !bundled.is_empty()
        && let Some(map) = doc.as_object_mut()
    {
        map.insert(BUNDLED.into(), Value::Object(bundled));
    }
}

/// The member a file is bundled under: its path from the document's
/// folder (never the server's own folders), made one pointer token.
fn key(root: &Path, path: &Path) -> String {
    let shown = path.strip_prefix(root).map(Path::to_path_buf).unwrap_or_else(|_| {
        PathBuf::from(path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default())
    });
    shown.to_string_lossy().replace('~', "~0").replace('/', "~1")
}

/// Rewrites the references in `v` (read from `dir`; `file`: the bundled
/// file it is, `None` for the document) and queues the files they name.
fn rewrite(
    v: &mut Value,
    dir: &Path,
    file: Option<&Path>,
    key: &impl Fn(&Path) -> String,
    files: &mut BTreeMap<PathBuf, Option<Value>>,
    queue: &mut Vec<PathBuf>,
) {
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
                if let Some(path) = into {
                    if !files.contains_key(&path) {
                        files.insert(path.clone(), None);
                        queue.push(path.clone());
                    }
                    *r = format!("#/{BUNDLED}/{}{pointer}", key(&path));
                }
            }
            for (_, child) in map.iter_mut() {
                rewrite(child, dir, file, key, files, queue);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| rewrite(i, dir, file, key, files, queue)),
        _ => {}
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
