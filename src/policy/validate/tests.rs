use std::collections::BTreeMap;

use serde_json::json;

use super::params::{Param, form_object, query_pairs};
use super::*;

#[test]
fn parameters_are_read_as_their_schema_type() {
    let formats = BTreeMap::new();
    let page = Param::compile("query", "page", &json!({ "type": "integer", "minimum": 1, "required": true }), &formats)
        .unwrap();
    let mut problems = Vec::new();
    page.check("query", &["10"], &mut problems);
    assert!(problems.is_empty(), "\"10\" is the integer 10: {problems:?}");
    page.check("query", &["0"], &mut problems);
    page.check("query", &["ten"], &mut problems);
    page.check("query", &[], &mut problems);
    let details: Vec<&str> = problems.iter().map(|p| p.detail.as_str()).collect();
    assert_eq!(problems.len(), 3, "{details:?}");
    assert!(problems.iter().all(|p| p.place == "query" && p.pointer == "page"));
    assert!(details[2].contains("required"));

    let ids = Param::compile(
        "query",
        "ids",
        &json!({ "type": "array", "items": { "type": "integer" }, "maxItems": 3 }),
        &formats,
    )
    .unwrap();
    let mut problems = Vec::new();
    ids.check("query", &["1", "2"], &mut problems);
    assert!(problems.is_empty(), "{problems:?}");
    ids.check("query", &["1", "x"], &mut problems);
    assert_eq!(problems[0].pointer, "ids/1");
    let styled = |style: &str, explode: bool| {
        let schema = json!({ "type": "array", "items": { "type": "integer" }, "style": style, "explode": explode });
        Param::compile("query", "ids", &schema, &formats).unwrap()
    };
    let mut problems = Vec::new();
    styled("form", false).check("query", &["1,2,3"], &mut problems);
    styled("spaceDelimited", false).check("query", &["1 2 3"], &mut problems);
    styled("pipeDelimited", false).check("query", &["1|2|3"], &mut problems);
    Param::compile("header", "ids", &json!({ "type": "array", "items": { "type": "integer" } }), &formats)
        .unwrap()
        .check("header", &["1, 2,3"], &mut problems);
    assert!(problems.is_empty(), "{problems:?}");
    styled("pipeDelimited", false).check("query", &["1|x"], &mut problems);
    assert_eq!(problems.len(), 1);
}

#[test]
fn named_formats_and_openapi_integer_formats_apply() {
    let formats = BTreeMap::from([("e164".to_string(), r"^\+[1-9][0-9]{7,14}$".to_string())]);
    let phone = compile_schema(&json!({ "type": "string", "format": "e164" }), &formats).unwrap();
    assert!(phone.is_valid(&json!("+4930123456")));
    assert!(!phone.is_valid(&json!("030123456")));
    let small = compile_schema(&json!({ "type": "integer", "format": "int32" }), &formats).unwrap();
    assert!(small.is_valid(&json!(2147483647)) && !small.is_valid(&json!(2147483648_i64)));
    let long = compile_schema(&json!({ "type": "integer", "format": "int64" }), &formats).unwrap();
    let parsed = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap();
    assert!(long.is_valid(&parsed("9223372036854775807")) && !long.is_valid(&parsed("9223372036854775808")));
    assert!(long.is_valid(&parsed("-9223372036854775807")));
    // Below i64::MIN a JSON integer is read as a float near -2^63: refused
    // (and -2^63 with them, which the float cannot tell apart).
    for below in ["-9223372036854775809", "-9223372036854776832", "-9223372036854775808"] {
        assert!(!long.is_valid(&parsed(below)), "{below}");
    }
    let uuid = compile_schema(&json!({ "type": "string", "format": "uuid" }), &formats).unwrap();
    assert!(!uuid.is_valid(&json!("not-a-uuid")));
    let remote = compile_schema(&json!({ "$ref": "https://example.com/schema.json" }), &formats);
    let why = remote.expect_err("a remote $ref is refused when the config loads");
    assert!(
        why.contains("https://example.com/schema.json") && why.contains("$defs") && !why.contains("feature"),
        "{why}"
    );
}

#[test]
fn cookie_names_and_values_are_read_without_surrounding_spaces() {
    let mut headers = http::HeaderMap::new();
    headers.append(http::header::COOKIE, http::HeaderValue::from_static("a=1; sess =x;other= 2 "));
    assert_eq!(super::params::cookie_values(&headers, "sess"), ["x"]);
    assert_eq!(super::params::cookie_values(&headers, "other"), ["2"]);
}

