//! SQLite's side of [`crate::transfer`]: pages read on a reader connection inside one read
//! transaction (one WAL snapshot), rows written on the writer inside one transaction.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use sqlx::{Sqlite, Transaction};

use super::SqliteStore;
use crate::Result;
use crate::transfer::{
    Counter, CounterValue, Table, TableAccess, TableReader, TableWriter, Value, Values, bind_value,
    decode_row, insert_sql, page_sql,
};
use crate::wal_sync::WalSync;

fn question(_: usize) -> String {
    "?".to_owned()
}

#[async_trait]
impl TableAccess for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn catalog(&self) -> Result<BTreeMap<String, BTreeSet<String>>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT m.name, c.name FROM sqlite_master m, pragma_table_info(m.name) c
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
        )
        .fetch_all(&self.reader)
        .await?;
        let mut catalog: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (table, column) in rows {
            catalog.entry(table).or_default().insert(column);
        }
        Ok(catalog)
    }

    async fn schema_version(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
                .fetch_one(&self.reader)
                .await?,
        )
    }

    async fn reader(&self) -> Result<Box<dyn TableReader>> {
        Ok(Box::new(SqliteReader {
            tx: self.reader.begin().await?,
        }))
    }

    async fn writer(&self) -> Result<Box<dyn TableWriter>> {
        Ok(Box::new(SqliteWriter {
            tx: self.writer.begin_with(super::BEGIN_WRITE).await?,
            wal: self.wal.clone(),
        }))
    }
}

struct SqliteReader {
    tx: Transaction<'static, Sqlite>,
}

#[async_trait]
impl TableReader for SqliteReader {
    async fn page(
        &mut self,
        table: &Table,
        after: Option<&[Value]>,
        limit: usize,
    ) -> Result<Vec<Values>> {
        // Table and column names come from `TABLES`, constants of this crate.
        let sql = page_sql(table, after.is_some(), question);
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (value, name) in after.unwrap_or_default().iter().zip(table.key) {
            let kind = table
                .columns
                .iter()
                .find(|c| c.name == *name)
                .map(|c| c.kind)
                .unwrap_or(crate::transfer::Kind::Text);
            query = bind_value(query, kind, value)?;
        }
        let rows = query
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&mut *self.tx)
            .await?;
        rows.iter().map(|row| decode_row(table, row)).collect()
    }

    async fn count(&mut self, table: &str, except: Option<&str>) -> Result<u64> {
        let filter = except.map_or(String::new(), |c| format!(" WHERE NOT ({c})"));
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM {table}{filter}"
        )))
        .fetch_one(&mut *self.tx)
        .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn counter(&mut self, counter: &Counter) -> Result<CounterValue> {
        let largest: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COALESCE(MAX({}), 0) FROM {}",
            counter.column, counter.table
        )))
        .fetch_one(&mut *self.tx)
        .await?;
        // `sequences` (repositories, manifests, tags) and `sqlite_sequence` (AUTOINCREMENT)
        // remember ids given to rows since deleted.
        let sequence: Option<i64> =
            sqlx::query_scalar("SELECT value FROM sequences WHERE name = ?")
                .bind(counter.table)
                .fetch_optional(&mut *self.tx)
                .await?;
        let autoincrement: Option<i64> =
            sqlx::query_scalar("SELECT seq FROM sqlite_sequence WHERE name = ?")
                .bind(counter.table)
                .fetch_optional(&mut *self.tx)
                .await?;
        Ok(CounterValue {
            last: largest
                .max(sequence.unwrap_or(0))
                .max(autoincrement.unwrap_or(0)),
            kept: sequence.is_some() || autoincrement.is_some(),
        })
    }
}

struct SqliteWriter {
    tx: Transaction<'static, Sqlite>,
    wal: WalSync,
}

#[async_trait]
impl TableWriter for SqliteWriter {
    async fn delete(&mut self, table: &str, condition: &str) -> Result<()> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE {condition}"
        )))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn insert(&mut self, table: &Table, rows: &[Values]) -> Result<()> {
        let sql = insert_sql(table, rows.len(), question);
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for row in rows {
            for (column, value) in table.columns.iter().zip(row) {
                if !column.derived {
                    query = bind_value(query, column.kind, value)?;
                }
            }
        }
        query.execute(&mut *self.tx).await?;
        Ok(())
    }

    async fn set_counter(&mut self, counter: &Counter, last: i64) -> Result<()> {
        sqlx::query("UPDATE sequences SET value = MAX(value, ?) WHERE name = ?")
            .bind(last)
            .bind(counter.table)
            .execute(&mut *self.tx)
            .await?;
        // An AUTOINCREMENT table has a row here once it has had one row; its counter must
        // also cover rows the source deleted.
        sqlx::query(
            "INSERT INTO sqlite_sequence (name, seq)
             SELECT ?1, ?2 FROM sqlite_master
             WHERE type = 'table' AND name = ?1 AND sql LIKE '%AUTOINCREMENT%'
               AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = ?1)",
        )
        .bind(counter.table)
        .bind(last)
        .execute(&mut *self.tx)
        .await?;
        sqlx::query("UPDATE sqlite_sequence SET seq = MAX(seq, ?) WHERE name = ?")
            .bind(last)
            .bind(counter.table)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        self.tx.commit().await?;
        self.wal.wait_durable().await?;
        Ok(())
    }
}
