//! Diagnostics and operations over HTTP: the self-test (`GET /api/socket-test`), the admin's
//! test actions and their refusals (`POST /api/socket-test`), `/metrics` behind
//! `METRICS_TOKEN`, and the OpenAPI document against the contract's endpoint tables. What the
//! test actions and metrics show of live sockets is in `tests/realtime/admin.rs`.

use std::collections::HashMap;

use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;

/// Every endpoint in the contract's §4, §10 and §11 tables (method, path), except the OAuth ones
/// and the browser page `/monitor` (the OpenAPI document describes the REST endpoints).
const CONTRACT_ENDPOINTS: [(&str, &str); 42] = [
    ("post", "/api/auth/register"),
    ("post", "/api/auth/login"),
    ("post", "/api/auth/refresh"),
    ("post", "/api/auth/logout"),
    ("get", "/api/auth/me"),
    ("get", "/api/sessions"),
    ("delete", "/api/sessions/{id}"),
    ("get", "/api/users"),
    ("post", "/api/users"),
    ("get", "/api/users/directory"),
    ("get", "/api/users/{id}"),
    ("patch", "/api/users/{id}"),
    ("delete", "/api/users/{id}"),
    ("post", "/api/messages/send/{userId}"),
    // The contract writes `{userId}`; the document names it `{id}`, as the message routes of §11
    // under the same template (OpenAPI allows one name per template, and so does the router).
    ("get", "/api/messages/{id}"),
    ("get", "/api/conversations"),
    ("post", "/api/messages/{id}/read"),
    ("get", "/api/sync"),
    ("patch", "/api/messages/{id}"),
    ("delete", "/api/messages/{id}"),
    ("put", "/api/messages/{id}/reactions/{emoji}"),
    ("delete", "/api/messages/{id}/reactions/{emoji}"),
    ("post", "/api/conversations"),
    ("get", "/api/conversations/{id}"),
    ("patch", "/api/conversations/{id}"),
    ("post", "/api/conversations/{id}/members"),
    ("delete", "/api/conversations/{id}/members/{userId}"),
    ("patch", "/api/conversations/{id}/members/{userId}"),
    ("post", "/api/conversations/{id}/messages"),
    ("get", "/api/conversations/{id}/messages"),
    ("post", "/api/conversations/{id}/read"),
    ("get", "/api/conversations/{id}/messages/{messageId}/reads"),
    ("post", "/api/notifications"),
    ("get", "/api/notifications"),
    ("post", "/api/notifications/{id}/read"),
    ("post", "/api/notifications/read-all"),
    ("get", "/api/socket-test"),
    ("post", "/api/socket-test"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/api/openapi.json"),
];

/// The contract's OAuth endpoints.
const OAUTH_ENDPOINTS: [(&str, &str); 4] = [
    ("get", "/api/auth/google"),
    ("get", "/api/auth/github"),
    ("get", "/api/auth/google/callback"),
    ("get", "/api/auth/github/callback"),
];

/// The self-test checks the contract names.
const REQUIRED_CHECKS: [&str; 8] = [
    "socketServer",
    "connectionTracking",
    "messageSending",
    "broadcast",
    "database",
    "adapter",
    "push",
    "apiIntegration",
];

/// Operations that need not document a 4xx answer.
const NO_CLIENT_ERRORS: [&str; 4] = ["/healthz", "/readyz", "/api/openapi.json", "/metrics"];

/// A path with every `{param}` replaced by `{}`.
fn shape(path: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push_str("{}");
            }
            '}' => in_param = false,
            _ if in_param => {}
            _ => out.push(c),
        }
    }
    out
}

/// The path with every `{param}` replaced by a fresh UUID.
fn with_ids(path: &str) -> String {
    shape(path).replace("{}", &Uuid::now_v7().to_string())
}

async fn openapi(app: &TestApp) -> Value {
    expect_json(app.get("/api/openapi.json").await, 200).await
}

/// Every (method, path shape) the document describes, with the operation.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let paths = doc["paths"]
        .as_object()
        .unwrap_or_else(|| panic!("no paths in the document: {doc}"));
    let mut out = Vec::new();
    for (path, item) in paths {
        let item = item.as_object().expect("a path item object");
        for (method, operation) in item {
            if [
                "get", "put", "post", "delete", "options", "head", "patch", "trace",
            ]
            .contains(&method.as_str())
            {
                out.push((method.clone(), path.clone(), operation.clone()));
            }
        }
    }
    out
}

