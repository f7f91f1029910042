//! Request metrics: a fixed table of counters, one per endpoint class × status, and a
//! latency histogram and an in-flight gauge per endpoint class. Every label set exists from
//! the start (a `static` array), so recording a request is indexing and three atomic adds —
//! no label map is built, nothing is allocated, nothing is locked.

use std::time::Duration;

use crate::exposition::{Exposition, Kind};
use crate::primitives::{Counter, Gauge, Histogram, STRIPES, stripe};

/// What kind of request it was, decided from the parsed endpoint (never from the path
/// string): the `endpoint` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum EndpointClass {
    /// `GET /v2/`.
    Base,
    Catalog,
    TagsList,
    Referrers,
    ManifestGet,
    ManifestHead,
    ManifestPut,
    ManifestDelete,
    BlobGet,
    BlobHead,
    BlobDelete,
    /// `POST …/blobs/uploads/` (a session, a single-request upload or a mount).
    UploadStart,
    UploadStatus,
    UploadPatch,
    /// `PUT …/blobs/uploads/<id>?digest=`.
    UploadComplete,
    UploadCancel,
    /// A `/v2/` path that does not parse (no such endpoint, a bad name or digest).
    V2Invalid,
    /// `/service/token`.
    Token,
    /// `/api/v2.0/…`, Harbor's management API.
    Management,
    /// `/healthz` and `/readyz`.
    Health,
    Metrics,
    /// Anything else (an unknown path).
    Other,
}

impl EndpointClass {
    pub const ALL: [EndpointClass; 22] = [
        EndpointClass::Base,
        EndpointClass::Catalog,
        EndpointClass::TagsList,
        EndpointClass::Referrers,
        EndpointClass::ManifestGet,
        EndpointClass::ManifestHead,
        EndpointClass::ManifestPut,
        EndpointClass::ManifestDelete,
        EndpointClass::BlobGet,
        EndpointClass::BlobHead,
        EndpointClass::BlobDelete,
        EndpointClass::UploadStart,
        EndpointClass::UploadStatus,
        EndpointClass::UploadPatch,
        EndpointClass::UploadComplete,
        EndpointClass::UploadCancel,
        EndpointClass::V2Invalid,
        EndpointClass::Token,
        EndpointClass::Management,
        EndpointClass::Health,
        EndpointClass::Metrics,
        EndpointClass::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EndpointClass::Base => "base",
            EndpointClass::Catalog => "catalog",
            EndpointClass::TagsList => "tags_list",
            EndpointClass::Referrers => "referrers",
            EndpointClass::ManifestGet => "manifest_get",
            EndpointClass::ManifestHead => "manifest_head",
            EndpointClass::ManifestPut => "manifest_put",
            EndpointClass::ManifestDelete => "manifest_delete",
            EndpointClass::BlobGet => "blob_get",
            EndpointClass::BlobHead => "blob_head",
            EndpointClass::BlobDelete => "blob_delete",
            EndpointClass::UploadStart => "upload_start",
            EndpointClass::UploadStatus => "upload_status",
            EndpointClass::UploadPatch => "upload_patch",
            EndpointClass::UploadComplete => "upload_complete",
            EndpointClass::UploadCancel => "upload_cancel",
            EndpointClass::V2Invalid => "v2_invalid",
            EndpointClass::Token => "token",
            EndpointClass::Management => "management",
            EndpointClass::Health => "health",
            EndpointClass::Metrics => "metrics",
            EndpointClass::Other => "other",
        }
    }

    /// Whether requests of this class carry blob bytes in (the "active uploads" gauge).
    pub fn is_upload(self) -> bool {
        matches!(
            self,
            EndpointClass::UploadStart | EndpointClass::UploadPatch | EndpointClass::UploadComplete
        )
    }

    fn index(self) -> usize {
        self as usize
    }
}

const CLASSES: usize = EndpointClass::ALL.len();

