//! Which requests belong to the export API, and what they ask for.

use std::fmt;

/// First host label of the export API by default: `durafetch_<worker name>`.
pub const HOST_LABEL_PREFIX: &str = "durafetch_";
/// First host label of the export API with `api = "hyphen_label"`: `durafetch-<worker name>`.
pub const HYPHEN_LABEL_PREFIX: &str = "durafetch-";
/// The shortest path prefix accepted, after its slash: long enough that no application route
/// takes it by accident.
pub const MIN_PATH_PREFIX_CHARS: usize = 16;

/// Where the export API answers, as `[vars.DURAFETCH] api` chooses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ApiAddress {
    /// Hosts whose first label is exactly `durafetch_<worker>` (the default): a full-setup zone
    /// whose wildcard certificate covers the label, or `.localhost` in development.
    #[default]
    UnderscoreLabel,
    /// Hosts whose first label is exactly `durafetch-<worker>`: a Workers Custom Domain or any
    /// host a public CA certifies by name.
    HyphenLabel,
    /// Any host the worker serves, under this path prefix (one segment): workers.dev.
    PathPrefix(String),
}

impl ApiAddress {
    /// From `api` (`underscore_label`, `hyphen_label` or `path_prefix`; absent: the first) and
    /// `path_prefix`, which `path_prefix` needs and nothing else takes.
    pub fn parse(api: Option<&str>, path_prefix: Option<&str>) -> Result<Self, String> {
        const HOW: &str = "set api = \"underscore_label\" (the default), \"hyphen_label\", or \"path_prefix\" with path_prefix = \"/<a segment of at least 16 letters, digits, '-' or '_'>\"";
        match (api.unwrap_or("underscore_label"), path_prefix) {
            ("underscore_label", None) => Ok(ApiAddress::UnderscoreLabel),
            ("hyphen_label", None) => Ok(ApiAddress::HyphenLabel),
            ("path_prefix", Some(prefix)) => {
                let segment = prefix.strip_prefix('/').unwrap_or("");
                let fits =
                    segment.len() >= MIN_PATH_PREFIX_CHARS && segment.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if fits {
                    Ok(ApiAddress::PathPrefix(prefix.to_owned()))
                } else {
                    Err(format!("durafetch: DURAFETCH.path_prefix {prefix:?} is too short or not one path segment; {HOW}"))
                }
            }
            ("path_prefix", None) => Err(format!("durafetch: DURAFETCH.api = \"path_prefix\" needs path_prefix; {HOW}")),
            ("underscore_label" | "hyphen_label", Some(_)) => {
                Err(format!("durafetch: DURAFETCH.path_prefix is set but api is not \"path_prefix\"; {HOW}"))
            }
            (other, _) => Err(format!("durafetch: DURAFETCH.api {other:?} is not one of the three; {HOW}")),
        }
    }

    /// The API path a request asks for (`/index`, `/export/..`) if the request is the API's;
    /// `None` sends it to the user's code untouched (`durafetch_w-1` never answers for
    /// `durafetch_w-10`, nor a prefix for a path that merely starts with its characters).
    pub fn api_path<'a>(&self, host: &str, path: &'a str, worker: &str) -> Option<&'a str> {
        let label_is = |prefix: &str| {
            let label = host.split('.').next().unwrap_or("");
            // `get`: a label with other than ASCII may not split at the prefix's length.
            let (head, name) = (label.get(..prefix.len()), label.get(prefix.len()..));
            head.is_some_and(|h| h.eq_ignore_ascii_case(prefix))
                && name.is_some_and(|n| n.eq_ignore_ascii_case(worker))
                && !worker.is_empty()
        };
        match self {
            ApiAddress::UnderscoreLabel => label_is(HOST_LABEL_PREFIX).then_some(path),
            ApiAddress::HyphenLabel => label_is(HYPHEN_LABEL_PREFIX).then_some(path),
            ApiAddress::PathPrefix(prefix) => match path.strip_prefix(prefix.as_str()) {
                Some("") => Some("/"),
                Some(rest) if rest.starts_with('/') => Some(rest),
                _ => None,
            },
        }
    }
}

