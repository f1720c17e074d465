//! Hostile input through HTTP. Each row is one request with the exact
//! status it must get, and nothing may change in PostgreSQL because of it;
//! strings that look like SQL or Redis commands are stored and returned byte
//! for byte.

use base64::Engine;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{invalid_fields, signup_body, use_redis, TestApp, TestUser};

/// The text fields of a signup; all but the password can be changed later.
const SIGNUP_FIELDS: [&str; 6] = [
    "name",
    "email",
    "phone_number",
    "country",
    "state",
    "password",
];
const CONTENT_FIELDS: [&str; 3] = ["title", "content", "image"];

/// One request and what it must answer.
struct Row {
    name: String,
    method: Method,
    path: String,
    bearer: bool,
    headers: Vec<(&'static str, String)>,
    body: Option<Vec<u8>>,
    status: u16,
    /// For 422: the fields `errors` must name, with this code when given.
    fields: Vec<&'static str>,
    code: Option<&'static str>,
}

impl Row {
    fn new(name: impl Into<String>, method: Method, path: impl Into<String>, status: u16) -> Self {
        Self {
            name: name.into(),
            method,
            path: path.into(),
            bearer: false,
            headers: Vec::new(),
            body: None,
            status,
            fields: Vec::new(),
            code: None,
        }
    }

    fn json(mut self, body: &Value) -> Self {
        self.body = Some(body.to_string().into_bytes());
        self
    }

