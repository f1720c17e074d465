//! Signup: rules, normalisation, duplicates and the duplicate race.

use futures_util::future::join_all;
use serde_json::{json, Value};

use crate::helpers::{invalid_fields, problem, signup_body, unique_email, unique_phone, TestApp};

#[tokio::test]
async fn signup_answers_201_with_the_private_view_and_location() {
    let app = TestApp::spawn().await;
    let body = signup_body();
    let response = app.signup(&body).await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let user: Value = response.json().await.unwrap();
    assert_eq!(location, format!("/api/v1/users/{}", user["id"]));
    let keys: Vec<&str> = user
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 8);
    for key in [
        "id",
        "name",
        "email",
        "phone_number",
        "country",
        "state",
        "role",
        "created_at",
    ] {
        assert!(keys.contains(&key), "{key}");
    }
    assert_eq!(user["email"], body["email"]);
    assert_eq!(user["phone_number"], body["phone_number"]);
    // RFC 3339 UTC with microseconds.
    let created = user["created_at"].as_str().unwrap();
    assert_eq!(
        created.len(),
        "2026-11-22T10:04:05.123456Z".len(),
        "{created}"
    );
    assert!(created.ends_with('Z'));
    // Only an Argon2id hash is stored.
    let hash = app.sql_text(&format!(
        "(SELECT password_hash FROM users WHERE id = {})",
        user["id"]
    ));
    assert!(hash.starts_with("$argon2id$"));
    assert!(!hash.contains("correct horse"));
}

#[tokio::test]
async fn an_empty_object_lists_every_required_field() {
    let app = TestApp::spawn().await;
    let body = problem(app.signup(&json!({})).await, 422).await;
    assert_eq!(
        invalid_fields(&body),
        [
            "name",
            "email",
            "phone_number",
            "country",
            "state",
            "password"
        ]
    );
    assert_eq!(body["detail"], "6 fields are invalid");
    assert!(body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["code"] == "required"));
}

#[tokio::test]
async fn every_invalid_field_is_reported_at_once() {
    let app = TestApp::spawn().await;
    let body = json!({
        "name": "12345",
        "email": "not-an-email",
        "phone_number": "12",
        "country": " x ",
        "state": 42,
        "password": "short",
    });
    let problem = problem(app.signup(&body).await, 422).await;
    let errors: Vec<(String, String)> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["field"].as_str().unwrap().into(),
                e["code"].as_str().unwrap().into(),
            )
        })
        .collect();
    let expected = [
        ("name", "letter"),
        ("email", "email"),
        ("phone_number", "phone"),
        ("country", "length"),
        ("state", "type"),
        ("password", "length"),
    ];
    assert_eq!(
        errors,
        expected.map(|(f, c)| (f.to_owned(), c.to_owned())).to_vec()
    );
    let messages: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(messages[1], "value is not a valid email address");
    assert_eq!(messages[2], "Phone number is not a valid number");
}

#[tokio::test]
async fn names_in_any_script_pass_and_names_without_letters_fail() {
    let app = TestApp::spawn().await;
    for name in ["Chloé", "Ọlá", "Jörg", "  Ann Lee  "] {
        let mut body = signup_body();
        body["name"] = json!(name);
        let response = app.signup(&body).await;
        assert_eq!(response.status(), 201, "{name}");
        let user: Value = response.json().await.unwrap();
        assert_eq!(user["name"], name.trim(), "names are trimmed");
    }
    for name in ["12345", "---", "A", "   ", &"é".repeat(101)] {
        let mut body = signup_body();
        body["name"] = json!(name);
        let problem = problem(app.signup(&body).await, 422).await;
        assert_eq!(invalid_fields(&problem), ["name"], "{name}");
    }
}

#[tokio::test]
async fn phones_are_stored_in_e164_and_read_in_the_default_region() {
    let app = TestApp::spawn().await;
    let local = unique_phone().replace("+234", "0");
    let spaced = format!("{} {} {}", &local[..4], &local[4..7], &local[7..]);
    let mut body = signup_body();
    body["phone_number"] = json!(spaced);
    let user: Value = app.signup(&body).await.json().await.unwrap();
    assert_eq!(user["phone_number"], format!("+234{}", &local[1..]));
}