/// Whether a request is meant for the API of a worker whose durafetch configuration is
/// unusable, so that it is answered with what is wrong rather than by the app (whose 404 would
/// say nothing): any request to a host under a durafetch label; elsewhere only a puller's, which
/// carries a bearer token (`bearer`) and asks for an API route (`/index`, `/export/..`) under
/// `configured_prefix` (the `path_prefix` the configuration names, however it is wrong) or under
/// a first segment that starts with `_durafetch`, as the prefixes the docs suggest do. The app's
/// own requests, even under a prefix it shares by mistake, still reach the app.
pub fn may_be_api(host: &str, path: &str, configured_prefix: Option<&str>, bearer: bool) -> bool {
    let label = host.split('.').next().unwrap_or("");
    let starts = |text: &str, head: &str| text.get(..head.len()).is_some_and(|h| h.eq_ignore_ascii_case(head));
    if starts(label, HOST_LABEL_PREFIX) || starts(label, HYPHEN_LABEL_PREFIX) {
        return true;
    }
    let is_route = |rest: &str| rest.starts_with('/') && ApiRoute::parse(rest).is_ok();
    let under_configured = configured_prefix
        .map(|p| p.trim_end_matches('/'))
        .filter(|p| !p.is_empty())
        .and_then(|prefix| path.strip_prefix(prefix))
        .is_some_and(is_route);
    let segment = path.trim_start_matches('/').split('/').next().unwrap_or("");
    let after_segment = path.strip_prefix('/').and_then(|p| p.get(segment.len()..));
    let under_lookalike = starts(segment, "_durafetch") && after_segment.is_some_and(is_route);
    bearer && (under_configured || under_lookalike)
}

/// Whether plain http/ws is acceptable for this host (local development only).
pub fn is_local_host(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let host =
        host.rsplit_once(':').map_or(host.as_str(), |(h, port)| if port.bytes().all(|b| b.is_ascii_digit()) { h } else { host.as_str() });
    host == "localhost" || host.ends_with(".localhost") || host == "127.0.0.1" || host == "[::1]"
}

/// A request of the export API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiRoute {
    /// `/index` (shard 0) or `/index/<shard>`: a registry shard's list of objects, as a
    /// WebSocket stream.
    Index { shard: u32 },
    /// `/export/<class>/<id>`: one object's keys, as a WebSocket stream.
    Export { class: String, id: String },
    /// `/import/<class>/name/<name>` or `/import/<class>/id/<id>/<worker>` (names in
    /// base64url): a restore session
    /// writing into one object (see [`ImportTarget`]).
    Import { class: String, target: ImportTarget },
}

/// The object a restore writes into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportTarget {
    /// The object of this name: any worker derives its id from the name.
    Name(String),
    /// The unnamed object of this id, which only its own worker's namespace holds: `worker` is
    /// the worker the backup came from, which must be the one serving the request.
    Id { id: String, worker: String },
}

/// A name as one path segment: base64url without padding. Percent-encoding would not do: URL
/// parsers resolve a segment `..` or `%2e%2e` (a name an object may have) as a step up.
fn encode_segment(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

fn decode_segment(segment: &str) -> Option<String> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(segment).ok()?;
    String::from_utf8(bytes).ok()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error(
        "unknown route; expected /index, /index/<shard>, /export/<class>/<object id>, /import/<class>/name/<name> or /import/<class>/id/<object id>/<worker> (names in base64url)"
    )]
    UnknownRoute,
    #[error("invalid registry shard: expected a decimal number below the configured registry_shards")]
    BadShard,
    #[error("invalid class name: expected a Rust type name")]
    BadClass,
    #[error("invalid object id: expected 64 lowercase hexadecimal digits")]
    BadId,
    #[error("invalid object or worker name: expected non-empty UTF-8 text in base64url without padding")]
    BadName,
}

impl ApiRoute {
    pub fn parse(path: &str) -> Result<Self, RouteError> {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match segments.as_slice() {
            ["index"] => Ok(ApiRoute::Index { shard: 0 }),
            // Only the canonical spelling: no sign, no leading zeros.
            ["index", text] => match text.parse::<u32>() {
                Ok(shard) if shard.to_string() == *text => Ok(ApiRoute::Index { shard }),
                _ => Err(RouteError::BadShard),
            },
            ["export", class, id] => {
                if !is_class_name(class) {
                    return Err(RouteError::BadClass);
                }
                if !is_object_id(id) {
                    return Err(RouteError::BadId);
                }
                Ok(ApiRoute::Export { class: (*class).to_owned(), id: (*id).to_owned() })
            }
            ["import", class, ..] if !is_class_name(class) => Err(RouteError::BadClass),
            ["import", class, "name", name] => {
                let name = decode_segment(name).filter(|n| !n.is_empty()).ok_or(RouteError::BadName)?;
                Ok(ApiRoute::Import { class: (*class).to_owned(), target: ImportTarget::Name(name) })
            }
            ["import", class, "id", id, worker] => {
                if !is_object_id(id) {
                    return Err(RouteError::BadId);
                }
                let worker = decode_segment(worker).filter(|w| !w.is_empty()).ok_or(RouteError::BadName)?;
                Ok(ApiRoute::Import { class: (*class).to_owned(), target: ImportTarget::Id { id: (*id).to_owned(), worker } })
            }
            _ => Err(RouteError::UnknownRoute),
        }
    }
}

