//! The kubelet's device-plugin API `v1beta1`, generated from `proto/api.proto` (both
//! services, client and server sides), and the constants the kubelet defines beside it
//! (k8s.io/kubelet `pkg/apis/deviceplugin/v1beta1/constants.go`).

tonic::include_proto!("v1beta1");

/// The API version a plugin registers with.
pub const VERSION: &str = "v1beta1";
/// A device's health as `ListAndWatch` reports it.
pub const HEALTHY: &str = "Healthy";
pub const UNHEALTHY: &str = "Unhealthy";
/// The folder the kubelet watches for plugin sockets, and its own socket's name there.
pub const DEVICE_PLUGIN_PATH: &str = "/var/lib/kubelet/device-plugins";
pub const KUBELET_SOCKET: &str = "kubelet.sock";

#[cfg(test)]
mod tests {
    use expect_test::expect;
    use prost::Message;
    use prost_types::{FileDescriptorSet, field_descriptor_proto::Label, field_descriptor_proto::Type};

    /// Every service, method, message and field as compiled, one per line.
    fn listing() -> String {
        let bytes = include_bytes!(concat!(env!("OUT_DIR"), "/deviceplugin_v1beta1.bin"));
        let set = FileDescriptorSet::decode(&bytes[..]).expect("protoc wrote a descriptor set");
        let mut out = String::new();
        for file in &set.file {
            out += &format!("package {}\n", file.package());
            for service in &file.service {
                out += &format!("service {}\n", service.name());
                for method in &service.method {
                    let stream = if method.server_streaming() { "stream " } else { "" };
                    let short = |t: &str| t.trim_start_matches(".v1beta1.").to_owned();
                    out += &format!(
                        "  rpc {}({}) returns ({stream}{})\n",
                        method.name(),
                        short(method.input_type()),
                        short(method.output_type())
                    );
                }
            }
            for message in &file.message_type {
                out += &format!("message {}\n", message.name());
                for field in &message.field {
                    let repeated = if field.label() == Label::Repeated { "repeated " } else { "" };
                    let entry = message.nested_type.iter().find(|nested| {
                        nested.options.as_ref().is_some_and(|o| o.map_entry())
                            && field.type_name().ends_with(&format!(".{}", nested.name()))
                    });
                    if let Some(entry) = entry {
                        // A `map<K, V>`, compiled to an entry message of fields key and value.
                        let kind = |i: usize| format!("{:?}", entry.field[i].r#type()).to_lowercase();
                        out += &format!("  map<{}, {}> {} = {}\n", kind(0), kind(1), field.name(), field.number());
                        continue;
                    }
                    let kind = match field.r#type() {
                        Type::Message => field.type_name().trim_start_matches(".v1beta1.").to_owned(),
                        Type::String => "string".to_owned(),
                        Type::Bool => "bool".to_owned(),
                        Type::Int32 => "int32".to_owned(),
                        Type::Int64 => "int64".to_owned(),
                        other => format!("{other:?}"),
                    };
                    out += &format!("  {repeated}{kind} {} = {}\n", field.name(), field.number());
                }
            }
        }
        out
    }

    /// The kubelet's api.proto (kubernetes/kubelet `pkg/apis/deviceplugin/v1beta1/api.proto`,
    /// read in July 2026), name for name and number for number.
    #[test]
    fn the_api_is_the_kubelets() {
        expect![[r#"
            package v1beta1
            service Registration
              rpc Register(RegisterRequest) returns (Empty)
            service DevicePlugin
              rpc GetDevicePluginOptions(Empty) returns (DevicePluginOptions)
              rpc ListAndWatch(Empty) returns (stream ListAndWatchResponse)
              rpc GetPreferredAllocation(PreferredAllocationRequest) returns (PreferredAllocationResponse)
              rpc Allocate(AllocateRequest) returns (AllocateResponse)
              rpc PreStartContainer(PreStartContainerRequest) returns (PreStartContainerResponse)
            message DevicePluginOptions
              bool pre_start_required = 1
              bool get_preferred_allocation_available = 2
            message RegisterRequest
              string version = 1
              string endpoint = 2
              string resource_name = 3
              DevicePluginOptions options = 4
            message Empty
            message ListAndWatchResponse
              repeated Device devices = 1
            message TopologyInfo
              repeated NUMANode nodes = 1
            message NUMANode
              int64 ID = 1
            message Device
              string ID = 1
              string health = 2
              TopologyInfo topology = 3
            message PreStartContainerRequest
              repeated string devices_ids = 1
            message PreStartContainerResponse
            message PreferredAllocationRequest
              repeated ContainerPreferredAllocationRequest container_requests = 1
            message ContainerPreferredAllocationRequest
              repeated string available_deviceIDs = 1
              repeated string must_include_deviceIDs = 2
              int32 allocation_size = 3
            message PreferredAllocationResponse
              repeated ContainerPreferredAllocationResponse container_responses = 1
            message ContainerPreferredAllocationResponse
              repeated string deviceIDs = 1
            message AllocateRequest
              repeated ContainerAllocateRequest container_requests = 1
            message ContainerAllocateRequest
              repeated string devices_ids = 1
            message CDIDevice
              string name = 1
            message AllocateResponse
              repeated ContainerAllocateResponse container_responses = 1
            message ContainerAllocateResponse
              map<string, string> envs = 1
              repeated Mount mounts = 2
              repeated DeviceSpec devices = 3
              map<string, string> annotations = 4
              repeated CDIDevice cdi_devices = 5
            message Mount
              string container_path = 1
              string host_path = 2
              bool read_only = 3
            message DeviceSpec
              string container_path = 1
              string host_path = 2
              string permissions = 3
        "#]]
        .assert_eq(&listing());
    }
}
