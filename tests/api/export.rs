use crate::helpers::{Auth, TestApp};
use serde_json::json;

async fn the_export_lists_keys_with_access_as_csv(app: &TestApp) {
    let owner = app.owner().await;
    let restricted = app.restricted_role(&owner).await;
    let view_role = app.custom_role(&owner, "=cmd|' /C calc'!A0", &["ApiKeys.View"]).await;
    let (with_roles, _) = app.generate_key(&owner, Some("=HYPERLINK(\"x\")"), &[restricted, view_role]).await;
    let (without_roles, _) = app.generate_key(&owner, None, &[]).await;
    let response = app.get("/export/app-keys.csv", &owner).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/csv; charset=utf-8");
    assert_eq!(response.headers()["content-disposition"], "attachment; filename=\"app-keys.csv\"");
    let body = response.text().await.expect("body");
    let mut reader = csv::Reader::from_reader(body.as_bytes());
    assert_eq!(
        reader.headers().expect("header").iter().collect::<Vec<_>>(),
        [
            "key",
            "account",
            "type",
            "status",
            "roles",
            "created_at",
            "label",
            "token_created_at",
            "renewal_pending",
            "last_used_at",
            "expires_at"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
    assert_eq!(rows.len(), 1, "only keys with roles: {body}");
    assert_eq!(&rows[0][0], with_roles.as_str());
    assert_eq!(&rows[0][1], "main");
    assert_eq!(&rows[0][2], "INTERNAL");
    assert_eq!(&rows[0][3], "ACTIVE");
    assert_eq!(&rows[0][4], "User Administrator - RESTRICTED;=cmd|' /C calc'!A0", "roles joined by ;");
    assert!(rows[0][5].parse::<chrono::DateTime<chrono::Utc>>().is_ok());
    assert_eq!(&rows[0][6], "'=HYPERLINK(\"x\")", "the label, guarded like every cell");
    assert_eq!(&rows[0][7], &rows[0][5], "the token is as old as the key");
    assert_eq!(&rows[0][8], "false");
    assert_eq!(&rows[0][9], "", "never used");
    assert_eq!(&rows[0][10], "", "never expires");
    assert!(!body.contains(&without_roles));
}

/// Every cell as the API shows the key, whatever its label holds: the backends read the export
/// differently (SQLite folds chunks into JSON, PostgreSQL copies every key out as CSV), so quoting,
/// empty cells and instants are checked on both.
async fn every_cell_reads_as_the_api_shows_the_key(app: &TestApp) {
    let owner = app.owner().await;
    let restricted = app.restricted_role(&owner).await;
    let label = r#"a,b "c" \N \d é ✓ ;"#;
    let expires = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    let generated = app
        .graphql(
            &owner,
            "mutation($input: GenerateAppKeyInput!) { generateAppKey(input: $input) { appKey { key } } }",
            json!({ "input": { "label": label, "roleIds": [restricted], "expiresAt": expires } }),
        )
        .await;
    let key = generated.data("generateAppKey.appKey.key").as_str().expect("key").to_owned();
    let (plain, _) = app.generate_key(&owner, None, &[restricted]).await;
    app.graphql(
        &owner,
        "mutation($k: String!) { renewAppKeyToken(key: $k, input: { oldTokenValidFor: 3600 }) { appToken } }",
        json!({ "k": key }),
    )
    .await
    .data("renewAppKeyToken.appToken");
    let shown = |key: &str| {
        app.graphql(
            &owner,
            "query($k: String!) { appKey(key: $k) { status createdAt tokenCreatedAt expiresAt } }",
            json!({ "k": key }),
        )
    };
    let (renewed, untouched) = (shown(&key).await.data("appKey"), shown(&plain).await.data("appKey"));
    let body = app.get("/export/app-keys.csv", &owner).await.text().await.expect("body");
    let rows: Vec<csv::StringRecord> =
        csv::Reader::from_reader(body.as_bytes()).records().map(|r| r.expect("row")).collect();
    let row = |key: &str| rows.iter().find(|r| &r[0] == key).unwrap_or_else(|| panic!("{key} in {body}")).clone();
    let seconds = |at: &serde_json::Value| {
        at.as_str()
            .expect("an instant")
            .parse::<chrono::DateTime<chrono::Utc>>()
            .expect("RFC 3339")
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let (r, p) = (row(&key), row(&plain));
    assert_eq!(&r[6], label, "the label, byte for byte");
    assert_eq!(&r[3], renewed["status"].as_str().expect("status"));
    assert_eq!(r[5], seconds(&renewed["createdAt"]));
    assert_eq!(r[7], seconds(&renewed["tokenCreatedAt"]));
    assert_eq!(&r[8], "true", "the previous token still works: renewal pending");
    assert_eq!(r[10], seconds(&renewed["expiresAt"]));
    assert_eq!(
        (&p[6], &p[8], &p[9], &p[10]),
        (plain.as_str(), "false", "", ""),
        "labelled by its key, no renewal, no use, no expiry"
    );
    assert_eq!(p[5], seconds(&untouched["createdAt"]));
    assert_eq!(p[7], p[5]);
}

async fn formula_cells_are_neutralised(app: &TestApp) {
    let owner = app.owner().await;
    for (i, name) in ["+SUM(1)", "-1", "@x", "=1"].into_iter().enumerate() {
        let role = app.custom_role(&owner, name, &["ApiKeys.View"]).await;
        app.generate_key(&owner, Some(&format!("k{i}")), &[role]).await;
    }
    let body = app.get("/export/app-keys.csv", &owner).await.text().await.expect("body");
    let mut reader = csv::Reader::from_reader(body.as_bytes());
    let cells: Vec<String> = reader.records().map(|r| r.expect("row")[4].to_owned()).collect();
    let mut cells = cells;
    cells.sort();
    assert_eq!(cells, ["'+SUM(1)", "'-1", "'=1", "'@x"]);
}

async fn the_export_needs_credentials_and_permission(app: &TestApp) {
    assert_eq!(app.get("/export/app-keys.csv", &Auth::None).await.status(), 401);
    let owner = app.owner().await;
    let profiles = app.custom_role(&owner, "Profiles", &["LicenseManager.SaveAccessProfile"]).await;
    let user = app.user_with_roles(&owner, "p@example.com", &[profiles]).await;
    let denied = app.get("/export/app-keys.csv", &user).await;
    assert_eq!(denied.status(), 403);
    let body: serde_json::Value = denied.json().await.expect("json");
    assert_eq!(body["errors"][0]["extensions"]["code"], "FORBIDDEN", "the GraphQL error shape: {body}");
    assert_eq!(
        body["errors"][0]["extensions"]["missingResources"],
        json!(["ApiKeys.View", "ApiKeys.Edit", "LicenseManager.SaveUser"])
    );
}

async fn a_download_link_works_once_without_headers(app: &TestApp) {
    let owner = app.owner().await;
    let restricted = app.restricted_role(&owner).await;
    let (key, _) = app.generate_key(&owner, None, &[restricted]).await;
    let link = app.graphql(&owner, "mutation { createAppKeysExport { url expiresAt } }", json!({})).await;
    let url = link.data("createAppKeysExport.url").as_str().expect("url").to_owned();
    assert!(url.starts_with("/export/app-keys.csv?ticket=akd_"));
    let first = app.get(&url, &Auth::None).await;
    assert_eq!(first.status(), 200);
    assert!(first.text().await.expect("csv").contains(&key));
    assert_eq!(app.get(&url, &Auth::None).await.status(), 401, "single use");
    assert_eq!(app.get("/export/app-keys.csv?ticket=akd_forged", &Auth::None).await.status(), 401);
}

async fn the_export_streams_many_pages(app: &TestApp) {
    let owner = app.owner().await;
    let restricted = app.restricted_role(&owner).await;
    for _ in 0..520 {
        app.generate_key(&owner, None, std::slice::from_ref(&restricted)).await;
    }
    let body = app.get("/export/app-keys.csv", &owner).await.text().await.expect("csv");
    let mut reader = csv::Reader::from_reader(body.as_bytes());
    let keys: std::collections::BTreeSet<String> = reader.records().map(|r| r.expect("row")[0].to_owned()).collect();
    assert_eq!(keys.len(), 520, "every key once, across chunk boundaries");
}

/// The workbook: the CSV's data in sheets `Generated` and `External`, read back with a real reader,
/// with the same formula guard; also through a single-use link.
async fn the_xlsx_export_holds_the_same_keys_in_two_sheets(app: &TestApp) {
    use calamine::{Reader, Xlsx};
    let owner = app.owner().await;
    let restricted = app.restricted_role(&owner).await;
    let (own, _) = app.generate_key(&owner, Some("@risky label"), std::slice::from_ref(&restricted)).await;
    let (second, _) = app.generate_key(&owner, Some("second"), std::slice::from_ref(&restricted)).await;
    let partner = app.account_with_owner("partner").await;
    let partner_role = app.restricted_role(&partner).await;
    let (external, _) = app.generate_key(&partner, Some("partner secret label"), &[partner_role]).await;
    let add = "mutation($k: String!, $r: [ID!]!) { addExternalAppKey(input: {key: $k, roleIds: $r}) { key } }";
    app.graphql(&owner, add, json!({ "k": external, "r": [restricted] })).await.data("addExternalAppKey");

    let link = app.graphql(&owner, "mutation { createAppKeysExport(format: XLSX) { url } }", json!({})).await;
    let url = link.data("createAppKeysExport.url").as_str().expect("url").to_owned();
    assert!(url.starts_with("/export/app-keys.xlsx?ticket="), "{url}");
    let response = app.get(&url, &Auth::None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet");
    assert_eq!(response.headers()["content-disposition"], "attachment; filename=\"app-keys.xlsx\"");
    let bytes = response.bytes().await.expect("body");
    assert_eq!(app.get(&url, &Auth::None).await.status(), 401, "the link works once");

    let mut workbook: Xlsx<_> =
        calamine::open_workbook_from_rs(std::io::Cursor::new(bytes.to_vec())).expect("an XLSX file");
    assert_eq!(workbook.sheet_names(), ["Generated", "External"]);
    let sheet = |workbook: &mut Xlsx<_>, name: &str| -> Vec<Vec<String>> {
        let range = workbook.worksheet_range(name).expect("the sheet");
        range.rows().map(|row| row.iter().map(|cell| cell.to_string()).collect()).collect()
    };
    let generated = sheet(&mut workbook, "Generated");
    let csv = app.get("/export/app-keys.csv", &owner).await.text().await.expect("csv");
    let header: Vec<String> = csv.lines().next().expect("header").split(',').map(str::to_owned).collect();
    assert_eq!(generated[0], header, "the same columns as the CSV");
    let keys: Vec<&str> = generated[1..].iter().map(|row| row[0].as_str()).collect();
    assert_eq!(keys, [second.as_str(), own.as_str()], "newest first");
    assert_eq!(generated[2][6], "'@risky label", "the formula guard");
    let external_rows = sheet(&mut workbook, "External");
    assert_eq!(external_rows.len(), 2);
    assert_eq!(external_rows[1][0], external);
    assert_eq!(external_rows[1][1], "partner");
    assert_eq!(external_rows[1][6], "", "another account's label is never exported");
    // With headers, and the same permission as the CSV.
    assert_eq!(app.get("/export/app-keys.xlsx", &owner).await.status(), 200);
    assert_eq!(app.get("/export/app-keys.xlsx", &Auth::None).await.status(), 401);
}

crate::backend_tests!(
    every_cell_reads_as_the_api_shows_the_key,
    the_xlsx_export_holds_the_same_keys_in_two_sheets,
    the_export_lists_keys_with_access_as_csv,
    formula_cells_are_neutralised,
    the_export_needs_credentials_and_permission,
    a_download_link_works_once_without_headers,
    the_export_streams_many_pages,
);

/// Chunks of 1 to 7 keys over keys holding 1 or 2 roles, and a run of keys holding none (left out,
/// and longer than a chunk): every key holding roles still comes out once, whole.
async fn chunk_boundaries_never_split_a_key(app: &TestApp) {
    let owner = app.owner().await;
    let restricted = app.restricted_role(&owner).await;
    let viewer = app.custom_role(&owner, "Viewer", &["ApiKeys.View"]).await;
    let mut expected = std::collections::BTreeMap::new();
    for i in 0..10 {
        let roles = if i % 3 == 0 { vec![restricted.clone()] } else { vec![restricted.clone(), viewer.clone()] };
        let (key, _) = app.generate_key(&owner, None, &roles).await;
        let names =
            if roles.len() == 1 { "User Administrator - RESTRICTED" } else { "User Administrator - RESTRICTED;Viewer" };
        expected.insert(key, names.to_owned());
        if i == 4 {
            for _ in 0..8 {
                app.generate_key(&owner, None, &[]).await;
            }
        }
    }
    let account_id =
        appkeys::service::identity::accounts::find_by_name(app.db(), "main").await.expect("query").expect("main").id;
    for chunk in [1, 2, 3, 4, 7] {
        use futures::StreamExt;
        let mut body = Vec::new();
        let mut stream =
            Box::pin(appkeys::service::keys::export::stream_in_chunks(app.store().clone(), account_id.clone(), chunk));
        while let Some(part) = stream.next().await {
            body.extend(part.expect("chunk"));
        }
        let mut reader = csv::Reader::from_reader(body.as_slice());
        let got: std::collections::BTreeMap<String, String> =
            reader.records().map(|r| r.expect("row")).map(|r| (r[0].to_owned(), r[4].to_owned())).collect();
        assert_eq!(got, expected, "chunks of {chunk}");
        assert_eq!(body.iter().filter(|b| **b == b'\n').count(), 11, "header + one line per key, chunks of {chunk}");
    }
}

mod chunks {
    use super::*;
    crate::backend_tests!(chunk_boundaries_never_split_a_key);
}

/// A client that leaves mid-export leaves the pool sound. With one pooled connection, the next
/// requests must reuse the connection the export read on, and they still work, a whole export
/// included. On PostgreSQL the copy is left unfinished, so its connection is closed, not returned.
async fn an_abandoned_export_leaves_the_pool_sound(backend: crate::helpers::Backend) {
    use futures::StreamExt;
    let app = TestApp::spawn_with(backend, |s| s.db_max_connections = 1).await;
    let owner = app.owner().await;
    let restricted = app.restricted_role(&owner).await;
    for _ in 0..12 {
        app.generate_key(&owner, None, std::slice::from_ref(&restricted)).await;
    }
    let account_id =
        appkeys::service::identity::accounts::find_by_name(app.db(), "main").await.expect("query").expect("main").id;
    for _ in 0..3 {
        // One key per part, and the reader waits once two parts are unread: it is mid-copy when
        // the client goes.
        let mut stream =
            Box::pin(appkeys::service::keys::export::stream_in_chunks(app.store().clone(), account_id.clone(), 1));
        let first = stream.next().await.expect("a first part").expect("no error");
        assert!(!first.is_empty());
        drop(stream);
    }
    let whole = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        app.get("/export/app-keys.csv", &owner).await.text().await.expect("csv")
    })
    .await
    .expect("the pool still answers");
    assert_eq!(whole.lines().count(), 13, "the header and every key: {whole}");
    app.graphql(&owner, "{ viewer { account } }", json!({})).await.data("viewer");
    app.cleanup().await;
}

mod abandoned {
    use super::*;
    crate::backend_cases!(an_abandoned_export_leaves_the_pool_sound);
}
