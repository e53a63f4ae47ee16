//! Triton's classification extension: an output asked for with `classification: k` comes
//! back as its top `k` elements, as BYTES strings `"value:index"` or `"value:index:label"`,
//! labels read at load from the output's `label_filename` (one per line, line `i` naming
//! index `i`). A batching model is classified row by row (shape `[batch, k']`); others over
//! all their elements (shape `[k']`), `k'` being `k` or the elements there are, if fewer.
//!
//! Values are written as C++'s `std::to_string` writes them (six decimals for floats), as
//! Triton does, so clients parsing Triton's strings read ours. Equal values keep index
//! order. BOOL, BYTES and the 16-bit floats have no ordering here, as in Triton: asking for
//! their classes is Triton's error.

use std::borrow::Cow;

use corral_engine::{DataType, Strings, Tensor, TensorData, TensorView};

use crate::{error::CallError, triton};

/// `tensor`, or its classes when the call asked for `class_count` > 0.
pub fn answer<'a>(
    tensor: &'a Tensor,
    class_count: usize,
    batched: bool,
    labels: &[String],
) -> Result<Cow<'a, Tensor>, CallError> {
    if class_count == 0 {
        return Ok(Cow::Borrowed(tensor));
    }
    top_k(tensor, class_count, batched, labels).map(Cow::Owned)
}

/// The most elements a row may have to be classified (Triton's `kMaxClassificationElements`).
const CLASS_ELEMENTS_MAX: usize = 1_000_000;

/// The top `k` classes of each row of `tensor` (one row unless `batched`).
pub fn top_k(tensor: &Tensor, k: usize, batched: bool, labels: &[String]) -> Result<Tensor, CallError> {
    let datatype = tensor.datatype();
    // Triton's order (classification.cc, TopkClassifications): BYTES has no element size and is
    // refused first; then a row of more than a million elements; then the other types it does
    // not rank.
    if datatype == DataType::Bytes {
        return Err(triton::class_unsupported(datatype));
    }
    let rows = match tensor.shape.first() {
        Some(&rows) if batched => rows,
        _ => 1,
    };
    let per_row = tensor.data.len().checked_div(rows).unwrap_or(0);
    if per_row > CLASS_ELEMENTS_MAX {
        return Err(triton::class_too_large());
    }
    if matches!(datatype, DataType::Bool | DataType::F16 | DataType::BF16) {
        return Err(triton::class_unsupported(datatype));
    }
    let classes = k.min(per_row);
    let values = tensor.data.view();
    let ranked = tensor.data.to_f64();
    let mut strings = Vec::with_capacity(rows * classes);
    for row in 0..rows {
        let start = row * per_row;
        let row_values = &ranked[start..start + per_row];
        let mut order: Vec<usize> = (0..per_row).collect();
        order.sort_by(|&a, &b| row_values[b].total_cmp(&row_values[a]));
        for &index in &order[..classes] {
            let mut class = format!("{}:{index}", value_text(&values, start + index));
            if let Some(label) = labels.get(index) {
                class.push(':');
                class.push_str(label);
            }
            strings.push(class.into_bytes());
        }
    }
    let shape = if batched { vec![rows, classes] } else { vec![classes] };
    Ok(Tensor::new(tensor.name.clone(), shape, TensorData::Bytes(Strings::from_elements(strings))))
}

/// Element `i` as `std::to_string` writes it: integers plainly, floats with six decimals.
fn value_text(values: &TensorView<'_>, i: usize) -> String {
    match values {
        TensorView::U8(v) => v[i].to_string(),
        TensorView::U16(v) => v[i].to_string(),
        TensorView::U32(v) => v[i].to_string(),
        TensorView::U64(v) => v[i].to_string(),
        TensorView::I8(v) => v[i].to_string(),
        TensorView::I16(v) => v[i].to_string(),
        TensorView::I32(v) => v[i].to_string(),
        TensorView::I64(v) => v[i].to_string(),
        TensorView::F32(v) => float_text(f64::from(v[i])),
        TensorView::F64(v) => float_text(v[i]),
        TensorView::Bool(_) | TensorView::Bytes(_) | TensorView::F16(_) | TensorView::BF16(_) => {
            unreachable!("refused before ranking")
        }
    }
}

fn float_text(x: f64) -> String {
    if x.is_nan() {
        return if x.is_sign_negative() { "-nan" } else { "nan" }.to_owned();
    }
    format!("{x:.6}")
}

/// The labels of `label_filename`, one per line (a trailing newline adds no label).
pub fn read_labels(path: &std::path::Path) -> Result<Vec<String>, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("label_filename: cannot read {}: {e}", path.display()))?;
    Ok(text.lines().map(str::to_owned).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(tensor: &Tensor) -> Vec<String> {
        let TensorView::Bytes(v) = tensor.data.view() else { panic!("BYTES") };
        v.iter().map(|e| String::from_utf8(e.to_vec()).expect("text")).collect()
    }

    #[test]
    fn top_k_is_ordered_labelled_and_shaped_like_tritons() {
        let probs = Tensor::new("p", vec![4], TensorData::F32(vec![0.1, 0.7, 0.05, 0.7]));
        let labels = ["cat".to_owned(), "dog".to_owned()];
        let classes = top_k(&probs, 3, false, &labels).expect("classifies");
        assert_eq!(classes.shape, [3]);
        assert_eq!(texts(&classes), ["0.700000:1:dog", "0.700000:3", "0.100000:0:cat"]);
        let batch = Tensor::new("p", vec![2, 3], TensorData::I64(vec![5, -1, 9, 0, 2, 1]));
        let classes = top_k(&batch, 5, true, &[]).expect("classifies");
        assert_eq!(classes.shape, [2, 3], "k past the row's elements is clamped");
        assert_eq!(texts(&classes), ["9:2", "5:0", "-1:1", "2:1", "1:2", "0:0"]);
        let empty = Tensor::new("p", vec![0, 3], TensorData::F64(Vec::new()));
        assert_eq!(top_k(&empty, 2, true, &[]).expect("classifies").shape, [0, 0]);
        let flags = Tensor::new("b", vec![1], TensorData::Bool(vec![true]));
        assert_eq!(
            top_k(&flags, 1, false, &[]).unwrap_err().message,
            "class result not available for output due to unsupported type 'BOOL'"
        );
        let answered = answer(&probs, 0, false, &[]).expect("as is");
        assert!(matches!(answered, Cow::Borrowed(_)), "no classification asked: the tensor itself");
    }
}
