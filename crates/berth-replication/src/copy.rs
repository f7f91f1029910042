//! Copying one repository's artifacts from one side to another: every platform of an index,
//! every blob (skipped when the destination has it, mounted when this run already put it in
//! another repository there), the tag last, then the referrers (signatures, SBOMs) and
//! theirs. Blobs stream through, throttled to the policy's speed; nothing is buffered whole.

use berth_core::time::now_ms;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_core::{Digest, Reference, manifest, media_type};
use berth_storage::ByteStream;
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use crate::sides::{ManifestBytes, Side, StepError, StepResult};

/// What one task does, as recorded with it (so a run taken over after a crash does the same).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskPlan {
    /// The repository at the source, and its name at the destination.
    pub src: String,
    pub dst: String,
    /// Tags and digests to copy, or (a deletion) to delete at the destination.
    pub references: Vec<String>,
    /// `copy` or `deletion`.
    pub operation: String,
}

/// How deep referrers of referrers, and indexes of indexes, are followed.
const MAX_DEPTH: usize = 8;
/// Blobs of one manifest copied at once.
const BLOBS_AT_ONCE: usize = 4;

/// What copying one blob took.
enum BlobOutcome {
    /// The destination repository had it.
    Skipped,
    Mounted,
    /// Streamed across: its size.
    Copied(u64),
}

/// One execution's copying state, shared by its tasks.
pub struct Copier<'a> {
    pub src: &'a dyn Side,
    pub dst: &'a dyn Side,
    pub bytes_per_second: Option<u64>,
    pub overwrite: bool,
    /// Set when the execution is asked to stop: the copy ends before the next artifact.
    pub stop: &'a AtomicBool,
    /// Blobs this run put at the destination, by the repository they went to.
    /// One task uploads a blob; the others wait for it and mount it from there.
    placed: Mutex<HashMap<Digest, Arc<OnceCell<String>>>>,
}

/// What a task did, for its log and the execution's totals.
#[derive(Debug, Default)]
pub struct TaskReport {
    pub log: String,
    pub blobs_copied: u64,
    pub bytes_copied: u64,
    pub blobs_skipped: u64,
    pub blobs_mounted: u64,
    pub manifests_pushed: u64,
}

impl TaskReport {
    fn line(&mut self, text: impl AsRef<str>) {
        let now = berth_core::time::rfc3339_millis(now_ms());
        self.log.push_str(&format!("{now} {}\n", text.as_ref()));
    }
}

fn parse_reference(text: &str) -> StepResult<Reference> {
    text.parse()
        .map_err(|e| StepError::permanent(format!("invalid reference {text:?}: {e}")))
}