#[test]
fn forms_and_queries_decode() {
    assert_eq!(
        query_pairs("a=1&b=x+y&c=%2F&flag&=v"),
        vec![
            ("a".into(), "1".into()),
            ("b".into(), "x y".into()),
            ("c".into(), "/".into()),
            ("flag".into(), "".into()),
            ("".into(), "v".into())
        ]
    );
    // Also as servers that separate with `;` read it (Rack before 3, Go before 1.17).
    assert_eq!(
        query_pairs("tags=x;limit=1000&q=a;b"),
        vec![("tags".into(), "x;limit=1000".into()), ("limit".into(), "1000".into()), ("q".into(), "a;b".into())]
    );
    let props = json!({ "qty": { "type": "integer" }, "tags": { "type": "array" } });
    let mut problems = Vec::new();
    let form = form_object(b"qty=3&tags=a&tags=b&note=hi", props.as_object().unwrap(), &mut problems);
    assert_eq!(form, json!({ "qty": 3, "tags": ["a", "b"], "note": "hi" }));
    assert!(problems.is_empty());
    // A `;` is part of a value, unless what follows it names a declared
    // field (Python before 3.9.2, Go before 1.17 read `qty=11` there too).
    let form = form_object(b"qty=3&note=x;y=z", props.as_object().unwrap(), &mut problems);
    assert_eq!(form, json!({ "qty": 3, "note": "x;y=z" }));
    let form = form_object(b"note=a;qty=11", props.as_object().unwrap(), &mut problems);
    assert_eq!(form, json!({ "qty": 11, "note": "a;qty=11" }));
    assert!(problems.is_empty());
    // Pairs after a `;` count against the field limit too.
    let many = format!("note=x{}", ";tags=1".repeat(20_000));
    form_object(many.as_bytes(), props.as_object().unwrap(), &mut problems);
    assert_eq!(problems.iter().map(|p| p.detail.as_str()).collect::<Vec<_>>(), ["more than 10000 fields"]);
    problems.clear();
    // Twice where one value is expected: said so, not "not of type integer".
    let form = form_object(b"qty=3&qty=4000&a%2Fb=1&a%2Fb=2", props.as_object().unwrap(), &mut problems);
    assert_eq!(form, json!({ "qty": 3, "a/b": "1" }));
    let said: Vec<(&str, &str)> = problems.iter().map(|p| (p.pointer.as_str(), p.detail.as_str())).collect();
    assert_eq!(
        said,
        [("/a~1b", "given 2 times where one value is expected"), ("/qty", "given 2 times where one value is expected")]
    );
}

#[test]
fn media_types_match_exactly_or_by_suffix() {
    assert!(media_matches("application/json", "application/json"));
    assert!(!media_matches("application/json", "application/problem+json"));
    assert!(media_matches("application/*+json", "application/problem+json"));
    assert!(!media_matches("application/*+json", "text/plain"));
    assert!(is_json("application/vnd.api+json") && !is_json("text/json-ish"));
}

/// Path `label` and `matrix` styles, plain and exploded, and `deepObject` queries.
#[test]
fn path_styles_and_deep_objects_are_read_per_openapi() {
    let formats = BTreeMap::new();
    let path = |style: &str, explode: bool, schema: serde_json::Value| {
        let mut schema = schema;
        schema["style"] = json!(style);
        schema["explode"] = json!(explode);
        Param::compile("path", "id", &schema, &formats).unwrap()
    };
    let ints = json!({ "type": "array", "items": { "type": "integer" } });
    let problems_of = |p: &Param, value: &str| {
        let mut problems = Vec::new();
        p.check("path", &[value], &mut problems);
        problems.into_iter().map(|p| p.pointer).collect::<Vec<_>>()
    };
    // An integer parameter is digits: `5.0` and `1e1` would be integers to
    // JSON Schema but fail the service's `Atoi`.
    let simple = path("simple", false, json!({ "type": "integer", "format": "int64" }));
    for fine in ["5", "-5", "+5", "9223372036854775807"] {
        assert!(problems_of(&simple, fine).is_empty(), "{fine}");
    }
    for refused in ["5.0", "1e1", "1.0000000000000001", "0x5", "", "9223372036854775808", "99999999999999999999"] {
        assert_eq!(problems_of(&simple, refused), ["id"], "{refused}");
    }
    let number = path("simple", false, json!({ "type": "number" }));
    assert!(problems_of(&number, "1e1").is_empty() && problems_of(&number, "5.5").is_empty());
    let label = path("label", false, json!({ "type": "integer", "minimum": 1 }));
    assert!(problems_of(&label, ".5").is_empty());
    assert_eq!(problems_of(&label, ".0"), ["id"]);
    assert_eq!(problems_of(&label, "5"), ["id"], "a label value starts with a dot");
    assert!(problems_of(&path("label", false, ints.clone()), ".1,2").is_empty());
    assert!(problems_of(&path("label", true, ints.clone()), ".1.2").is_empty());
    assert_eq!(problems_of(&path("label", true, ints.clone()), ".1.x"), ["id/1"]);

    let matrix = path("matrix", false, json!({ "type": "integer" }));
    assert!(problems_of(&matrix, ";id=5").is_empty());
    assert_eq!(problems_of(&matrix, ";id=five"), ["id"]);
    assert_eq!(problems_of(&matrix, ";other=5"), ["id"], "a matrix value names its parameter");
    // One value expected, two given: the service may read the other one.
    for twice in [";id=5;id=x", ";id=5;id=0", ";id=5;id"] {
        assert_eq!(problems_of(&matrix, twice), ["id"], "{twice}");
    }
    assert!(problems_of(&path("matrix", false, ints.clone()), ";id=1,2").is_empty());
    assert!(problems_of(&path("matrix", true, ints.clone()), ";id=1;id=2").is_empty());
    assert_eq!(problems_of(&path("matrix", true, ints), ";id=1;id=y"), ["id/1"]);

    let filter = Param::compile(
        "query",
        "filter",
        &json!({ "type": "object", "style": "deepObject", "explode": true, "required": true,
                 "properties": { "color": { "enum": ["red", "blue"] }, "size": { "type": "integer", "maximum": 10 } },
                 "additionalProperties": false }),
        &formats,
    )
    .unwrap();
    let check = |query: &str| {
        let mut problems = Vec::new();
        filter.check_deep_object(&query_pairs(query), &mut problems);
        problems.into_iter().map(|p| p.pointer).collect::<Vec<_>>()
    };
    assert!(check("filter[color]=red&filter[size]=10&other=1").is_empty());
    assert_eq!(check("filter[color]=green&filter[size]=11"), ["filter/color", "filter/size"]);
    assert_eq!(check("filter[shape]=round"), ["filter"]);
    assert_eq!(check("other=1"), ["filter"], "required");
    // A member in another case is what ASP.NET binds as the declared one.
    assert_eq!(check("filter[SIZE]=1000"), ["filter[SIZE]"]);
    assert_eq!(check("filter[Color]=green&filter[color]=red"), ["filter[Color]"]);
    // On a scalar (Stripe's `application`), nothing to spread: read as `f=value`.
    let scalar = json!({ "anyOf": [ { "type": "string", "maxLength": 3 }, { "enum": [""] } ], "style": "deepObject" });
    let f = Param::compile("query", "f", &scalar, &formats).expect("a scalar deepObject is read as form");
    let mut problems = Vec::new();
    f.check("query", &["abc"], &mut problems);
    f.check("query", &[""], &mut problems);
    assert!(problems.is_empty(), "{problems:?}");
    f.check("query", &["toolong"], &mut problems);
    assert_eq!(problems.len(), 1);
}

