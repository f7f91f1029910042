//! PostgreSQL's side of [`crate::transfer`]: pages read inside one `REPEATABLE READ`
//! transaction (one snapshot, even while other nodes write), rows written inside one
//! transaction, and the identity columns' and id sequences' counters moved past the copied
//! ids with `setval`.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use sqlx::{Postgres, Transaction};

use super::PgStore;
use crate::Result;
use crate::transfer::{
    Counter, CounterValue, Kind, Table, TableAccess, TableReader, TableWriter, Value, Values,
    bind_value, decode_row, insert_sql, page_sql,
};

fn dollar(n: usize) -> String {
    format!("${n}")
}

#[async_trait]
impl TableAccess for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn catalog(&self) -> Result<BTreeMap<String, BTreeSet<String>>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT c.table_name::text, c.column_name::text
             FROM information_schema.columns c
             JOIN information_schema.tables t
               ON t.table_schema = c.table_schema AND t.table_name = c.table_name
             WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'
               AND c.is_generated = 'NEVER'",
        )
        .fetch_all(&self.pool)
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
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn reader(&self) -> Result<Box<dyn TableReader>> {
        Ok(Box::new(PgReader {
            tx: self.snapshot().await?,
        }))
    }

    async fn writer(&self) -> Result<Box<dyn TableWriter>> {
        Ok(Box::new(PgWriter {
            tx: self.pool.begin().await?,
        }))
    }
}

struct PgReader {
    tx: Transaction<'static, Postgres>,
}

#[async_trait]
impl TableReader for PgReader {
    async fn page(
        &mut self,
        table: &Table,
        after: Option<&[Value]>,
        limit: usize,
    ) -> Result<Vec<Values>> {
        // Table and column names come from `TABLES`, constants of this crate.
        let sql = page_sql(table, after.is_some(), dollar);
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (value, name) in after.unwrap_or_default().iter().zip(table.key) {
            let kind = table
                .columns
                .iter()
                .find(|c| c.name == *name)
                .map_or(Kind::Text, |c| c.kind);
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
        // NULL until the sequence has given a value.
        let given: Option<i64> = sqlx::query_scalar(
            "SELECT pg_sequence_last_value(pg_get_serial_sequence($1, $2)::regclass)",
        )
        .bind(counter.table)
        .bind(counter.column)
        .fetch_one(&mut *self.tx)
        .await?;
        Ok(CounterValue {
            last: largest.max(given.unwrap_or(0)),
            kept: true,
        })
    }
}

struct PgWriter {
    tx: Transaction<'static, Postgres>,
}

#[async_trait]
impl TableWriter for PgWriter {
    async fn delete(&mut self, table: &str, condition: &str) -> Result<()> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE {condition}"
        )))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn insert(&mut self, table: &Table, rows: &[Values]) -> Result<()> {
        let sql = insert_sql(table, rows.len(), dollar);
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
        // A sequence cannot be set to 0: "nothing given yet" is 1, not called.
        sqlx::query("SELECT setval(pg_get_serial_sequence($1, $2), $3, $4)")
            .bind(counter.table)
            .bind(counter.column)
            .bind(last.max(1))
            .bind(last > 0)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }
}
