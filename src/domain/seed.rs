//! `content-api seed`: demo users and content, safe to run again and again.

use diesel::prelude::*;

use super::content_input::slug_of_title;
use super::{AppContext, AppError};
use crate::db::contents::PUBLISHED;
use crate::db::models::{NewContentRow, NewUserRow};
use crate::db::schema::{contents, users};
use crate::db::{self, DbError};

/// Every demo account's password (documented in the README).
pub const DEMO_PASSWORD: &str = "password123";

struct DemoUser {
    name: &'static str,
    email: &'static str,
    phone_number: &'static str,
    admin: bool,
    items: &'static [(&'static str, &'static str)],
}

const DEMO_USERS: &[DemoUser] = &[
    DemoUser {
        name: "Ada Admin",
        email: "admin@example.com",
        phone_number: "+2348030000001",
        admin: true,
        items: &[(
            "Welcome to the Content API",
            "This item was created by `content-api seed`.",
        )],
    },
    DemoUser {
        name: "Chloé Adé",
        email: "user1@example.com",
        phone_number: "+2348030000002",
        admin: false,
        items: &[
            (
                "Fast servers in Rust",
                "Actix, Diesel and Redis make a quick content service.",
            ),
            (
                "Caching without stale reads",
                "Invalidate after the commit and before the response.",
            ),
        ],
    },
    DemoUser {
        name: "Jörg Ọlá",
        email: "user2@example.com",
        phone_number: "+2348030000003",
        admin: false,
        items: &[(
            "Keyset pagination",
            "Page five thousand costs what page one costs.",
        )],
    },
];

#[derive(Debug, Default)]
pub struct SeedReport {
    pub users_created: usize,
    pub items_created: usize,
}

/// Inserts what is missing (users by email, items by owner and title) and
/// leaves everything else alone.
pub async fn run(ctx: &AppContext) -> Result<SeedReport, AppError> {
    let mut rows = Vec::new();
    for user in DEMO_USERS {
        rows.push(NewUserRow {
            name: user.name.into(),
            email: user.email.into(),
            phone_number: user.phone_number.into(),
            country: "Nigeria".into(),
            state: "Lagos".into(),
            password_hash: ctx.passwords.hash(DEMO_PASSWORD.into()).await?,
        });
    }
    let (report, recorded) = db::interact(&ctx.pool, move |conn| {
        conn.transaction::<_, DbError, _>(|conn| {
            let mut report = SeedReport::default();
            for (user, row) in DEMO_USERS.iter().zip(&rows) {
                report.users_created += diesel::insert_into(users::table)
                    .values(row)
                    .on_conflict_do_nothing()
                    .execute(conn)?;
                let owner: i64 = users::table
                    .filter(users::email.eq(user.email))
                    .select(users::id)
                    .first(conn)?;
                if user.admin {
                    diesel::update(users::table.find(owner))
                        .set(users::role.eq("admin"))
                        .execute(conn)?;
                }
                for (title, content) in user.items {
                    let exists = diesel::select(diesel::dsl::exists(
                        contents::table
                            .filter(contents::user_id.eq(owner))
                            .filter(contents::title.eq(title)),
                    ))
                    .get_result::<bool>(conn)?;
                    if !exists {
                        let id = db::contents::next_id(conn)?;
                        let slug =
                            db::contents::claim_generated_slug(conn, &slug_of_title(title), id)?;
                        db::contents::insert(
                            conn,
                            &NewContentRow {
                                id,
                                title: (*title).into(),
                                content: (*content).into(),
                                image: None,
                                user_id: owner,
                                status: PUBLISHED.into(),
                                publish_at: None,
                                slug,
                                tags: Vec::new(),
                                updated_by: owner,
                            },
                        )?;
                        report.items_created += 1;
                    }
                }
            }
            let recorded = (report.users_created + report.items_created > 0)
                .then(|| super::invalidation::record(conn, Vec::new()))
                .transpose()?;
            Ok((report, recorded))
        })
    })
    .await?;
    if let Some(recorded) = recorded {
        super::invalidation::complete(ctx, recorded).await;
    }
    Ok(report)
}
