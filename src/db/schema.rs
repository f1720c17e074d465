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

diesel::joinable!(contents -> users (user_id));

diesel::allow_tables_to_appear_in_same_query!(contents, users,);
