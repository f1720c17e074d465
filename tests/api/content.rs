//! Content: create (both paths), who may post as whom, field rules,
//! reading one item, listings (keyset pages, `user_id=`, `q=` search),
//! updates and deletes, and 405s. Mostly without Redis; the key scenarios
//! run a second time with the shared Redis to show the answers are the same
//! with the cache on (cache mechanics themselves are tested elsewhere).

use std::collections::HashSet;

use reqwest::{Method, Response};
use serde_json::{json, Value};

use crate::helpers::{
    invalid_fields, problem, sorted, sorted_keys, TestApp, TestUser, CONTENT_KEYS,
};

const PUBLIC_USER_KEYS: [&str; 5] = ["id", "name", "country", "state", "created_at"];
const BODY: &str = "A body that is long enough to pass the rules.";

// ---------------------------------------------------------------- helpers

fn sorted_fields(problem: &Value) -> Vec<String> {
    let mut fields = invalid_fields(problem);
    fields.sort();
    fields
}

fn assert_content(value: &Value) {
    assert_eq!(
        sorted_keys(value),
        sorted(&CONTENT_KEYS),
        "Content: {value}"
    );
    for key in ["created_at", "updated_at"] {
        let at = value[key].as_str().unwrap();
        assert_eq!(at.len(), "2026-11-22T10:04:05.123456Z".len(), "{key}: {at}");
        assert!(at.ends_with('Z'), "{key}: {at}");
    }
}

fn assert_content_with_user(value: &Value) {
    let mut expected: Vec<&str> = CONTENT_KEYS.to_vec();
    expected.push("user");
    assert_eq!(
        sorted_keys(value),
        sorted(&expected),
        "ContentWithUser: {value}"
    );
    assert_eq!(
        sorted_keys(&value["user"]),
        sorted(&PUBLIC_USER_KEYS),
        "the author is the public view (no email, no phone): {value}"
    );
    assert_eq!(value["user"]["id"], value["user_id"]);
}

async fn post(app: &TestApp, path: &str, token: Option<&str>, body: &Value) -> Response {
    let mut request = app.request(Method::POST, path).json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

async fn create(app: &TestApp, user: &TestUser, body: &Value) -> Response {
    post(app, "/api/v1/post-content", Some(&user.token), body).await
}

async fn created(app: &TestApp, user: &TestUser, body: &Value) -> Value {
    let response = create(app, user, body).await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    response.json().await.unwrap()
}

async fn write(
    app: &TestApp,
    method: Method,
    id: impl std::fmt::Display,
    token: Option<&str>,
    body: &Value,
) -> Response {
    let mut request = app
        .request(method, &format!("/api/v1/content/{id}"))
        .json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

async fn delete(app: &TestApp, id: impl std::fmt::Display, token: Option<&str>) -> Response {
    let mut request = app.request(Method::DELETE, &format!("/api/v1/content/{id}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

async fn get_item(app: &TestApp, id: i64) -> Value {
    let response = app.get(&format!("/api/v1/content/{id}")).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// The target of `Link: <…>; rel="next"`, if any.
fn next_link(response: &Response) -> Option<String> {
    let value = response.headers().get("link")?.to_str().unwrap().to_owned();
    assert!(value.contains("rel=\"next\""), "{value}");
    let start = value.find('<').expect("Link has <…>") + 1;
    let end = value.find('>').expect("Link has <…>");
    Some(value[start..end].to_owned())
}

/// The `cursor` parameter of a next link.
fn cursor_of(link: &str) -> String {
    let query = link.split_once('?').expect("a query string").1;
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("cursor="))
        .expect("the link has a cursor")
        .to_owned()
}

/// Follows `Link: rel="next"` from `first` to the end; returns the pages.
async fn all_pages(app: &TestApp, first: &str) -> Vec<Vec<Value>> {
    let mut pages = Vec::new();
    let mut next = Some(first.to_owned());
    while let Some(path) = next {
        assert!(pages.len() < 100, "the Link chain does not end");
        let response = app.get(&path).await;
        assert_eq!(response.status(), 200, "{path}");
        next = next_link(&response);
        if let Some(link) = &next {
            assert!(link.starts_with("/api/v1/content?"), "{link}");
        }
        let page: Vec<Value> = response.json().await.unwrap();
        if next.is_some() {
            assert!(
                !page.is_empty(),
                "a page announcing a next one is not empty"
            );
        }
        pages.push(page);
    }
    pages
}

fn ids(items: &[Value]) -> Vec<i64> {
    items
        .iter()
        .map(|item| item["id"].as_i64().unwrap())
        .collect()
}

/// Inserts `count` items for `user_id` directly, item `i` created
/// `i / per_instant` minutes after a fixed instant (so several share a
/// `created_at` when `per_instant > 1`). Returns their ids in insert order.
fn insert_contents(
    app: &TestApp,
    user_id: i64,
    count: usize,
    per_instant: usize,
    label: &str,
) -> Vec<i64> {
    (0..count)
        .map(|i| {
            let minutes = i / per_instant;
            app.sql(&format!(
                "INSERT INTO contents (title, content, user_id, created_at) VALUES \
                 ('{label} title {i}', '{label} body number {i}', {user_id}, \
                  TIMESTAMPTZ '2026-01-01 00:00:00+00' + interval '{minutes} minutes')"
            ));
            app.sql_text(&format!(
                "(SELECT id::text FROM contents WHERE title = '{label} title {i}' AND user_id = {user_id})"
            ))
            .parse()
            .unwrap()
        })
        .collect()
}

/// Runs a scenario without Redis, with the shared Redis and with the test
/// Redis Cluster.
macro_rules! with_and_without_cache {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            use crate::helpers::TestApp;

            #[tokio::test]
            async fn without_cache() {
                super::$scenario(&TestApp::spawn().await).await;
            }

            #[tokio::test]
            async fn with_redis() {
                super::$scenario(&TestApp::spawn_with_redis().await).await;
            }

            #[tokio::test]
            async fn with_cluster() {
                super::$scenario(&TestApp::spawn_with(crate::helpers::use_cluster).await).await;
            }
        }
    )*};
}

with_and_without_cache!(
    create_read_update_delete_round_trip,
    every_reader_gets_the_same_bytes,
    listing_pages_cover_every_item_once_newest_first,
    search_matches_stems_ranks_and_pages,
);

// ---------------------------------------------------------------- create

#[tokio::test]
async fn both_create_paths_answer_201_with_content_and_location() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    for path in ["/api/v1/post-content", "/api/v1/content"] {
        let body = json!({"title": "  A trimmed title  ", "content": BODY});
        let response = post(&app, path, Some(&user.token), &body).await;
        assert_eq!(response.status(), 201, "{path}");
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        let content: Value = response.json().await.unwrap();
        assert_content(&content);
        assert_eq!(
            location,
            format!("/api/v1/content/{}", content["id"]),
            "{path}"
        );
        assert_eq!(content["user_id"], user.id);
        assert_eq!(content["title"], "A trimmed title", "titles are trimmed");
        assert_eq!(content["content"], BODY);
        assert_eq!(content["image"], Value::Null, "an absent image is null");
        assert!(content["id"].as_i64().unwrap() > 0);
        // The Location answers.
        let fetched = get_item(&app, content["id"].as_i64().unwrap()).await;
        assert_eq!(fetched["title"], "A trimmed title");
    }
}

#[tokio::test]
async fn an_image_url_is_kept_and_null_means_no_image() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let url = "https://cdn.example.com/images/a.png?size=large&v=2";
    let with_image = created(
        &app,
        &user,
        &json!({"title": "With image", "content": BODY, "image": url}),
    )
    .await;
    assert_eq!(with_image["image"], url);
    assert_eq!(
        get_item(&app, with_image["id"].as_i64().unwrap()).await["image"],
        url
    );

    let plain_http = created(
        &app,
        &user,
        &json!({"title": "Plain http", "content": BODY, "image": "http://example.com/x.jpg"}),
    )
    .await;
    assert_eq!(plain_http["image"], "http://example.com/x.jpg");

    let null_image = created(
        &app,
        &user,
        &json!({"title": "Null image", "content": BODY, "image": null}),
    )
    .await;
    assert_eq!(null_image["image"], Value::Null);
    assert_content(&null_image);
}

