//! Declared inputs and outputs ([`TensorSpec`]: name, datatype, shape with `-1` for a
//! dynamic dimension) and input validation that names the input, what was expected and
//! what came.

use crate::{
    datatype::DataType,
    tensor::{Tensor, TensorData, bf16, f16},
};

/// A declared input or output: name, datatype, shape with `-1` for a dynamic dimension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub datatype: DataType,
    pub shape: Vec<i64>,
}

impl TensorSpec {
    pub fn new(name: impl Into<String>, datatype: DataType, shape: Vec<i64>) -> TensorSpec {
        TensorSpec { name: name.into(), datatype, shape }
    }
}

fn show_shape(shape: &[i64]) -> String {
    let dims: Vec<String> = shape.iter().map(|d| if *d < 0 { "-1".to_owned() } else { d.to_string() }).collect();
    format!("[{}]", dims.join(", "))
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum InputError {
    #[error("expected {expected} inputs ({names}), got {got}", names = .names.join(", "))]
    Count { expected: usize, got: usize, names: Vec<String> },
    #[error("unknown input `{name}`; the model's inputs are {}", .known.join(", "))]
    Unknown { name: String, known: Vec<String> },
    #[error("input `{name}` was given twice")]
    Duplicate { name: String },
    #[error("input `{name}` must be {expected}, got {got}")]
    DataType { name: String, expected: DataType, got: DataType },
    #[error("input `{name}` must have shape {}, got {}", show_shape(.expected), show_shape(.got))]
    Shape { name: String, expected: Vec<i64>, got: Vec<i64> },
    #[error("input `{name}` has shape {} ({elements} elements) but {got} values", show_shape(.shape))]
    Length { name: String, shape: Vec<i64>, elements: usize, got: usize },
}

/// Checks inputs against the model's declared inputs: count, names, datatypes, shapes (a
/// `-1` dimension matches any size) and that each tensor's data fills its shape.
pub fn validate_inputs(specs: &[TensorSpec], inputs: &[Tensor]) -> Result<(), InputError> {
    for (i, input) in inputs.iter().enumerate() {
        let Some(spec) = specs.iter().find(|s| s.name == input.name) else {
            return Err(InputError::Unknown {
                name: input.name.clone(),
                known: specs.iter().map(|s| s.name.clone()).collect(),
            });
        };
        if inputs[..i].iter().any(|other| other.name == input.name) {
            return Err(InputError::Duplicate { name: input.name.clone() });
        }
        if input.datatype() != spec.datatype {
            return Err(InputError::DataType {
                name: input.name.clone(),
                expected: spec.datatype,
                got: input.datatype(),
            });
        }
        let got: Vec<i64> = input.shape.iter().map(|&d| d as i64).collect();
        let fits =
            got.len() == spec.shape.len() && spec.shape.iter().zip(&got).all(|(&want, &have)| want < 0 || want == have);
        if !fits {
            return Err(InputError::Shape { name: input.name.clone(), expected: spec.shape.clone(), got });
        }
        let elements: usize = input.shape.iter().product();
        if elements != input.data.len() {
            return Err(InputError::Length { name: input.name.clone(), shape: got, elements, got: input.data.len() });
        }
    }
    if inputs.len() != specs.len() {
        return Err(InputError::Count {
            expected: specs.len(),
            got: inputs.len(),
            names: specs.iter().map(|s| s.name.clone()).collect(),
        });
    }
    Ok(())
}

/// Deterministic, non-trivial inputs shaped like `specs`, dynamic dimensions set to
/// `dynamic`: for benchmarks, demos and conformance tests, where zeros could hide mistakes
/// (a model that ignores its input looks right on zeros).
pub fn sample_inputs(specs: &[TensorSpec], dynamic: usize) -> Vec<Tensor> {
    specs
        .iter()
        .map(|spec| {
            let shape: Vec<usize> = spec.shape.iter().map(|&d| if d < 0 { dynamic } else { d as usize }).collect();
            let len: usize = shape.iter().product();
            let wave = |i: usize| ((i * 7919) % 1000) as f64 / 1000.0 - 0.5;
            let byte = |i: usize| ((i * 31) % 257) as i64 - 1;
            let data = match spec.datatype {
                DataType::F32 => TensorData::F32((0..len).map(|i| wave(i) as f32).collect()),
                DataType::F64 => TensorData::F64((0..len).map(wave).collect()),
                DataType::I64 => TensorData::I64((0..len).map(byte).collect()),
                DataType::I32 => TensorData::I32((0..len).map(|i| byte(i) as i32).collect()),
                DataType::Bool => TensorData::Bool((0..len).map(|i| i % 3 == 0).collect()),
                DataType::F16 => TensorData::F16((0..len).map(|i| f16::from_f64(wave(i))).collect()),
                DataType::BF16 => TensorData::BF16((0..len).map(|i| bf16::from_f64(wave(i))).collect()),
                DataType::Bytes => TensorData::Bytes((0..len).map(|i| format!("s{}", byte(i)).into_bytes()).collect()),
                other => TensorData::zeros(other, len),
            };
            Tensor::new(spec.name.clone(), shape, data)
        })
        .collect()
}

impl Tensor {
    /// A tensor of zeros shaped like `spec`, with dynamic dimensions set to 1.
    pub fn zeros_like(spec: &TensorSpec) -> Tensor {
        let shape: Vec<usize> = spec.shape.iter().map(|&d| if d < 0 { 1 } else { d as usize }).collect();
        let len = shape.iter().product();
        Tensor::new(spec.name.clone(), shape, TensorData::zeros(spec.datatype, len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TensorData;
    use expect_test::expect;

    #[test]
    fn validation_names_the_input_and_what_was_expected() {
        let specs = [TensorSpec::new("x", DataType::F32, vec![-1, 3]), TensorSpec::new("k", DataType::I64, vec![1])];
        let x = |shape: Vec<usize>, n: usize| Tensor::new("x", shape, TensorData::F32(vec![0.0; n]));
        let k = Tensor::new("k", vec![1], TensorData::I64(vec![1]));
        let cases: Vec<Vec<Tensor>> = vec![
            vec![x(vec![2, 3], 6), k.clone()],
            vec![x(vec![2, 3], 6)],
            vec![x(vec![2, 3], 6), Tensor::new("y", vec![1], TensorData::I64(vec![1]))],
            vec![x(vec![2, 3], 6), x(vec![2, 3], 6)],
            vec![Tensor::new("x", vec![1, 3], TensorData::F64(vec![0.0; 3])), k.clone()],
            vec![x(vec![2, 4], 8), k.clone()],
            vec![x(vec![3], 3), k.clone()],
            vec![x(vec![2, 3], 5), k.clone()],
        ];
        let out: Vec<String> = cases
            .iter()
            .map(|inputs| match validate_inputs(&specs, inputs) {
                Ok(()) => "ok".to_owned(),
                Err(e) => e.to_string(),
            })
            .collect();
        expect![[r#"
            ok
            expected 2 inputs (x, k), got 1
            unknown input `y`; the model's inputs are x, k
            input `x` was given twice
            input `x` must be FP32, got FP64
            input `x` must have shape [-1, 3], got [2, 4]
            input `x` must have shape [-1, 3], got [3]
            input `x` has shape [2, 3] (6 elements) but 5 values"#]]
        .assert_eq(&out.join("\n"));
    }
}
