//! Reads every row of every table (socialsync's and the queue's) as text, to prove a secret is
//! stored nowhere in plaintext.

use jobs::{Store, store::Pool};
use sqlx::{Column, Row, TypeInfo};

/// Every `(table, needle)` where some row of `table` contains `needle` in any column.
pub async fn find_plaintext(store: &Store, needles: &[String]) -> Vec<(String, String)> {
    let mut hits = vec![];
    for (table, text) in dump(store).await {
        for n in needles.iter().filter(|n| text.contains(n.as_str())) {
            hits.push((table.clone(), n.clone()));
        }
    }
    hits
}

/// `(table, all its rows as text)` for every table in the database.
pub async fn dump(store: &Store) -> Vec<(String, String)> {
    match store.pool() {
        Pool::Postgres(p) => {
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) FROM information_schema.tables
                 WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')",
            )
            .fetch_all(p)
            .await
            .expect("list tables");
            let mut out = vec![];
            for t in tables {
                let sql = format!("SELECT COALESCE(string_agg(x::text, E'\\n'), '') FROM {t} x");
                let text: String = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(p).await.expect("dump table");
                out.push((t, text));
            }
            out
        }
        Pool::Sqlite(p) => {
            let tables: Vec<String> = sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
                .fetch_all(p)
                .await
                .expect("list tables");
            let mut out = vec![];
            for t in tables {
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT * FROM \"{t}\"")))
                    .fetch_all(p)
                    .await
                    .expect("dump table");
                let mut text = String::new();
                for row in rows {
                    for col in row.columns() {
                        let i = col.ordinal();
                        let value = match col.type_info().name() {
                            "BLOB" => row.try_get::<Option<Vec<u8>>, _>(i).ok().flatten().map(|b| String::from_utf8_lossy(&b).into_owned()),
                            _ => row
                                .try_get::<Option<String>, _>(i)
                                .ok()
                                .flatten()
                                .or_else(|| row.try_get::<Option<Vec<u8>>, _>(i).ok().flatten().map(|b| String::from_utf8_lossy(&b).into_owned())),
                        };
                        text.push_str(value.as_deref().unwrap_or(""));
                        text.push('\t');
                    }
                    text.push('\n');
                }
                out.push((t, text));
            }
            out
        }
    }
}
