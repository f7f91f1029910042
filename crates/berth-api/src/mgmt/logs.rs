//! `/audit-logs` and `/projects/{project_name}/logs`: Harbor's AuditLog entries, filtered
//! by `q` (`username`, `resource`, `resource_type`, `operation`, `op_time=[from~to]`),
//! sorted (`-op_time` by default) and paged in the database. Which projects' entries the
//! caller may read came with the decision (`Ctx::within`, `Ctx::project`), not from a check
//! here.

use berth_core::mgmt::{ListQuery, Matcher};
use berth_core::time::{parse_time, rfc3339_millis};
use berth_meta::{AuditColumn, AuditEntry, AuditMatch, AuditQuery};
use serde::Serialize;

use super::Ctx;
use super::response::{MgmtApiError, MgmtResult, page};

/// Harbor's AuditLog, with what berth adds: the result, why it failed, the client's address
/// and how many identical events the entry stands for.
#[derive(Serialize)]
struct AuditLogJson {
    id: i64,
    username: String,
    resource: String,
    resource_type: String,
    operation: String,
    op_time: String,
    operation_result: bool,
    operation_description: String,
    client_ip: String,
    count: u64,
}

fn to_json(entry: AuditEntry) -> AuditLogJson {
    let r = entry.record;
    AuditLogJson {
        id: entry.id,
        username: r.username,
        resource: r.resource,
        resource_type: r.resource_type,
        operation: r.operation,
        op_time: rfc3339_millis(r.op_time_ms),
        operation_result: r.success,
        operation_description: r.reason,
        client_ip: r.client,
        count: r.count,
    }
}

fn column(field: &str) -> Option<AuditColumn> {
    Some(match field {
        "id" => AuditColumn::Id,
        "op_time" => AuditColumn::OpTime,
        "username" => AuditColumn::Username,
        "resource" => AuditColumn::Resource,
        "resource_type" => AuditColumn::ResourceType,
        "operation" => AuditColumn::Operation,
        _ => return None,
    })
}

fn time(text: &str) -> Result<berth_core::time::TimePoint, MgmtApiError> {
    parse_time(text).ok_or_else(|| {
        MgmtApiError::bad_request(format!(
            "op_time {text:?}: expected e.g. 2024-01-02 03:04:05, 2024-01-02T03:04:05Z or Unix seconds"
        ))
    })
}

/// The database query for Harbor's `q`, `sort` and page, within `projects`.
fn audit_query(
    query: &ListQuery,
    projects: Option<Vec<String>>,
) -> Result<AuditQuery, MgmtApiError> {
    let mut out = AuditQuery {
        projects,
        offset: query.offset(),
        limit: query.page_size,
        ..Default::default()
    };
    for term in &query.q {
        if term.key == "op_time" {
            match &term.matcher {
                Matcher::Range(from, to) => {
                    out.from_ms = from.as_deref().map(time).transpose()?.map(|t| t.ms);
                    out.to_ms = to.as_deref().map(time).transpose()?.map(|t| t.end_ms);
                }
                Matcher::Exact(at) => {
                    let at = time(at)?;
                    (out.from_ms, out.to_ms) = (Some(at.ms), Some(at.end_ms));
                }
                _ => {
                    return Err(MgmtApiError::bad_request(
                        "op_time takes a range: op_time=[from~to]",
                    ));
                }
            }
            continue;
        }
        // Harbor ignores keys its model does not have.
        let Some(col) = column(&term.key).filter(|c| *c != AuditColumn::OpTime) else {
            continue;
        };
        match &term.matcher {
            Matcher::Exact(v) => out.terms.push((col, AuditMatch::Exact(v.clone()))),
            Matcher::Fuzzy(v) => out.terms.push((col, AuditMatch::Contains(v.clone()))),
            Matcher::AnyOf(vs) => out.terms.push((col, AuditMatch::AnyOf(vs.clone()))),
            Matcher::AllOf(vs) => {
                for v in vs {
                    out.terms.push((col, AuditMatch::Exact(v.clone())));
                }
            }
            Matcher::Range(..) => {
                return Err(MgmtApiError::bad_request(format!(
                    "{} does not take a range; only op_time does",
                    term.key
                )));
            }
        }
    }
    let sort: Vec<(AuditColumn, bool)> = query
        .sort
        .iter()
        .filter_map(|k| column(&k.field).map(|c| (c, k.descending)))
        .collect();
    if !sort.is_empty() {
        out.sort = sort;
    }
    Ok(out)
}

async fn entries(
    ctx: &Ctx<'_>,
    query: &ListQuery,
    projects: Option<Vec<String>>,
    path: &str,
) -> MgmtResult {
    let query_db = audit_query(query, projects)?;
    let (found, total) = match &ctx.state.audit_log {
        Some(store) => store
            .audit_entries(&query_db)
            .await
            .map_err(MgmtApiError::internal)?,
        None => (Vec::new(), 0),
    };
    let items: Vec<AuditLogJson> = found.into_iter().map(to_json).collect();
    page(&items, total, query, path, ctx.raw_query())
}

/// Every entry the caller may read: all for system administrators, else those of the
/// projects where the decision found `log:list`.
pub async fn list(ctx: &Ctx<'_>, query: &ListQuery) -> MgmtResult {
    entries(ctx, query, ctx.within.clone(), "/api/v2.0/audit-logs").await
}

/// One project's entries.
pub async fn project(ctx: &Ctx<'_>, query: &ListQuery) -> MgmtResult {
    let name = ctx.project()?.name.clone();
    let path = format!("/api/v2.0/projects/{name}/logs");
    entries(ctx, query, Some(vec![name]), &path).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::mgmt::parse_q;

    fn list_query(q: &str, sort: &str) -> ListQuery {
        ListQuery {
            page: 2,
            page_size: 5,
            q: parse_q(q).expect("q"),
            sort: sort
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| berth_core::mgmt::SortKey {
                    field: s.trim_start_matches('-').into(),
                    descending: s.starts_with('-'),
                })
                .collect(),
        }
    }

    #[test]
    fn harbors_q_becomes_the_database_query() {
        let q = audit_query(
            &list_query(
                "username=alice,operation={pull create},resource=~app,op_time=[2024-01-02 00:00:00~2024-01-02 23:59:59],nosuch=x",
                "",
            ),
            Some(vec!["team".into()]),
        )
        .expect("valid");
        assert_eq!(
            q.terms,
            [
                (AuditColumn::Username, AuditMatch::Exact("alice".into())),
                (
                    AuditColumn::Operation,
                    AuditMatch::AnyOf(vec!["pull".into(), "create".into()])
                ),
                (AuditColumn::Resource, AuditMatch::Contains("app".into())),
            ]
        );
        assert_eq!(q.from_ms, Some(1_704_153_600_000));
        assert_eq!(q.to_ms, Some(1_704_239_999_999));
        assert_eq!((q.offset, q.limit), (5, 5));
        assert_eq!(
            q.sort,
            [(AuditColumn::OpTime, true)],
            "newest first by default"
        );
        assert_eq!(q.projects, Some(vec!["team".to_string()]));
        let sorted = audit_query(&list_query("", "username,-op_time,bogus"), None).expect("valid");
        assert_eq!(
            sorted.sort,
            [(AuditColumn::Username, false), (AuditColumn::OpTime, true)]
        );
        for bad in ["op_time=~2024", "op_time=[yesterday~]", "username=[a~b]"] {
            assert!(audit_query(&list_query(bad, ""), None).is_err(), "{bad}");
        }
    }
}
