// @generated automatically by Diesel CLI.

diesel::table! {
    contents (id) {
        id -> Int8,
        title -> Text,
        content -> Text,
        image -> Nullable<Text>,
        user_id -> Int8,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        status -> Text,
        publish_at -> Nullable<Timestamptz>,
        published_at -> Nullable<Timestamptz>,
        slug -> Text,
        tags -> Array<Text>,
        version -> Int8,
        updated_by -> Nullable<Int8>,
    }
}

diesel::table! {
    content_slugs (slug) {
        slug -> Text,
        content_id -> Nullable<Int8>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    content_revisions (content_id, version) {
        content_id -> Int8,
        version -> Int8,
        title -> Text,
        content -> Text,
        image -> Nullable<Text>,
        status -> Text,
        publish_at -> Nullable<Timestamptz>,
        slug -> Text,
        tags -> Array<Text>,
        changed_at -> Timestamptz,
        changed_by -> Nullable<Int8>,
    }
}

diesel::table! {
    api_tokens (id) {
        id -> Int8,
        user_id -> Int8,
        name -> Text,
        scopes -> Array<Text>,
        token_hash -> Bytea,
        expires_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        last_used_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    audit_events (id) {
        id -> Int8,
        at -> Timestamptz,
        action -> Text,
        actor_user_id -> Nullable<Int8>,
        target_user_id -> Nullable<Int8>,
        ip -> Nullable<Text>,
        request_id -> Nullable<Text>,
    }
}

diesel::table! {
    login_failures (email_hash, at) {
        email_hash -> Bytea,
        at -> Timestamptz,
    }
}

diesel::table! {
    password_resets (token_hash) {
        token_hash -> Bytea,
        user_id -> Int8,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    refresh_tokens (token_hash) {
        token_hash -> Bytea,
        session_id -> Int8,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    sessions (id) {
        id -> Int8,
        user_id -> Int8,
        created_at -> Timestamptz,
        last_used_at -> Timestamptz,
        expires_at -> Timestamptz,
        user_agent -> Nullable<Text>,
        ip -> Nullable<Text>,
    }
}

diesel::table! {
    users (id) {
        id -> Int8,
        name -> Text,
        email -> Text,
        phone_number -> Text,
        country -> Text,
        state -> Text,
        role -> Text,
        password_hash -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    webhook_deliveries (id) {
        id -> Int8,
        webhook_id -> Int8,
        event_id -> Text,
        subject -> Text,
        status -> Text,
        attempts -> Int4,
        last_status_code -> Nullable<Int4>,
        last_error -> Nullable<Text>,
        next_attempt_at -> Nullable<Timestamptz>,
        leased_until -> Nullable<Timestamptz>,
        delivered_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        event -> Text,
        occurred_at -> Timestamptz,
        data -> Json,
    }
}

diesel::table! {
    webhooks (id) {
        id -> Int8,
        url -> Text,
        events -> Array<Text>,
        secret -> Text,
        active -> Bool,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::joinable!(api_tokens -> users (user_id));
diesel::joinable!(contents -> users (user_id));
diesel::joinable!(content_revisions -> contents (content_id));
diesel::joinable!(content_slugs -> contents (content_id));
diesel::joinable!(password_resets -> users (user_id));
diesel::joinable!(refresh_tokens -> sessions (session_id));
diesel::joinable!(sessions -> users (user_id));
diesel::joinable!(webhook_deliveries -> webhooks (webhook_id));

diesel::allow_tables_to_appear_in_same_query!(
    api_tokens,
    audit_events,
    content_revisions,
    content_slugs,
    contents,
    login_failures,
    password_resets,
    refresh_tokens,
    sessions,
    users,
    webhook_deliveries,
    webhooks,
);