#[test]
fn a_parameter_schema_under_schema_is_refused() {
    let formats = Default::default();
    let wrapped = json!({ "schema": { "type": "string", "enum": ["a", "b"] }, "required": true });
    let Err(err) = Param::compile("query", "answer", &wrapped, &formats) else { panic!("accepted") };
    assert!(err.contains("written in place"), "{err}");
}

#[test]
fn typeless_enums_consts_and_branches_read_values_as_their_types() {
    let formats = Default::default();
    let check = |schema: serde_json::Value, raw: &str| {
        let Ok(p) = Param::compile("query", "p", &schema, &formats) else { panic!("compiles") };
        let mut problems = Vec::new();
        p.check("query", &[raw], &mut problems);
        problems.is_empty()
    };
    assert!(check(json!({ "enum": [10, 25] }), "10"));
    assert!(!check(json!({ "enum": [10, 25] }), "11"));
    assert!(check(json!({ "enum": [true] }), "true"));
    assert!(check(json!({ "const": 5 }), "5"));
    assert!(check(json!({ "anyOf": [ { "type": "integer" }, { "type": "string", "enum": ["all"] } ] }), "5"));
    assert!(check(json!({ "anyOf": [ { "type": "integer" }, { "type": "string", "enum": ["all"] } ] }), "all"));
    assert!(check(json!({ "enum": ["a", "b"] }), "a"));
}

#[test]
fn a_member_name_refused_by_property_names_is_not_repeated() {
    let schema =
        json!({ "type": "object", "properties": { "pn": { "type": "object", "propertyNames": { "maxLength": 3 } } } });
    let validator = jsonschema::validator_for(&schema).unwrap();
    let body = json!({ "pn": { "SECRETVALUE123": 1 } });
    let details: Vec<String> =
        validator.iter_errors(&body).map(|e| super::detail_of(&e, &super::members_in(&body))).collect();
    assert_eq!(details.len(), 1);
    assert!(!details[0].contains("SECRET"), "{}", details[0]);
    assert!(details[0].contains("maxLength"), "{}", details[0]);
}

#[test]
fn openapi_byte_and_float_are_checked() {
    let formats = Default::default();
    let byte = compile_schema(&json!({ "type": "string", "format": "byte" }), &formats).unwrap();
    for (value, ok) in [("aGVsbG8=", true), ("aGVsbG8h", true), ("", true), ("!!!notbase64", false), ("aGVsbG8", false)]
    {
        assert_eq!(byte.is_valid(&json!(value)), ok, "{value}");
    }
    let float = compile_schema(&json!({ "type": "number", "format": "float" }), &formats).unwrap();
    assert!(float.is_valid(&json!(1.5)) && float.is_valid(&json!(-3.0e38)));
    assert!(!float.is_valid(&json!(1e300)));
}

/// `idn-email` and `idn-hostname` are checked (the library's `idna`
/// feature): without it they passed anything, though `check` named them
/// known formats.
#[test]
fn internationalized_emails_and_hostnames_are_checked() {
    let formats = Default::default();
    let email = compile_schema(&json!({ "type": "string", "format": "idn-email" }), &formats).unwrap();
    for (value, ok) in
        [("jane@example.com", true), ("用户@例子.广告", true), ("nope", false), ("@", false), ("1.2.3.4", false)]
    {
        assert_eq!(email.is_valid(&json!(value)), ok, "{value}");
    }
    let host = compile_schema(&json!({ "type": "string", "format": "idn-hostname" }), &formats).unwrap();
    for (value, ok) in [("例子.广告", true), ("example.com", true), ("-bad-.com", false), ("a..b", false)] {
        assert_eq!(host.is_valid(&json!(value)), ok, "{value}");
    }
}

