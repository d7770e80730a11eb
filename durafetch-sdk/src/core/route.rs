//! Which requests belong to the export API, and what they ask for.

use std::fmt;

/// First host label of the export API: `durafetch_<worker name>`.
pub const HOST_LABEL_PREFIX: &str = "durafetch_";

/// How a request's host relates to this worker's export API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostMatch {
    /// The first label is exactly `durafetch_<worker>`.
    Api,
    /// Anything else, including `durafetch_<another worker>`: the user's code handles it.
    NotOurs,
}

pub fn match_host(host: &str, worker: &str) -> HostMatch {
    let label = host.split('.').next().unwrap_or("");
    match label.strip_prefix(HOST_LABEL_PREFIX) {
        Some(name) if name.eq_ignore_ascii_case(worker) && !worker.is_empty() => HostMatch::Api,
        _ => HostMatch::NotOurs,
    }
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
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("unknown route; expected /index, /index/<shard> or /export/<class>/<object id>")]
    UnknownRoute,
    #[error("invalid registry shard: expected a decimal number below the configured registry_shards")]
    BadShard,
    #[error("invalid class name: expected a Rust type name")]
    BadClass,
    #[error("invalid object id: expected 64 lowercase hexadecimal digits")]
    BadId,
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
            _ => Err(RouteError::UnknownRoute),
        }
    }
}

impl fmt::Display for ApiRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiRoute::Index { shard } => f.write_str(&crate::core::shard::index_path(*shard)),
            ApiRoute::Export { class, id } => write!(f, "/export/{class}/{id}"),
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
    fn host_label_must_match_exactly() {
        assert_eq!(match_host("durafetch_w-1.example.com", "w-1"), HostMatch::Api);
        assert_eq!(match_host("durafetch_w-1.localhost", "w-1"), HostMatch::Api);
        assert_eq!(match_host("durafetch_w-10.example.com", "w-1"), HostMatch::NotOurs);
        assert_eq!(match_host("durafetch_w-1.example.com", "w-10"), HostMatch::NotOurs);
        assert_eq!(match_host("durafetch_w-1x.example.com", "w-1"), HostMatch::NotOurs);
        assert_eq!(match_host("w-1.example.com", "w-1"), HostMatch::NotOurs);
        assert_eq!(match_host("x.durafetch_w-1.example.com", "w-1"), HostMatch::NotOurs);
        assert_eq!(match_host("durafetch_.example.com", ""), HostMatch::NotOurs);
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
        for route in
            [ApiRoute::parse(&format!("/export/CounterKv/{id}")).unwrap(), ApiRoute::Index { shard: 0 }, ApiRoute::Index { shard: 3 }]
        {
            assert_eq!(ApiRoute::parse(&route.to_string()), Ok(route));
        }
    }
}
