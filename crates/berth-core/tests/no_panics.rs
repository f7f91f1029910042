//! The parsers that see raw request input never panic, whatever the input: a deterministic
//! sweep of random inputs assembled from the tokens that matter to each grammar.

use berth_core::mgmt::{MgmtEndpoint, MgmtHeaders};
use berth_core::{Digest, Endpoint, RepositoryName, Tag, artifact, manifest};

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

const D: &str = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

#[test]
fn endpoint_parse_never_panics() {
    let tokens = [
        "",
        "/",
        "v2",
        "a",
        "A",
        "..",
        ".",
        "-",
        "_",
        "__",
        "blobs",
        "uploads",
        "manifests",
        "tags",
        "list",
        "referrers",
        "_catalog",
        D,
        "sha256:",
        "sha512:ab",
        ":",
        "%2F",
        "?",
        "&",
        "=",
        "digest=",
        "mount=",
        "from=",
        "n=",
        "last=",
        "n=-1",
        "n=99999999999999999999",
        "artifactType=",
        "\u{1F600}",
        "\0",
    ];
    let methods = [
        "GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS", "",
    ];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..200_000 {
        let parts = 1 + rng.next() % 8;
        let mut path = String::from("/v2/");
        for _ in 0..parts {
            path.push_str(rng.pick(&tokens));
            if !rng.next().is_multiple_of(3) {
                path.push('/');
            }
        }
        let query = rng.next().is_multiple_of(2).then(|| {
            format!(
                "{}{}&{}{}",
                rng.pick(&tokens),
                rng.pick(&tokens),
                rng.pick(&tokens),
                rng.pick(&tokens)
            )
        });
        let _ = Endpoint::parse(rng.pick(&methods), &path, query.as_deref());
        let _ = path.parse::<RepositoryName>();
        let _ = path.parse::<Tag>();
        let _ = path.parse::<Digest>();
    }
}

#[test]
fn management_parse_never_panics() {
    let tokens = [
        "",
        "/",
        "projects",
        "repositories",
        "artifacts",
        "tags",
        "members",
        "users",
        "p",
        "42",
        "a",
        "A",
        "%",
        "%2",
        "%2F",
        "%252F",
        "%25",
        "%zz",
        "%C3",
        "%C3%A9",
        D,
        "sha256:",
        ":",
        "?",
        "&",
        "=",
        "q=",
        "tags%3D*",
        "tags=~",
        "base=*",
        "name=[1~",
        "digest={a b}",
        "page=",
        "page_size=100",
        "page=0",
        "sort=-",
        "sort=push_time,-name",
        "with_tag=",
        "with_accessory=true",
        ",",
        "\u{1F600}",
        "\0",
    ];
    let methods = ["GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", ""];
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    for _ in 0..100_000 {
        let parts = 1 + rng.next() % 9;
        let mut path = String::from("/api/v2.0/");
        for _ in 0..parts {
            path.push_str(rng.pick(&tokens));
            if !rng.next().is_multiple_of(3) {
                path.push('/');
            }
        }
        let query = rng.next().is_multiple_of(2).then(|| {
            format!(
                "{}{}&{}{}",
                rng.pick(&tokens),
                rng.pick(&tokens),
                rng.pick(&tokens),
                rng.pick(&tokens)
            )
        });
        if let Ok(endpoint) = MgmtEndpoint::parse(
            rng.pick(&methods),
            &path,
            query.as_deref(),
            MgmtHeaders::default(),
            b"",
        ) {
            let _ = endpoint.required();
        }
        let _ = artifact::facts(rng.pick(&tokens), path.as_bytes());
        let _ = artifact::image_attributes(path.as_bytes());
    }
}

#[test]
fn manifest_parse_never_panics() {
    let tokens = [
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        "\"schemaVersion\"",
        "2",
        "1",
        "-1",
        "1e400",
        "null",
        "true",
        "\"mediaType\"",
        "\"config\"",
        "\"layers\"",
        "\"manifests\"",
        "\"subject\"",
        "\"digest\"",
        "\"size\"",
        "\"urls\"",
        "\"artifactType\"",
        "\"annotations\"",
        "\"application/vnd.oci.image.manifest.v1+json\"",
        "\"x\"",
    ];
    let types = [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/json",
        "",
    ];
    let mut rng = Rng(42);
    for _ in 0..100_000 {
        let mut body = String::new();
        for _ in 0..(rng.next() % 30) {
            body.push_str(rng.pick(&tokens));
            if rng.next().is_multiple_of(4) {
                body.push_str(&format!("\"{D}\""));
            }
        }
        let _ = manifest::parse(Some(rng.pick(&types)), body.as_bytes());
    }
}
