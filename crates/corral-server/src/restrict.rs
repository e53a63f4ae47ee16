//! Triton's restricted APIs (`--http-restricted-api`, `--grpc-restricted-protocol`): a category
//! of endpoints (health, metadata, inference, shared memory, model configuration, model
//! repository, statistics, trace, logging) answers only calls that carry a header with a
//! given value, so a platform can keep, say, model control to its operators while clients
//! infer. Each flag is `<categories>:<key>=<value>`; over gRPC the header is named
//! `triton-grpc-protocol-<key>`. A category belongs to one group at most.
//!
//! Which endpoint belongs to which category follows Triton (http_server.cc's handlers,
//! grpc_server.cc's `Register*`); so do the answers: REST 403 `This API is restricted,
//! expecting header 'KEY'`, gRPC UNAVAILABLE `This protocol is restricted, expecting header
//! 'KEY'`.

use std::collections::BTreeMap;

/// A category of endpoints that a restriction names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Category {
    Health,
    Metadata,
    Inference,
    SharedMemory,
    ModelConfig,
    ModelRepository,
    Statistics,
    Trace,
    Logging,
}

/// Triton's names (restricted_features.h, `RESTRICTED_CATEGORY_NAMES`).
const NAMES: [(&str, Category); 9] = [
    ("health", Category::Health),
    ("metadata", Category::Metadata),
    ("inference", Category::Inference),
    ("shared-memory", Category::SharedMemory),
    ("model-config", Category::ModelConfig),
    ("model-repository", Category::ModelRepository),
    ("statistics", Category::Statistics),
    ("trace", Category::Trace),
    ("logging", Category::Logging),
];

impl Category {
    /// The category of a REST path (Triton: http_server.cc, each handler's
    /// `RETURN_AND_RESPOND_IF_RESTRICTED`).
    pub fn of_path(path: &str) -> Option<Category> {
        let parts: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
        Some(match parts.as_slice() {
            ["v2"] => Category::Metadata,
            ["v2", "health", ..] => Category::Health,
            ["v2", "systemsharedmemory" | "cudasharedmemory", ..] => Category::SharedMemory,
            ["v2", "repository", ..] => Category::ModelRepository,
            ["v2", "trace", ..] => Category::Trace,
            ["v2", "logging", ..] => Category::Logging,
            ["v2", "models", "stats"] => Category::Statistics,
            ["v2", "models", _, rest @ ..] => {
                let rest = match rest {
                    ["versions", _, rest @ ..] => rest,
                    rest => rest,
                };
                match rest {
                    [] => Category::Metadata,
                    ["ready"] => Category::Health,
                    ["config"] => Category::ModelConfig,
                    ["stats"] => Category::Statistics,
                    ["trace", ..] => Category::Trace,
                    ["infer" | "generate" | "generate_stream"] => Category::Inference,
                    _ => return None,
                }
            }
            _ => return None,
        })
    }

    /// The category of a gRPC method of `inference.GRPCInferenceService` (Triton:
    /// grpc_server.cc, each `Register*`; inference, infer_handler.cc).
    pub fn of_method(method: &str) -> Option<Category> {
        Some(match method {
            "ServerLive" | "ServerReady" | "ModelReady" => Category::Health,
            "ServerMetadata" | "ModelMetadata" => Category::Metadata,
            "ModelInfer" | "ModelStreamInfer" => Category::Inference,
            "ModelConfig" => Category::ModelConfig,
            "ModelStatistics" => Category::Statistics,
            "RepositoryIndex" | "RepositoryModelLoad" | "RepositoryModelUnload" => Category::ModelRepository,
            "TraceSetting" => Category::Trace,
            "LogSettings" => Category::Logging,
            m if m.starts_with("SystemSharedMemory") || m.starts_with("CudaSharedMemory") => Category::SharedMemory,
            _ => return None,
        })
    }
}

/// The restrictions of one protocol: for each restricted category, the header and value its
/// calls must carry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Restrictions {
    by_category: BTreeMap<Category, (String, String)>,
}

