//! Host-side f32 tensors: the currency of the `Policy` contract, independent of the burn backend.

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::{Dtype, SafeTensors};

use crate::error::PolicyError;

/// A dense row-major f32 tensor in host memory.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl HostTensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self, PolicyError> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(PolicyError::Input(format!(
                "tensor of shape {shape:?} needs {n} values, got {}",
                data.len()
            )));
        }
        Ok(Self { shape, data })
    }

    pub fn zeros(shape: Vec<usize>) -> Self {
        let n = shape.iter().product();
        Self {
            shape,
            data: vec![0.0; n],
        }
    }

    pub fn numel(&self) -> usize {
        self.data.len()
    }

    /// Index of the first non-finite value, if any.
    pub fn first_non_finite(&self) -> Option<usize> {
        self.data.iter().position(|v| !v.is_finite())
    }

    /// Largest |a − b| over all elements; shapes must agree.
    pub fn max_abs_diff(&self, other: &HostTensor) -> Option<f32> {
        if self.shape != other.shape {
            return None;
        }
        Some(
            self.data
                .iter()
                .zip(&other.data)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max),
        )
    }

    /// The sub-tensor `[.., start..start+len, ..]` along `dim`.
    pub fn narrow(&self, dim: usize, start: usize, len: usize) -> HostTensor {
        let outer: usize = self.shape[..dim].iter().product();
        let inner: usize = self.shape[dim + 1..].iter().product();
        let d = self.shape[dim];
        let mut data = Vec::with_capacity(outer * len * inner);
        for o in 0..outer {
            let base = o * d * inner;
            data.extend_from_slice(&self.data[base + start * inner..base + (start + len) * inner]);
        }
        let mut shape = self.shape.clone();
        shape[dim] = len;
        HostTensor { shape, data }
    }
}

/// Read every tensor of a safetensors file as f32 (f16/bf16/f64 are converted; integers rejected).
pub fn read_safetensors(path: &Path) -> Result<BTreeMap<String, HostTensor>, PolicyError> {
    let bytes = std::fs::read(path).map_err(|e| PolicyError::io(path, e))?;
    parse_safetensors(&bytes, path)
}

pub fn parse_safetensors(bytes: &[u8], path: &Path) -> Result<BTreeMap<String, HostTensor>, PolicyError> {
    parse_safetensors_filtered(bytes, path, &|_| true)
}

fn parse_safetensors_filtered(
    bytes: &[u8],
    path: &Path,
    keep: &dyn Fn(&str) -> bool,
) -> Result<BTreeMap<String, HostTensor>, PolicyError> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| PolicyError::Safetensors {
        path: path.into(),
        message: e.to_string(),
    })?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        if !keep(&name) {
            continue;
        }
        let data = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F64 => data
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32)
                .collect(),
            Dtype::F16 => data
                .chunks_exact(2)
                .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
            Dtype::BF16 => data
                .chunks_exact(2)
                .map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16))
                .collect(),
            Dtype::I64 => data
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f32)
                .collect(),
            other => {
                return Err(PolicyError::Safetensors {
                    path: path.into(),
                    message: format!("tensor {name:?} has dtype {other:?}; expected a float type"),
                })
            }
        };
        out.insert(
            name,
            HostTensor {
                shape: view.shape().to_vec(),
                data: values,
            },
        );
    }
    Ok(out)
}

fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let mant = (h & 0x3ff) as u32;
    let bits = match (exp, mant) {
        (0, 0) => sign,
        (0, m) => {
            // subnormal: renormalise
            let mut e = 127 - 15 + 1;
            let mut m = m;
            while m & 0x400 == 0 {
                m <<= 1;
                e -= 1;
            }
            sign | ((e as u32) << 23) | ((m & 0x3ff) << 13)
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

/// Write f32 tensors to a safetensors file.
pub fn write_safetensors(path: &Path, tensors: &BTreeMap<String, HostTensor>) -> Result<(), PolicyError> {
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .iter()
        .map(|(k, t)| {
            (
                k.clone(),
                t.data.iter().flat_map(|v| v.to_le_bytes()).collect(),
                t.shape.clone(),
            )
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes
        .iter()
        .map(|(k, b, s)| {
            (
                k.clone(),
                safetensors::tensor::TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).map_err(|e| PolicyError::Safetensors {
        path: path.into(),
        message: e.to_string(),
    })
}

/// Read only the tensors whose names satisfy `keep` (the file is memory-mapped, so large weight files
/// cost nothing beyond the tensors read).
pub fn read_safetensors_where(
    path: &Path,
    keep: impl Fn(&str) -> bool,
) -> Result<BTreeMap<String, HostTensor>, PolicyError> {
    let file = std::fs::File::open(path).map_err(|e| PolicyError::io(path, e))?;
    // SAFETY: the mapping is read-only and dropped before returning; checkpoint files are not
    // expected to be modified while riptide loads them.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| PolicyError::io(path, e))?;
    let all = parse_safetensors_filtered(&map, path, &keep)?;
    Ok(all)
}
