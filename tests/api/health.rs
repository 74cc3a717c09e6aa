//! Liveness, readiness and the answers for routes and methods that do not exist.

use crate::helpers::*;

db_test!(healthz_says_ok_while_the_process_serves);
async fn healthz_says_ok_while_the_process_serves(db: Db) {
    let app = spawn_app(db).await;
    let body = expect_json(app.get("/healthz").await, 200).await;
    assert_eq!(body["status"], "ok");
    app.stop().await;
}

db_test!(readyz_says_ok_when_the_database_answers);
async fn readyz_says_ok_when_the_database_answers(db: Db) {
    let app = spawn_app(db).await;
    let body = expect_json(app.get("/readyz").await, 200).await;
    assert_eq!(body["status"], "ok");
    assert_eq!(body["checks"]["database"], true);
}

db_test!(readyz_answers_503_naming_the_database_when_it_is_gone);
async fn readyz_answers_503_naming_the_database_when_it_is_gone(db: Db) {
    let app = spawn_app(db).await;
    app.state.store.close().await;
    let body = expect_json(app.get("/readyz").await, 503).await;
    assert_eq!(body["failed"], serde_json::json!(["database"]));
    // The process itself still serves.
    expect_json(app.get("/healthz").await, 200).await;
}

db_test!(an_unknown_route_is_a_json_404);
async fn an_unknown_route_is_a_json_404(db: Db) {
    let app = spawn_app(db).await;
    for path in ["/nope", "/api/nope", "/api/auth/me/extra"] {
        expect_error(app.get(path).await, 404, "not_found").await;
    }
    let response = app
        .post_json("/api/does-not-exist", &serde_json::json!({}))
        .await;
    expect_error(response, 404, "not_found").await;
}

db_test!(a_known_route_with_the_wrong_method_is_a_json_405);
async fn a_known_route_with_the_wrong_method_is_a_json_405(db: Db) {
    let app = spawn_app(db).await;
    expect_error(app.get("/api/auth/login").await, 405, "method_not_allowed").await;
    let response = app
        .client
        .delete(app.url("/api/auth/me"))
        .send()
        .await
        .unwrap();
    expect_error(response, 405, "method_not_allowed").await;
}