/// Whether the document describes `method path` (a contract path, `{param}` for its ids): some
/// operation of that method has a path template with the same segments, where each contract
/// `{param}` meets a template parameter, and a template parameter that stands for a literal
/// segment (`/api/auth/{provider}` for `/api/auth/google`) names that value in its description.
fn documents(doc: &Value, method: &str, path: &str) -> bool {
    let wanted: Vec<&str> = path.split('/').collect();
    operations(doc).iter().any(|(m, template, operation)| {
        let segments: Vec<&str> = template.split('/').collect();
        m == method
            && segments.len() == wanted.len()
            && segments.iter().zip(&wanted).all(|(t, w)| {
                let is_param = |s: &str| s.starts_with('{') && s.ends_with('}');
                match (is_param(t), is_param(w)) {
                    (true, true) => true,
                    (false, false) => t == w,
                    (false, true) => false,
                    (true, false) => names_value(operation, &t[1..t.len() - 1], w),
                }
            })
    })
}

/// Whether the path parameter `name` of an operation mentions `value` (in an enum or its text).
fn names_value(operation: &Value, name: &str, value: &str) -> bool {
    operation["parameters"].as_array().is_some_and(|params| {
        params
            .iter()
            .any(|p| p["name"] == name && p["in"] == "path" && p.to_string().contains(value))
    })
}

/// Whether the answer is the server's own "no such route" (404 `not_found`) or a 405.
async fn unrouted(response: reqwest::Response) -> Option<String> {
    let status = response.status().as_u16();
    let text = response.text().await.expect("a body");
    let code = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|body| body["error"]["code"].as_str().map(str::to_owned));
    match (status, code.as_deref()) {
        (405, _) | (404, Some("not_found")) => Some(format!("{status} {text}")),
        _ => None,
    }
}

async fn request(app: &TestApp, method: &str, path: &str) -> reqwest::Response {
    let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("a method");
    // Without following redirects: an OAuth endpoint's 302 is its answer.
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client");
    client
        .request(method, app.url(path))
        .send()
        .await
        .expect("request sent")
}