/// The route's path, as clients write it (names in base64url).
impl fmt::Display for ApiRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiRoute::Index { shard } => f.write_str(&crate::core::shard::index_path(*shard)),
            ApiRoute::Export { class, id } => write!(f, "/export/{class}/{id}"),
            ApiRoute::Import { class, target: ImportTarget::Name(name) } => write!(f, "/import/{class}/name/{}", encode_segment(name)),
            ApiRoute::Import { class, target: ImportTarget::Id { id, worker } } => {
                write!(f, "/import/{class}/id/{id}/{}", encode_segment(worker))
            }
        }
    }
}

fn is_class_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.len() <= 128
}

/// Durable Object ids are 32 bytes, written as 64 lowercase hex digits.
pub fn is_object_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_labels_must_match_exactly() {
        let underscore = ApiAddress::UnderscoreLabel;
        let api = |host: &str, worker: &str| underscore.api_path(host, "/index", worker).is_some();
        assert!(api("durafetch_w-1.example.com", "w-1"));
        assert!(api("durafetch_w-1.localhost", "w-1"));
        assert!(api("DuraFetch_W-1.example.com", "w-1"));
        assert!(!api("durafetch_w-10.example.com", "w-1"));
        assert!(!api("durafetch_w-1.example.com", "w-10"));
        assert!(!api("durafetch_w-1x.example.com", "w-1"));
        assert!(!api("w-1.example.com", "w-1"));
        assert!(!api("x.durafetch_w-1.example.com", "w-1"));
        assert!(!api("durafetch_.example.com", ""));
        assert!(!api("durafetch-w-1.example.com", "w-1"), "the hyphen label is another mode");
        let hyphen = ApiAddress::HyphenLabel;
        assert_eq!(hyphen.api_path("durafetch-w-1.example.com", "/export/x", "w-1"), Some("/export/x"));
        assert_eq!(hyphen.api_path("durafetch-w-10.example.com", "/index", "w-1"), None);
        assert_eq!(hyphen.api_path("durafetch_w-1.example.com", "/index", "w-1"), None);
        assert_eq!(hyphen.api_path("durafetcé-w.example.com", "/index", "-w"), None, "not a char boundary: no panic");
    }

    #[test]
    fn requests_that_may_be_the_apis_are_told_what_is_wrong() {
        assert!(may_be_api("durafetch_w.example.com", "/index", None, false));
        assert!(may_be_api("Durafetch-w.example.com", "/", None, false));
        assert!(may_be_api("w.a.workers.dev", "/_durafetch-abcd/index", None, true));
        assert!(may_be_api("w.a.workers.dev", "/_DuraFetch/index", None, true));
        assert!(!may_be_api("w.a.workers.dev", "/_durafetch-abcd/index", None, false), "the app's, without a token");
        assert!(!may_be_api("w.a.workers.dev", "/_durafetch-abcd/login", None, true), "not an API route");
        assert!(!may_be_api("w.a.workers.dev", "/durafetchers/index", None, true));
        assert!(may_be_api("w.a.workers.dev", "/short/index", Some("/short"), true));
        assert!(may_be_api("w.a.workers.dev", "/short/index", Some("/short/"), true));
        assert!(!may_be_api("w.a.workers.dev", "/short/users", Some("/short"), true), "the app's route under the prefix");
        assert!(!may_be_api("w.a.workers.dev", "/shorter/index", Some("/short"), true), "a path that only starts with its characters");
        assert!(!may_be_api("w.a.workers.dev", "/index", Some(""), true));
        assert!(!may_be_api("w.a.workers.dev", "/shortindex", Some("/short"), true));
        assert!(!may_be_api("w.a.workers.dev", "/kv/a/get", None, true));
        assert!(!may_be_api("é.example.com", "/é", None, true));
    }

    #[test]
    fn a_path_prefix_is_one_long_segment_matched_whole() {
        let prefix = "/_durafetch-0123456789ab";
        let api = ApiAddress::parse(Some("path_prefix"), Some(prefix)).unwrap();
        assert_eq!(api.api_path("my-app.acct.workers.dev", "/_durafetch-0123456789ab/index/2", "my-app"), Some("/index/2"));
        assert_eq!(api.api_path("any.host", "/_durafetch-0123456789ab", "w"), Some("/"));
        assert_eq!(api.api_path("any.host", "/_durafetch-0123456789abc/index", "w"), None, "shares the prefix's first characters");
        assert_eq!(api.api_path("any.host", "/_durafetch-0123456789a/index", "w"), None);
        assert_eq!(api.api_path("durafetch_w.host", "/index", "w"), None, "labels are other modes");
        for bad in ["/short", "no-slash-0123456789abcdef", "/two/segments-0123456789", "/spaces in it 0123456789", "/"] {
            assert!(ApiAddress::parse(Some("path_prefix"), Some(bad)).is_err(), "{bad}");
        }
        assert!(ApiAddress::parse(Some("path_prefix"), None).unwrap_err().contains("needs path_prefix"));
        assert!(ApiAddress::parse(None, Some(prefix)).is_err(), "a prefix without its mode is a mistake");
        assert!(ApiAddress::parse(Some("subdomain"), None).unwrap_err().contains("\"subdomain\" is not one of the three"));
        assert_eq!(ApiAddress::parse(None, None), Ok(ApiAddress::UnderscoreLabel));
        assert_eq!(ApiAddress::parse(Some("hyphen_label"), None), Ok(ApiAddress::HyphenLabel));
    }

    #[test]
    fn local_hosts() {
        for h in ["localhost", "durafetch_w.localhost", "durafetch_w.localhost:8787", "127.0.0.1:9", "[::1]:80"] {
            assert!(is_local_host(h), "{h}");
        }
        for h in ["example.com", "localhost.example.com", "durafetch_w.example.com", "127.0.0.2"] {
            assert!(!is_local_host(h), "{h}");
        }
    }

    #[test]
    fn routes_parse_and_validate() {
        let id = "a".repeat(64);
        assert_eq!(ApiRoute::parse("/index"), Ok(ApiRoute::Index { shard: 0 }));
        assert_eq!(ApiRoute::parse("/index/12"), Ok(ApiRoute::Index { shard: 12 }));
        for bad in ["/index/x", "/index/012", "/index/+1", "/index/-1", "/index/99999999999"] {
            assert_eq!(ApiRoute::parse(bad), Err(RouteError::BadShard), "{bad}");
        }
        assert_eq!(ApiRoute::parse(&format!("/export/CounterKv/{id}")), Ok(ApiRoute::Export { class: "CounterKv".into(), id: id.clone() }));
        assert_eq!(ApiRoute::parse("/"), Err(RouteError::UnknownRoute));
        assert_eq!(ApiRoute::parse("/index/1/2"), Err(RouteError::UnknownRoute));
        assert_eq!(ApiRoute::parse(&format!("/export/Counter/{id}/x")), Err(RouteError::UnknownRoute));
        assert_eq!(ApiRoute::parse(&format!("/export/1x/{id}")), Err(RouteError::BadClass));
        assert_eq!(ApiRoute::parse(&format!("/export/a-b/{id}")), Err(RouteError::BadClass));
        assert_eq!(ApiRoute::parse("/export/Counter/abc"), Err(RouteError::BadId));
        assert_eq!(ApiRoute::parse(&format!("/export/Counter/{}", "A".repeat(64))), Err(RouteError::BadId));
        assert_eq!(ApiRoute::parse("/import/Room/name/"), Err(RouteError::BadName));
        assert_eq!(ApiRoute::parse("/import/Room/name/_w"), Err(RouteError::BadName), "not UTF-8");
        assert_eq!(ApiRoute::parse("/import/Room/name/a%2F"), Err(RouteError::BadName), "not base64url");
        assert_eq!(ApiRoute::parse("/import/Room/id/abc/w"), Err(RouteError::BadId));
        assert_eq!(ApiRoute::parse(&format!("/import/Room/id/{id}/")), Err(RouteError::BadName));
        assert_eq!(ApiRoute::parse("/import/1x/name/a"), Err(RouteError::BadClass));
        assert_eq!(ApiRoute::parse(&format!("/import/Room/{id}")), Err(RouteError::UnknownRoute));
        let import = |target| ApiRoute::Import { class: "Room".into(), target };
        for route in [
            ApiRoute::parse(&format!("/export/CounterKv/{id}")).unwrap(),
            ApiRoute::Index { shard: 0 },
            ApiRoute::Index { shard: 3 },
            import(ImportTarget::Name("a/b c%d?é#".into())),
            import(ImportTarget::Name("..".into())),
            import(ImportTarget::Id { id: id.clone(), worker: "my-app".into() }),
        ] {
            assert_eq!(ApiRoute::parse(&route.to_string()), Ok(route));
        }
        assert_eq!(import(ImportTarget::Name("..".into())).to_string(), "/import/Room/name/Li4", "no dot segment");
    }
}