#[tokio::test]
async fn creating_needs_a_valid_token() {
    let app = TestApp::spawn().await;
    let body = json!({"title": "No token", "content": BODY});
    for path in ["/api/v1/post-content", "/api/v1/content"] {
        problem(post(&app, path, None, &body).await, 401).await;
        problem(post(&app, path, Some("not.a.jwt"), &body).await, 401).await;
    }
    assert_eq!(app.sql_text("(SELECT count(*)::text FROM contents)"), "0");
}

#[tokio::test]
async fn a_user_may_name_only_their_own_user_id() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let other = app.new_user().await;

    let own = created(
        &app,
        &user,
        &json!({"title": "As myself", "content": BODY, "user_id": user.id}),
    )
    .await;
    assert_eq!(own["user_id"], user.id);

    let as_other = create(
        &app,
        &user,
        &json!({"title": "As someone else", "content": BODY, "user_id": other.id}),
    )
    .await;
    problem(as_other, 403).await;

    // Also when that id does not exist (no probing for user ids).
    let as_nobody = create(
        &app,
        &user,
        &json!({"title": "As nobody", "content": BODY, "user_id": 987_654_321}),
    )
    .await;
    problem(as_nobody, 403).await;

    // Same on the alias path.
    let alias = post(
        &app,
        "/api/v1/content",
        Some(&user.token),
        &json!({"title": "Alias as other", "content": BODY, "user_id": other.id}),
    )
    .await;
    problem(alias, 403).await;

    assert_eq!(app.sql_text("(SELECT count(*)::text FROM contents)"), "1");
    assert_eq!(
        app.sql_text(&format!(
            "(SELECT count(*)::text FROM contents WHERE user_id = {})",
            other.id
        )),
        "0"
    );
}

#[tokio::test]
async fn an_admin_may_post_as_any_existing_user() {
    let app = TestApp::spawn().await;
    let admin = app.new_admin().await;
    let user = app.new_user().await;

    let item = created(
        &app,
        &admin,
        &json!({"title": "Posted for you", "content": BODY, "user_id": user.id}),
    )
    .await;
    assert_eq!(item["user_id"], user.id);
    let fetched = get_item(&app, item["id"].as_i64().unwrap()).await;
    assert_eq!(fetched["user"]["id"], user.id);

    // And the owner may then change it.
    let response = write(
        &app,
        Method::PATCH,
        &item["id"],
        Some(&user.token),
        &json!({"title": "Mine now"}),
    )
    .await;
    assert_eq!(response.status(), 200);

    let unknown = create(
        &app,
        &admin,
        &json!({"title": "For nobody", "content": BODY, "user_id": 987_654_321}),
    )
    .await;
    let body = problem(unknown, 404).await;
    assert_eq!(body["detail"], "User with id 987654321 not found");
    assert_eq!(app.sql_text("(SELECT count(*)::text FROM contents)"), "1");
}

// ---------------------------------------------------------------- create: rules

