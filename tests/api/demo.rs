use serde_json::json;

use crate::dual_test;
use crate::helpers::TestApp;

dual_test!(the_demo_fills_an_empty_database_once);
async fn the_demo_fills_an_empty_database_once(app: &TestApp) {
    let accounts = palaver::demo::load(&app.state.db).await.unwrap();
    assert_eq!(
        accounts.iter().map(|(e, _)| *e).collect::<Vec<_>>(),
        [
            "alice@example.com",
            "bob@example.com",
            "charlie@example.com"
        ]
    );
    let (email, password) = &accounts[1];
    let r = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": email, "password": password}),
        )
        .await;
    assert_eq!(r.status, reqwest::StatusCode::OK, "{}", r.text);
    let bob = crate::helpers::User::from(&r.body);
    let list = app.get("/api/v1/conversations", &bob.token).await;
    let items = list.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let group = items.iter().find(|c| c["kind"] == "group").unwrap();
    assert_eq!(group["title"], "Weekend hike");
    assert_eq!(group["unreadCount"], 0);
    let history = app.history(&bob, group["id"].as_str().unwrap()).await;
    assert!(history.iter().any(|m| m["replyTo"].is_object()));
    assert!(history
        .iter()
        .any(|m| m["reactions"].as_array().unwrap().len() == 2));
    assert_eq!(history.last().unwrap()["status"], "read");
    assert!(
        palaver::demo::load(&app.state.db).await.is_err(),
        "refuses a database with users"
    );
}
