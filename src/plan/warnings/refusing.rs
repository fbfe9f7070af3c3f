//! `refuses-everything`: a route whose own rules refuse every request it
//! matches, though each rule alone looks fine.

use super::Found;
use crate::config::LoadedConfig;

pub(super) fn routes_that_refuse_everything(loaded: &LoadedConfig, found: &mut Found) {
    let groups: std::collections::BTreeSet<&str> =
        loaded.config.consumers.iter().flat_map(|c| c.groups.iter().map(String::as_str)).collect();
    for (i, r) in loaded.config.routes.iter().enumerate() {
        // A required body on a route that answers only methods without one.
        let bodiless = |m: &String| matches!(m.to_ascii_uppercase().as_str(), "GET" | "HEAD");
        let methods = r.matcher.methods.as_deref().unwrap_or_default();
        if let Some(body) = r.validate.as_ref().and_then(|v| v.body.as_ref())
            && body.required
            && !methods.is_empty()
            && methods.iter().all(bodiless)
        {
            found.add(
                "refuses-everything",
                format!("routes[{i}].validate.body"),
                format!(
                    "route `{}` matches only {} but requires a body: every request is refused (400); \
                     say `required: false`, or validate the query instead",
                    r.name,
                    methods.join(", ")
                ),
            );
        }
        // A group no consumer is in (bearer-token identities have no groups).
        let Some(authorize) = &r.authorize else { continue };
        for (j, g) in authorize.groups.allow.iter().enumerate() {
            if !groups.contains(g.as_str()) {
                found.add(
                    "refuses-everything",
                    format!("routes[{i}].authorize.groups.allow[{j}]"),
                    format!("no consumer is in group `{g}`: nobody is allowed through it"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn bodies_on_get_routes_and_groups_nobody_is_in() {
        let text = r#"
consumers: [ { id: a, groups: [ staff ] } ]
routes:
  - { name: g, match: { path: /g, methods: [GET, HEAD] }, static: { body: x }, validate: { body: { schema: { type: object } } } }
  - { name: p, match: { path: /p, methods: [GET, POST] }, static: { body: x }, validate: { body: { schema: { type: object } } } }
  - { name: o, match: { path: /o, methods: [GET] }, static: { body: x }, validate: { body: { schema: { type: object }, required: false } } }
  - { name: s, match: { path: /s }, static: { body: x }, authorize: { groups: { allow: [ staff, stafff ] } } }
"#;
        let loaded = crate::config::parse_str(text, "t.yaml", std::path::Path::new(".")).unwrap();
        let mut found = super::Found::default();
        super::routes_that_refuse_everything(&loaded, &mut found);
        let paths: Vec<&str> = found.0.iter().map(|(_, p, _)| p.as_str()).collect();
        assert_eq!(paths, ["routes[0].validate.body", "routes[3].authorize.groups.allow[1]"]);
    }
}