/// A `pattern` that backtracks (a backreference) stops after a bounded
/// number of steps, and the refusal says so in the gateway's words, not
/// the engine's (`Error executing regex: …`).
#[test]
fn a_backtracking_pattern_is_bounded_and_explained() {
    let formats = Default::default();
    let schema = compile_schema(&json!({ "type": "string", "pattern": "^(a|aa)+\\1$" }), &formats).unwrap();
    assert!(schema.is_valid(&json!("aaaa")));
    // Past ten thousand steps, within the library's default million.
    let hostile = json!(format!("{}c", "a".repeat(22)));
    let details: Vec<String> =
        schema.iter_errors(&hostile).map(|e| super::detail_of(&e, &super::members_in(&hostile))).collect();
    assert_eq!(
        details,
        ["the value could not be checked against the schema's `pattern` within the gateway's step limit"]
    );
}

/// The spellings frameworks read as a declared name, and the names they do not.
#[test]
fn other_spellings_are_the_ones_frameworks_read_as_the_name() {
    use super::params::read_as;
    for (sent, name) in [
        ("role[]", "role"),
        ("role[0]", "role"),
        ("ROLE", "role"),
        (" role", "role"),
        ("  role[]", "role"),
        ("ro.le", "ro_le"),
        ("ro le", "ro_le"),
        ("ids", "ids[]"),
        ("ids[0]", "ids[]"),
        ("USER[role]", "user"),
        ("User[role][x]", "user"),
        ("user.role", "user"),
        ("USER.role", "user"),
    ] {
        assert!(read_as(sent, name), "{sent:?} for {name}");
    }
    for (sent, name) in [
        ("role", "role"),
        ("roles", "role"),
        ("page_size", "page"),
        ("role[", "role"),
        ("ro.le", "role"),
        ("username", "user"),
        ("user.", "user"),
    ] {
        assert!(!read_as(sent, name), "{sent:?} for {name}");
    }
    assert!(read_as("role[", "role_"), "PHP reads an unclosed bracket as `_`");
    assert!(read_as("a[b.c", "a_b.c") && !read_as("a[b.c", "a_b_c"), "and keeps what follows it");
}

/// A form schema's `anyOf`/`oneOf` branches declare fields too: they are
/// read as their types, and their other spellings are refused.
#[test]
fn form_fields_of_alternatives_are_read_as_declared() {
    let schema = json!({ "anyOf": [ { "type": "object", "properties": { "role": { "enum": ["user"] }, "n": { "type": "integer" } } } ] });
    let properties = super::params::form_properties(&schema);
    let mut problems = Vec::new();
    let form = form_object(b"role=user&n=5", &properties, &mut problems);
    assert_eq!((form, problems.len()), (json!({ "role": "user", "n": 5 }), 0));
    form_object(b"role=user&role[]=admin&%20role=x", &properties, &mut problems);
    let pointers: Vec<&str> = problems.iter().map(|p| p.pointer.as_str()).collect();
    assert_eq!(pointers, ["/ role", "/role[]"]);
    // Declared differently by the alternatives: read as text (either branch may take it).
    let schema = json!({ "oneOf": [
        { "properties": { "kind": { "const": "a" }, "n": { "type": "integer" } } },
        { "properties": { "kind": { "const": "b" }, "n": { "type": "string" } } } ] });
    let properties = super::params::form_properties(&schema);
    let form = form_object(b"kind=b&n=5", &properties, &mut Vec::new());
    assert_eq!(form, json!({ "kind": "b", "n": "5" }));
}

/// `filter[]=x` is no member of a `deepObject` `filter`: PHP and `qs` read
/// it as the list `['x']`, unchecked, so it is refused as a stray spelling.
#[test]
fn an_empty_bracket_is_no_deep_object_member() {
    let formats = BTreeMap::new();
    let schema = json!({ "style": "deepObject", "type": "object", "properties": { "color": { "enum": ["red"] } } });
    let filter = Param::compile("query", "filter", &schema, &formats).unwrap();
    let pairs = |q: &str| query_pairs(q);
    let mut problems = Vec::new();
    filter.check_deep_object(&pairs("filter[color]=red"), &mut problems);
    assert!(problems.is_empty(), "{problems:?}");
    filter.check_deep_object(&pairs("filter[]=x"), &mut problems);
    assert_eq!(problems.iter().map(|p| p.pointer.as_str()).collect::<Vec<_>>(), ["filter"]);
}

/// FastAPI's `Optional[list[int]]` is `anyOf: [array of integer, null]`:
/// its values are read as the array branch's items (they stayed strings,
/// and every valid request was refused).
#[test]
fn an_array_in_a_branch_is_read_by_its_items() {
    let formats = BTreeMap::new();
    let optional = json!({ "anyOf": [ { "type": "array", "items": { "type": "integer" } }, { "type": "null" } ] });
    let ids = Param::compile("query", "ids", &optional, &formats).unwrap();
    let problems = |values: &[&str]| {
        let mut problems = Vec::new();
        ids.check("query", values, &mut problems);
        problems
    };
    assert!(problems(&["1", "2"]).is_empty(), "{:?}", problems(&["1", "2"]));
    assert!(problems(&["1"]).is_empty());
    assert_eq!(problems(&["1", "x"]).len(), 1);
    let either = json!({ "oneOf": [ { "type": "array", "items": { "type": "integer" } }, { "type": "integer" } ] });
    let oids = Param::compile("query", "oids", &either, &formats).unwrap();
    let mut found = Vec::new();
    oids.check("query", &["3"], &mut found);
    assert!(found.is_empty(), "{found:?}");
    // A form field alike.
    let schema = json!({ "properties": { "tags": optional } });
    let properties = super::params::form_properties(&schema);
    let mut found = Vec::new();
    let form = form_object(b"tags=1&tags=2", &properties, &mut found);
    assert_eq!((form, found.len()), (json!({ "tags": [1, 2] }), 0));
}

