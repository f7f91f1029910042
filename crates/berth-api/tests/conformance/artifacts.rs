//! Harbor's `/api/v2.0` for repositories, artifacts and tags: JSON shapes, pages and their
//! headers, names encoded twice, `q` filters, an index's references, referrers as
//! accessories, deletes and tags seen through `/v2/`, and bad input answered with Harbor's
//! 4xx and error body. The authorization matrix is in `mgmt.rs`.

use axum::http::StatusCode;
use berth_auth::{AuthMode, Htpasswd};
use serde_json::{Value, json};

use crate::common::{OCI_CONFIG, OCI_INDEX, OCI_MANIFEST, TestApp, descriptor, sha256, to_bytes};
use crate::manifests::artifact;
use crate::mgmt::{app, as_user, assert_harbor_error, create_project, send_json};

const NEVER: &str = "0001-01-01T00:00:00.000Z";

/// The size Harbor reports for `push_image(_, _, seed)`: manifest, config and layer bytes.
fn image_size(manifest: &[u8], seed: &str) -> usize {
    let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":"{seed}"}}"#);
    manifest.len() + config.len() + format!("layer bytes for {seed}").len()
}

/// An index of `children`, each with its architecture.
fn platform_index(children: &[(&[u8], &str)]) -> Vec<u8> {
    let manifests: Vec<Value> = children
        .iter()
        .map(|(manifest, arch)| {
            let mut d = descriptor(OCI_MANIFEST, manifest);
            d["platform"] = json!({"architecture": arch, "os": "linux"});
            d
        })
        .collect();
    to_bytes(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}))
}

fn names<'a>(list: &'a Value, field: &str) -> Vec<&'a str> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|x| x[field].as_str().expect("string"))
        .collect()
}

#[tokio::test]
async fn repositories_are_listed_with_counts_descriptions_and_pages() {
    let app = app().await;
    let root = as_user(&app, "root");
    let team = create_project(&app, "root", "team", false).await;
    create_project(&app, "root", "shared", true).await;
    root.push_image("team/app", "v1", "a1").await;
    root.push_image("team/app", "v2", "a2").await;
    root.push_image("team/db", "v1", "d1").await;
    root.push_image("team/web/api", "v1", "w1").await;
    root.push_image("shared/tool", "v1", "t1").await;

    let listed = root
        .get("/api/v2.0/projects/team/repositories?page_size=2")
        .send()
        .await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.header("x-total-count"), "3");
    assert_eq!(
        listed.header("link"),
        "</api/v2.0/projects/team/repositories?page=2&page_size=2>; rel=\"next\""
    );
    // Newest first, as Harbor.
    let body = listed.json();
    assert_eq!(names(&body, "name"), ["team/web/api", "team/db"]);
    let repository = &body[1];
    for field in [
        "id",
        "project_id",
        "name",
        "description",
        "artifact_count",
        "pull_count",
        "creation_time",
        "update_time",
    ] {
        assert!(!repository[field].is_null(), "{field} in {repository}");
    }
    assert_eq!(
        (
            repository["project_id"].as_i64(),
            repository["artifact_count"].as_u64(),
            repository["pull_count"].as_u64()
        ),
        (Some(team), Some(1), Some(0))
    );
    let app_repo = root
        .get("/api/v2.0/projects/team/repositories/app")
        .send()
        .await
        .json();
    assert_eq!(
        (
            app_repo["name"].as_str(),
            app_repo["artifact_count"].as_u64()
        ),
        (Some("team/app"), Some(2))
    );
    let by_name = root
        .get("/api/v2.0/projects/team/repositories?q=name%3D~db&sort=name")
        .send()
        .await;
    assert_eq!(
        (
            by_name.header("x-total-count"),
            names(&by_name.json(), "name")
        ),
        ("1", vec!["team/db"])
    );
    let sorted = root
        .get("/api/v2.0/projects/team/repositories?sort=name")
        .send()
        .await
        .json();
    assert_eq!(
        names(&sorted, "name"),
        ["team/app", "team/db", "team/web/api"]
    );

    // All repositories the caller may see: an anonymous caller sees public projects only.
    let everything = root.get("/api/v2.0/repositories").send().await;
    assert_eq!(everything.header("x-total-count"), "4");
    let anonymous = app.get("/api/v2.0/repositories").send().await;
    assert_eq!(names(&anonymous.json(), "name"), ["shared/tool"]);
    let outsider = as_user(&app, "other")
        .get("/api/v2.0/repositories?q=name%3D~team")
        .send()
        .await;
    assert_eq!(outsider.header("x-total-count"), "0");

    // Only the description changes; the next read shows it.
    let described = send_json(
        &root,
        "PUT",
        "/api/v2.0/projects/team/repositories/app",
        json!({"description": "the app", "name": "ignored"}),
    )
    .await;
    assert_eq!(described.status, StatusCode::OK);
    let read = root
        .get("/api/v2.0/projects/team/repositories/app")
        .send()
        .await
        .json();
    assert_eq!(
        (read["description"].as_str(), read["name"].as_str()),
        (Some("the app"), Some("team/app"))
    );

    // A delete takes every manifest and tag; /v2/ no longer knows the repository.
    let deleted = root
        .delete("/api/v2.0/projects/team/repositories/db")
        .send()
        .await;
    assert_eq!(deleted.status, StatusCode::OK);
    root.get("/v2/team/db/tags/list")
        .send()
        .await
        .assert_error(404, "NAME_UNKNOWN");
    assert_harbor_error(
        &root
            .get("/api/v2.0/projects/team/repositories/db")
            .send()
            .await,
        404,
        "NOT_FOUND",
    );
    let catalog = root.get("/v2/_catalog").send().await.json();
    assert!(!names_in(&catalog["repositories"]).contains(&"team/db".to_string()));
}