#[tokio::test]
async fn an_empty_object_lists_title_and_content() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let body = problem(create(&app, &user, &json!({})).await, 422).await;
    assert_eq!(sorted_fields(&body), ["content", "title"]);
    assert!(body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["code"] == "required"));
}

#[tokio::test]
async fn every_broken_rule_is_reported_at_once() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let body = json!({"title": "ab", "content": "short", "image": "ftp://x", "user_id": "abc"});
    let problem = problem(create(&app, &user, &body).await, 422).await;
    assert_eq!(
        sorted_fields(&problem),
        ["content", "image", "title", "user_id"]
    );
    assert_eq!(problem["errors"].as_array().unwrap().len(), 4);
    assert_eq!(app.sql_text("(SELECT count(*)::text FROM contents)"), "0");
}

#[tokio::test]
async fn title_rules() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    for title in [
        "ab",
        "   ab   ",
        "      ",
        &"t".repeat(201),
        &"é".repeat(201),
    ] {
        let problem = problem(
            create(&app, &user, &json!({"title": title, "content": BODY})).await,
            422,
        )
        .await;
        assert_eq!(invalid_fields(&problem), ["title"], "{title:?}");
    }
    for bad in [json!(null), json!(42), json!(["a title"])] {
        let problem = problem(
            create(&app, &user, &json!({"title": bad, "content": BODY})).await,
            422,
        )
        .await;
        assert_eq!(invalid_fields(&problem), ["title"], "{bad}");
    }
    // The bounds themselves pass (counted in characters, after trimming).
    for title in ["abc", &"é".repeat(200), &format!("  {}  ", "t".repeat(200))] {
        let item = created(&app, &user, &json!({"title": title, "content": BODY})).await;
        assert_eq!(item["title"], title.trim());
    }
}

#[tokio::test]
async fn content_rules() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let too_long = "x".repeat(100_001);
    for content in [
        "short",
        "         ",
        "            ",
        "\n\n\t\t\n\n\t\t\n\n\t",
        too_long.as_str(),
    ] {
        let problem = problem(
            create(&app, &user, &json!({"title": "Title", "content": content})).await,
            422,
        )
        .await;
        assert_eq!(
            invalid_fields(&problem),
            ["content"],
            "{:?}",
            &content[..content.len().min(20)]
        );
    }
    // The bounds themselves pass.
    for content in ["ten chars!", &"x".repeat(100_000)] {
        let item = created(&app, &user, &json!({"title": "Title", "content": content})).await;
        assert_eq!(
            item["content"].as_str().unwrap().chars().count(),
            content.chars().count()
        );
    }
}

#[tokio::test]
async fn image_rules() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let too_long = format!("https://example.com/{}", "a".repeat(2029)); // 2049 characters
    assert_eq!(too_long.chars().count(), 2049);
    let much_too_long = format!("https://example.com/{}", "a".repeat(3000));
    for image in [
        json!("/relative.png"),
        json!("ftp://x"),
        json!("example.com/a.png"),
        json!("javascript:alert(1)"),
        json!("not a url"),
        json!(too_long),
        json!(much_too_long),
        json!(12),
    ] {
        let body = json!({"title": "Title", "content": BODY, "image": image});
        let problem = problem(create(&app, &user, &body).await, 422).await;
        assert_eq!(invalid_fields(&problem), ["image"], "{image}");
    }
    let longest = format!("https://example.com/{}", "a".repeat(2028));
    assert_eq!(longest.chars().count(), 2048);
    let item = created(
        &app,
        &user,
        &json!({"title": "Title", "content": BODY, "image": longest}),
    )
    .await;
    assert_eq!(item["image"], longest);
}

#[tokio::test]
async fn user_id_must_be_a_positive_integer() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    for user_id in [json!("abc"), json!(0), json!(-1), json!(1.5), json!(true)] {
        let body = json!({"title": "Title", "content": BODY, "user_id": user_id});
        let problem = problem(create(&app, &user, &body).await, 422).await;
        assert_eq!(invalid_fields(&problem), ["user_id"], "{user_id}");
    }
}

// ---------------------------------------------------------------- read one

#[tokio::test]
async fn an_item_is_served_with_its_authors_public_view() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let item = created(
        &app,
        &user,
        &json!({"title": "Readable", "content": BODY, "image": "https://example.com/i.png"}),
    )
    .await;
    let id = item["id"].as_i64().unwrap();
    let response = app.get(&format!("/api/v1/content/{id}")).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let fetched: Value = response.json().await.unwrap();
    assert_content_with_user(&fetched);
    for key in CONTENT_KEYS {
        assert_eq!(fetched[key], item[key], "{key}");
    }
    let author = &fetched["user"];
    assert_eq!(author["id"], user.id);
    assert_eq!(author["name"], "Chloé Adé");
    assert_eq!(author["country"], "Nigeria");
    assert_eq!(author["state"], "Lagos");
    let text = fetched.to_string();
    assert!(!text.contains(&user.email), "no email in {text}");
    assert!(!text.contains("+234"), "no phone number in {text}");
}

#[tokio::test]
async fn unknown_and_malformed_ids_are_404() {
    let app = TestApp::spawn().await;
    let body = problem(app.get("/api/v1/content/987654321").await, 404).await;
    assert_eq!(body["detail"], "Content with id 987654321 not found");
    for id in ["abc", "0", "-1", "1.5", "99999999999999999999999"] {
        problem(app.get(&format!("/api/v1/content/{id}")).await, 404).await;
    }
}

// ---------------------------------------------------------------- list

#[tokio::test]
async fn an_empty_listing_is_an_empty_array() {
    let app = TestApp::spawn().await;
    let response = app.get("/api/v1/content").await;
    assert_eq!(response.status(), 200);
    assert!(next_link(&response).is_none());
    assert_eq!(response.text().await.unwrap(), "[]");
}