/// Stripe's description: `expand` a `deepObject` array, sent as
/// `expand[]=a` or `expand[0]=a`; `created` a `deepObject` that may also be
/// an integer (`anyOf`), its members typed by the object branch.
#[test]
fn deep_object_arrays_and_alternatives_read_as_stripe_sends_them() {
    let formats = BTreeMap::new();
    let check = |p: &Param, q: &str| {
        let mut problems = Vec::new();
        p.check_deep_object(&query_pairs(q), &mut problems);
        problems.into_iter().map(|p| p.pointer).collect::<Vec<_>>()
    };
    let expand =
        json!({ "style": "deepObject", "type": "array", "items": { "type": "string", "maxLength": 5 }, "maxItems": 2 });
    let expand = Param::compile("query", "expand", &expand, &formats).unwrap();
    assert!(check(&expand, "expand[]=a&expand[]=b").is_empty());
    assert!(check(&expand, "expand[1]=b&expand[0]=a&expanded=x").is_empty());
    assert_eq!(check(&expand, "expand[0]=toolong"), ["expand/0"]);
    assert_eq!(check(&expand, "expand[]=a&expand[]=b&expand[]=c"), ["expand"]);
    for stray in ["expand=a", "expand[x]=a", "expand[0=a"] {
        assert_eq!(check(&expand, stray), ["expand"], "{stray}");
    }
    let created = json!({ "style": "deepObject", "anyOf": [
        { "type": "object", "properties": { "gte": { "type": "integer" }, "lt": { "type": "integer" } }, "additionalProperties": false },
        { "type": "integer" } ] });
    let created = Param::compile("query", "created", &created, &formats).unwrap();
    assert!(check(&created, "created[gte]=1600000000&created[lt]=1700000000").is_empty());
    assert!(check(&created, "created=1600000000").is_empty());
    assert_eq!(check(&created, "created=soon").len(), 1);
    assert_eq!(check(&created, "created[gte]=soon").len(), 1);
}

/// `anyOf: [ X, null ]` (FastAPI's `Optional[X]`): the problem is X's, not
/// "not valid under any of the schemas".
#[test]
fn an_optional_value_is_explained_by_its_non_null_branch() {
    let schema = json!({ "anyOf": [ { "type": "integer", "maximum": 5 }, { "type": "null" } ] });
    let validator = jsonschema::validator_for(&schema).unwrap();
    let details = |v: serde_json::Value| {
        validator.iter_errors(&v).map(|e| super::detail_of(&e, &super::members_in(&v))).collect::<Vec<_>>()
    };
    let big = details(json!(7));
    assert!(big.len() == 1 && big[0].contains("maximum"), "{big:?}");
    let text = details(json!("x"));
    assert!(text.len() == 1 && text[0].contains("integer"), "{text:?}");
    // Two real alternatives: the library's words stand.
    let either =
        jsonschema::validator_for(&json!({ "anyOf": [ { "type": "integer" }, { "type": "boolean" } ] })).unwrap();
    let both: Vec<String> = either.iter_errors(&json!("x")).map(|e| super::detail_of(&e, &|_: &str| None)).collect();
    assert!(both[0].contains("anyOf"), "{both:?}");
}

/// `?limit=` for an optional integer is no integer to the service (FastAPI
/// refuses it, `Atoi` fails): refused, not read as null.
#[test]
fn an_empty_value_is_null_only_where_nothing_else_reads_it() {
    let formats = BTreeMap::new();
    let check = |schema: serde_json::Value, value: &str| {
        let p = Param::compile("query", "limit", &schema, &formats).unwrap();
        let mut problems = Vec::new();
        p.check("query", &[value], &mut problems);
        problems.len()
    };
    assert_eq!(check(json!({ "type": ["integer", "null"] }), ""), 1);
    assert_eq!(check(json!({ "anyOf": [ { "type": "integer" }, { "type": "null" } ] }), ""), 1);
    assert_eq!(check(json!({ "type": ["string", "null"], "minLength": 0 }), ""), 0);
    assert_eq!(check(json!({ "type": "null" }), ""), 0);
}