impl<'a> Copier<'a> {
    pub fn new(
        src: &'a dyn Side,
        dst: &'a dyn Side,
        bytes_per_second: Option<u64>,
        overwrite: bool,
        stop: &'a AtomicBool,
    ) -> Copier<'a> {
        Copier {
            src,
            dst,
            bytes_per_second,
            overwrite,
            stop,
            placed: Mutex::new(HashMap::new()),
        }
    }

    /// Run one task; its report whether it failed or not (the log says how far it came).
    pub async fn run(&self, plan: &TaskPlan) -> (TaskReport, StepResult<()>) {
        let mut report = TaskReport::default();
        let result = match plan.operation.as_str() {
            "deletion" => self.delete(plan, &mut report).await,
            _ => self.copy(plan, &mut report).await,
        };
        match &result {
            Ok(()) => report.line(format!(
                "done: {} manifests pushed, {} blobs copied ({} bytes), {} mounted, {} already there",
                report.manifests_pushed,
                report.blobs_copied,
                report.bytes_copied,
                report.blobs_mounted,
                report.blobs_skipped
            )),
            Err(e) => report.line(format!("failed: {e}")),
        }
        (report, result)
    }

    fn stopped(&self) -> StepResult<()> {
        if self.stop.load(Ordering::Relaxed) {
            Err(StepError::permanent("stopped"))
        } else {
            Ok(())
        }
    }

    async fn copy(&self, plan: &TaskPlan, report: &mut TaskReport) -> StepResult<()> {
        report.line(format!(
            "copying {} from {} to {} at {}",
            plan.src,
            self.src.describe(),
            plan.dst,
            self.dst.describe()
        ));
        self.dst.prepare_namespace(&plan.dst).await?;
        for reference in &plan.references {
            self.stopped()?;
            let reference = parse_reference(reference)?;
            self.copy_reference(plan, &reference, report).await?;
        }
        Ok(())
    }

    async fn copy_reference(
        &self,
        plan: &TaskPlan,
        reference: &Reference,
        report: &mut TaskReport,
    ) -> StepResult<()> {
        let Some(manifest) = self.src.manifest(&plan.src, reference).await? else {
            report.line(format!(
                "{}:{reference} is gone at the source: skipped",
                plan.src
            ));
            return Ok(());
        };
        if let Reference::Tag(tag) = reference {
            match self.dst.manifest(&plan.dst, reference).await? {
                Some(there) if there.digest == manifest.digest => {
                    report.line(format!("{}:{tag} is up to date", plan.dst));
                    self.copy_referrers(plan, &manifest.digest, 0, report)
                        .await?;
                    return Ok(());
                }
                Some(there) if !self.overwrite => {
                    report.line(format!(
                        "{}:{tag} is {} at the destination and the policy does not override: skipped",
                        plan.dst, there.digest
                    ));
                    return Ok(());
                }
                _ => {}
            }
        }
        // A tagged manifest is pushed once, by its tag (the digest follows from its bytes).
        let tag = match reference {
            Reference::Tag(tag) => Some(tag.as_str()),
            Reference::Digest(_) => None,
        };
        self.copy_manifest(plan, &manifest, tag, 0, report).await?;
        if let Some(tag) = tag {
            report.line(format!("{}:{tag} → {}", plan.dst, manifest.digest));
        }
        self.copy_referrers(plan, &manifest.digest, 0, report).await
    }

    /// A manifest with everything it needs, pushed under `tag` (or its digest), unless the
    /// destination has it by digest (then only the tag is pushed).
    async fn copy_manifest(
        &self,
        plan: &TaskPlan,
        manifest: &ManifestBytes,
        tag: Option<&str>,
        depth: usize,
        report: &mut TaskReport,
    ) -> StepResult<()> {
        if depth > MAX_DEPTH {
            return Err(StepError::permanent(format!(
                "{} nests indexes deeper than {MAX_DEPTH}",
                manifest.digest
            )));
        }
        let by_digest = Reference::Digest(manifest.digest.clone());
        let digest = manifest.digest.to_string();
        let reference = tag.unwrap_or(&digest);
        if self.dst.manifest(&plan.dst, &by_digest).await?.is_some() {
            if tag.is_some() {
                self.dst
                    .put_manifest(&plan.dst, reference, manifest)
                    .await?;
                report.manifests_pushed += 1;
            }
            return Ok(());
        }
        let parsed = manifest::parse(Some(&manifest.media_type), &manifest.content)
            .map_err(|e| StepError::permanent(format!("{}: {e}", manifest.digest)))?;
        for child in &parsed.manifests {
            self.stopped()?;
            let child_ref = Reference::Digest(child.clone());
            match self.src.manifest(&plan.src, &child_ref).await? {
                Some(child) => {
                    Box::pin(self.copy_manifest(plan, &child, None, depth + 1, report)).await?
                }
                None => report.line(format!(
                    "{}@{child}, listed by {}, is not at the source: skipped",
                    plan.src, manifest.digest
                )),
            }
        }
        self.stopped()?;
        let outcomes: Vec<StepResult<BlobOutcome>> =
            futures_util::stream::iter(parsed.blobs.clone())
                .map(move |blob| async move { self.copy_blob(plan, &blob).await })
                .buffer_unordered(BLOBS_AT_ONCE)
                .collect()
                .await;
        for outcome in outcomes {
            match outcome? {
                BlobOutcome::Skipped => report.blobs_skipped += 1,
                BlobOutcome::Mounted => report.blobs_mounted += 1,
                BlobOutcome::Copied(size) => {
                    report.blobs_copied += 1;
                    report.bytes_copied += size;
                }
            }
        }
        let indexed = self
            .dst
            .put_manifest(&plan.dst, reference, manifest)
            .await?;
        report.manifests_pushed += 1;
        if let Some(subject) = &parsed.subject
            && !indexed
        {
            self.add_to_tag_schema(plan, subject, manifest, &parsed)
                .await?;
        }
        Ok(())
    }

    async fn copy_blob(&self, plan: &TaskPlan, digest: &Digest) -> StepResult<BlobOutcome> {
        if self.dst.has_blob(&plan.dst, digest).await? {
            return Ok(BlobOutcome::Skipped);
        }
        // This registry as the destination mounts from any repository that has it.
        if self.dst.mount(&plan.dst, digest, None).await? {
            return Ok(BlobOutcome::Mounted);
        }
        let flight = self
            .placed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(digest.clone())
            .or_default()
            .clone();
        let mut uploaded = None;
        let placed = flight
            .get_or_try_init(|| async {
                uploaded = Some(self.upload_blob(plan, digest).await?);
                Ok::<_, StepError>(plan.dst.clone())
            })
            .await?;
        if let Some(size) = uploaded {
            return Ok(BlobOutcome::Copied(size));
        }
        if placed == &plan.dst || self.dst.mount(&plan.dst, digest, Some(placed)).await? {
            return Ok(BlobOutcome::Mounted);
        }
        Ok(BlobOutcome::Copied(self.upload_blob(plan, digest).await?))
    }

    /// Stream a blob from the source to the destination; its size.
    async fn upload_blob(&self, plan: &TaskPlan, digest: &Digest) -> StepResult<u64> {
        let (size, body) = self.src.blob(&plan.src, digest).await?;
        let body = match self.bytes_per_second {
            Some(rate) => throttle(body, rate),
            None => body,
        };
        self.dst.put_blob(&plan.dst, digest, size, body).await?;
        Ok(size)
    }

    /// The manifests that refer to `subject` (signatures, SBOMs, attestations), and theirs.
    async fn copy_referrers(
        &self,
        plan: &TaskPlan,
        subject: &Digest,
        depth: usize,
        report: &mut TaskReport,
    ) -> StepResult<()> {
        if depth > MAX_DEPTH {
            return Ok(());
        }
        for referrer in self.src.referrers(&plan.src, subject).await? {
            self.stopped()?;
            let Some(manifest) = self
                .src
                .manifest(&plan.src, &Reference::Digest(referrer.clone()))
                .await?
            else {
                continue;
            };
            self.copy_manifest(plan, &manifest, None, 0, report).await?;
            report.line(format!(
                "{}@{referrer} refers to {subject}: copied",
                plan.dst
            ));
            Box::pin(self.copy_referrers(plan, &referrer, depth + 1, report)).await?;
        }
        Ok(())
    }

    /// A destination without the referrers API (registry:2) finds a subject's referrers in
    /// the index tagged `<alg>-<hex>` (the OCI tag schema): add this one to it.
    async fn add_to_tag_schema(
        &self,
        plan: &TaskPlan,
        subject: &Digest,
        manifest: &ManifestBytes,
        parsed: &manifest::ParsedManifest,
    ) -> StepResult<()> {
        let tag = subject.to_string().replacen(':', "-", 1);
        let reference = parse_reference(&tag)?;
        let mut index = match self.dst.manifest(&plan.dst, &reference).await? {
            Some(existing) => {
                serde_json::from_slice::<Value>(&existing.content).unwrap_or_else(|_| empty_index())
            }
            None => empty_index(),
        };
        let digest = manifest.digest.to_string();
        let Some(entries) = index.get_mut("manifests").and_then(Value::as_array_mut) else {
            return Err(StepError::permanent(format!(
                "{}:{tag} at the destination is not an index",
                plan.dst
            )));
        };
        if entries.iter().any(|e| e["digest"] == digest.as_str()) {
            return Ok(());
        }
        let mut descriptor = json!({
            "mediaType": manifest.media_type,
            "digest": digest,
            "size": manifest.content.len(),
        });
        if let Some(artifact_type) = &parsed.artifact_type {
            descriptor["artifactType"] = json!(artifact_type);
        }
        if let Some(annotations) = &parsed.annotations {
            descriptor["annotations"] = Value::Object(annotations.clone());
        }
        entries.push(descriptor);
        let content = Bytes::from(serde_json::to_vec(&index).unwrap_or_default());
        let updated = ManifestBytes {
            digest: Digest::of(berth_core::Algorithm::Sha256, &content),
            media_type: media_type::OCI_INDEX.to_owned(),
            content,
        };
        self.dst.put_manifest(&plan.dst, &tag, &updated).await?;
        Ok(())
    }

    async fn delete(&self, plan: &TaskPlan, report: &mut TaskReport) -> StepResult<()> {
        for reference in &plan.references {
            let reference = parse_reference(reference)?;
            // A tag deleted at the source deletes what it pointed to at the destination
            // (registry:2 cannot delete a tag alone).
            let digest = match &reference {
                Reference::Digest(digest) => digest.clone(),
                Reference::Tag(_) => match self.dst.manifest(&plan.dst, &reference).await? {
                    Some(there) => there.digest,
                    None => {
                        report.line(format!(
                            "{}:{reference} is not at the destination",
                            plan.dst
                        ));
                        continue;
                    }
                },
            };
            self.dst.delete_manifest(&plan.dst, &digest).await?;
            report.line(format!("{}@{digest} deleted", plan.dst));
        }
        Ok(())
    }
}