#[tokio::test]
async fn listings_are_newest_first_with_authors() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let other = app.new_user().await;
    let first = app.create_content(&user, "First", BODY).await;
    let second = app.create_content(&other, "Second", BODY).await;
    let third = app.create_content(&user, "Third", BODY).await;
    let response = app.get("/api/v1/content").await;
    assert_eq!(response.status(), 200);
    assert!(next_link(&response).is_none(), "one page only");
    let items: Vec<Value> = response.json().await.unwrap();
    assert_eq!(ids(&items), ids(&[third, second.clone(), first]));
    for item in &items {
        assert_content_with_user(item);
    }
    assert_eq!(items[1]["user"]["id"], other.id);
    assert_eq!(items[1]["title"], second["title"]);
}

#[tokio::test]
async fn the_default_page_holds_20_and_links_to_the_rest() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let inserted = insert_contents(&app, user.id, 22, 1, "bulk");
    let response = app.get("/api/v1/content").await;
    assert_eq!(response.status(), 200);
    let link = next_link(&response).expect("a next page is announced");
    let page: Vec<Value> = response.json().await.unwrap();
    assert_eq!(page.len(), 20);
    let newest_first: Vec<i64> = inserted.iter().rev().copied().collect();
    assert_eq!(ids(&page), newest_first[..20]);

    let response = app.get(&link).await;
    assert_eq!(response.status(), 200);
    assert!(next_link(&response).is_none());
    let rest: Vec<Value> = response.json().await.unwrap();
    assert_eq!(ids(&rest), newest_first[20..]);
}

#[tokio::test]
async fn invalid_limits_and_cursors_are_422() {
    let app = TestApp::spawn().await;
    for limit in ["0", "101", "abc", "-1", "1.5"] {
        let problem = problem(
            app.get(&format!("/api/v1/content?limit={limit}")).await,
            422,
        )
        .await;
        assert_eq!(invalid_fields(&problem), ["limit"], "{limit:?}");
    }
    for ok in ["1", "100"] {
        assert_eq!(
            app.get(&format!("/api/v1/content?limit={ok}"))
                .await
                .status(),
            200
        );
    }
    for cursor in ["garbage", "!!!", "dDox", "1.0", "12.3.4"] {
        let problem = problem(
            app.get(&format!("/api/v1/content?cursor={cursor}")).await,
            422,
        )
        .await;
        assert_eq!(invalid_fields(&problem), ["cursor"], "{cursor}");
    }
    let problem = problem(
        app.get("/api/v1/content?limit=0&cursor=garbage&user_id=abc")
            .await,
        422,
    )
    .await;
    let mut fields = invalid_fields(&problem);
    fields.sort();
    assert_eq!(fields, ["cursor", "limit", "user_id"], "all at once");
}

#[tokio::test]
async fn a_cursor_given_to_the_other_kind_of_listing_is_a_position_there() {
    // Every cursor of the published pattern is valid (so no schema-valid
    // request is refused): a search cursor in a plain listing reads as a
    // time, a time cursor in a search as a rank.
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    for i in 0..3 {
        app.create_content(
            &user,
            &format!("Kettle number {i}"),
            "A kettle boils the water quickly.",
        )
        .await;
    }
    let search = app.get("/api/v1/content?q=kettle&limit=1").await;
    let search_cursor = cursor_of(&next_link(&search).expect("more matches"));
    let listing = app.get("/api/v1/content?limit=1").await;
    let time_cursor = cursor_of(&next_link(&listing).expect("more items"));

    // A rank's bits are a time long before these items: nothing is older.
    let as_time: Vec<Value> = app
        .get_json(&format!("/api/v1/content?limit=1&cursor={search_cursor}"))
        .await;
    assert!(as_time.is_empty());
    // A time in microseconds is beyond every rank: the search from the top.
    let as_rank: Vec<Value> = app
        .get_json(&format!(
            "/api/v1/content?q=kettle&limit=1&cursor={time_cursor}"
        ))
        .await;
    assert_eq!(
        ids(&as_rank),
        ids(&search.json::<Vec<Value>>().await.unwrap())
    );

    // Each with its own kind continues where its page ended.
    let second_match: Vec<Value> = app
        .get_json(&format!(
            "/api/v1/content?q=kettle&limit=1&cursor={search_cursor}"
        ))
        .await;
    let second_item: Vec<Value> = app
        .get_json(&format!("/api/v1/content?limit=1&cursor={time_cursor}"))
        .await;
    assert_eq!(second_match.len(), 1);
    assert_eq!(second_item.len(), 1);
    let first_item: Vec<Value> = listing.json().await.unwrap();
    assert_ne!(ids(&second_item), ids(&first_item));
}