/// Stripe's forms: an object of objects inside an `anyOf` branch
/// (`currency_options[eur][unit_amount]=900`), and `field=` to clear a
/// list (`anyOf: [array, enum [""]]`).
#[test]
fn stripe_form_alternatives_read_as_stripe_sends_them() {
    let schema = json!({ "properties": {
        "currency_options": { "anyOf": [
            { "type": "object", "additionalProperties": { "type": "object", "properties": { "unit_amount": { "type": "integer" } } } },
            { "enum": [""] } ] },
        "custom_fields": { "anyOf": [
            { "type": "array", "items": { "type": "object", "required": ["name"] } },
            { "enum": [""] } ] }
    } });
    let properties = super::params::form_properties(&schema);
    let validator = jsonschema::validator_for(&schema).unwrap();
    for body in ["currency_options[eur][unit_amount]=900", "custom_fields=", "currency_options="] {
        let mut problems = Vec::new();
        let form = form_object(body.as_bytes(), &properties, &mut problems);
        assert!(problems.is_empty() && validator.is_valid(&form), "{body}: {form} {problems:?}");
    }
}

/// A discriminator's subtypes (one `if`/`then` each) are alternatives:
/// a field one declares is read by its type, a field two declare
/// differently stays text.
#[test]
fn form_fields_of_discriminated_subtypes_are_read_by_their_declarations() {
    let schema = json!({
        "allOf": [
            { "if": { "properties": { "kind": { "const": "cat" } } }, "then": { "$ref": "#/$defs/Cat" } },
            { "if": { "properties": { "kind": { "const": "dog" } } }, "then": { "$ref": "#/$defs/Dog" } }
        ],
        "$defs": {
            "Cat": { "properties": { "lives": { "type": "integer" }, "tag": { "type": "integer" } } },
            "Dog": { "properties": { "barks": { "type": "boolean" }, "tag": { "type": "string" } } }
        }
    });
    let properties = super::params::form_properties(&schema);
    assert_eq!(properties["lives"], json!({ "type": "integer" }));
    assert_eq!(properties["barks"], json!({ "type": "boolean" }));
    assert_eq!(properties["tag"], json!({}), "declared differently: text");
    assert!(!properties.contains_key("kind"), "an `if` declares nothing");
}

/// A property composed with `allOf` (OpenAPI inheritance) is the object it
/// composes: its nested form fields are read into it, by the parts' types.
#[test]
fn nested_fields_of_a_composed_object_are_read_into_it() {
    let schema = json!({
        "type": "object",
        "properties": { "user": { "$ref": "#/$defs/User" } },
        "$defs": {
            "Base": { "type": "object", "properties": { "id": { "type": "integer" } } },
            "User": { "allOf": [ { "$ref": "#/$defs/Base" }, { "properties": { "role": { "enum": ["user"] } } } ] }
        }
    });
    let properties = super::params::form_properties(&schema);
    let validator = jsonschema::validator_for(&schema).unwrap();
    let mut problems = Vec::new();
    let form = form_object(b"user[role]=user&user[id]=7", &properties, &mut problems);
    assert!(problems.is_empty() && validator.is_valid(&form), "{form} {problems:?}");
    assert_eq!(form, json!({ "user": { "role": "user", "id": 7 } }));
    let form = form_object(b"user[role]=admin", &properties, &mut problems);
    assert!(!validator.is_valid(&form), "checked, not passed as a plain field: {form}");
}

/// Nested fields in another case or ASP.NET's dot spelling are other
/// spellings of the declared object: refused, not passed unchecked.
#[test]
fn nested_fields_in_another_spelling_are_refused() {
    let schema =
        json!({ "properties": { "user": { "type": "object", "properties": { "role": { "enum": ["user"] } } } } });
    let properties = super::params::form_properties(&schema);
    for body in ["USER[role]=admin", "user[role]=user&User[role]=admin", "user.role=admin"] {
        let mut problems = Vec::new();
        form_object(body.as_bytes(), &properties, &mut problems);
        assert!(!problems.is_empty(), "{body}");
    }
    let mut problems = Vec::new();
    form_object(b"user[role]=user", &properties, &mut problems);
    assert!(problems.is_empty(), "{problems:?}");
}

/// A form of more fields than a JSON body may have entries is refused
/// before it is read into names and values.
#[test]
fn a_form_of_too_many_fields_is_refused() {
    let body = "a=1&".repeat(10_001);
    let mut problems = Vec::new();
    form_object(body.as_bytes(), &serde_json::Map::new(), &mut problems);
    assert_eq!(problems.iter().map(|p| p.detail.as_str()).collect::<Vec<_>>(), ["more than 10000 fields"]);
}

