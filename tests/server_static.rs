//! `podmap serve --static DIR`: the web front end and the podcasts' static files beside the
//! API on one origin, over real HTTP on loopback.

mod common;

use std::path::Path;
use std::sync::Arc;

use podmap::server::catalog::load_mmap;
use podmap::server::site::{Site, IMMUTABLE, REVALIDATE, SHORT};
use podmap::server::{router, AppState, Settings};
use serde_json::Value;

const INDEX: &str = "<!doctype html><title>explorer</title><div id=app></div>";
const BUNDLE: &str = "console.log('the explorer');";

/// What the build wrote as the bundle's gzip copy: the server sends it as it is, so its bytes
/// tell it apart from the bundle compressed on the fly.
const BUNDLE_GZ: &[u8] = b"\x1f\x8b precompressed by the build";

/// A front end's build: `index.html`, a hashed bundle with a gzip copy, a favicon.
fn dist(dir: &Path) {
    std::fs::create_dir_all(dir.join("assets")).unwrap();
    std::fs::write(dir.join("index.html"), INDEX).unwrap();
    std::fs::write(dir.join("assets/index-3f2a9c1b.js"), BUNDLE).unwrap();
    std::fs::write(dir.join("assets/index-3f2a9c1b.js.gz"), BUNDLE_GZ).unwrap();
    std::fs::write(dir.join("favicon.ico"), [0u8, 0, 1, 0]).unwrap();
}

/// The fixtures' API with `site` beside it, on a loopback port.
async fn serve(site: Site) -> String {
    let catalog = load_mmap(common::fixtures_index()).unwrap();
    let state =
        AppState::new(catalog, common::unlimited(Settings::default())).with_site(Some(site));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(Arc::new(state));
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await;
    });
    format!("http://{addr}")
}

fn client() -> reqwest::Client {
    // No automatic decompression: the test looks at what was sent.
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test]
async fn the_front_end_its_routes_and_the_podcasts_files_share_the_apis_origin() {
    let dir = tempfile::tempdir().unwrap();
    dist(dir.path());
    let podcasts = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/data/podcasts");
    let base = serve(Site::new(dir.path(), Some(&podcasts)).unwrap()).await;
    let http = client();
    let get = |path: &str| http.get(format!("{base}{path}")).send();

    // The page itself, at `/` and at any of the front end's own routes.
    for path in [
        "/",
        "/index.html",
        "/episode-search",
        "/podcast/demo/episode/3",
    ] {
        let page = get(path).await.unwrap();
        assert_eq!(page.status(), 200, "{path}");
        assert!(
            header(&page, "content-type").starts_with("text/html"),
            "{path}"
        );
        assert_eq!(header(&page, "cache-control"), REVALIDATE, "{path}");
        assert_eq!(page.text().await.unwrap(), INDEX, "{path}");
    }

    // A hashed bundle: kept a year; its gzip copy is sent to a client that takes gzip.
    let bundle = get("/assets/index-3f2a9c1b.js").await.unwrap();
    assert_eq!(bundle.status(), 200);
    assert_eq!(header(&bundle, "cache-control"), IMMUTABLE);
    assert_eq!(bundle.text().await.unwrap(), BUNDLE);
    let zipped = http
        .get(format!("{base}/assets/index-3f2a9c1b.js"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&zipped, "content-encoding"), "gzip");
    assert_eq!(header(&zipped, "cache-control"), IMMUTABLE);
    assert_eq!(zipped.bytes().await.unwrap().as_ref(), BUNDLE_GZ);

    // A missing file is a 404, never the page in its place.
    for path in ["/assets/index-00000000.js", "/missing.png"] {
        let missing = get(path).await.unwrap();
        assert_eq!(missing.status(), 404, "{path}");
        assert_ne!(missing.text().await.unwrap(), INDEX, "{path}");
    }

    // The podcasts' static JSON from --static-podcasts, byte for byte.
    let episode = get("/podcasts/demo-raumfahrt/episodes/1.json")
        .await
        .unwrap();
    assert_eq!(episode.status(), 200);
    assert_eq!(header(&episode, "cache-control"), SHORT);
    assert!(header(&episode, "last-modified").len() > 10);
    let expected = std::fs::read(podcasts.join("demo-raumfahrt/episodes/1.json")).unwrap();
    assert_eq!(episode.bytes().await.unwrap().to_vec(), expected);
    let missing = get("/podcasts/demo-raumfahrt/episodes/999.json")
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    // Nothing outside the two directories, however the path is spelled.
    for path in [
        "/../Cargo.toml",
        "/%2e%2e/Cargo.toml",
        "/podcasts/..%2f..%2fCargo.toml",
        "/podcasts/%2e%2e/%2e%2e/Cargo.toml",
    ] {
        let escaped = get(path).await.unwrap();
        let status = escaped.status();
        let body = escaped.text().await.unwrap();
        assert!(
            !body.contains("[package]"),
            "{path} answered {status} with Cargo.toml"
        );
    }

    // The API is as before: its routes, and its JSON errors for what is not one.
    let podcasts_list = get("/api/podcasts").await.unwrap();
    assert_eq!(podcasts_list.status(), 200);
    let listed: Value = podcasts_list.json().await.unwrap();
    assert!(listed.to_string().contains("demo-raumfahrt"));
    let no_route = get("/api/no-such-route").await.unwrap();
    assert_eq!(no_route.status(), 404);
    assert!(no_route.json::<Value>().await.unwrap()["error"].is_string());
    let posted = http
        .post(format!("{base}/episode-search"))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 405);
    assert_eq!(header(&posted, "allow"), "GET, HEAD");
    assert!(posted.json::<Value>().await.unwrap()["error"].is_string());
    let head = http
        .head(format!("{base}/episode-search"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
}

#[tokio::test]
async fn without_static_podcasts_the_podcasts_come_from_the_front_ends_own_folder() {
    let dir = tempfile::tempdir().unwrap();
    dist(dir.path());
    std::fs::create_dir_all(dir.path().join("podcasts/p")).unwrap();
    std::fs::write(dir.path().join("podcasts/p/episodes.json"), "[]").unwrap();
    let base = serve(Site::new(dir.path(), None).unwrap()).await;
    let answer = client()
        .get(format!("{base}/podcasts/p/episodes.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.unwrap(), "[]");
}

#[test]
fn a_static_folder_without_a_front_end_stops_the_server_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_podmap"))
        .args(["serve", "--index", common::s(common::fixtures_index())])
        .args(["--listen", "127.0.0.1:0", "--analytics", "off"])
        .args(["--static", common::s(dir.path())])
        .env_remove("PODMAP_STATIC_PODCASTS_DIR")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = common::text(&out.stderr);
    assert!(stderr.contains("no index.html"), "{stderr}");
    assert!(stderr.contains(common::s(dir.path())), "{stderr}");
}