#[tokio::test]
async fn user_id_filters_by_author_across_pages() {
    let app = TestApp::spawn().await;
    let alice = app.new_user().await;
    let bob = app.new_user().await;
    let mut alice_ids = HashSet::new();
    for i in 0..7 {
        alice_ids.insert(
            app.create_content(&alice, &format!("Alice {i}"), BODY)
                .await["id"]
                .as_i64()
                .unwrap(),
        );
        if i % 2 == 0 {
            app.create_content(&bob, &format!("Bob {i}"), BODY).await;
        }
    }
    let response = app
        .get(&format!("/api/v1/content?user_id={}", alice.id))
        .await;
    assert_eq!(response.status(), 200);
    let items: Vec<Value> = response.json().await.unwrap();
    assert_eq!(items.len(), 7);
    assert!(items
        .iter()
        .all(|item| item["user_id"] == alice.id && item["user"]["id"] == alice.id));

    let pages = all_pages(
        &app,
        &format!("/api/v1/content?user_id={}&limit=3", alice.id),
    )
    .await;
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 1]);
    let seen: Vec<i64> = pages.iter().flat_map(|p| ids(p)).collect();
    assert_eq!(seen.iter().copied().collect::<HashSet<_>>(), alice_ids);
    assert_eq!(seen.len(), 7);

    let bobs: Vec<Value> = app
        .get_json(&format!("/api/v1/content?user_id={}", bob.id))
        .await;
    assert_eq!(bobs.len(), 4);
    assert!(bobs.iter().all(|item| item["user_id"] == bob.id));

    // A well-formed id with no items is an empty page.
    let response = app.get("/api/v1/content?user_id=987654321").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "[]");

    for bad in ["abc", "0", "-3"] {
        let problem = problem(
            app.get(&format!("/api/v1/content?user_id={bad}")).await,
            422,
        )
        .await;
        assert_eq!(invalid_fields(&problem), ["user_id"], "{bad}");
    }
}

// ---------------------------------------------------------------- search

#[tokio::test]
async fn search_combines_with_user_id() {
    let app = TestApp::spawn().await;
    let alice = app.new_user().await;
    let bob = app.new_user().await;
    let alices = app
        .create_content(&alice, "Rust notes", "Ownership and borrowing explained.")
        .await;
    app.create_content(&bob, "Rust tips", "Lifetimes are not that scary really.")
        .await;
    app.create_content(&alice, "Cooking pasta", "Boil water and add salt to taste.")
        .await;
    let response = app
        .get(&format!("/api/v1/content?q=rust&user_id={}", alice.id))
        .await;
    assert_eq!(response.status(), 200);
    let items: Vec<Value> = response.json().await.unwrap();
    assert_eq!(ids(&items), [alices["id"].as_i64().unwrap()]);
    let everyone: Vec<Value> = app.get_json("/api/v1/content?q=rust").await;
    assert_eq!(everyone.len(), 2);
}

#[tokio::test]
async fn search_text_is_bounded() {
    let app = TestApp::spawn().await;
    let problem = problem(
        app.get(&format!("/api/v1/content?q={}", "a".repeat(201)))
            .await,
        422,
    )
    .await;
    assert_eq!(invalid_fields(&problem), ["q"]);
    let response = app
        .get(&format!("/api/v1/content?q={}", "a".repeat(200)))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "[]");
    // Search syntax the user typed is not an error.
    for q in [
        "%22unbalanced",
        "a%20%26%20b%20%7C%20!c",
        "-",
        "or",
        "%27%3B%20DROP%20TABLE%20contents%3B--",
    ] {
        assert_eq!(
            app.get(&format!("/api/v1/content?q={q}")).await.status(),
            200,
            "{q}"
        );
    }
    assert_eq!(app.sql_text("(SELECT count(*)::text FROM contents)"), "0");
}

// ---------------------------------------------------------------- update

#[tokio::test]
async fn the_owner_updates_with_put_and_patch() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    for method in [Method::PATCH, Method::PUT] {
        let item = app.create_content(&user, "Before", BODY).await;
        let response = write(
            &app,
            method.clone(),
            &item["id"],
            Some(&user.token),
            &json!({"title": "  After  "}),
        )
        .await;
        assert_eq!(response.status(), 200, "{method}");
        let updated: Value = response.json().await.unwrap();
        assert_content(&updated);
        assert_eq!(updated["id"], item["id"]);
        assert_eq!(updated["title"], "After", "{method}: trimmed");
        assert_eq!(
            updated["content"], BODY,
            "{method}: an absent field is left alone"
        );
        assert_eq!(updated["user_id"], user.id);
        assert_eq!(updated["created_at"], item["created_at"]);
        assert!(
            updated["updated_at"].as_str().unwrap() > item["updated_at"].as_str().unwrap(),
            "{method}: updated_at moves on: {updated}"
        );
        assert!(updated["updated_at"].as_str().unwrap() > updated["created_at"].as_str().unwrap());

        let fetched = get_item(&app, item["id"].as_i64().unwrap()).await;
        assert_eq!(fetched["title"], "After");
        assert_eq!(fetched["updated_at"], updated["updated_at"]);

        let response = write(
            &app,
            method.clone(),
            &item["id"],
            Some(&user.token),
            &json!({"content": "Entirely new body text."}),
        )
        .await;
        let updated: Value = response.json().await.unwrap();
        assert_eq!(updated["title"], "After");
        assert_eq!(updated["content"], "Entirely new body text.");
    }
}