/// Patterns that run on the backtracking engine (look-around,
/// back-references, possessive quantifiers) are told from linear ones,
/// wherever the schema holds them; strings are counted by their unescaped
/// quotes.
#[test]
fn backtracking_patterns_are_found_and_strings_counted() {
    use serde_json::json;
    for p in ["^(?=.*[0-9])x$", "(a)\\1", "^(?:(a|a)*c++|a*b)$", "a?+", "a{2}+", "(?<n>a)\\k<n>"] {
        assert!(super::backtracking_pattern(&json!({ "pattern": p })), "{p}");
    }
    for p in ["^[a-z]+$", "a{2,3}", "(a|b)*c"] {
        assert!(!super::backtracking_pattern(&json!({ "pattern": p })), "{p}");
    }
    let nested = json!({ "$defs": { "A": { "patternProperties": { "^(?!x)": {} } } } });
    assert!(super::backtracking_pattern(&nested));
    assert_eq!(super::unescaped_quotes(br#"{"a":"x\"y\\","b":"\\\"z"}"#), 8);
}

/// Thousands of undeclared or misspelt query names keep the problems few:
/// each name looked among the problems so far, so listing every one was
/// quadratic (2,700 names in an 8 KiB query: ~200x a plain request).
#[test]
fn a_query_of_many_names_keeps_few_problems() {
    use crate::policy::compile::{Shared, with_test_ctx};
    let cfg: ValidateConfig = serde_json::from_value(json!({
        "query": { "page": { "type": "integer" } },
        "additional_query": "deny"
    }))
    .unwrap();
    let validate = with_test_ctx(Shared::default(), |cx| Compiled::compile(&cfg, cx)).unwrap();
    let request_id = http::HeaderValue::from_static("id");
    let ctx = RequestCtx::new("192.0.2.1".parse().unwrap(), &request_id, "test", None);
    for query in [
        (0..3000).map(|i| format!("n{i}")).collect::<Vec<_>>().join("&"),
        (0..3000).map(|i| format!("page[{i}]")).collect::<Vec<_>>().join("&"),
    ] {
        let (parts, ()) = http::Request::get(format!("/x?{query}")).body(()).unwrap().into_parts();
        let problems = validate.parameters(&parts, &ctx);
        assert_eq!(problems.len(), MAX_ERRORS, "{:?}", problems.first());
    }
    // A name after a `;` is checked where it is a parameter, and no other one of its own.
    let asked = |query: &str| {
        let (parts, ()) = http::Request::get(format!("/x?{query}")).body(()).unwrap().into_parts();
        validate.parameters(&parts, &ctx).into_iter().map(|p| p.pointer).collect::<Vec<_>>()
    };
    assert_eq!(asked("page=1&next=/a;jsessionid=abc"), ["next"]);
    assert!(asked("next=/a;page=x").contains(&"page".to_string()));
    // Cookies likewise: names with a control character, other spellings of a declared one.
    let cfg: ValidateConfig =
        serde_json::from_value(json!({ "cookies": { "sess_id": { "type": "string" } } })).unwrap();
    let validate = with_test_ctx(Shared::default(), |cx| Compiled::compile(&cfg, cx)).unwrap();
    for cookie in [
        (0..3000).map(|i| format!("c%01{i}=1")).collect::<Vec<_>>().join("; "),
        (0..3000).map(|i| format!("sess_id[{i}]=1")).collect::<Vec<_>>().join("; "),
    ] {
        let req = http::Request::get("/x").header("cookie", cookie).body(()).unwrap();
        let problems = validate.parameters(&req.into_parts().0, &ctx);
        assert_eq!(problems.len(), MAX_ERRORS, "{:?}", problems.first());
    }
}

/// A JSON-content parameter with a name twice in its object is refused,
/// as a body is: checked by the last, it might be read by the first.
#[test]
fn a_json_parameter_with_a_name_twice_is_refused() {
    let formats = BTreeMap::new();
    let filter = Param::compile(
        "query",
        "filter",
        &json!({ "type": "object", "properties": { "role": { "const": "user" } }, "content": "application/json" }),
        &formats,
    )
    .unwrap();
    let mut problems = Vec::new();
    filter.check("query", &[r#"{"role":"user"}"#], &mut problems);
    assert!(problems.is_empty(), "{problems:?}");
    filter.check("query", &[r#"{"role":"admin","role":"user"}"#], &mut problems);
    assert_eq!(problems.len(), 1, "{problems:?}");
}

/// The same fault said by several branches is listed once.
#[test]
fn identical_problems_are_listed_once() {
    let schema = json!({ "allOf": [ { "required": ["kind"] }, { "required": ["kind"] }, { "required": ["kind"] } ] });
    let validator = jsonschema::validator_for(&schema).unwrap();
    let body = json!({});
    let mut problems = Vec::new();
    super::schema_problems(validator.iter_errors(&body).collect(), &super::members_in(&body), &mut problems);
    assert_eq!(problems.len(), 1, "{problems:?}");
}

/// A parameter's or a form field's type reached through an `$anchor` or
/// an `$id` URI is read as that type, as the validator resolves it
/// (`"5"` was left text, then refused as no integer).
#[test]
fn types_behind_anchors_and_ids_are_read_as_declared() {
    let formats = BTreeMap::new();
    let count = json!({ "$ref": "#count", "$defs": { "n": { "$anchor": "count", "type": "integer" } } });
    let mut problems = Vec::new();
    Param::compile("query", "n", &count, &formats).unwrap().check("query", &["5"], &mut problems);
    let list = json!({ "$ref": "list.json", "$defs": {
        "l": { "$id": "list.json", "type": "array", "items": { "$ref": "#/$defs/i" }, "$defs": { "i": { "type": "integer" } } } } });
    let ids = Param::compile("query", "ids", &list, &formats).unwrap();
    ids.check("query", &["1", "2"], &mut problems);
    assert!(problems.is_empty(), "{problems:?}");
    ids.check("query", &["1", "x"], &mut problems);
    assert_eq!(problems.iter().map(|p| p.pointer.as_str()).collect::<Vec<_>>(), ["ids/1"]);

    let form = json!({ "$ref": "#pet", "$defs": {
        "pet": { "$anchor": "pet", "type": "object", "properties": {
            "id": { "$ref": "#id" }, "tags": { "type": "array", "items": { "$ref": "#id" } } } },
        "id": { "$anchor": "id", "type": "integer" } } });
    let properties = super::params::form_properties(&form);
    let mut problems = Vec::new();
    let read = form_object(b"id=5&tags=1&tags=2", &properties, &mut problems);
    assert_eq!((read, problems.len()), (json!({ "id": 5, "tags": [1, 2] }), 0));
    assert!(compile_schema(&form, &formats).unwrap().is_valid(&json!({ "id": 5, "tags": [1, 2] })));
}

/// `additionalProperties: false` with no `properties` (an empty object):
/// the members are named or counted, as beside `properties`, not "False
/// schema does not allow value".
#[test]
fn members_of_an_object_that_must_be_empty_are_named() {
    let formats = BTreeMap::new();
    for keyword in ["additionalProperties", "unevaluatedProperties"] {
        let v = compile_schema(&json!({ "type": "object", keyword: false }), &formats).unwrap();
        let detail = |body: Value| v.iter_errors(&body).map(|e| detail_of(&e, &members_in(&body))).collect::<Vec<_>>();
        assert_eq!(detail(json!({ "a": 1, "b": 2 })), ["members the schema does not allow: `a`, `b`"], "{keyword}");
        let six = json!({ "a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "f": 6 });
        assert_eq!(detail(six), ["6 members the schema does not allow"], "{keyword}");
    }
    // A property called `additionalProperties` that must be absent is that
    // member, not the members inside it.
    let v = compile_schema(&json!({ "properties": { "additionalProperties": false } }), &formats).unwrap();
    let body = json!({ "additionalProperties": { "token": 1 } });
    let details: Vec<String> = v.iter_errors(&body).map(|e| detail_of(&e, &members_in(&body))).collect();
    assert_eq!(details, ["no value is allowed here (its schema is `false`)"]);
}

/// A nested form member in another case (`user[ROLE]` for `role`) is what
/// ASP.NET binds as the declared one: refused, alone or beside it.
#[test]
fn nested_form_members_in_another_case_are_refused() {
    let schema = json!({ "type": "object", "properties": {
        "user": { "type": "object", "properties": { "role": { "enum": ["user"] },
            "tags": { "type": "array", "items": { "type": "object", "properties": { "id": { "type": "integer" } } } } } } } });
    let properties = super::params::form_properties(&schema);
    let pointers = |body: &[u8]| {
        let mut problems = Vec::new();
        form_object(body, &properties, &mut problems);
        problems.into_iter().map(|p| p.pointer).collect::<Vec<_>>()
    };
    assert!(pointers(b"user[role]=user&user[tags][0][id]=1").is_empty());
    assert_eq!(pointers(b"user[ROLE]=admin"), ["/user[ROLE]"]);
    assert_eq!(pointers(b"user[Role]=admin&user[role]=user"), ["/user[Role]"]);
    assert_eq!(pointers(b"user[tags][0][ID]=x"), ["/user[tags][0][ID]"]);
}

/// An object's members declared by several `allOf` parts (OpenAPI's
/// inheritance) and behind a nested `$ref` are read as their types and
/// guarded by case, in a query `deepObject` and a nested form alike
/// (the second part's members were read as text: a false 400, and their
/// other cases passed).
#[test]
fn members_of_all_of_parts_and_nested_references_are_read_and_guarded() {
    let formats = BTreeMap::new();
    let page = json!({ "style": "deepObject", "allOf": [ { "$ref": "#/$defs/base" },
        { "type": "object", "properties": { "size": { "type": "integer", "maximum": 100 } } } ],
        "$defs": { "base": { "type": "object", "properties": { "number": { "type": "integer" } } } } });
    let page = Param::compile("query", "page", &page, &formats).unwrap();
    let check = |query: &str| {
        let mut problems = Vec::new();
        page.check_deep_object(&query_pairs(query), &mut problems);
        problems.into_iter().map(|p| p.pointer).collect::<Vec<_>>()
    };
    assert!(check("page[size]=10&page[number]=2").is_empty());
    assert_eq!(check("page[SIZE]=1000"), ["page[SIZE]"]);
    assert_eq!(check("page[size]=1000"), ["page/size"]);

    let form = json!({ "type": "object", "properties": { "user": { "type": "object", "properties": {
            "profile": { "$ref": "#/$defs/profile" },
            "addr": { "allOf": [ { "properties": { "city": {} } }, { "properties": { "role": { "enum": ["user"] } } } ] } } } },
        "$defs": { "profile": { "type": "object", "properties": { "age": { "type": "integer" } } } } });
    let properties = super::params::form_properties(&form);
    let pointers = |body: &[u8]| {
        let mut problems = Vec::new();
        let read = form_object(body, &properties, &mut problems);
        (read, problems.into_iter().map(|p| p.pointer).collect::<Vec<_>>())
    };
    let (read, problems) = pointers(b"user[profile][age]=3&user[addr][role]=user");
    assert_eq!((read, problems), (json!({ "user": { "profile": { "age": 3 }, "addr": { "role": "user" } } }), vec![]));
    assert_eq!(pointers(b"user[profile][AGE]=3").1, ["/user[profile][AGE]"]);
    assert_eq!(pointers(b"user[addr][ROLE]=admin").1, ["/user[addr][ROLE]"]);
}