fn names_in(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("list")
        .iter()
        .map(|v| v.as_str().expect("name").to_owned())
        .collect()
}

#[tokio::test]
async fn a_repository_name_arrives_encoded_twice_or_once() {
    let app = app().await;
    let root = as_user(&app, "root");
    create_project(&app, "root", "team", false).await;
    root.push_image("team/web/api", "v1", "w1").await;
    for path in [
        "/api/v2.0/projects/team/repositories/web%252Fapi",
        "/api/v2.0/projects/team/repositories/web%2Fapi",
    ] {
        let found = root.get(path).send().await;
        assert_eq!(found.json()["name"], "team/web/api", "{path}");
    }
    let artifacts = root
        .get("/api/v2.0/projects/team/repositories/web%252Fapi/artifacts?page_size=1")
        .send()
        .await;
    assert_eq!(artifacts.header("x-total-count"), "1");
    for bad in [
        "/api/v2.0/projects/team/repositories/web%25zz",
        "/api/v2.0/projects/team/repositories/web%zz",
        "/api/v2.0/projects/team/repositories/Web",
        "/api/v2.0/projects/team/repositories/web%252F%252Fapi",
        "/api/v2.0/projects/team/repositories/web%252Fapi/artifacts/sha256:nothex",
    ] {
        assert_harbor_error(&root.get(bad).send().await, 400, "BAD_REQUEST");
    }
}