#[tokio::test]
async fn an_image_is_set_and_cleared_with_null() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let url = "https://example.com/pic.png";
    let item = created(
        &app,
        &user,
        &json!({"title": "Pictured", "content": BODY, "image": url}),
    )
    .await;
    let id = item["id"].as_i64().unwrap();

    let kept: Value = write(
        &app,
        Method::PATCH,
        id,
        Some(&user.token),
        &json!({"title": "Still pictured"}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(kept["image"], url, "an absent image is left alone");

    let response = write(
        &app,
        Method::PATCH,
        id,
        Some(&user.token),
        &json!({"image": null}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let cleared: Value = response.json().await.unwrap();
    assert_eq!(cleared["image"], Value::Null);
    assert_eq!(cleared["title"], "Still pictured");
    assert_eq!(get_item(&app, id).await["image"], Value::Null);

    let response = write(
        &app,
        Method::PUT,
        id,
        Some(&user.token),
        &json!({"image": "https://example.com/new.png"}),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        get_item(&app, id).await["image"],
        "https://example.com/new.png"
    );

    let response = write(
        &app,
        Method::PUT,
        id,
        Some(&user.token),
        &json!({"image": null}),
    )
    .await;
    assert_eq!(
        response.json::<Value>().await.unwrap()["image"],
        Value::Null
    );
}

#[tokio::test]
async fn an_empty_update_changes_nothing() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let item = created(
        &app,
        &user,
        &json!({"title": "Unchanged", "content": BODY, "image": "https://example.com/a.png"}),
    )
    .await;
    for method in [Method::PATCH, Method::PUT] {
        let response = write(
            &app,
            method.clone(),
            &item["id"],
            Some(&user.token),
            &json!({}),
        )
        .await;
        assert_eq!(response.status(), 200, "{method}");
        let same: Value = response.json().await.unwrap();
        assert_eq!(same, item, "{method}");
    }
}

#[tokio::test]
async fn only_the_owner_or_an_admin_may_update() {
    let app = TestApp::spawn().await;
    let owner = app.new_user().await;
    let stranger = app.new_user().await;
    let admin = app.new_admin().await;
    let item = app.create_content(&owner, "Owned", BODY).await;
    let id = item["id"].as_i64().unwrap();

    for method in [Method::PATCH, Method::PUT] {
        problem(
            write(
                &app,
                method.clone(),
                id,
                Some(&stranger.token),
                &json!({"title": "Hijacked"}),
            )
            .await,
            403,
        )
        .await;
        problem(
            write(
                &app,
                method.clone(),
                id,
                None,
                &json!({"title": "Anonymous"}),
            )
            .await,
            401,
        )
        .await;
        problem(
            write(
                &app,
                method.clone(),
                id,
                Some("forged.token.here"),
                &json!({"title": "Forged"}),
            )
            .await,
            401,
        )
        .await;
    }
    assert_eq!(get_item(&app, id).await["title"], "Owned");

    let response = write(
        &app,
        Method::PATCH,
        id,
        Some(&admin.token),
        &json!({"title": "Moderated"}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let updated: Value = response.json().await.unwrap();
    assert_eq!(updated["title"], "Moderated");
    assert_eq!(updated["user_id"], owner.id, "the owner stays the owner");
    let response = write(
        &app,
        Method::PUT,
        id,
        Some(&admin.token),
        &json!({"content": "Moderated body text."}),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(get_item(&app, id).await["content"], "Moderated body text.");
}

#[tokio::test]
async fn updating_unknown_content_is_404() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    for method in [Method::PATCH, Method::PUT] {
        let body = problem(
            write(
                &app,
                method.clone(),
                987_654_321,
                Some(&user.token),
                &json!({"title": "Ghost"}),
            )
            .await,
            404,
        )
        .await;
        assert_eq!(body["detail"], "Content with id 987654321 not found");
        for id in ["abc", "0", "-1"] {
            problem(
                write(
                    &app,
                    method.clone(),
                    id,
                    Some(&user.token),
                    &json!({"title": "Ghost"}),
                )
                .await,
                404,
            )
            .await;
        }
    }
}

#[tokio::test]
async fn invalid_updates_are_422_and_change_nothing() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let item = app.create_content(&user, "Valid title", BODY).await;
    let id = item["id"].as_i64().unwrap();
    let cases = [
        (json!({"title": "ab"}), vec!["title"]),
        (json!({"title": "t".repeat(201)}), vec!["title"]),
        (json!({"title": null}), vec!["title"]),
        (json!({"content": "short"}), vec!["content"]),
        (json!({"content": null}), vec!["content"]),
        (json!({"image": "/relative.png"}), vec!["image"]),
        (
            json!({"title": "  ", "content": "            ", "image": "ftp://x"}),
            vec!["content", "image", "title"],
        ),
    ];
    for method in [Method::PATCH, Method::PUT] {
        for (body, fields) in &cases {
            let problem = problem(
                write(&app, method.clone(), id, Some(&user.token), body).await,
                422,
            )
            .await;
            assert_eq!(&sorted_fields(&problem), fields, "{method} {body}");
        }
    }
    let fetched = get_item(&app, id).await;
    for key in CONTENT_KEYS {
        assert_eq!(fetched[key], item[key], "{key}");
    }
}

// ---------------------------------------------------------------- delete

#[tokio::test]
async fn the_owner_deletes_and_the_item_is_gone() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let item = app.create_content(&user, "Doomed", BODY).await;
    let id = item["id"].as_i64().unwrap();

    let response = delete(&app, id, Some(&user.token)).await;
    assert_eq!(response.status(), 204);
    assert!(
        response.bytes().await.unwrap().is_empty(),
        "204 has no body"
    );

    let body = problem(app.get(&format!("/api/v1/content/{id}")).await, 404).await;
    assert_eq!(body["detail"], format!("Content with id {id} not found"));
    let listing: Vec<Value> = app.get_json("/api/v1/content").await;
    assert!(listing.is_empty());

    // Writing to what no longer exists is 404 with the same detail.
    let body = problem(delete(&app, id, Some(&user.token)).await, 404).await;
    assert_eq!(body["detail"], format!("Content with id {id} not found"));
    for method in [Method::PATCH, Method::PUT] {
        let body = problem(
            write(
                &app,
                method,
                id,
                Some(&user.token),
                &json!({"title": "Revived"}),
            )
            .await,
            404,
        )
        .await;
        assert_eq!(body["detail"], format!("Content with id {id} not found"));
    }
}

#[tokio::test]
async fn only_the_owner_or_an_admin_may_delete() {
    let app = TestApp::spawn().await;
    let owner = app.new_user().await;
    let stranger = app.new_user().await;
    let admin = app.new_admin().await;
    let item = app.create_content(&owner, "Kept", BODY).await;
    let id = item["id"].as_i64().unwrap();

    problem(delete(&app, id, Some(&stranger.token)).await, 403).await;
    problem(delete(&app, id, None).await, 401).await;
    problem(delete(&app, id, Some("forged.token.here")).await, 401).await;
    assert_eq!(get_item(&app, id).await["title"], "Kept", "still there");

    let response = delete(&app, id, Some(&admin.token)).await;
    assert_eq!(response.status(), 204);
    assert!(response.bytes().await.unwrap().is_empty());
    problem(app.get(&format!("/api/v1/content/{id}")).await, 404).await;
    assert_eq!(
        app.sql_text(&format!(
            "(SELECT count(*)::text FROM contents WHERE id = {id})"
        )),
        "0"
    );
}

#[tokio::test]
async fn deleting_unknown_content_is_404() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let body = problem(delete(&app, 987_654_321, Some(&user.token)).await, 404).await;
    assert_eq!(body["detail"], "Content with id 987654321 not found");
    for id in ["abc", "0", "-1"] {
        problem(delete(&app, id, Some(&user.token)).await, 404).await;
    }
}

// ---------------------------------------------------------------- methods

#[tokio::test]
async fn wrong_methods_are_405_with_allow() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let item = app.create_content(&user, "Method target", BODY).await;
    let id = item["id"].as_i64().unwrap();

    let response = app
        .request(Method::POST, &format!("/api/v1/content/{id}"))
        .bearer_auth(&user.token)
        .json(&json!({"title": "x"}))
        .send()
        .await
        .unwrap();
    let allow = response
        .headers()
        .get("allow")
        .expect("405 carries Allow")
        .to_str()
        .unwrap()
        .to_owned();
    problem(response, 405).await;
    let allowed: Vec<&str> = allow.split(',').map(str::trim).collect();
    for method in ["GET", "PUT", "PATCH", "DELETE"] {
        assert!(allowed.contains(&method), "{allow}");
    }
    assert!(!allowed.contains(&"POST"), "{allow}");

    let response = app.get("/api/v1/post-content").await;
    let allow = response
        .headers()
        .get("allow")
        .expect("405 carries Allow")
        .to_str()
        .unwrap()
        .to_owned();
    problem(response, 405).await;
    assert!(
        allow.split(',').map(str::trim).any(|m| m == "POST"),
        "{allow}"
    );

    let response = app
        .request(Method::DELETE, "/api/v1/content")
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap();
    let allow = response
        .headers()
        .get("allow")
        .expect("405 carries Allow")
        .to_str()
        .unwrap()
        .to_owned();
    problem(response, 405).await;
    let allowed: Vec<&str> = allow.split(',').map(str::trim).collect();
    assert!(
        allowed.contains(&"GET") && allowed.contains(&"POST"),
        "{allow}"
    );

    assert_eq!(
        get_item(&app, id).await["title"],
        "Method target",
        "nothing changed"
    );
}

