//! Links the binary with packed relative relocations (`DT_RELR`) on Linux with glibc.
//!
//! Why: the position-independent binary otherwise carries ~37 000 `RELA` entries (880 KB)
//! that the dynamic loader reads at every start, and the pages they fill stay in the
//! process's RSS: 0.6–2.3 MiB of an idle berth's ~20 (docs/BENCHMARKS.md, (h)). `RELR`
//! encodes the same relocations in 10 KB. It needs glibc ≥ 2.36 and binutils ≥ 2.38
//! (Debian 12 has 2.36 and 2.40); the binary then asks for `GLIBC_ABI_DT_RELR` at start.
fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