/// The statuses counted under their own code; any other is counted under its class
/// (`1xx` … `5xx`), so the table stays fixed whatever a handler answers.
const STATUS_LABELS: [&str; 31] = [
    "200", "201", "202", "204", "206", "304", "307", "308", "400", "401", "403", "404", "405",
    "406", "408", "409", "412", "413", "416", "422", "429", "500", "502", "503", "504", "507",
    "1xx", "2xx", "3xx", "4xx", "5xx",
];
const STATUSES: usize = STATUS_LABELS.len();

/// The row of `status` in [`STATUS_LABELS`].
pub fn status_index(status: u16) -> usize {
    match status {
        200 => 0,
        201 => 1,
        202 => 2,
        204 => 3,
        206 => 4,
        304 => 5,
        307 => 6,
        308 => 7,
        400 => 8,
        401 => 9,
        403 => 10,
        404 => 11,
        405 => 12,
        406 => 13,
        408 => 14,
        409 => 15,
        412 => 16,
        413 => 17,
        416 => 18,
        422 => 19,
        429 => 20,
        500 => 21,
        502 => 22,
        503 => 23,
        504 => 24,
        507 => 25,
        // The class rows follow the exact codes: 1xx at 26 … 5xx at 30.
        other => 25 + usize::from(other / 100).clamp(1, 5),
    }
}

/// Every request the HTTP layer answered: one copy per stripe (see `primitives`), summed
/// when read. A request may start on one thread and finish on another, so one stripe's
/// in-flight count may go below zero; the sum is right.
pub struct HttpMetrics {
    stripes: [HttpStripe; STRIPES],
}

#[repr(align(128))]
struct HttpStripe {
    requests: [[Counter; STATUSES]; CLASSES],
    latency: [Histogram; CLASSES],
    in_flight: [Gauge; CLASSES],
}

/// The process's request metrics.
pub static HTTP: HttpMetrics = HttpMetrics::new();

impl HttpMetrics {
    const fn new() -> HttpMetrics {
        HttpMetrics {
            stripes: [const {
                HttpStripe {
                    requests: [const { [const { Counter::new() }; STATUSES] }; CLASSES],
                    latency: [const { Histogram::new() }; CLASSES],
                    in_flight: [const { Gauge::new() }; CLASSES],
                }
            }; STRIPES],
        }
    }

    fn mine(&self) -> &HttpStripe {
        &self.stripes[stripe()]
    }

    fn in_flight(&self, class: EndpointClass) -> i64 {
        self.stripes
            .iter()
            .map(|s| s.in_flight[class.index()].get())
            .sum()
    }

    fn requests_of(&self, class: usize, status: usize) -> u64 {
        self.stripes
            .iter()
            .map(|s| s.requests[class][status].get())
            .sum()
    }

    /// A request of `class` has started (it counts as in flight until [`HttpMetrics::finish`]).
    pub fn start(&self, class: EndpointClass) {
        self.mine().in_flight[class.index()].inc();
    }

    /// A request of `class` that [`HttpMetrics::start`]ed has been answered with `status`
    /// after `elapsed`.
    pub fn finish(&self, class: EndpointClass, status: u16, elapsed: Duration) {
        let class = class.index();
        let mine = self.mine();
        mine.in_flight[class].dec();
        mine.requests[class][status_index(status)].inc();
        mine.latency[class].observe(elapsed);
    }

    /// A request whose class was never decided (no route claimed it): counted as
    /// [`EndpointClass::Other`] without passing through in-flight.
    pub fn record_unclassified(&self, status: u16, elapsed: Duration) {
        let class = EndpointClass::Other.index();
        let mine = self.mine();
        mine.requests[class][status_index(status)].inc();
        mine.latency[class].observe(elapsed);
    }

    /// Requests answered so far with `class` and `status` (tests).
    pub fn requests(&self, class: EndpointClass, status: u16) -> u64 {
        self.requests_of(class.index(), status_index(status))
    }

    /// Registry requests (`/v2/`, tokens) in flight now: clients being served, which
    /// background work should make way for.
    pub fn registry_in_flight(&self) -> i64 {
        EndpointClass::ALL
            .iter()
            .filter(|class| {
                !matches!(
                    class,
                    EndpointClass::Management
                        | EndpointClass::Health
                        | EndpointClass::Metrics
                        | EndpointClass::Other
                )
            })
            .map(|class| self.in_flight(*class))
            .sum()
    }