db_test!(the_self_test_answers_the_contract_report_with_every_check_ok);
async fn the_self_test_answers_the_contract_report_with_every_check_ok(db: Db) {
    let app = spawn_app(db).await;
    let admin = app.create_user("Admin").await;
    let response = app.get_with_token("/api/socket-test", &admin.token).await;
    let report = expect_json(response, 200).await;

    assert_eq!(report["ok"], true, "{report:#}");
    assert!(
        report["node"].as_str().is_some_and(|n| !n.is_empty()),
        "{report}"
    );
    assert!(report["uptimeSec"].is_u64(), "{report}");
    assert_eq!(report["server"]["path"], "/api/socket");
    assert_eq!(report["server"]["namespacesPath"], "/api/socket-namespaces");
    let namespaces = report["server"]["namespaces"]
        .as_array()
        .unwrap_or_else(|| panic!("no namespaces list: {report}"));
    for ns in ["/auth", "/messenger", "/notifications"] {
        assert!(namespaces.contains(&json!(ns)), "{ns} missing: {report}");
    }

    let connections = &report["connections"];
    assert_eq!(connections["sockets"], 0, "nobody is connected: {report}");
    assert_eq!(connections["users"], 0, "{report}");
    let by_namespace = connections["byNamespace"]
        .as_object()
        .unwrap_or_else(|| panic!("no byNamespace object: {report}"));
    assert!(by_namespace.values().all(|n| n == 0), "{report}");
    assert_eq!(
        report["adapter"],
        json!({ "kind": "local", "nodes": 1, "nodeIds": [report["node"]] })
    );

    let kind = match db {
        Db::Sqlite => "sqlite",
        Db::Postgres => "postgres",
    };
    assert_eq!(report["database"]["kind"], kind);
    assert_eq!(report["database"]["ok"], true);
    assert!(
        report["database"]["latencyMs"]
            .as_f64()
            .is_some_and(|ms| ms >= 0.0),
        "{report}"
    );

    let checks = report["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("no checks list: {report}"));
    let by_name: HashMap<&str, &Value> = checks.iter().map(|c| (str_at(c, "/name"), c)).collect();
    for name in REQUIRED_CHECKS {
        let check = by_name
            .get(name)
            .unwrap_or_else(|| panic!("no {name} check: {report:#}"));
        assert_eq!(check["ok"], true, "{check}");
        assert!(
            check["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{check}"
        );
        assert!(check["ms"].as_f64().is_some_and(|ms| ms >= 0.0), "{check}");
    }
    for check in checks {
        assert_eq!(check["ok"], true, "every check passes: {check}");
    }

    // The loopback socket left no trace: no session of the admin stays live.
    let sessions = expect_json(app.get_with_token("/api/sessions", &admin.token).await, 200).await;
    assert_eq!(
        sessions["sessions"].as_array().expect("a list").len(),
        1,
        "{sessions}"
    );
}

db_test!(the_socket_test_endpoints_are_for_admins_only);
async fn the_socket_test_endpoints_are_for_admins_only(db: Db) {
    let app = spawn_app(db).await;
    let _admin = app.create_user("Admin").await;
    let bob = app.create_user("Bob").await;
    let body = json!({ "action": "sendToUser", "targetUserId": bob.id });

    expect_error(app.get("/api/socket-test").await, 401, "unauthenticated").await;
    let response = app.post_json("/api/socket-test", &body).await;
    expect_error(response, 401, "unauthenticated").await;
    let response = app.get_with_token("/api/socket-test", &bob.token).await;
    expect_error(response, 403, "forbidden").await;
    let response = app
        .post_json_with_token("/api/socket-test", &bob.token, &body)
        .await;
    expect_error(response, 403, "forbidden").await;
}

db_test!(a_test_action_that_does_not_exist_is_400_naming_the_valid_ones);
async fn a_test_action_that_does_not_exist_is_400_naming_the_valid_ones(db: Db) {
    let app = spawn_app(db).await;
    let admin = app.create_user("Admin").await;
    for body in [
        json!({ "action": "dance" }),
        json!({ "action": "SENDTOUSER" }),
        json!({ "action": "" }),
        json!({ "action": "broadcast; DROP TABLE users" }),
        json!({}),
    ] {
        let response = app
            .post_json_with_token("/api/socket-test", &admin.token, &body)
            .await;
        let error = expect_error(response, 400, "invalid_action").await;
        let message = str_at(&error, "/message");
        for action in ["sendToUser", "broadcast", "emitOnlineUsers"] {
            assert!(message.contains(action), "{action} not named: {message}");
        }
    }
    for body in [
        json!({ "action": 1 }),
        json!({ "action": ["broadcast"] }),
        json!({ "action": "sendToUser", "targetUserId": 42 }),
        json!({ "action": "broadcast", "message": { "text": "hi" } }),
    ] {
        let response = app
            .post_json_with_token("/api/socket-test", &admin.token, &body)
            .await;
        expect_error(response, 400, "invalid_json").await;
    }
}

db_test!(send_to_user_needs_a_target_that_exists);
async fn send_to_user_needs_a_target_that_exists(db: Db) {
    let app = spawn_app(db).await;
    let admin = app.create_user("Admin").await;
    let bob = app.create_user("Bob").await;
    for body in [
        json!({ "action": "sendToUser" }),
        json!({ "action": "sendToUser", "targetUserId": null }),
        json!({ "action": "sendToUser", "targetUserId": "" }),
    ] {
        let response = app
            .post_json_with_token("/api/socket-test", &admin.token, &body)
            .await;
        expect_error(response, 400, "target_required").await;
    }
    for target in [Uuid::now_v7().to_string(), "not-a-uuid".to_owned()] {
        let body = json!({ "action": "sendToUser", "targetUserId": target });
        let response = app
            .post_json_with_token("/api/socket-test", &admin.token, &body)
            .await;
        expect_error(response, 404, "user_not_found").await;
    }
    // A real user with no socket: fine, nobody to reach.
    let body = json!({ "action": "sendToUser", "targetUserId": bob.id, "message": "hello" });
    let response = app
        .post_json_with_token("/api/socket-test", &admin.token, &body)
        .await;
    assert_eq!(
        expect_json(response, 200).await,
        json!({ "ok": true, "action": "sendToUser", "recipients": 0 })
    );
}

db_test!(metrics_behind_a_token_need_that_bearer);
async fn metrics_behind_a_token_need_that_bearer(db: Db) {
    let token = "a-metrics-token-for-the-tests";
    let app = spawn_app_with(db, &[("METRICS_TOKEN", token)]).await;
    let admin = app.create_user("Admin").await;
    for bearer in [None, Some("wrong"), Some(admin.token.as_str())] {
        let mut request = app.client.get(app.url("/metrics"));
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        let response = request.send().await.expect("request sent");
        let body = expect_json(response, 401).await;
        assert!(body["error"]["code"].is_string(), "{body}");
    }
    let response = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(token)
        .send()
        .await
        .expect("request sent");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()[reqwest::header::CONTENT_TYPE]
        .to_str()
        .expect("a readable header")
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = response.text().await.expect("a body");
    assert!(
        text.contains(
            r#"craftcode_http_requests_total{route="/api/auth/register",status="201"} 1"#
        ),
        "{text}"
    );
    assert!(!text.contains(token), "the metrics show their own token");

    // Without METRICS_TOKEN the endpoint is public.
    let open = spawn_app(db).await;
    let response = open.get("/metrics").await;
    assert_eq!(response.status(), 200);
    assert!(
        response
            .text()
            .await
            .expect("a body")
            .contains("craftcode_")
    );
}

db_test!(the_openapi_document_is_3_1_and_describes_every_endpoint_of_the_contract);
async fn the_openapi_document_is_3_1_and_describes_every_endpoint_of_the_contract(db: Db) {
    let app = spawn_app(db).await;
    let doc = openapi(&app).await;
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1.")),
        "openapi: {}",
        doc["openapi"]
    );
    assert!(doc["info"]["title"].is_string(), "{}", doc["info"]);
    let mut expected: Vec<(&str, &str)> = CONTRACT_ENDPOINTS.to_vec();
    // The OAuth routes are held to the same rule once the document has them; a routed but
    // undocumented OAuth endpoint is `the_oauth_endpoints_are_documented_once_routed`'s failure.
    if documents(&doc, "get", "/api/auth/google") {
        expected.extend(OAUTH_ENDPOINTS);
    }
    // The matching tells apart what is not there.
    assert!(!documents(&doc, "get", "/api/no-such-endpoint"));
    assert!(!documents(&doc, "delete", "/api/users/directory"));
    assert!(!documents(&doc, "put", "/api/users/{id}"));
    let missing: Vec<String> = expected
        .iter()
        .filter(|(method, path)| !documents(&doc, method, path))
        .map(|(method, path)| format!("{} {path}", method.to_uppercase()))
        .collect();
    assert!(
        missing.is_empty(),
        "not in the OpenAPI document: {missing:?}; documented: {:?}",
        operations(&doc)
            .iter()
            .map(|(m, p, _)| format!("{} {p}", m.to_uppercase()))
            .collect::<Vec<_>>()
    );
}

db_test!(every_documented_operation_is_really_routed);
async fn every_documented_operation_is_really_routed(db: Db) {
    let app = spawn_app(db).await;
    let doc = openapi(&app).await;
    let mut unrouted_operations = Vec::new();
    for (method, path, _) in operations(&doc) {
        let response = request(&app, &method, &with_ids(&path)).await;
        if let Some(answer) = unrouted(response).await {
            unrouted_operations.push(format!("{} {path}: {answer}", method.to_uppercase()));
        }
    }
    assert!(
        unrouted_operations.is_empty(),
        "documented but not routed: {unrouted_operations:#?}"
    );
    // The check itself tells a missing route apart.
    let response = request(&app, "get", "/api/no-such-endpoint").await;
    assert!(unrouted(response).await.is_some());
}

db_test!(every_documented_operation_documents_a_client_error);
async fn every_documented_operation_documents_a_client_error(db: Db) {
    let app = spawn_app(db).await;
    let doc = openapi(&app).await;
    let mut silent = Vec::new();
    for (method, path, operation) in operations(&doc) {
        // tus's OPTIONS tells what the server supports, to anyone: it has no client error.
        if NO_CLIENT_ERRORS.contains(&path.as_str()) || method == "options" {
            continue;
        }
        let responses = operation["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path} documents no responses"));
        if !responses.keys().any(|status| status.starts_with('4')) {
            silent.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    assert!(silent.is_empty(), "no 4xx answer documented: {silent:?}");
}

db_test!(every_json_route_documents_and_answers_the_body_errors);
/// Every operation with a JSON request body documents 400, 413 and 415 with the §2 error body,
/// and really answers 415 `unsupported_media_type` to a body that is not JSON.
async fn every_json_route_documents_and_answers_the_body_errors(db: Db) {
    let app = spawn_app(db).await;
    let admin = app.create_user("Admin").await;
    let doc = openapi(&app).await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client");
    let mut wrong = Vec::new();
    let mut json_routes = 0;
    for (method, path, operation) in operations(&doc) {
        if operation["requestBody"]["content"]["application/json"].is_null() {
            continue;
        }
        json_routes += 1;
        let name = format!("{} {path}", method.to_uppercase());
        for status in ["400", "413", "415"] {
            let schema = &operation["responses"][status]["content"]["application/json"]["schema"];
            if schema["$ref"] != "#/components/schemas/ErrorBody" {
                wrong.push(format!("{name}: {status} not documented with ErrorBody"));
            }
        }
        let method =
            reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("a method");
        let response = client
            .request(method, app.url(&with_ids(&path)))
            .bearer_auth(&admin.token)
            .header("content-type", "text/plain")
            .body("hello")
            .send()
            .await
            .expect("request sent");
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status != 415 || body["error"]["code"] != "unsupported_media_type" {
            wrong.push(format!("{name}: a text/plain body got {status} {body}"));
        }
    }
    assert!(
        json_routes >= 15,
        "only {json_routes} JSON routes documented"
    );
    assert!(wrong.is_empty(), "{wrong:#?}");
}

db_test!(the_register_body_is_described_as_the_server_checks_it);
/// The document's register body: every field required, the email an email, the password at
/// least 8 characters, the name 1 to 100 (SPEC §3, §9).
async fn the_register_body_is_described_as_the_server_checks_it(db: Db) {
    let app = spawn_app(db).await;
    let doc = openapi(&app).await;
    let body = &doc["paths"]["/api/auth/register"]["post"]["requestBody"]["content"]["application/json"]
        ["schema"];
    let schema = resolve(&doc, body);
    let mut required: Vec<&str> = schema["required"]
        .as_array()
        .unwrap_or_else(|| panic!("no required fields: {schema:#}"))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    required.sort_unstable();
    assert_eq!(required, ["email", "name", "password"], "{schema:#}");
    let props = &schema["properties"];
    assert_eq!(props["email"]["format"], "email", "{schema:#}");
    assert_eq!(props["password"]["minLength"], 8, "{schema:#}");
    assert_eq!(props["name"]["minLength"], 1, "{schema:#}");
    assert_eq!(props["name"]["maxLength"], 100, "{schema:#}");
}

db_test!(each_route_documents_its_own_request_body);
/// Bodies of the same Rust name in different modules (`CreateBody`, `SendBody`, …) each keep
/// their own schema: a route's documented body has that route's fields.
async fn each_route_documents_its_own_request_body(db: Db) {
    let app = spawn_app(db).await;
    let doc = openapi(&app).await;
    let cases = [
        ("post", "/api/users", "email"),
        ("patch", "/api/users/{id}", "currentPassword"),
        ("post", "/api/conversations", "memberIds"),
        ("patch", "/api/conversations/{id}", "muted"),
        ("post", "/api/conversations/{id}/messages", "mentions"),
        ("post", "/api/messages/send/{userId}", "content"),
        ("post", "/api/notifications", "title"),
        ("post", "/api/conversations/{id}/read", "upTo"),
        ("post", "/api/messages/{id}/read", "upTo"),
    ];
    for (method, path, field) in cases {
        let body =
            &doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"];
        let schema = resolve(&doc, body);
        // A body with a rule across fields is `allOf: [the fields, the rule]`.
        let has = |s: &Value| !s["properties"][field].is_null();
        let in_all_of = schema["allOf"]
            .as_array()
            .is_some_and(|parts| parts.iter().any(|p| has(resolve(&doc, p))));
        assert!(
            has(schema) || in_all_of,
            "{method} {path}: the documented body has no `{field}`: {schema:#}"
        );
    }
}

db_test!(a_query_string_that_cannot_be_read_is_answered_in_the_error_format);
/// A parameter given twice is 400 `validation_failed` in the §2 body, not axum's plain text.
async fn a_query_string_that_cannot_be_read_is_answered_in_the_error_format(db: Db) {
    let app = spawn_app(db).await;
    let user = app.create_user("Ann").await;
    for path in [
        "/api/conversations?limit=1&limit=2",
        "/api/users/directory?q=a&q=b",
        "/api/sync?since=&since=",
        "/api/notifications?unread=1&unread=0",
    ] {
        let body = expect_json(app.get_with_token(path, &user.token).await, 400).await;
        assert_eq!(body["error"]["code"], "validation_failed", "{path}: {body}");
        assert!(
            body["error"]["fields"]["query"].is_string(),
            "{path}: {body}"
        );
    }
}

db_test!(the_oauth_endpoints_are_documented_once_routed);
async fn the_oauth_endpoints_are_documented_once_routed(db: Db) {
    let app = spawn_app(db).await;
    let doc = openapi(&app).await;
    let mut undocumented = Vec::new();
    for (method, path) in OAUTH_ENDPOINTS {
        let routed = unrouted(request(&app, method, path).await).await.is_none();
        if routed && !documents(&doc, method, path) {
            undocumented.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    assert!(
        undocumented.is_empty(),
        "routed but missing from /api/openapi.json: {undocumented:?}"
    );
}

db_test!(the_document_names_path_parameters_as_the_contract_does);
async fn the_document_names_path_parameters_as_the_contract_does(db: Db) {
    let app = spawn_app(db).await;
    let doc = openapi(&app).await;
    let mut wrong = Vec::new();
    for (method, path) in CONTRACT_ENDPOINTS.iter().filter(|(_, p)| p.contains('{')) {
        let Some(operation) = doc["paths"][path][method].as_object() else {
            wrong.push(format!(
                "{} {path}: not under this template",
                method.to_uppercase()
            ));
            continue;
        };
        let mut documented: Vec<&str> = operation["parameters"]
            .as_array()
            .map(|params| {
                params
                    .iter()
                    .filter(|p| p["in"] == "path")
                    .filter_map(|p| p["name"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        let mut in_template: Vec<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        documented.sort();
        in_template.sort();
        if documented != in_template {
            wrong.push(format!(
                "{} {path}: path parameters {documented:?}",
                method.to_uppercase()
            ));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// A schema of the document with its `$ref` followed.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let name = reference.trim_start_matches("#/components/schemas/");
            resolve(doc, &doc["components"]["schemas"][name])
        }
        None => schema,
    }
}

/// How an answer differs from the object schema documented for it: fields it has that the schema
/// does not list, and required fields it lacks.
fn differences(doc: &Value, schema: &Value, answer: &Value) -> Vec<String> {
    let schema = resolve(doc, schema);
    let properties = schema["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("not an object schema: {schema}"));
    let answer = answer
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {answer}"));
    let mut found: Vec<String> = answer
        .keys()
        .filter(|key| !properties.contains_key(*key))
        .map(|key| format!("undocumented field {key}"))
        .collect();
    for required in schema["required"].as_array().into_iter().flatten() {
        let name = required.as_str().expect("a field name");
        if !answer.contains_key(name) {
            found.push(format!("missing required field {name}"));
        }
    }
    found
}

db_test!(answers_have_the_fields_of_their_documented_schema);
async fn answers_have_the_fields_of_their_documented_schema(db: Db) {
    let app = spawn_app(db).await;
    let admin = app.create_user("Admin").await;
    let doc = openapi(&app).await;
    let user_path = format!("/api/users/{}", admin.id);
    let routes = [
        ("/api/auth/me", "/api/auth/me"),
        ("/api/sessions", "/api/sessions"),
        ("/api/users", "/api/users"),
        ("/api/users/directory", "/api/users/directory"),
        ("/api/users/{id}", user_path.as_str()),
        ("/api/notifications", "/api/notifications"),
        ("/api/conversations", "/api/conversations"),
        ("/api/sync", "/api/sync"),
        ("/api/socket-test", "/api/socket-test"),
        ("/healthz", "/healthz"),
        ("/readyz", "/readyz"),
    ];
    let mut wrong = Vec::new();
    for (template, path) in routes {
        let answer = expect_json(app.get_with_token(path, &admin.token).await, 200).await;
        let schema = &doc["paths"][template]["get"]["responses"]["200"]["content"]["application/json"]
            ["schema"];
        for difference in differences(&doc, schema, &answer) {
            wrong.push(format!("GET {template}: {difference}"));
        }
    }
    // An error answer is the documented error object, with a code the document lists.
    let error = expect_error(
        app.get_with_token("/api/users/not-an-id", &admin.token)
            .await,
        404,
        "user_not_found",
    )
    .await;
    let body = &doc["paths"]["/api/users/{id}"]["get"]["responses"]["404"]["content"]["application/json"]
        ["schema"];
    wrong.extend(differences(&doc, body, &json!({ "error": error })));
    let detail = &doc["components"]["schemas"]["ErrorDetail"];
    wrong.extend(differences(&doc, detail, &error));
    let codes = &resolve(&doc, &detail["properties"]["code"])["enum"];
    assert!(
        codes
            .as_array()
            .is_some_and(|codes| codes.contains(&json!("user_not_found"))),
        "the codes are not listed: {codes}"
    );
    assert!(wrong.is_empty(), "{wrong:#?}");
}
