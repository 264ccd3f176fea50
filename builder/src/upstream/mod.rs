//! Upstream sources, fetched by the builder itself: no code of the PKGBUILD runs while
//! anything is downloaded, and no stage that runs it has a network.
//!
//! The fetcher reads the `source=()` entries of the package's `.SRCINFO` for the build's
//! architecture ([`entry`]), downloads files (http, https in-process with reqwest; ftp with
//! curl) and clones repositories with their own clients (git, svn, hg, bzr, fossil, run as an
//! unprivileged id), into the package's own source cache, each where makepkg will look for
//! it; then checks every checksum the `.SRCINFO` gives. Connections go only where [`net`]
//! allows: never to the machine's loopback or a link-local address. The build sees the cache
//! through an overlay whose writable layer is thrown away with the build root, so no build
//! changes what the next one finds.

mod entry;
mod net;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use alpm_srcinfo::SourceInfoV1;
use alpm_srcinfo::source_info::v1::merged::MergedSource;
use alpm_types::{Architecture, Checksum, SkippableChecksum};
use futures_util::StreamExt as _;
use tokio::process::Command;

pub use entry::{CacheName, Entry, Origin, Vcs};
pub use net::NetPolicy;

/// The fetcher's limits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest file a download may have.
    pub max_bytes: u64,
    /// Most that one package's sources may take together, repository clones included.
    pub max_total_bytes: u64,
    /// Longest one source may take to fetch.
    pub timeout: Duration,
}

/// The size a download may not exceed, and whose limit that is.
#[derive(Clone, Copy, Debug)]
struct SizeLimit {
    bytes: u64,
    of: &'static str,
}

impl std::fmt::Display for SizeLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "larger than the limit of {} bytes for {}",
            self.bytes, self.of
        )
    }
}

/// Fetches the sources of packages.
#[derive(Clone, Debug)]
pub struct Fetcher {
    client: reqwest::Client,
    policy: NetPolicy,
    /// The host id the repository clients and curl run as.
    client_uid: u32,
    limits: Limits,
}