#[tokio::test]
async fn phones_must_be_valid_numbers_of_an_allowed_region() {
    let app = TestApp::spawn().await;
    // Parses, but is not a valid Nigerian number.
    for phone in ["+234 123", "0000000000", "+2341", "phone"] {
        let mut body = signup_body();
        body["phone_number"] = json!(phone);
        let problem = problem(app.signup(&body).await, 422).await;
        assert_eq!(problem["errors"][0]["code"], "phone", "{phone}");
    }
    // A valid British mobile is refused until GB is allowed.
    let mut body = signup_body();
    body["phone_number"] = json!("+44 7400 123456");
    let problem = problem(app.signup(&body).await, 422).await;
    assert_eq!(problem["errors"][0]["field"], "phone_number");
    assert_eq!(problem["errors"][0]["code"], "phone_region");
}

#[tokio::test]
async fn configured_regions_accept_their_numbers() {
    let app = TestApp::spawn_with(|settings| {
        settings.phone_regions = vec![phonenumber::country::Id::NG, phonenumber::country::Id::GB];
    })
    .await;
    let mut body = signup_body();
    body["phone_number"] = json!("+44 7400 123456");
    let response = app.signup(&body).await;
    assert_eq!(response.status(), 201);
    let user: Value = response.json().await.unwrap();
    assert_eq!(user["phone_number"], "+447400123456");
}

#[tokio::test]
async fn emails_are_unique_ignoring_case_and_keep_a_lower_cased_domain() {
    let app = TestApp::spawn().await;
    let mut first = signup_body();
    first["email"] = json!("Ada.Lovelace@Example.COM");
    let user: Value = app.signup(&first).await.json().await.unwrap();
    assert_eq!(user["email"], "Ada.Lovelace@example.com");

    let mut second = signup_body();
    second["email"] = json!("ada.lovelace@example.com");
    let body = problem(app.signup(&second).await, 400).await;
    assert_eq!(body["detail"], "Email already registered");
}

#[tokio::test]
async fn phone_numbers_are_unique_in_any_format() {
    let app = TestApp::spawn().await;
    let phone = unique_phone();
    let mut first = signup_body();
    first["phone_number"] = json!(phone);
    assert_eq!(app.signup(&first).await.status(), 201);

    let mut second = signup_body();
    second["phone_number"] = json!(phone.replace("+234", "0"));
    let body = problem(app.signup(&second).await, 400).await;
    assert_eq!(body["detail"], "Phone number already registered");
}

#[tokio::test]
async fn fifty_concurrent_same_email_signups_give_one_201_and_49_400s() {
    let app = TestApp::spawn().await;
    let email = unique_email();
    let attempts = (0..50).map(|_| {
        let mut body = signup_body();
        body["email"] = json!(email);
        let app = &app;
        async move { app.signup(&body).await }
    });
    let responses = join_all(attempts).await;
    let mut created = 0;
    for response in responses {
        match response.status().as_u16() {
            201 => created += 1,
            400 => {
                let body = problem(response, 400).await;
                assert_eq!(body["detail"], "Email already registered");
            }
            other => panic!(
                "unexpected status {other}: {}",
                response.text().await.unwrap()
            ),
        }
    }
    assert_eq!(created, 1);
    let count = app.sql_text(&format!(
        "(SELECT count(*)::text FROM users WHERE lower(email) = lower('{email}'))"
    ));
    assert_eq!(count, "1");
}

#[tokio::test]
async fn concurrent_same_phone_signups_give_one_201() {
    let app = TestApp::spawn().await;
    let phone = unique_phone();
    let attempts = (0..10).map(|_| {
        let mut body = signup_body();
        body["phone_number"] = json!(phone);
        let app = &app;
        async move { app.signup(&body).await.status().as_u16() }
    });
    let mut statuses = join_all(attempts).await;
    statuses.sort();
    assert_eq!(statuses, [201, 400, 400, 400, 400, 400, 400, 400, 400, 400]);
}
