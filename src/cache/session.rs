//! The listening session's client with its hot statements prepared once:
//! a statement sent as text is parsed and planned by PostgreSQL on every
//! call (a write's announcement, its acknowledgements, the outbox deletes).

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::Mutex;

use tokio_postgres::{Client, Error, Statement};

pub struct Session {
    client: Client,
    prepared: Mutex<HashMap<&'static str, Statement>>,
}

impl Session {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            prepared: Mutex::new(HashMap::new()),
        }
    }

    /// `sql`, prepared on this session the first time it is asked for.
    pub async fn prepared(&self, sql: &'static str) -> Result<Statement, Error> {
        if let Some(statement) = self.prepared.lock().expect("statements lock").get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql).await?;
        self.prepared
            .lock()
            .expect("statements lock")
            .insert(sql, statement.clone());
        Ok(statement)
    }
}

impl Deref for Session {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}