impl Fetcher {
    pub fn new(policy: NetPolicy, client_uid: u32, limits: Limits) -> anyhow::Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        // The machine's trust store, as curl's and makepkg's downloads use it.
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        let tls = rustls::ClientConfig::builder_with_provider(quarters_common::tls::provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .dns_resolver(policy.resolver())
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                // A redirect to an address literal never meets the resolver: checked here.
                let url = attempt.url().clone();
                let literal = url.host().and_then(|h| match h {
                    url::Host::Ipv4(a) => Some(std::net::IpAddr::V4(a)),
                    url::Host::Ipv6(a) => Some(std::net::IpAddr::V6(a)),
                    url::Host::Domain(_) => None,
                });
                if !["http", "https"].contains(&url.scheme()) {
                    attempt.error(format!("redirected to {url}, which is not http or https"))
                } else if let Some(Err(e)) = literal.map(|a| policy.check(a)) {
                    attempt.error(format!("redirected to {url}: {e}"))
                } else if attempt.previous().len() >= 10 {
                    attempt.error("more than 10 redirects")
                } else {
                    attempt.follow()
                }
            }))
            .connect_timeout(Duration::from_secs(30))
            .user_agent(concat!("quarters-builder/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Fetcher {
            client,
            policy,
            client_uid,
            limits,
        })
    }

    /// Fetches every source of the package whose `.SRCINFO` is `srcinfo` for `arch` into
    /// `cache`, and checks them. `startdir` holds the package's own files, which makepkg
    /// prefers to anything in the cache. Each step is reported through `log`.
    pub async fn fetch_all(
        &self,
        srcinfo: &str,
        arch: &str,
        startdir: &Path,
        cache: &Path,
        log: &mut Vec<String>,
    ) -> Result<(), String> {
        let info = SourceInfoV1::from_string(srcinfo)
            .map_err(|e| format!(".SRCINFO: {}", e.to_string().lines().next().unwrap_or("")))?;
        let architecture: Architecture = arch
            .parse()
            .map_err(|e| format!("architecture {arch}: {e}"))?;
        // Sources belong to the pkgbase: every package of it lists the same ones.
        let sources: Vec<MergedSource> = info
            .packages_for_architecture(architecture)
            .next()
            .map(|p| p.sources)
            .unwrap_or_default();
        if sources.is_empty() {
            log.push("no sources".into());
        }
        let entries = sources
            .iter()
            .map(|s| Entry::parse(&s.source.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        // The cache keeps what this version's sources name and nothing else: what older
        // versions downloaded would otherwise pile up for as long as the package lives.
        prune(cache, &entries, log);
        let mut used = 0u64;
        for (source, entry) in sources.iter().zip(&entries) {
            let in_package = startdir.join(entry.name.as_str());
            let cached = cache.join(entry.name.as_str());
            // The package dir and the cache are written by others than the builder (the
            // package, the repository clients): nothing there is followed if it is a link,
            // so that no entry makes the builder read its own files.
            let path = match (&entry.origin, Found::at(&in_package)) {
                (_, Found::Link) => {
                    return Err(format!(
                        "{}: a link in the package; a source must be a plain file",
                        entry.name
                    ));
                }
                (Origin::Local, Found::Nothing) => {
                    return Err(format!("{}: not in the package", entry.name));
                }
                (Origin::Local, _) => in_package,
                (_, Found::Entry) => {
                    log.push(format!("{}: the package has it", entry.name));
                    in_package
                }
                (Origin::Download { url }, Found::Nothing) => {
                    let in_cache = Found::at(&cached);
                    if in_cache == Found::Link {
                        std::fs::remove_file(&cached).map_err(|e| e.to_string())?;
                    }
                    if in_cache == Found::Entry
                        && cached.is_file()
                        && verify(source, &cached).await.is_ok()
                    {
                        log.push(format!("{}: in the cache", entry.name));
                    } else {
                        log.push(format!("{}: downloading {url}", entry.name));
                        let room = self.limits.max_total_bytes.saturating_sub(used);
                        let limit = if room < self.limits.max_bytes {
                            SizeLimit {
                                bytes: room,
                                of: "the package's sources together",
                            }
                        } else {
                            SizeLimit {
                                bytes: self.limits.max_bytes,
                                of: "a download",
                            }
                        };
                        self.within(&entry.name, self.download(url, &cached, limit))
                            .await?;
                    }
                    cached.clone()
                }
                (Origin::Repository { vcs, url, fragment }, Found::Nothing) => {
                    log.push(format!("{}: {} {url}", entry.name, vcs.client()));
                    let run = self.repository(*vcs, url, fragment.as_deref(), &cached);
                    let out = self.within(&entry.name, run).await?;
                    log.extend(out);
                    used += tree_size(&cached);
                    self.check_total(&entry.name, used)?;
                    // makepkg checks repositories itself (their checksums are SKIP here).
                    continue;
                }
            };
            // What the package carries itself is not downloaded: only the cache counts.
            if path == cached {
                used += tree_size(&path);
                self.check_total(&entry.name, used)?;
            }
            verify(source, &path)
                .await
                .map_err(|e| format!("{}: {e}", entry.name))?;
        }
        Ok(())
    }

    /// An error when the sources fetched so far take more than the package may have.
    fn check_total(&self, name: &CacheName, used: u64) -> Result<(), String> {
        if used > self.limits.max_total_bytes {
            Err(format!(
                "{name}: the package's sources together are larger than the limit of {} bytes",
                self.limits.max_total_bytes
            ))
        } else {
            Ok(())
        }
    }

    /// Fetches the source `name` with `fetch`, within the time limit; an error names it.
    async fn within<T>(
        &self,
        name: &CacheName,
        fetch: impl Future<Output = Result<T, String>>,
    ) -> Result<T, String> {
        let limit = self.limits.timeout;
        match tokio::time::timeout(limit, fetch).await {
            Ok(result) => result.map_err(|e| format!("{name}: {e}")),
            Err(_) => Err(format!("{name}: not fetched within {} s", limit.as_secs())),
        }
    }

    /// Downloads `url` into `dest` through `dest.part`, within the size limit.
    async fn download(&self, url: &url::Url, dest: &Path, limit: SizeLimit) -> Result<(), String> {
        let part = dest.with_extension(format!(
            "{}part",
            dest.extension()
                .map_or(String::new(), |e| format!("{}.", e.to_string_lossy()))
        ));
        let _ = tokio::fs::remove_file(&part).await;
        if url.scheme() == "ftp" {
            self.ftp(url, &part, limit).await?;
        } else {
            self.policy.check_url(url).await?;
            let response = self
                .client
                .get(url.clone())
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(|e| error_chain(&e))?;
            if response.content_length().is_some_and(|n| n > limit.bytes) {
                return Err(limit.to_string());
            }
            // Never through a link: the cache directory belongs to the unprivileged id the
            // repository clients run as, and whatever it left there must not steer a write
            // made as the builder.
            let mut file = std::fs::File::options()
                .write(true)
                .create_new(true)
                .open(&part)
                .map_err(|e| format!("{}: {e}", part.display()))?;
            let mut body = response.bytes_stream();
            let mut got = 0u64;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| error_chain(&e))?;
                got += chunk.len() as u64;
                if got > limit.bytes {
                    let _ = std::fs::remove_file(&part);
                    return Err(limit.to_string());
                }
                file.write_all(&chunk).map_err(|e| e.to_string())?;
            }
            file.sync_all().map_err(|e| e.to_string())?;
        }
        std::fs::rename(&part, dest).map_err(|e| e.to_string())
    }

    /// An ftp download with curl, as the unprivileged id, pinned to an address checked here.
    async fn ftp(&self, url: &url::Url, part: &Path, limit: SizeLimit) -> Result<(), String> {
        let host = url.host_str().ok_or("no host")?;
        let port = url.port_or_known_default().unwrap_or(21);
        let addr = self.policy.resolve(host, port).await?[0];
        let mut cmd = self.client_command("curl");
        cmd.args(["--proto", "=ftp", "-sSfg", "--max-filesize"])
            .arg(limit.bytes.to_string())
            .arg("--resolve")
            .arg(format!("{host}:{port}:{}", addr.ip()))
            .arg("-o")
            .arg(part)
            .arg(url.as_str());
        run(cmd).await.map(|_| ())
    }

    /// Clones a repository into `dir`, or updates the clone there, as makepkg's `download_*`
    /// functions do.
    async fn repository(
        &self,
        vcs: Vcs,
        url: &url::Url,
        fragment: Option<&str>,
        dir: &Path,
    ) -> Result<Vec<String>, String> {
        self.policy.check_url(url).await?;
        let exists = dir.exists();
        let mut cmd = self.client_command(vcs.client());
        let u = url.as_str();
        match (vcs, exists) {
            (Vcs::Git, false) => cmd.args(["clone", "--mirror", u]).arg(dir),
            (Vcs::Git, true) => {
                let mut get = self.client_command("git");
                get.arg("-C")
                    .arg(dir)
                    .args(["config", "--get", "remote.origin.url"]);
                let origin = run(get).await?;
                if origin.trim() != u {
                    return Err(format!("the cached clone is of {}, not {u}", origin.trim()));
                }
                cmd.arg("-C").arg(dir).args(["fetch", "--all", "-p"])
            }
            (Vcs::Svn, _) => {
                let rev = match fragment {
                    None => "HEAD",
                    Some(f) => f
                        .strip_prefix("revision=")
                        .ok_or_else(|| format!("unrecognized reference {f}"))?,
                };
                // svn makes its configuration directory itself, as the client's id: nothing
                // is created in the cache as the builder.
                cmd.args(["--non-interactive", "--config-dir"])
                    .arg(dir.join(".makepkg"));
                if exists && dir.join(".svn").exists() {
                    cmd.arg("update").args(["-r", rev]).arg(dir)
                } else {
                    cmd.args(["checkout", "-r", rev, u]).arg(dir)
                }
            }
            (Vcs::Hg, false) => cmd.args(["clone", "-U", u]).arg(dir),
            (Vcs::Hg, true) => cmd.arg("pull").current_dir(dir),
            (Vcs::Bzr, false) => cmd
                .args(["branch", u])
                .arg(dir)
                .args(["--no-tree", "--use-existing-dir"]),
            (Vcs::Bzr, true) => cmd.args(["pull", u]).current_dir(dir),
            (Vcs::Fossil, false) => cmd.args(["clone", u]).arg(dir),
            (Vcs::Fossil, true) => cmd.args(["pull", "-R"]).arg(dir),
        };
        let out = run(cmd).await?;
        Ok(out
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect())
    }

    /// A client started as the unprivileged id, with nothing of the builder's environment: no
    /// configuration, no credentials, no prompts; git speaks only http, https and git.
    fn client_command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", "/nonexistent")
            .env("LANG", "C")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_ALLOW_PROTOCOL", "http:https:git")
            .uid(self.client_uid)
            .gid(self.client_uid)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }
}