    fn raw(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    fn bearer(mut self) -> Self {
        self.bearer = true;
        self
    }

    fn header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    fn invalid(mut self, fields: &[&'static str], code: Option<&'static str>) -> Self {
        self.fields = fields.to_vec();
        self.code = code;
        self
    }
}

/// Everything the requests could have changed, in one comparable value.
fn fingerprint(app: &TestApp) -> String {
    app.sql_text(
        "(SELECT coalesce(md5(string_agg(u::text, '|' ORDER BY u.id)), '') FROM users u) || \
         (SELECT coalesce(md5(string_agg(c::text, '|' ORDER BY c.id)), '') FROM contents c)",
    )
}

async fn check(app: &TestApp, user: &TestUser, row: Row) {
    let before = fingerprint(app);
    let mut request = app.request(row.method.clone(), &row.path);
    if row.bearer {
        request = request.bearer_auth(&user.token);
    }
    for (name, value) in &row.headers {
        request = request.header(*name, value);
    }
    if let Some(body) = row.body {
        request = request
            .header("content-type", "application/json")
            .body(body);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|err| panic!("{}: {err}", row.name));
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_eq!(
        status,
        row.status,
        "{}: {}",
        row.name,
        text.chars().take(300).collect::<String>()
    );
    if !row.fields.is_empty() {
        let problem: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(invalid_fields(&problem), row.fields, "{}", row.name);
        if let Some(code) = row.code {
            assert_eq!(problem["errors"][0]["code"], code, "{}", row.name);
        }
    }
    assert_eq!(fingerprint(app), before, "{}: nothing is stored", row.name);
}

fn item_body() -> Value {
    json!({"title": "A hostile day", "content": "A body long enough to pass."})
}

fn with(mut body: Value, field: &str, value: Value) -> Value {
    body[field] = value;
    body
}

/// Percent-encodes what base64 adds to the URL-safe characters.
fn urlencoding(text: &str) -> String {
    text.replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D")
}

/// A string of one MiB: over the body limit once JSON wraps it.
fn mebibyte() -> String {
    "x".repeat(1 << 20)
}

#[tokio::test]
async fn hostile_input_gets_its_exact_status_and_changes_nothing() {
    let app = TestApp::spawn_with(use_redis).await;
    let user = app.new_user().await;
    let item = app.post_item(&user, "Existing item").await;
    let me = user.id;
    let mut rows = Vec::new();

    // U+0000 in every stored text field: 422 naming the field, code `characters`.
    for field in SIGNUP_FIELDS {
        let body = with(signup_body(), field, json!("a\u{0}b"));
        rows.push(
            Row::new(
                format!("NUL in signup {field}"),
                Method::POST,
                "/api/v1/signup",
                422,
            )
            .json(&body)
            .invalid(&[field], Some("characters")),
        );
    }
    for &field in &SIGNUP_FIELDS[..5] {
        rows.push(
            Row::new(
                format!("NUL in user {field}"),
                Method::PATCH,
                format!("/api/v1/users/{me}"),
                422,
            )
            .bearer()
            .json(&json!({ field: "Ada\u{0}" }))
            .invalid(&[field], Some("characters")),
        );
    }
    for field in CONTENT_FIELDS {
        rows.push(
            Row::new(
                format!("NUL in new content {field}"),
                Method::POST,
                "/api/v1/post-content",
                422,
            )
            .bearer()
            .json(&with(
                item_body(),
                field,
                json!("https://x.io/\u{0}0123456789"),
            ))
            .invalid(&[field], Some("characters")),
        );
        rows.push(
            Row::new(
                format!("NUL in content {field}"),
                Method::PATCH,
                format!("/api/v1/content/{item}"),
                422,
            )
            .bearer()
            .json(&json!({ field: "\u{0}0123456789" }))
            .invalid(&[field], Some("characters")),
        );
    }
    rows.push(
        Row::new(
            "NUL in the search",
            Method::GET,
            "/api/v1/content?q=a%00b",
            422,
        )
        .invalid(&["q"], Some("characters")),
    );
    for (name, body) in [
        (
            "NUL in a login email",
            json!({"email": "a\u{0}@x.io", "password": "whatever1"}),
        ),
        (
            "NUL in a login password",
            json!({"email": "a@x.io", "password": "what\u{0}ever"}),
        ),
    ] {
        rows.push(Row::new(name, Method::POST, "/api/v1/login", 401).json(&body));
    }

    // Structure.
    let deep = format!(
        "{{\"title\": {}{}}}",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    rows.push(
        Row::new(
            "JSON nested 10 000 deep",
            Method::POST,
            "/api/v1/post-content",
            400,
        )
        .bearer()
        .raw(deep),
    );
    rows.push(
        Row::new("a repeated key", Method::POST, "/api/v1/post-content", 400)
            .bearer()
            .raw(r#"{"title": "First title", "title": "Second title", "content": "A body long enough."}"#),
    );
    rows.push(
        Row::new(
            "invalid UTF-8 in a body",
            Method::POST,
            "/api/v1/post-content",
            400,
        )
        .bearer()
        .raw(b"{\"title\": \"\xff\xfe\", \"content\": \"A body long enough.\"}".to_vec()),
    );

    // Sizes: 1 MiB in each text field is over the body limit; just under it is read and judged.
    for field in SIGNUP_FIELDS {
        rows.push(
            Row::new(
                format!("1 MiB signup {field}"),
                Method::POST,
                "/api/v1/signup",
                413,
            )
            .json(&with(signup_body(), field, json!(mebibyte()))),
        );
    }
    for field in CONTENT_FIELDS {
        rows.push(
            Row::new(
                format!("1 MiB content {field}"),
                Method::POST,
                "/api/v1/post-content",
                413,
            )
            .bearer()
            .json(&with(item_body(), field, json!(mebibyte()))),
        );
        let almost = "y".repeat((1 << 20) - 200);
        rows.push(
            Row::new(
                format!("almost 1 MiB content {field}"),
                Method::POST,
                "/api/v1/post-content",
                422,
            )
            .bearer()
            .json(&with(item_body(), field, json!(almost)))
            .invalid(&[field], None),
        );
    }

    // Numbers.
    for (name, user_id) in [
        ("user_id beyond i64", "9223372036854775808"),
        ("user_id below i64", "-9223372036854775809"),
        ("a float user_id", "1.5"),
        ("a user_id as text", "\"1\""),
    ] {
        let body = format!(
            r#"{{"title": "Numbers", "content": "A body long enough.", "user_id": {user_id}}}"#
        );
        rows.push(
            Row::new(name, Method::POST, "/api/v1/post-content", 422)
                .bearer()
                .raw(body)
                .invalid(&["user_id"], None),
        );
    }
    rows.push(
        Row::new(
            "a user_id beyond f64",
            Method::POST,
            "/api/v1/post-content",
            400,
        )
        .bearer()
        .raw(r#"{"title": "Numbers", "content": "A body long enough.", "user_id": 1e400}"#),
    );
    for (path, field) in [
        ("/api/v1/content?limit=1e9", "limit"),
        ("/api/v1/content?limit=1000000000", "limit"),
        ("/api/v1/content?limit=1.5", "limit"),
        ("/api/v1/content?limit=%2B5", "limit"),
        ("/api/v1/content?user_id=9223372036854775808", "user_id"),
        ("/api/v1/users?limit=-1", "limit"),
        ("/api/v1/users?contents_limit=0.5", "contents_limit"),
    ] {
        rows.push(
            Row::new(path, Method::GET, path, 422)
                .invalid(&[field], Some("range").filter(|_| field != "user_id")),
        );
    }

    // Ids in paths.
    for id in ["0", "-1", "9223372036854775808", "1.5", "%FF", "1e3"] {
        for (method, path) in [
            (Method::GET, format!("/api/v1/content/{id}")),
            (Method::PATCH, format!("/api/v1/content/{id}")),
            (Method::DELETE, format!("/api/v1/content/{id}")),
            (Method::GET, format!("/api/v1/users/{id}")),
            (Method::PATCH, format!("/api/v1/users/{id}")),
        ] {
            let mut row = Row::new(format!("{method} {path}"), method.clone(), path, 404).bearer();
            if method == Method::PATCH {
                row = row.json(&json!({"title": "Never stored"}));
            }
            rows.push(row);
        }
    }

    // Cursors: random, truncated, re-encoded.
    let page: Vec<Value> = app.get_json("/api/v1/content?limit=1").await;
    assert_eq!(page.len(), 1);
    app.post_item(&user, "A second item").await;
    let next = app.get("/api/v1/content?limit=1").await;
    let link = next.headers()["link"].to_str().unwrap().to_owned();
    let cursor = link
        .split("cursor=")
        .nth(1)
        .unwrap()
        .split('>')
        .next()
        .unwrap()
        .to_owned();
    let random = [
        "zZ9-_x".to_owned(),
        "dDoxNzk1MzExMzcwNDc4ODgwOjk".to_owned(),
    ];
    let re_encoded = [
        urlencoding(&base64::engine::general_purpose::STANDARD.encode(&cursor)),
        cursor.replace('.', "%252E"),
        format!("{cursor}0000000000000000000"),
    ];
    let (position, _) = cursor.split_once('.').unwrap();
    let truncated = [
        position.to_owned(),
        format!("{position}."),
        cursor[1..].replace('.', ""),
    ];
    for bad in random.iter().chain(&re_encoded).chain(&truncated) {
        rows.push(
            Row::new(
                format!("cursor {bad}"),
                Method::GET,
                format!("/api/v1/content?limit=1&cursor={bad}"),
                422,
            )
            .invalid(&["cursor"], Some("cursor")),
        );
    }
    for bad in random
        .iter()
        .chain(&re_encoded)
        .chain([&format!("{position}.")])
    {
        rows.push(
            Row::new(
                format!("user cursor {bad}"),
                Method::GET,
                format!("/api/v1/users?cursor={bad}"),
                422,
            )
            .invalid(&["cursor"], Some("cursor")),
        );
    }

    // Headers.
    rows.push(
        Row::new(
            "an over-long bearer token",
            Method::GET,
            "/api/v1/users",
            401,
        )
        .header("authorization", format!("Bearer {}", "a".repeat(16 * 1024))),
    );
    rows.push(
        Row::new("an over-long header", Method::GET, "/api/v1/content", 431)
            .header("x-padding", "p".repeat(200 * 1024))
            // The server closes the connection after a 431: keep it out of the pool.
            .header("connection", "close".to_owned()),
    );
    rows.push(Row::new(
        "invalid UTF-8 in a query is replaced, never stored",
        Method::GET,
        "/api/v1/content?q=%FF%FE",
        200,
    ));

    for row in rows {
        check(&app, &user, row).await;
    }
}

#[tokio::test]
async fn sql_and_redis_protocol_strings_are_stored_and_returned_byte_for_byte() {
    let app = TestApp::spawn_with(use_redis).await;
    let user = app.new_user().await;
    let sql = "'; DROP TABLE users;--";
    let resp = "*1\r\n$8\r\nFLUSHALL\r\n";
    let name = "Robert'); DROP TABLE users;-- *1\r\n$8\r\nFLUSHALL\r\n";
    let response = app
        .request(Method::PATCH, &format!("/api/v1/users/{}", user.id))
        .bearer_auth(&user.token)
        .json(&json!({"name": name}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let created = app
        .create_content(&user, &format!("{sql} {resp} x"), &format!("{resp}{sql}"))
        .await;
    let id = created["id"].as_i64().unwrap();
    assert_eq!(
        created["title"],
        format!("{sql} {resp} x"),
        "trimmed only at the ends"
    );
    assert_eq!(created["content"], format!("{resp}{sql}"));

    // A miss and a Redis hit return the same bytes, holding the strings as sent.
    let first = app
        .get(&format!("/api/v1/content/{id}"))
        .await
        .bytes()
        .await
        .unwrap();
    let second = app
        .get(&format!("/api/v1/content/{id}"))
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(first, second);
    let item: Value = serde_json::from_slice(&first).unwrap();
    assert_eq!(item["content"], format!("{resp}{sql}"));
    assert_eq!(item["user"]["name"], name.trim());
    let mut redis = app.redis().await;
    let cached: Vec<u8> = redis::cmd("GET")
        .arg(app.keys().item(id))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(
        cached,
        first.to_vec(),
        "Redis holds the exact bytes, still there after FLUSHALL text"
    );

    // Searching for them is a search, not a statement.
    for q in [sql, resp, "'\\\"%_*"] {
        let response = app
            .request(Method::GET, "/api/v1/content")
            .query(&[("q", q)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{q:?}");
    }
    assert_eq!(app.sql_text("(SELECT count(*)::text FROM users)"), "1");
}

#[tokio::test]
async fn the_longest_body_of_single_wide_characters_is_stored_and_searchable() {
    // 50 000 one-character words of four UTF-8 bytes each: the most a
    // body can put into the text-search index, far under its 1 MiB limit.
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let words: String = (0..50_000u32)
        .map(|i| char::from_u32(0x1_0000 + i).unwrap())
        .flat_map(|c| [c, ' '])
        .collect();
    let created = app.create_content(&user, "Wide words", &words).await;
    assert_eq!(
        created["content"].as_str().unwrap().chars().count(),
        100_000
    );
    let found: Vec<Value> = app.get_json("/api/v1/content?q=wide").await;
    assert_eq!(found.len(), 1);
}
