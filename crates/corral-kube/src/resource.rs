//! The names a device plugin may register, and the socket it listens on.
//!
//! The kubelet accepts a plugin's resource name only when it is an *extended* resource name
//! (kubernetes `pkg/apis/core/v1/helper/helpers.go`, `IsExtendedResourceName`): it has a
//! domain (`corral.dev/core`), the domain is not `kubernetes.io` or a subdomain of it, it
//! does not start with `requests.`, and `requests.` + the name is a qualified name
//! (apimachinery `validation.IsQualifiedName`: a DNS-1123 subdomain of at most 253
//! characters, `/`, and a name of at most 63 characters of `[A-Za-z0-9_.-]` that starts and
//! ends alphanumeric). [`check_resource_name`] applies the same rules, so that a name the
//! kubelet would refuse fails here, before anything registers.

/// The resource a plugin advertises unless told otherwise.
pub const RESOURCE_NAME_DEFAULT: &str = "corral.dev/core";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "--resource-name `{name}` is not a resource name Kubernetes accepts from a device plugin: {why}\nhint: use DOMAIN/NAME with a domain of your own, such as {RESOURCE_NAME_DEFAULT}"
)]
pub struct ResourceNameError {
    pub name: String,
    pub why: String,
}

/// Checks `name` as the kubelet does when a plugin registers it.
pub fn check_resource_name(name: &str) -> Result<(), ResourceNameError> {
    let refuse = |why: String| Err(ResourceNameError { name: name.to_owned(), why });
    let Some((domain, short)) = name.split_once('/') else {
        return refuse("it has no domain (DOMAIN/NAME); names without one are Kubernetes' own".to_owned());
    };
    if name.contains("kubernetes.io/") {
        return refuse("the kubernetes.io domain is reserved for Kubernetes' own resources".to_owned());
    }
    if name.starts_with("requests.") {
        return refuse("a name starting with `requests.` is read as a quota".to_owned());
    }
    if short.contains('/') {
        return refuse("it has more than one `/`".to_owned());
    }
    // As a quota, the name is `requests.DOMAIN/NAME`: the prefix must be a DNS subdomain.
    let prefix = format!("requests.{domain}");
    if domain.is_empty() || !is_dns_subdomain(&prefix) {
        return refuse(format!(
            "the domain `{domain}` is not a DNS subdomain (lower-case letters, digits, `-` and `.`, each label starting and ending alphanumeric, at most {} characters)",
            DNS_SUBDOMAIN_MAX - "requests.".len()
        ));
    }
    if short.is_empty() || short.len() > QUALIFIED_NAME_MAX || !is_qualified_name_part(short) {
        return refuse(format!(
            "the name `{short}` must be 1 to {QUALIFIED_NAME_MAX} letters, digits, `-`, `_` or `.`, starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

const DNS_SUBDOMAIN_MAX: usize = 253;
const QUALIFIED_NAME_MAX: usize = 63;

/// apimachinery `IsDNS1123Subdomain`: `[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*`.
fn is_dns_subdomain(text: &str) -> bool {
    let label_ok = |label: &str| {
        let bytes = label.as_bytes();
        let end_ok = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        !bytes.is_empty()
            && bytes.first().is_some_and(end_ok)
            && bytes.last().is_some_and(end_ok)
            && bytes.iter().all(|b| end_ok(b) || *b == b'-')
    };
    text.len() <= DNS_SUBDOMAIN_MAX && text.split('.').all(label_ok)
}

/// apimachinery's qualified-name part: `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`.
fn is_qualified_name_part(text: &str) -> bool {
    let bytes = text.as_bytes();
    let end_ok = |b: &u8| b.is_ascii_alphanumeric();
    bytes.first().is_some_and(end_ok)
        && bytes.last().is_some_and(end_ok)
        && bytes.iter().all(|b| end_ok(b) || matches!(b, b'-' | b'_' | b'.'))
}

/// The plugin's socket in the kubelet's folder: `corral-` + the resource name with `/` made
/// `_` + `.sock` (`corral-corral.dev_core.sock`), so that two resources never share one.
pub fn endpoint_name(resource_name: &str) -> String {
    format!("corral-{}.sock", resource_name.replace('/', "_"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{Expect, expect};

    #[track_caller]
    fn check(name: &str, expect: Expect) {
        let actual = match check_resource_name(name) {
            Ok(()) => format!("ok {}", endpoint_name(name)),
            Err(error) => error.to_string(),
        };
        expect.assert_eq(&actual);
    }

    #[test]
    fn names_the_kubelet_accepts() {
        check("corral.dev/core", expect!["ok corral-corral.dev_core.sock"]);
        check("example.com/Neuron_Core.v2", expect!["ok corral-example.com_Neuron_Core.v2.sock"]);
        check("aws.amazon.com/neuroncore", expect!["ok corral-aws.amazon.com_neuroncore.sock"]);
    }

    #[test]
    fn names_the_kubelet_refuses() {
        check(
            "core",
            expect![[r#"
                --resource-name `core` is not a resource name Kubernetes accepts from a device plugin: it has no domain (DOMAIN/NAME); names without one are Kubernetes' own
                hint: use DOMAIN/NAME with a domain of your own, such as corral.dev/core"#]],
        );
        check(
            "kubernetes.io/core",
            expect![[r#"
                --resource-name `kubernetes.io/core` is not a resource name Kubernetes accepts from a device plugin: the kubernetes.io domain is reserved for Kubernetes' own resources
                hint: use DOMAIN/NAME with a domain of your own, such as corral.dev/core"#]],
        );
        check(
            "Corral.dev/core",
            expect![[r#"
                --resource-name `Corral.dev/core` is not a resource name Kubernetes accepts from a device plugin: the domain `Corral.dev` is not a DNS subdomain (lower-case letters, digits, `-` and `.`, each label starting and ending alphanumeric, at most 244 characters)
                hint: use DOMAIN/NAME with a domain of your own, such as corral.dev/core"#]],
        );
        check(
            "corral.dev/-core",
            expect![[r#"
                --resource-name `corral.dev/-core` is not a resource name Kubernetes accepts from a device plugin: the name `-core` must be 1 to 63 letters, digits, `-`, `_` or `.`, starting and ending with a letter or digit
                hint: use DOMAIN/NAME with a domain of your own, such as corral.dev/core"#]],
        );
        check(
            "corral.dev/a/b",
            expect![[r#"
                --resource-name `corral.dev/a/b` is not a resource name Kubernetes accepts from a device plugin: it has more than one `/`
                hint: use DOMAIN/NAME with a domain of your own, such as corral.dev/core"#]],
        );
        check(
            "requests.corral.dev/core",
            expect![[r#"
                --resource-name `requests.corral.dev/core` is not a resource name Kubernetes accepts from a device plugin: a name starting with `requests.` is read as a quota
                hint: use DOMAIN/NAME with a domain of your own, such as corral.dev/core"#]],
        );
        assert!(check_resource_name(&format!("corral.dev/{}", "c".repeat(64))).is_err());
        assert!(check_resource_name(&format!("{}.dev/core", "a".repeat(245))).is_err());
        assert!(check_resource_name("corral..dev/core").is_err());
    }
}