/// What a path names, without following a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Found {
    Nothing,
    Link,
    /// A file or a directory.
    Entry,
}

impl Found {
    fn at(path: &Path) -> Self {
        match std::fs::symlink_metadata(path) {
            Err(_) => Found::Nothing,
            Ok(m) if m.file_type().is_symlink() => Found::Link,
            Ok(_) => Found::Entry,
        }
    }
}

/// Runs a client; its output, or the reason it failed (its last line of errors).
/// Removes from the package's cache what none of `entries` names (with a `.part` beside it).
fn prune(cache: &Path, entries: &[Entry], log: &mut Vec<String>) {
    let Ok(listing) = std::fs::read_dir(cache) else {
        return;
    };
    for found in listing.flatten() {
        let name = found.file_name();
        let named = entries
            .iter()
            .any(|e| std::ffi::OsStr::new(e.name.as_str()) == name);
        if named {
            continue;
        }
        // Never followed: a link is removed as a link, a directory with what is in it.
        let removed = match found.file_type() {
            Ok(t) if t.is_dir() => std::fs::remove_dir_all(found.path()),
            _ => std::fs::remove_file(found.path()),
        };
        if removed.is_ok() {
            log.push(format!(
                "{}: no source of this version, removed from the cache",
                name.to_string_lossy()
            ));
        }
    }
}