#[tokio::test]
async fn artifacts_are_listed_as_harbor_shows_them() {
    let app = app().await;
    let root = as_user(&app, "root");
    let team = create_project(&app, "root", "team", false).await;
    let (first, first_bytes) = root.push_image("team/app", "v1", "one").await;
    root.push_manifest("team/app", "latest", OCI_MANIFEST, first_bytes.clone())
        .await;
    let (second, _) = root.push_image("team/app", "v2", "two").await;
    let untagged_bytes = root.image_manifest("team/app", "three").await;
    let untagged = root
        .push_manifest(
            "team/app",
            &sha256(&untagged_bytes),
            OCI_MANIFEST,
            untagged_bytes,
        )
        .await;

    let listed = root
        .get("/api/v2.0/projects/team/repositories/app/artifacts")
        .send()
        .await;
    assert_eq!(listed.header("x-total-count"), "3");
    let body = listed.json();
    assert_eq!(names(&body, "digest"), [&untagged, &second, &first]);
    let artifact = &body[2];
    assert_eq!(
        (
            artifact["type"].as_str(),
            artifact["media_type"].as_str(),
            artifact["manifest_media_type"].as_str(),
            artifact["project_id"].as_i64(),
            artifact["size"].as_u64(),
            artifact["pull_time"].as_str(),
        ),
        (
            Some("IMAGE"),
            Some(OCI_CONFIG),
            Some(OCI_MANIFEST),
            Some(team),
            Some(image_size(&first_bytes, "one") as u64),
            Some(NEVER)
        )
    );
    assert_eq!(
        artifact["extra_attrs"],
        json!({"architecture": "amd64", "os": "linux"})
    );
    for field in ["id", "repository_id", "push_time"] {
        assert!(!artifact[field].is_null(), "{field} in {artifact}");
    }
    let tags = &artifact["tags"];
    assert_eq!(
        {
            let mut n = names(tags, "name");
            n.sort();
            n
        },
        ["latest", "v1"]
    );
    assert_eq!(tags[0]["artifact_id"], artifact["id"]);
    assert_eq!(tags[0]["repository_id"], artifact["repository_id"]);
    assert_eq!(
        (
            tags[0]["immutable"].as_bool(),
            tags[0]["signed"].as_bool(),
            tags[0]["pull_time"].as_str()
        ),
        (Some(false), Some(false), Some(NEVER))
    );
    assert!(
        body[0]["tags"].is_null(),
        "an untagged artifact: {}",
        body[0]
    );

    // Pages, with_tag=false.
    let paged = root
        .get("/api/v2.0/projects/team/repositories/app/artifacts?page=2&page_size=1&with_tag=false")
        .send()
        .await;
    assert_eq!(
        paged.header("link"),
        "</api/v2.0/projects/team/repositories/app/artifacts?page=1&page_size=1&with_tag=false>; rel=\"prev\" , </api/v2.0/projects/team/repositories/app/artifacts?page=3&page_size=1&with_tag=false>; rel=\"next\""
    );
    let page = paged.json();
    assert_eq!(names(&page, "digest"), [&second]);
    assert!(page[0]["tags"].is_null());

    // q: tags=*, tags=nil, tags=~, digest=, media_type=.
    let q = |q: &str| {
        let root = root.clone();
        let q = q.to_owned();
        async move {
            let body = root
                .get(format!(
                    "/api/v2.0/projects/team/repositories/app/artifacts?q={q}"
                ))
                .send()
                .await
                .json();
            names(&body, "digest")
                .into_iter()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(q("tags%3D*").await, [second.as_str(), &first]);
    assert_eq!(q("tags%3Dnil").await, [untagged.as_str()]);
    assert_eq!(q("tags%3D~ates").await, [first.as_str()]);
    assert_eq!(q(&format!("digest%3D{second}")).await, [second.as_str()]);
    assert_eq!(
        q("media_type%3Dapplication%2Fvnd.oci.image.config.v1%2Bjson")
            .await
            .len(),
        3
    );
    assert!(q("media_type%3Dapplication%2Fx.none").await.is_empty());

    // One artifact, by tag or by digest.
    let by_tag = root
        .get("/api/v2.0/projects/team/repositories/app/artifacts/latest")
        .send()
        .await
        .json();
    let by_digest = root
        .get(format!(
            "/api/v2.0/projects/team/repositories/app/artifacts/{first}"
        ))
        .send()
        .await
        .json();
    assert_eq!(by_tag, by_digest);
    assert_eq!(by_tag["id"], artifact["id"]);
}

#[tokio::test]
async fn an_index_lists_its_platforms_as_references() {
    let app = app().await;
    let root = as_user(&app, "root");
    create_project(&app, "root", "team", false).await;
    let amd = root.image_manifest("team/multi", "amd").await;
    let arm = root.image_manifest("team/multi", "arm").await;
    let amd_digest = root
        .push_manifest("team/multi", &sha256(&amd), OCI_MANIFEST, amd.clone())
        .await;
    let arm_digest = root
        .push_manifest("team/multi", &sha256(&arm), OCI_MANIFEST, arm.clone())
        .await;
    let index = platform_index(&[(&amd, "amd64"), (&arm, "arm64")]);
    let index_digest = root
        .push_manifest("team/multi", "v1", OCI_INDEX, index.clone())
        .await;

    let base = "/api/v2.0/projects/team/repositories/multi/artifacts";
    let listed = root.get(base).send().await;
    // The untagged platforms are shown under their index, not beside it.
    assert_eq!(listed.header("x-total-count"), "1");
    let body = listed.json();
    let shown = &body[0];
    assert_eq!(
        (
            shown["digest"].as_str(),
            shown["type"].as_str(),
            shown["media_type"].as_str(),
            shown["size"].as_u64()
        ),
        (
            Some(index_digest.as_str()),
            Some("IMAGE"),
            Some(OCI_INDEX),
            Some((index.len() + image_size(&amd, "amd") + image_size(&arm, "arm")) as u64)
        )
    );
    let references = &shown["references"];
    assert_eq!(
        names(references, "child_digest"),
        [&amd_digest, &arm_digest]
    );
    assert_eq!(references[1]["platform"]["architecture"], "arm64");
    assert_eq!(references[1]["platform"]["os"], "linux");
    assert_eq!(references[0]["parent_id"], shown["id"]);
    let child = root.get(format!("{base}/{amd_digest}")).send().await.json();
    assert_eq!(references[0]["child_id"], child["id"]);
    assert!(child["references"].is_null());
    let everything = root.get(format!("{base}?q=base%3D*")).send().await;
    assert_eq!(everything.header("x-total-count"), "3");

    // A platform cannot go alone; the index takes its untagged platforms.
    assert_harbor_error(
        &root.delete(format!("{base}/{amd_digest}")).send().await,
        412,
        "VIOLATE_FOREIGN_KEY_CONSTRAINT",
    );
    let deleted = root.delete(format!("{base}/v1")).send().await;
    assert_eq!(deleted.status, StatusCode::OK);
    for digest in [&index_digest, &amd_digest, &arm_digest] {
        root.get(format!("/v2/team/multi/manifests/{digest}"))
            .send()
            .await
            .assert_error(404, "MANIFEST_UNKNOWN");
    }
}

#[tokio::test]
async fn referrers_are_accessories_of_their_subject() {
    let app = app().await;
    let root = as_user(&app, "root");
    create_project(&app, "root", "team", false).await;
    let (subject, subject_bytes) = root.push_image("team/signed", "v1", "s").await;
    root.push_blob("team/signed", b"{}").await;
    root.push_blob("team/signed", b"signature").await;
    let signature = artifact(
        &subject,
        subject_bytes.len(),
        "application/vnd.cncf.notary.signature",
        b"signature",
    );
    let signature_size = signature.len() + 2 + b"signature".len();
    let signature_digest = root
        .push_manifest("team/signed", &sha256(&signature), OCI_MANIFEST, signature)
        .await;
    let base = "/api/v2.0/projects/team/repositories/signed/artifacts";
    let plain = root.get(base).send().await;
    assert_eq!(plain.header("x-total-count"), "1", "not listed beside it");
    assert!(plain.json()[0]["accessories"].is_null());
    let with = root
        .get(format!("{base}?with_accessory=true"))
        .send()
        .await
        .json();
    let accessories = &with[0]["accessories"];
    assert_eq!(
        (
            accessories[0]["digest"].as_str(),
            accessories[0]["type"].as_str(),
            accessories[0]["size"].as_u64(),
            accessories[0]["subject_artifact_digest"].as_str(),
            accessories[0]["subject_artifact_repo"].as_str(),
        ),
        (
            Some(signature_digest.as_str()),
            Some("signature.notation"),
            Some(signature_size as u64),
            Some(subject.as_str()),
            Some("team/signed"),
        )
    );
    assert_eq!(accessories[0]["subject_artifact_id"], with[0]["id"]);
    let one = root
        .get(format!("{base}/v1?with_accessory=true"))
        .send()
        .await
        .json();
    assert_eq!(one["accessories"], *accessories);
    let signature_itself = root
        .get(format!("{base}/{signature_digest}"))
        .send()
        .await
        .json();
    assert_eq!(
        (
            signature_itself["type"].as_str(),
            signature_itself["id"].clone()
        ),
        (Some("UNKNOWN"), accessories[0]["artifact_id"].clone())
    );
    // The subject takes its accessories with it.
    assert_eq!(
        root.delete(format!("{base}/{subject}")).send().await.status,
        StatusCode::OK
    );
    root.get(format!("/v2/team/signed/manifests/{signature_digest}"))
        .send()
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn tags_are_added_listed_and_removed_per_artifact() {
    let app = app().await;
    let root = as_user(&app, "root");
    create_project(&app, "root", "team", false).await;
    let (first, _) = root.push_image("team/app", "v1", "one").await;
    root.push_image("team/app", "other", "two").await;
    let base = "/api/v2.0/projects/team/repositories/app/artifacts";

    let created = send_json(
        &root,
        "POST",
        &format!("{base}/v1/tags"),
        json!({"name": "v2"}),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert!(created.maybe_header("location").is_none());
    let tags = root.get("/v2/team/app/tags/list").send().await.json();
    assert_eq!(names_in(&tags["tags"]), ["other", "v1", "v2"]);
    let moved = root.get("/v2/team/app/manifests/v2").send().await;
    assert_eq!(moved.header("docker-content-digest"), first);

    // A repository has a tag once, on whichever artifact.
    for (on, name) in [("v1", "v2"), ("v1", "other")] {
        let again = send_json(
            &root,
            "POST",
            &format!("{base}/{on}/tags"),
            json!({"name": name}),
        )
        .await;
        assert_harbor_error(&again, 409, "CONFLICT");
    }
    for bad in [
        json!({"name": "bad tag"}),
        json!({"name": ""}),
        json!({}),
        json!({"name": "ok", "surprise": true}),
        json!({"name": 7}),
    ] {
        let refused = send_json(&root, "POST", &format!("{base}/v1/tags"), bad.clone()).await;
        assert_harbor_error(&refused, 400, "BAD_REQUEST");
    }
    let missing = send_json(
        &root,
        "POST",
        &format!("{base}/nope/tags"),
        json!({"name": "x"}),
    )
    .await;
    assert_harbor_error(&missing, 404, "NOT_FOUND");

    let listed = root
        .get(format!("{base}/v1/tags?page_size=1&sort=name"))
        .send()
        .await;
    assert_eq!(listed.header("x-total-count"), "2");
    let first_page = listed.json();
    assert_eq!(names(&first_page, "name"), ["v1"]);
    assert_eq!(first_page[0]["pull_time"], NEVER);
    let filtered = root
        .get(format!("{base}/v1/tags?q=name%3D~2"))
        .send()
        .await
        .json();
    assert_eq!(names(&filtered, "name"), ["v2"]);

    // Removed only from the artifact it is on.
    assert_harbor_error(
        &root.delete(format!("{base}/v1/tags/other")).send().await,
        404,
        "NOT_FOUND",
    );
    assert_eq!(
        root.delete(format!("{base}/v1/tags/v2"))
            .send()
            .await
            .status,
        StatusCode::OK
    );
    let tags = root.get("/v2/team/app/tags/list").send().await.json();
    assert_eq!(names_in(&tags["tags"]), ["other", "v1"]);

    // Deleting by tag deletes the artifact and every tag on it.
    root.push_manifest("team/app", "alias", OCI_MANIFEST, {
        let m = root
            .get("/v2/team/app/manifests/v1")
            .header("accept", OCI_MANIFEST)
            .send()
            .await;
        m.body.to_vec()
    })
    .await;
    assert_eq!(
        root.delete(format!("{base}/v1")).send().await.status,
        StatusCode::OK
    );
    let tags = root.get("/v2/team/app/tags/list").send().await.json();
    assert_eq!(names_in(&tags["tags"]), ["other"]);
    root.get(format!("/v2/team/app/manifests/{first}"))
        .send()
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn bad_input_gets_harbors_4xx_never_a_500() {
    let app = app().await;
    let root = as_user(&app, "root");
    create_project(&app, "root", "team", false).await;
    root.push_image("team/app", "v1", "one").await;
    let base = "/api/v2.0/projects/team/repositories";
    for (path, status, code) in [
        (format!("{base}?page_size=101"), 422, "UNPROCESSABLE_ENTITY"),
        (
            format!("{base}/app/artifacts?page=0"),
            422,
            "UNPROCESSABLE_ENTITY",
        ),
        (
            format!("{base}/app/artifacts?with_tag=maybe"),
            422,
            "UNPROCESSABLE_ENTITY",
        ),
        (
            format!("{base}/app/artifacts?with_scan_overview=2"),
            422,
            "UNPROCESSABLE_ENTITY",
        ),
        (
            format!("{base}/app/artifacts?q=tags%3Dv1"),
            400,
            "BAD_REQUEST",
        ),
        (
            format!("{base}/app/artifacts?q=base%3Dall"),
            400,
            "BAD_REQUEST",
        ),
        (format!("{base}/app/artifacts?q=digest"), 400, "BAD_REQUEST"),
        (
            format!("{base}/app/artifacts/bad%20tag"),
            400,
            "BAD_REQUEST",
        ),
        (
            format!("{base}/app/artifacts/bad%20tag/accessories"),
            400,
            "BAD_REQUEST",
        ),
        (
            format!("{base}/app/artifacts/nope/accessories"),
            404,
            "NOT_FOUND",
        ),
        (
            format!("{base}/app/artifacts/v1/accessories?page_size=101"),
            422,
            "UNPROCESSABLE_ENTITY",
        ),
        (
            format!("{base}/app/artifacts/v1/tags?q=name%3D%5B1~2%5D"),
            400,
            "BAD_REQUEST",
        ),
        (format!("{base}/app/artifacts/nope"), 404, "NOT_FOUND"),
        (format!("{base}/app/artifacts/nope/tags"), 404, "NOT_FOUND"),
        (format!("{base}/none"), 404, "NOT_FOUND"),
        (format!("{base}/none/artifacts"), 404, "NOT_FOUND"),
        (
            "/api/v2.0/projects/nosuch/repositories".into(),
            404,
            "NOT_FOUND",
        ),
    ] {
        assert_harbor_error(&root.get(&path).send().await, status, code);
    }
    // Ignored flags Harbor defines are accepted.
    let flags = root
        .get(format!(
            "{base}/app/artifacts?with_label=true&with_scan_overview=true&with_signature=true&with_immutable_status=true&with_sbom_overview=false"
        ))
        .send()
        .await;
    assert_eq!(flags.status, StatusCode::OK);
    let broken = root
        .put(format!("{base}/app"))
        .header("content-type", "application/json")
        .body(b"{not json".to_vec())
        .send()
        .await;
    assert_harbor_error(&broken, 400, "BAD_REQUEST");
    let unknown_field =
        send_json(&root, "PUT", &format!("{base}/app"), json!({"descr": "x"})).await;
    assert_harbor_error(&unknown_field, 400, "BAD_REQUEST");
    assert_harbor_error(
        &send_json(
            &root,
            "PUT",
            &format!("{base}/none"),
            json!({"description": "x"}),
        )
        .await,
        404,
        "NOT_FOUND",
    );
    for (method, path) in [
        ("PATCH", format!("{base}/app")),
        ("POST", format!("{base}/app/artifacts/v1")),
        ("PUT", format!("{base}/app/artifacts/v1/tags")),
        ("POST", "/api/v2.0/repositories".to_string()),
    ] {
        let response = root
            .request(method.parse().expect("method"), path)
            .send()
            .await;
        assert_harbor_error(&response, 405, "METHOD_NOT_ALLOWED");
    }
    for path in [
        format!("{base}/none"),
        format!("{base}/app/artifacts/nope"),
        format!("{base}/app/artifacts/v1/tags/nope"),
    ] {
        assert_harbor_error(&root.delete(&path).send().await, 404, "NOT_FOUND");
    }
}

#[tokio::test]
async fn with_deletes_disabled_nothing_is_deleted() {
    let app = TestApp::builder()
        .token_mode()
        .delete_enabled(false)
        .build()
        .await;
    app.identity()
        .add_user(berth_auth::identity::NewAccount {
            name: "root".into(),
            password: crate::mgmt::PASSWORD.into(),
            email: "root@example.com".into(),
            sysadmin: true,
            ..Default::default()
        })
        .await
        .expect("user");
    let root = as_user(&app, "root");
    create_project(&app, "root", "team", false).await;
    root.push_image("team/app", "v1", "one").await;
    let base = "/api/v2.0/projects/team/repositories/app";
    for path in [
        base.to_string(),
        format!("{base}/artifacts/v1"),
        format!("{base}/artifacts/v1/tags/v1"),
    ] {
        assert_harbor_error(&root.delete(&path).send().await, 405, "METHOD_NOT_ALLOWED");
    }
    assert_eq!(
        root.get("/v2/team/app/manifests/v1").send().await.status,
        StatusCode::OK
    );
}

/// Without token mode there are no projects or roles: reads answer as `/v2/` would, and
/// an htpasswd user may change what it may push and delete.
#[tokio::test]
async fn htpasswd_users_read_and_change_anonymous_callers_see_nothing() {
    let hash = bcrypt::hash("s3cret", 4).expect("hash");
    let passwords = Htpasswd::parse(&format!("alice:{hash}\n")).expect("htpasswd");
    let app = TestApp::builder()
        .auth(AuthMode::Htpasswd {
            realm: "berth".into(),
            passwords,
        })
        .build()
        .await;
    let alice = app.with_basic("alice", "s3cret");
    alice.push_image("library/app", "v1", "one").await;
    let listed = app.get("/api/v2.0/repositories").send().await;
    assert_eq!(
        (listed.status, listed.header("x-total-count")),
        (StatusCode::OK, "0")
    );
    assert_harbor_error(
        &app.get("/api/v2.0/projects/library/repositories")
            .send()
            .await,
        401,
        "UNAUTHORIZED",
    );
    let mine = alice.get("/api/v2.0/repositories").send().await.json();
    assert_eq!(names(&mine, "name"), ["library/app"]);
    // The library project exists from the start: its id is shown.
    assert_ne!(mine[0]["project_id"], 0);
    let artifact = alice
        .get("/api/v2.0/projects/library/repositories/app/artifacts/v1")
        .send()
        .await
        .json();
    assert_eq!(artifact["project_id"], mine[0]["project_id"]);
    let tagged = send_json(
        &alice,
        "POST",
        "/api/v2.0/projects/library/repositories/app/artifacts/v1/tags",
        json!({"name": "v2"}),
    )
    .await;
    assert_eq!(tagged.status, StatusCode::CREATED);
    assert_eq!(
        alice
            .delete("/api/v2.0/projects/library/repositories/app")
            .send()
            .await
            .status,
        StatusCode::OK
    );
}

/// Open mode: anyone reads; changes need accounts.
#[tokio::test]
async fn open_mode_reads_and_refuses_changes() {
    let app = TestApp::new().await;
    app.push_image("library/app", "v1", "one").await;
    let listed = app
        .get("/api/v2.0/projects/library/repositories/app/artifacts")
        .send()
        .await;
    assert_eq!(listed.header("x-total-count"), "1");
    assert_harbor_error(
        &app.delete("/api/v2.0/projects/library/repositories/app")
            .send()
            .await,
        403,
        "FORBIDDEN",
    );
}

#[tokio::test]
async fn artifacts_are_copied_with_platforms_accessories_and_tags() {
    let app = app().await;
    let root = as_user(&app, "root");
    create_project(&app, "root", "src", false).await;
    let dst = create_project(&app, "root", "dst", false).await;
    // An index of two platforms, tagged twice, with a signature on the index.
    let amd = root.image_manifest("src/app", "amd").await;
    let arm = root.image_manifest("src/app", "arm").await;
    for m in [&amd, &arm] {
        root.push_manifest("src/app", &sha256(m), OCI_MANIFEST, m.clone())
            .await;
    }
    let index = platform_index(&[(&amd, "amd64"), (&arm, "arm64")]);
    let index_digest = root
        .push_manifest("src/app", "v1", OCI_INDEX, index.clone())
        .await;
    root.push_manifest("src/app", "stable", OCI_INDEX, index.clone())
        .await;
    root.push_blob("src/app", b"{}").await;
    root.push_blob("src/app", b"signature").await;
    let signature = artifact(
        &index_digest,
        index.len(),
        "application/vnd.cncf.notary.signature",
        b"signature",
    );
    let signature_digest = root
        .push_manifest("src/app", &sha256(&signature), OCI_MANIFEST, signature)
        .await;

    let copied = root
        .post("/api/v2.0/projects/dst/repositories/team%252Fapp/artifacts?from=src/app:v1")
        .send()
        .await;
    assert_eq!(copied.status, StatusCode::CREATED, "{:?}", copied.body);
    assert_eq!(
        copied.location(),
        format!("/api/v2.0/projects/dst/repositories/team%252Fapp/artifacts/{index_digest}")
    );
    // Everything pulls through /v2/ with the same bytes; the tags of the artifact came along.
    for reference in ["v1", "stable", index_digest.as_str()] {
        let pulled = root
            .get(format!("/v2/dst/team/app/manifests/{reference}"))
            .header("accept", OCI_INDEX)
            .send()
            .await;
        assert_eq!(pulled.status, StatusCode::OK, "{reference}");
        assert_eq!(pulled.body, index, "{reference}");
    }
    for child in [&amd, &arm] {
        let pulled = root
            .get(format!("/v2/dst/team/app/manifests/{}", sha256(child)))
            .header("accept", OCI_MANIFEST)
            .send()
            .await;
        assert_eq!(pulled.body, *child);
    }
    let referrers = root
        .get(format!("/v2/dst/team/app/referrers/{index_digest}"))
        .send()
        .await
        .json();
    assert_eq!(referrers["manifests"][0]["digest"], signature_digest);
    let accessories = root
        .get(format!(
            "/api/v2.0/projects/dst/repositories/team%252Fapp/artifacts/{index_digest}/accessories"
        ))
        .send()
        .await;
    assert_eq!(accessories.header("x-total-count"), "1");
    assert_eq!(accessories.json()[0]["digest"], signature_digest);
    let shown = root
        .get("/api/v2.0/projects/dst/repositories/team%252Fapp/artifacts/v1")
        .send()
        .await
        .json();
    assert_eq!(shown["project_id"], dst);
    // An untagged platform by digest, into another repository: copied without tags.
    let by_digest = root
        .post(format!(
            "/api/v2.0/projects/dst/repositories/again/artifacts?from=src/app@{}",
            sha256(&amd)
        ))
        .send()
        .await;
    assert_eq!(by_digest.status, StatusCode::CREATED);
    assert_eq!(
        root.get("/v2/dst/again/tags/list").send().await.json()["tags"],
        json!([])
    );

    // A missing source is 404; a malformed one 400; and nothing is created.
    assert_harbor_error(
        &root
            .post("/api/v2.0/projects/dst/repositories/none/artifacts?from=src/app:nope")
            .send()
            .await,
        404,
        "NOT_FOUND",
    );
    assert_harbor_error(
        &root
            .post("/api/v2.0/projects/dst/repositories/none/artifacts?from=app")
            .send()
            .await,
        400,
        "BAD_REQUEST",
    );
    root.get("/v2/dst/none/tags/list")
        .send()
        .await
        .assert_error(404, "NAME_UNKNOWN");
}

#[tokio::test]
async fn a_copy_needs_push_in_the_destination_and_pull_in_the_source() {
    let app = app().await;
    let root = as_user(&app, "root");
    let src = create_project(&app, "root", "src", false).await;
    let dst = create_project(&app, "root", "dst", false).await;
    root.push_image("src/app", "v1", "s").await;
    let member = |project: i64, user: &'static str, role: u8| {
        let root = root.clone();
        async move {
            let added = send_json(
                &root,
                "POST",
                &format!("/api/v2.0/projects/{project}/members"),
                json!({"role_id": role, "member_user": {"username": user}}),
            )
            .await;
            assert_eq!(added.status, StatusCode::CREATED);
        }
    };
    // dev: developer in dst only; guest: guest in both.
    member(dst, "dev", 2).await;
    member(dst, "guest", 3).await;
    member(src, "guest", 3).await;
    let copy = "/api/v2.0/projects/dst/repositories/app/artifacts?from=src/app:v1";
    // Cannot read the source: refused before anything is looked up.
    assert_harbor_error(
        &as_user(&app, "dev").post(copy).send().await,
        403,
        "FORBIDDEN",
    );
    // Can read the source but not push into the destination.
    assert_harbor_error(
        &as_user(&app, "guest").post(copy).send().await,
        403,
        "FORBIDDEN",
    );
    assert_harbor_error(&app.post(copy).send().await, 401, "UNAUTHORIZED");
    root.get("/v2/dst/app/tags/list")
        .send()
        .await
        .assert_error(404, "NAME_UNKNOWN");
    // With both, it is copied.
    member(src, "dev", 3).await;
    assert_eq!(
        as_user(&app, "dev").post(copy).send().await.status,
        StatusCode::CREATED
    );
}