// ---------------------------------------------------------------- scenarios, with and without Redis

/// Create → read → update → read → delete → read, each read repeated
/// (a repeated read must not differ from the first: old defect 1).
async fn create_read_update_delete_round_trip(app: &TestApp) {
    let user = app.new_user().await;
    let item = created(
        app,
        &user,
        &json!({"title": "Round trip", "content": BODY, "image": "https://example.com/r.png"}),
    )
    .await;
    let id = item["id"].as_i64().unwrap();
    let path = format!("/api/v1/content/{id}");

    let first = app.get(&path).await;
    assert_eq!(first.status(), 200);
    let first = first.bytes().await.unwrap();
    let second = app.get(&path).await;
    assert_eq!(second.status(), 200);
    assert_eq!(second.bytes().await.unwrap(), first);
    let fetched: Value = serde_json::from_slice(&first).unwrap();
    assert_content_with_user(&fetched);
    assert_eq!(fetched["title"], "Round trip");

    let updated: Value = write(
        app,
        Method::PATCH,
        id,
        Some(&user.token),
        &json!({"title": "Round trip, revised", "image": null}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(updated["title"], "Round trip, revised");
    for _ in 0..2 {
        let fetched = get_item(app, id).await;
        assert_eq!(fetched["title"], "Round trip, revised");
        assert_eq!(fetched["image"], Value::Null);
        assert_eq!(fetched["updated_at"], updated["updated_at"]);
        let listed: Vec<Value> = app.get_json("/api/v1/content").await;
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0]["title"], "Round trip, revised");
    }

    assert_eq!(delete(app, id, Some(&user.token)).await.status(), 204);
    for _ in 0..2 {
        let body = problem(app.get(&path).await, 404).await;
        assert_eq!(body["detail"], format!("Content with id {id} not found"));
        assert_eq!(app.get("/api/v1/content").await.text().await.unwrap(), "[]");
    }
    let body = problem(
        write(
            app,
            Method::PATCH,
            id,
            Some(&user.token),
            &json!({"title": "Too late"}),
        )
        .await,
        404,
    )
    .await;
    assert_eq!(body["detail"], format!("Content with id {id} not found"));
}

