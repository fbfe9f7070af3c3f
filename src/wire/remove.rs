//! Removing a fixed set of header names from a map, cheaply when (as on
//! most messages) few or none of them are there.

use http::header::{HeaderMap, HeaderName};

/// Removes every one of `names` from `headers`. One pass over the
/// message's names finds which are present; only those are removed (a
/// removal of an absent name still costs a hash and a probe).
pub fn remove_all<'a>(headers: &mut HeaderMap, names: impl IntoIterator<Item = &'a HeaderName> + Clone) {
    let mut present = [false; 16];
    let mut any = false;
    for key in headers.keys() {
        for (i, name) in names.clone().into_iter().enumerate() {
            if key == name {
                if let Some(slot) = present.get_mut(i) {
                    *slot = true;
                    any = true;
                } else {
                    // More names than slots: remove them all the plain way.
                    return remove_each(headers, names);
                }
            }
        }
    }
    if any {
        for (name, _) in names.into_iter().zip(present).filter(|(_, p)| *p) {
            headers.remove(name);
        }
    }
}

fn remove_each<'a>(headers: &mut HeaderMap, names: impl IntoIterator<Item = &'a HeaderName>) {
    for name in names {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_only_what_is_listed() {
        let mut h = HeaderMap::new();
        h.insert("server", "x".parse().unwrap());
        h.append("x-a", "1".parse().unwrap());
        h.append("x-a", "2".parse().unwrap());
        h.insert("x-keep", "1".parse().unwrap());
        let names =
            [HeaderName::from_static("server"), HeaderName::from_static("x-a"), HeaderName::from_static("x-no")];
        remove_all(&mut h, &names);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-keep"]);

        let many: Vec<HeaderName> = (0..40).map(|i| HeaderName::try_from(format!("x-{i}")).unwrap()).collect();
        let mut h = HeaderMap::new();
        h.insert("x-39", "1".parse().unwrap());
        h.insert("x-keep", "1".parse().unwrap());
        remove_all(&mut h, &many);
        assert_eq!(h.len(), 1);
    }
}
