//! Room on the stack for a schema check. The jsonschema crate's checks
//! recurse once per level of the document, times the `$ref`/`allOf` hops a
//! recursive schema takes at each level: a body a few hundred levels deep
//! (`json_limits.max_depth` allows 512), or an upstream answer 126 deep
//! against a chain of `allOf`s, overflowed a 2 MiB worker stack and
//! aborted the process. A document's check runs where at least
//! `BASE + depth * PER_LEVEL` bytes of stack are left, on a stack of its
//! own (mapped for the check, then released) when the thread's is short:
//! shallow documents, the usual ones, never pay for it.

use serde_json::Value;

/// Stack a check takes besides its levels.
const BASE: usize = 256 << 10;

/// Stack allowed per level of the document: ~30 `$ref`/`allOf` hops a
/// level in a debug build, many more optimised (the reviewer's chain of
/// nine hops took ~19 KiB a level in a debug build).
const PER_LEVEL: usize = 64 << 10;

/// Runs `check` (a schema check of a document `depth` levels deep) with
/// stack enough for it.
pub fn with_room<R>(depth: u32, check: impl FnOnce() -> R) -> R {
    let need = BASE + depth as usize * PER_LEVEL;
    stacker::maybe_grow(need, need, check)
}

/// How deep `v` is (a scalar is 0, `[]` and `{}` 1), without recursion.
pub fn depth_of(v: &Value) -> u32 {
    let mut deepest = 0;
    let mut open: Vec<(&Value, u32)> = vec![(v, 0)];
    while let Some((v, d)) = open.pop() {
        match v {
            Value::Array(items) => {
                deepest = deepest.max(d + 1);
                open.extend(items.iter().map(|i| (i, d + 1)));
            }
            Value::Object(members) => {
                deepest = deepest.max(d + 1);
                open.extend(members.values().map(|m| (m, d + 1)));
            }
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn depth_counts_containers() {
        assert_eq!(depth_of(&json!(1)), 0);
        assert_eq!(depth_of(&json!({})), 1);
        assert_eq!(depth_of(&json!([1, [2, {"a": [3]}], {}])), 4);
    }

    /// A check deeper than the thread's stack allows runs on a grown one.
    #[test]
    fn a_deep_check_gets_a_stack_of_its_own() {
        fn down(n: u32) -> u32 {
            let pad = std::hint::black_box([0u8; 16 << 10]);
            if n == 0 { u32::from(pad[0]) } else { down(n - 1) + u32::from(pad[n as usize % 16]) }
        }
        // 512 levels of 16 KiB each: 8 MiB, four times a 2 MiB thread's stack.
        let ran =
            std::thread::Builder::new().stack_size(2 << 20).spawn(|| with_room(512, || down(512))).unwrap().join();
        assert_eq!(ran.ok(), Some(0));
    }
}
