/// `schema.graphql` at the repo root must be exactly what the code exports (`appkeys schema`).
#[test]
fn schema_graphql_matches_the_code() {
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql")).expect("schema.graphql");
    let exported = appkeys::graphql::sdl();
    assert!(
        committed == exported,
        "schema.graphql drifted from the code; regenerate it with `cargo run -- schema > schema.graphql`"
    );
}

/// Every type, field, argument and enum value of ours has a description (the library's Relay
/// plumbing — connections, edges, page info — is exempt).
#[test]
fn every_type_and_field_is_documented() {
    let sdl = appkeys::graphql::sdl();
    let mut undocumented = Vec::new();
    let mut in_description = false;
    let mut described = false;
    let mut generated_type = false;
    for line in sdl.lines().map(str::trim) {
        if line == "\"\"\"" || (line.starts_with("\"\"\"") && !line.ends_with("\"\"\"")) {
            in_description = !in_description;
            described = true;
            continue;
        }
        if in_description || line.is_empty() {
            continue;
        }
        if (line.starts_with('"') && line.ends_with('"')) || (line.starts_with("\"\"\"") && line.len() > 3) {
            described = true;
            continue;
        }
        if line == "}"
            || line.starts_with(')')
            || line.starts_with("schema")
            || line.starts_with("query:")
            || line.starts_with("mutation:")
            || line.starts_with("subscription:")
            || line.starts_with("directive")
            || line.starts_with("scalar")
        {
            described = false;
            continue;
        }
        let opens_type = ["type ", "input ", "enum "].iter().any(|k| line.starts_with(k));
        if opens_type {
            generated_type = ["Connection ", "Edge ", "PageInfo "].iter().any(|g| line.contains(g));
        }
        if !described && !generated_type {
            undocumented.push(line.to_owned());
        }
        described = false;
    }
    assert!(undocumented.is_empty(), "undocumented:\n{undocumented:#?}");
}