/// The bytes of the files under `path` (or of the file itself), links not followed.
fn tree_size(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .map(|entries| entries.flatten().map(|e| tree_size(&e.path())).sum())
        .unwrap_or(0)
}

async fn run(mut cmd: Command) -> Result<String, String> {
    let program = format!("{:?}", cmd.as_std().get_program());
    let out = cmd.output().await.map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            format!("{program} is not installed on this builder")
        }
        _ => format!("starting {program}: {e}"),
    })?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        let last = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        Err(format!(
            "{program} failed ({}): {}",
            out.status,
            last.chars().take(300).collect::<String>()
        ))
    }
}

/// The error and its causes on one line: reqwest's own message alone rarely says why.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Checks `path` against every checksum `source` has, as makepkg's integrity check does.
async fn verify(source: &MergedSource, path: &Path) -> Result<(), String> {
    let source = source.clone();
    let path: PathBuf = path.to_owned();
    tokio::task::spawn_blocking(move || verify_blocking(&source, &path))
        .await
        .map_err(|e| e.to_string())?
}

fn verify_blocking(source: &MergedSource, path: &Path) -> Result<(), String> {
    fn check<D>(
        name: &str,
        expected: Option<&SkippableChecksum<D>>,
        path: &Path,
    ) -> Result<(), String>
    where
        D: alpm_types::digests::Digest + Clone,
    {
        let Some(SkippableChecksum::Checksum { digest }) = expected else {
            return Ok(());
        };
        let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
        let got = Checksum::<D>::calculate_from_reader(std::io::BufReader::new(file))
            .map_err(|e| e.to_string())?;
        if &got == digest {
            Ok(())
        } else {
            Err(format!(
                "{name} mismatch: expected {digest}, the file has {got}"
            ))
        }
    }
    use alpm_types::digests::{Blake2b512, Crc32Cksum, Md5, Sha1, Sha224, Sha256, Sha384, Sha512};
    if path.is_dir() {
        return Ok(());
    }
    check::<Blake2b512>("b2sum", source.b2_checksum.as_ref(), path)?;
    check::<Md5>("md5sum", source.md5_checksum.as_ref(), path)?;
    check::<Sha1>("sha1sum", source.sha1_checksum.as_ref(), path)?;
    check::<Sha224>("sha224sum", source.sha224_checksum.as_ref(), path)?;
    check::<Sha256>("sha256sum", source.sha256_checksum.as_ref(), path)?;
    check::<Sha384>("sha384sum", source.sha384_checksum.as_ref(), path)?;
    check::<Sha512>("sha512sum", source.sha512_checksum.as_ref(), path)?;
    check::<Crc32Cksum>("cksum", source.crc_checksum.as_ref(), path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn srcinfo(source: &str, sha256: &str) -> String {
        format!(
            "pkgbase = linked\n\tpkgver = 1\n\tpkgrel = 1\n\tarch = any\n\tsource = {source}\n\tsha256sums = {sha256}\n\npkgname = linked\n"
        )
    }

    #[tokio::test]
    async fn a_link_in_the_package_never_makes_the_builder_read_its_own_files() {
        let dir = tempfile::tempdir().unwrap();
        let host_file = dir.path().join("host-secret");
        std::fs::write(&host_file, b"secret").unwrap();
        let startdir = dir.path().join("package");
        std::fs::create_dir(&startdir).unwrap();
        std::os::unix::fs::symlink(&host_file, startdir.join("notes.txt")).unwrap();
        let fetcher = Fetcher::new(
            NetPolicy {
                allow_loopback: false,
            },
            65534,
            Limits {
                max_bytes: 1 << 20,
                max_total_bytes: 1 << 20,
                timeout: Duration::from_secs(5),
            },
        )
        .unwrap();
        let mut log = Vec::new();
        // Whatever checksum the package declares, the link is refused before it is read: a
        // checksum check on the host's file would tell the package whether it guessed right.
        let err = fetcher
            .fetch_all(
                &srcinfo("notes.txt", &"0".repeat(64)),
                "any",
                &startdir,
                &dir.path().join("cache"),
                &mut log,
            )
            .await
            .unwrap_err();
        assert_eq!(
            err,
            "notes.txt: a link in the package; a source must be a plain file"
        );
    }

    #[tokio::test]
    async fn a_package_s_downloads_are_bounded_together_and_its_cache_keeps_only_its_sources() {
        let body: &'static [u8] = &[7u8; 600 << 10];
        let app =
            axum::Router::new().route("/{name}", axum::routing::get(move || async move { body }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let dir = tempfile::tempdir().unwrap();
        let (startdir, cache) = (dir.path().join("package"), dir.path().join("cache"));
        std::fs::create_dir_all(&startdir).unwrap();
        std::fs::create_dir_all(cache.join("old-clone")).unwrap();
        std::fs::write(cache.join("old-1.0.tar.gz"), b"an older version's source").unwrap();
        let fetcher = Fetcher::new(
            NetPolicy {
                allow_loopback: true,
            },
            65534,
            Limits {
                // Each file alone is within the limit of a download; the two are not.
                max_bytes: 1 << 20,
                max_total_bytes: 1 << 20,
                timeout: Duration::from_secs(10),
            },
        )
        .unwrap();
        let srcinfo = format!(
            "pkgbase = big\n\tpkgver = 1\n\tpkgrel = 1\n\tarch = any\n\tsource = a::http://127.0.0.1:{port}/a\n\tsource = b::http://127.0.0.1:{port}/b\n\tsha256sums = SKIP\n\tsha256sums = SKIP\n\npkgname = big\n"
        );
        let mut log = Vec::new();
        let err = fetcher
            .fetch_all(&srcinfo, "any", &startdir, &cache, &mut log)
            .await
            .unwrap_err();
        assert_eq!(
            err,
            format!(
                "b: larger than the limit of {} bytes for the package's sources together",
                (1 << 20) - (600 << 10)
            )
        );
        assert!(cache.join("a").is_file());
        assert!(!cache.join("b").exists() && !cache.join("b.part").exists());
        assert!(
            !cache.join("old-1.0.tar.gz").exists() && !cache.join("old-clone").exists(),
            "{log:?}"
        );
    }
}
