//! `podmap serve --static DIR`: the web front end and the podcasts' static files on the
//! API's origin, so the whole explorer is one process.
//!
//! The production front end calls `/api/…` relative to its own origin and reads everything
//! else it shows (episodes, live transcripts, speakers) as static files under `/podcasts/`;
//! without this it needs a web server in front that serves both and proxies the API.
//!
//! - A path that is not an API route is a file under DIR (`/` is `index.html`); a path
//!   without a file extension that names no file is one of the front end's own routes
//!   (`/episode-search`) and gets `index.html`, which routes it in the browser. A missing
//!   file with an extension (`/assets/gone.js`) is a 404, never the page in its place.
//! - `/podcasts/…` comes from `--static-podcasts` when given (the data root's `podcasts/`,
//!   so the front end's build need not carry copies or symlinks), else from DIR/podcasts.
//! - `/api/…` that names no route stays the API's JSON 404.
//! - Caching: Vite names its bundles by content hash under `/assets/`, so those are kept a
//!   year (`immutable`); `index.html` is revalidated on every load (it names the current
//!   bundles); other files (the podcasts' JSON changes after each ingest) for 5 minutes,
//!   then revalidated with `Last-Modified`.
//! - Compression: `file.br` / `file.gz` written beside a file by the build are sent as they
//!   are to clients that accept them; other responses are compressed by the server's
//!   compression layer like the API's.
//!
//! These routes are outside the API's rate limits and load shedding: a page load asks for a
//! dozen files at once, and reading a file costs less than deciding whether to.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use tower::ServiceExt;
use tower_http::services::fs::ServeFileSystemResponseBody;
use tower_http::services::{ServeDir, ServeFile};

use super::error::ApiError;

/// `Cache-Control` of the content-hashed bundles under `/assets/`.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// `Cache-Control` of `index.html`.
pub const REVALIDATE: &str = "no-cache";
/// `Cache-Control` of every other file.
pub const SHORT: &str = "public, max-age=300";

/// Where the files come from.
#[derive(Debug, Clone)]
pub struct Site {
    /// The front end's built files, with `index.html`.
    pub dir: PathBuf,
    /// What `/podcasts/` serves.
    pub podcasts: PathBuf,
}

/// Why `--static` cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    #[error("--static {}: not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error(
        "--static {}: no index.html (give the front end's built files, e.g. its dist/)",
        .0.display()
    )]
    NoIndex(PathBuf),
    #[error("--static-podcasts {}: not a directory", .0.display())]
    PodcastsNotADirectory(PathBuf),
}

impl Site {
    /// The site of `dir` (and `podcasts`, else `dir/podcasts`), checked: a typo in a path
    /// stops the server at start-up instead of answering 404 to every page.
    pub fn new(dir: &Path, podcasts: Option<&Path>) -> Result<Site, SiteError> {
        if !dir.is_dir() {
            return Err(SiteError::NotADirectory(dir.to_path_buf()));
        }
        if !dir.join("index.html").is_file() {
            return Err(SiteError::NoIndex(dir.to_path_buf()));
        }
        if let Some(podcasts) = podcasts {
            if !podcasts.is_dir() {
                return Err(SiteError::PodcastsNotADirectory(podcasts.to_path_buf()));
            }
        }
        Ok(Site {
            dir: dir.to_path_buf(),
            podcasts: podcasts.map_or_else(|| dir.join("podcasts"), Path::to_path_buf),
        })
    }

    /// The routes: `/` and every path no other route takes.
    pub fn routes(self) -> Router {
        Router::new()
            .route("/", any(file))
            .route("/{*path}", any(file))
            .with_state(Arc::new(self))
    }
}

/// Answers a request for a file (see the module docs for which file).
async fn file(State(site): State<Arc<Site>>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    if path == "/api" || path.starts_with("/api/") {
        return ApiError::NoRoute.into_response();
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let allow = [(header::ALLOW, HeaderValue::from_static("GET, HEAD"))];
        return (allow, ApiError::MethodNotAllowed).into_response();
    }
    let mut response = match path.strip_prefix("/podcasts") {
        Some(rest) if rest.starts_with('/') => {
            let request = with_path(request, rest);
            serve(ServeDir::new(&site.podcasts), request).await
        }
        _ => {
            let head = request.method() == Method::HEAD;
            let found = serve(files(&site.dir), request).await;
            if found.status() == StatusCode::NOT_FOUND && is_page(&path) {
                let index = Request::builder()
                    .method(if head { Method::HEAD } else { Method::GET })
                    .uri("/index.html")
                    .body(Body::empty())
                    .expect("a valid request");
                serve(ServeFile::new(site.dir.join("index.html")), index).await
            } else {
                found
            }
        }
    };
    if response.status().is_success() || response.status() == StatusCode::NOT_MODIFIED {
        let cache = if path.starts_with("/assets/") {
            IMMUTABLE
        } else if response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|t| t.as_bytes().starts_with(b"text/html"))
        {
            REVALIDATE
        } else {
            SHORT
        };
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    }
    response
}

/// The front end's files: `/` is `index.html`, precompressed copies are preferred.
fn files(dir: &Path) -> ServeDir {
    ServeDir::new(dir)
        .append_index_html_on_directories(true)
        .precompressed_br()
        .precompressed_gzip()
}

/// Whether `path` names a page of the front end rather than a file: its last segment has no
/// extension.
fn is_page(path: &str) -> bool {
    !path.rsplit('/').next().unwrap_or("").contains('.')
}

/// `request` asking for `path` (and the same query) instead.
fn with_path(mut request: Request, path: &str) -> Request {
    let uri = match request.uri().query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    if let Ok(uri) = uri.parse::<Uri>() {
        *request.uri_mut() = uri;
    }
    request
}

/// The answer of a tower-http file service, as an axum response.
async fn serve<S>(service: S, request: Request) -> Response
where
    S: tower::Service<
        Request,
        Response = axum::http::Response<ServeFileSystemResponseBody>,
        Error = std::convert::Infallible,
    >,
{
    match service.oneshot(request).await {
        Ok(response) => response.map(Body::new),
        Err(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_paths_without_an_extension() {
        assert!(is_page("/"));
        assert!(is_page("/episode-search"));
        assert!(is_page("/podcast/raumzeit/episode/12"));
        assert!(!is_page("/assets/index-3f2a9c1b.js"));
        assert!(!is_page("/favicon.ico"));
    }

    #[test]
    fn a_missing_directory_or_index_is_refused_at_start_up() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        assert!(matches!(
            Site::new(&missing, None),
            Err(SiteError::NotADirectory(_))
        ));
        let message = Site::new(dir.path(), None).unwrap_err().to_string();
        assert!(message.contains("no index.html"), "{message}");
        std::fs::write(dir.path().join("index.html"), "<!doctype html>").unwrap();
        let site = Site::new(dir.path(), None).unwrap();
        assert_eq!(site.podcasts, dir.path().join("podcasts"));
        assert!(matches!(
            Site::new(dir.path(), Some(&missing)),
            Err(SiteError::PodcastsNotADirectory(_))
        ));
    }
}