/// Anonymous, the owner, a stranger and an admin read the same bytes,
/// for one item and for a listing.
async fn every_reader_gets_the_same_bytes(app: &TestApp) {
    let owner = app.new_user().await;
    let stranger = app.new_user().await;
    let admin = app.new_admin().await;
    let item = app.create_content(&owner, "Same for all", BODY).await;
    app.create_content(&stranger, "Another one", BODY).await;
    for path in [
        format!("/api/v1/content/{}", item["id"]),
        "/api/v1/content".to_owned(),
        format!("/api/v1/content?user_id={}", owner.id),
    ] {
        let anonymous = app.get(&path).await;
        assert_eq!(anonymous.status(), 200);
        let anonymous = anonymous.bytes().await.unwrap();
        let text = String::from_utf8(anonymous.to_vec()).unwrap();
        assert!(
            !text.contains(&owner.email) && !text.contains("phone_number"),
            "{text}"
        );
        for token in [&owner.token, &stranger.token, &admin.token] {
            let response = app.get_as(&path, token).await;
            assert_eq!(response.status(), 200);
            assert_eq!(response.bytes().await.unwrap(), anonymous, "{path}");
        }
        // And again anonymously, after the others.
        assert_eq!(
            app.get(&path).await.bytes().await.unwrap(),
            anonymous,
            "{path}"
        );
    }
}

/// limit=5 over items several of which share a `created_at`: following the
/// Link chain yields every item exactly once, strictly newest first.
async fn listing_pages_cover_every_item_once_newest_first(app: &TestApp) {
    let user = app.new_user().await;
    let other = app.new_user().await;
    let mut inserted = insert_contents(app, user.id, 8, 3, "paged-a");
    inserted.extend(insert_contents(app, other.id, 5, 2, "paged-b"));
    let pages = all_pages(app, "/api/v1/content?limit=5").await;
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [5, 5, 3]);
    let items: Vec<Value> = pages.into_iter().flatten().collect();
    let seen = ids(&items);
    assert_eq!(
        seen.iter().copied().collect::<HashSet<_>>().len(),
        seen.len(),
        "no item twice: {seen:?}"
    );
    assert_eq!(
        seen.iter().copied().collect::<HashSet<_>>(),
        inserted.iter().copied().collect::<HashSet<_>>(),
        "every item once"
    );
    for pair in items.windows(2) {
        let a = (
            pair[0]["created_at"].as_str().unwrap(),
            pair[0]["id"].as_i64().unwrap(),
        );
        let b = (
            pair[1]["created_at"].as_str().unwrap(),
            pair[1]["id"].as_i64().unwrap(),
        );
        assert!(a > b, "strictly newest first: {a:?} then {b:?}");
    }
    for item in &items {
        assert_content_with_user(item);
    }
    // Reading the chain again gives the same pages.
    let again: Vec<i64> = all_pages(app, "/api/v1/content?limit=5")
        .await
        .into_iter()
        .flat_map(|p| ids(&p))
        .collect();
    assert_eq!(again, seen);
}

/// `q=`: case-insensitive, stemmed, ranked (title before body), and paged
/// through with limit=1 without losing or repeating a match.
async fn search_matches_stems_ranks_and_pages(app: &TestApp) {
    let user = app.new_user().await;
    let in_title = app
        .create_content(
            &user,
            "Rust in production",
            "Notes from a long week at work.",
        )
        .await;
    let in_body = app
        .create_content(
            &user,
            "Weekend gardening",
            "Planted tomatoes, then read about rust.",
        )
        .await;
    let server = app
        .create_content(
            &user,
            "Deploying things",
            "Our web server handles many requests.",
        )
        .await;
    let unrelated = app
        .create_content(&user, "Cooking pasta", "Boil water and add salt to taste.")
        .await;

    let response = app.get("/api/v1/content?q=rust").await;
    assert_eq!(response.status(), 200);
    let items: Vec<Value> = response.json().await.unwrap();
    // Newer `in_body` comes second: rank decides, not age.
    assert_eq!(ids(&items), ids(&[in_title.clone(), in_body.clone()]));
    for item in &items {
        assert_content_with_user(item);
    }
    let upper: Vec<Value> = app.get_json("/api/v1/content?q=RUST").await;
    assert_eq!(ids(&upper), ids(&items), "case-insensitive");

    let stemmed: Vec<Value> = app.get_json("/api/v1/content?q=servers").await;
    assert_eq!(
        ids(&stemmed),
        ids(std::slice::from_ref(&server)),
        "servers matches server"
    );

    let none = app.get("/api/v1/content?q=submarine").await;
    assert_eq!(none.status(), 200);
    assert!(next_link(&none).is_none());
    assert_eq!(none.text().await.unwrap(), "[]");

    let pasta: Vec<Value> = app.get_json("/api/v1/content?q=pasta").await;
    assert_eq!(ids(&pasta), ids(&[unrelated]));

    // Paging a search: ties in rank included (identical texts).
    let mut matches: HashSet<i64> = HashSet::new();
    for (title, body) in [
        ("Kettle reviews", "Which one boils fastest this year?"),
        ("Morning routine", "Fill the kettle, then stretch a little."),
        ("Morning routine", "Fill the kettle, then stretch a little."),
        ("Morning routine", "Fill the kettle, then stretch a little."),
        ("Tea time", "The kettle sang; a second kettle answered."),
    ] {
        matches.insert(
            app.create_content(&user, title, body).await["id"]
                .as_i64()
                .unwrap(),
        );
    }
    let pages = all_pages(app, "/api/v1/content?q=kettle&limit=1").await;
    assert!(pages.iter().all(|page| page.len() <= 1));
    let seen: Vec<i64> = pages.iter().flat_map(|p| ids(p)).collect();
    assert_eq!(
        seen.len(),
        matches.len(),
        "every match exactly once: {seen:?}"
    );
    assert_eq!(seen.iter().copied().collect::<HashSet<_>>(), matches);
    let one_page: Vec<Value> = app.get_json("/api/v1/content?q=kettle&limit=100").await;
    assert_eq!(ids(&one_page), seen, "paging keeps the ranked order");
    assert_eq!(
        one_page[0]["title"], "Kettle reviews",
        "the title match ranks first"
    );
}