    /// Requests of upload classes in flight now: blob bytes being received.
    pub fn uploads_in_flight(&self) -> i64 {
        EndpointClass::ALL
            .iter()
            .filter(|class| class.is_upload())
            .map(|class| self.in_flight(*class))
            .sum()
    }

    pub(crate) fn render(&self, out: &mut Exposition) {
        out.family(
            "berth_http_requests_total",
            "HTTP requests answered, by endpoint class and status.",
            Kind::Counter,
        );
        for class in EndpointClass::ALL {
            for (status, label) in STATUS_LABELS.iter().enumerate() {
                let count = self.requests_of(class.index(), status);
                // Rows never used stay out of the scrape; a row once used stays in it.
                if count > 0 {
                    out.sample(
                        "berth_http_requests_total",
                        &[("endpoint", class.as_str()), ("status", label)],
                        count.into(),
                    );
                }
            }
        }
        out.family(
            "berth_http_request_duration_seconds",
            "Time from a request's arrival to its response headers, by endpoint class.",
            Kind::Histogram,
        );
        for class in EndpointClass::ALL {
            let latency = Histogram::new();
            for stripe in &self.stripes {
                latency.add_from(&stripe.latency[class.index()]);
            }
            // Like the counters: a class appears once it has served a request.
            if latency.cumulative().1 == 0 {
                continue;
            }
            out.histogram(
                "berth_http_request_duration_seconds",
                &[("endpoint", class.as_str())],
                &latency,
            );
        }
        out.family(
            "berth_http_requests_in_flight",
            "Requests being handled now, by endpoint class.",
            Kind::Gauge,
        );
        for class in EndpointClass::ALL {
            out.sample(
                "berth_http_requests_in_flight",
                &[("endpoint", class.as_str())],
                self.in_flight(class).into(),
            );
        }
        out.gauge(
            "berth_uploads_in_flight",
            "Upload requests (POST, PATCH, PUT of blob uploads) receiving bytes now.",
            self.uploads_in_flight(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripes_written_by_many_threads_add_up() {
        let metrics = HttpMetrics::new();
        std::thread::scope(|scope| {
            for _ in 0..2 * STRIPES {
                scope.spawn(|| {
                    for _ in 0..100 {
                        metrics.start(EndpointClass::ManifestGet);
                    }
                });
                // Finished elsewhere than started, as a request moved between threads.
                scope.spawn(|| {
                    for _ in 0..100 {
                        metrics.finish(EndpointClass::ManifestGet, 200, Duration::from_millis(2));
                    }
                });
            }
        });
        let requests = 2 * STRIPES as u64 * 100;
        assert_eq!(metrics.requests(EndpointClass::ManifestGet, 200), requests);
        assert_eq!(metrics.in_flight(EndpointClass::ManifestGet), 0);
        let mut text = Exposition::new();
        metrics.render(&mut text);
        let text = text.into_text();
        assert!(
            text.contains(&format!(
                "berth_http_request_duration_seconds_count{{endpoint=\"manifest_get\"}} {requests}"
            )),
            "{text}"
        );
    }

    #[test]
    fn every_class_has_its_own_index_and_name() {
        for (i, class) in EndpointClass::ALL.iter().enumerate() {
            assert_eq!(class.index(), i, "{class:?} is out of place in ALL");
        }
        let mut names: Vec<_> = EndpointClass::ALL.iter().map(|c| c.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), CLASSES);
    }

    #[test]
    fn known_statuses_have_their_own_row_and_others_their_class() {
        for (i, label) in STATUS_LABELS.iter().enumerate() {
            if let Ok(code) = label.parse::<u16>() {
                assert_eq!(status_index(code), i, "{code}");
            }
        }
        assert_eq!(STATUS_LABELS[status_index(418)], "4xx");
        assert_eq!(STATUS_LABELS[status_index(101)], "1xx");
        assert_eq!(STATUS_LABELS[status_index(599)], "5xx");
    }
}