impl Restrictions {
    /// Reads the values of `flag` (`http-restricted-api` or `grpc-restricted-protocol`), each
    /// `<categories>:<key>=<value>`, the header named `header_prefix` and the key; errors in
    /// Triton's words (command_line_parser.cc, `ParseRestrictedFeatureOption`); `kind` is
    /// `api` or `protocol`.
    pub fn parse(values: &[String], flag: &str, header_prefix: &str, kind: &str) -> Result<Restrictions, String> {
        let mut restrictions = Restrictions::default();
        for value in values {
            let malformed = || format!("--{flag} option format is '<config name>:<setting>=<value>'. Got {value}");
            let (names, setting) = value.split_once(':').ok_or_else(malformed)?;
            let (key, expected) = setting.split_once('=').ok_or_else(malformed)?;
            if names.is_empty() || key.is_empty() || expected.is_empty() {
                return Err(malformed());
            }
            for name in names.split(',') {
                let category = NAMES
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|&(_, c)| c)
                    .ok_or_else(|| format!("unknown restricted {kind} '{name}'"))?;
                if restrictions.by_category.contains_key(&category) {
                    return Err(format!("restricted {kind} '{name}' can not be specified in multiple config groups"));
                }
                restrictions.by_category.insert(category, (format!("{header_prefix}{key}"), expected.to_owned()));
            }
        }
        Ok(restrictions)
    }

    /// Nothing restricted: the front ends add no check at all.
    pub fn is_empty(&self) -> bool {
        self.by_category.is_empty()
    }

    /// Whether a call of `category` may run, given how to read its headers; `Err` names the
    /// header it lacks.
    pub fn allows<'a>(
        &self,
        category: Option<Category>,
        header: impl Fn(&str) -> Option<&'a str>,
    ) -> Result<(), String> {
        let Some((name, expected)) = category.and_then(|c| self.by_category.get(&c)) else { return Ok(()) };
        if header(name) == Some(expected.as_str()) { Ok(()) } else { Err(name.clone()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_read_as_tritons_and_calls_are_checked_by_category() {
        let values = ["model-repository:admin-key=admin-value".to_owned(), "inference,health:infer-key=v".to_owned()];
        let r = Restrictions::parse(&values, "http-restricted-api", "", "api").expect("valid");
        let none = |_: &str| None;
        assert_eq!(r.allows(Category::of_path("/v2/repository/index"), none), Err("admin-key".to_owned()));
        assert_eq!(
            r.allows(Category::of_path("/v2/repository/index"), |h| (h == "admin-key").then_some("admin-value")),
            Ok(())
        );
        assert_eq!(r.allows(Category::of_path("/v2/models/m/versions/2/infer"), none), Err("infer-key".to_owned()));
        assert_eq!(r.allows(Category::of_path("/v2/models/m/ready"), none), Err("infer-key".to_owned()));
        assert_eq!(r.allows(Category::of_path("/v2/models/m/config"), none), Ok(()), "not restricted");
        assert_eq!(r.allows(Category::of_path("/v2"), none), Ok(()));
        let grpc = ["health:k=v".to_owned()];
        let r =
            Restrictions::parse(&grpc, "grpc-restricted-protocol", "triton-grpc-protocol-", "protocol").expect("valid");
        assert_eq!(r.allows(Category::of_method("ServerLive"), none), Err("triton-grpc-protocol-k".to_owned()));
        for (bad, says) in [
            ("inference", "--http-restricted-api option format is '<config name>:<setting>=<value>'. Got inference"),
            ("inferences:k=v", "unknown restricted api 'inferences'"),
            ("health:k=", "--http-restricted-api option format is '<config name>:<setting>=<value>'. Got health:k="),
        ] {
            assert_eq!(Restrictions::parse(&[bad.to_owned()], "http-restricted-api", "", "api"), Err(says.to_owned()));
        }
        let twice = ["health:a=1".to_owned(), "health:b=2".to_owned()];
        assert_eq!(
            Restrictions::parse(&twice, "http-restricted-api", "", "api"),
            Err("restricted api 'health' can not be specified in multiple config groups".to_owned())
        );
    }
}

/// The gRPC side: a layer over the whole service that answers a call of a restricted
/// category without its header with Triton's UNAVAILABLE, before the call is decoded.
#[derive(Clone)]
pub struct GrpcLayer(std::sync::Arc<Restrictions>);

impl GrpcLayer {
    /// The layer for `restrictions`; `None` when nothing is restricted, so that calls pay
    /// for no check (`tower::util::option_layer`).
    pub fn new(restrictions: Restrictions) -> Option<GrpcLayer> {
        (!restrictions.is_empty()).then(|| GrpcLayer(std::sync::Arc::new(restrictions)))
    }
}

impl<S> tower::Layer<S> for GrpcLayer {
    type Service = GrpcRestrict<S>;

    fn layer(&self, inner: S) -> GrpcRestrict<S> {
        GrpcRestrict { inner, restrictions: self.0.clone() }
    }
}

/// [`GrpcLayer`]'s service.
#[derive(Clone)]
pub struct GrpcRestrict<S> {
    inner: S,
    restrictions: std::sync::Arc<Restrictions>,
}

type BoxFuture<T> = std::pin::Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> tower::Service<axum::http::Request<B>> for GrpcRestrict<S>
where
    S: tower::Service<axum::http::Request<B>, Response = axum::http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        let method = request.uri().path().rsplit('/').next().unwrap_or_default();
        let headers = request.headers();
        let allowed = self
            .restrictions
            .allows(Category::of_method(method), |name| headers.get(name).and_then(|v| v.to_str().ok()));
        match allowed {
            Ok(()) => Box::pin(self.inner.call(request)),
            Err(header) => {
                let status = tonic::Status::unavailable(crate::triton::restricted_protocol(&header));
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}