fn empty_index() -> Value {
    json!({"schemaVersion": 2, "mediaType": media_type::OCI_INDEX, "manifests": []})
}

/// `body` at no more than `rate` bytes a second on average.
pub fn throttle(body: ByteStream, rate: u64) -> ByteStream {
    let state = (body, Instant::now(), 0u64);
    Box::pin(futures_util::stream::unfold(
        state,
        move |(mut body, began, mut sent)| async move {
            let chunk = body.next().await?;
            if let Ok(bytes) = &chunk {
                sent += bytes.len() as u64;
                let due = Duration::from_secs_f64(sent as f64 / rate as f64);
                let elapsed = began.elapsed();
                if due > elapsed {
                    tokio::time::sleep(due - elapsed).await;
                }
            }
            Some((chunk, (body, began, sent)))
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_throttled_stream_keeps_to_its_rate() {
        let chunks: Vec<std::io::Result<Bytes>> = (0..10)
            .map(|_| Ok(Bytes::from(vec![0u8; 10_240])))
            .collect();
        let body: ByteStream = Box::pin(futures_util::stream::iter(chunks));
        let began = Instant::now();
        let total: usize = throttle(body, 512 * 1024)
            .map(|c| c.map(|b| b.len()).unwrap_or(0))
            .fold(0, |a, b| async move { a + b })
            .await;
        assert_eq!(total, 102_400);
        // 100 KiB at 512 KiB/s: about 0.2 s.
        assert!(
            began.elapsed() >= Duration::from_millis(180),
            "{:?}",
            began.elapsed()
        );
    }
}
