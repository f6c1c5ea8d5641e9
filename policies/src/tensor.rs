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

/// The file's bytes with every f16/bf16/f64 tensor rewritten as f32, or `None` when all floats already are
/// f32. burn-store keeps a tensor's stored dtype, and an f16 weight in an f32 module fails inside the
/// first matmul; half-precision checkpoints (LeRobot users save them to halve downloads) are upcast here.
pub fn upcast_floats_to_f32(bytes: &[u8], path: &Path) -> Result<Option<Vec<u8>>, PolicyError> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| PolicyError::Safetensors {
        path: path.into(),
        message: e.to_string(),
    })?;
    let narrow = |d: Dtype| matches!(d, Dtype::F16 | Dtype::BF16 | Dtype::F64);
    if !st.tensors().iter().any(|(_, v)| narrow(v.dtype())) {
        return Ok(None);
    }
    let floats = parse_safetensors_filtered(bytes, path, &|name| {
        st.tensor(name).map(|v| narrow(v.dtype())).unwrap_or(false)
    })?;
    let mut owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, view) in st.tensors() {
        match floats.get(&name) {
            Some(t) => owned.push((
                name,
                Dtype::F32,
                t.shape.clone(),
                t.data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            )),
            None => owned.push((name, view.dtype(), view.shape().to_vec(), view.data().to_vec())),
        }
    }
    let views = owned
        .iter()
        .map(|(name, dtype, shape, data)| {
            safetensors::tensor::TensorView::new(*dtype, shape.clone(), data).map(|v| (name.clone(), v))
        })
        .collect::<Result<Vec<_>, _>>()
        .and_then(|views| safetensors::serialize(views, None));
    views.map(Some).map_err(|e| PolicyError::Safetensors {
        path: path.into(),
        message: format!("upcasting to f32: {e}"),
    })
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
    let bytes = safetensors_bytes(tensors).map_err(|message| PolicyError::Safetensors {
        path: path.into(),
        message,
    })?;
    std::fs::write(path, bytes).map_err(|e| PolicyError::io(path, e))
}

/// f32 tensors as the bytes of a safetensors file.
pub fn safetensors_bytes(tensors: &BTreeMap<String, HostTensor>) -> Result<Vec<u8>, String> {
    safetensors_bytes_with(tensors, None)
}

/// [`safetensors_bytes`] with string metadata (the header's `__metadata__`).
pub fn safetensors_bytes_with(
    tensors: &BTreeMap<String, HostTensor>,
    metadata: Option<std::collections::HashMap<String, String>>,
) -> Result<Vec<u8>, String> {
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
    let views = bytes
        .iter()
        .map(|(k, b, s)| {
            safetensors::tensor::TensorView::new(Dtype::F32, s.clone(), b)
                .map(|v| (k.clone(), v))
                .map_err(|e| format!("{k}: {e}"))
        })
        .collect::<Result<Vec<_>, String>>()?;
    safetensors::serialize(views, metadata).map_err(|e| e.to_string())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every one of the 65 536 half-precision bit patterns (subnormals, infinities, NaNs included)
    /// decodes to the value the `half` crate gives.
    #[test]
    fn f16_decoding_matches_the_half_crate_for_every_bit_pattern() {
        for bits in 0..=u16::MAX {
            let want = half::f16::from_bits(bits).to_f32();
            let got = f16_to_f32(bits);
            if want.is_nan() {
                assert!(got.is_nan(), "{bits:#06x}: {got}");
            } else {
                assert_eq!(got.to_bits(), want.to_bits(), "{bits:#06x}: {got} vs {want}");
            }
        }
    }

    fn file(tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
        let views = tensors.iter().map(|(n, d, s, b)| {
            (
                n.to_string(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        });
        safetensors::serialize(views, None).unwrap()
    }

    #[test]
    fn upcast_rewrites_half_floats_and_keeps_the_rest() {
        let path = Path::new("model.safetensors");
        let vals = [0.5f32, -1.25, 3.0e-3, 1000.0];
        let f16: Vec<u8> = vals
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect();
        let bf16: Vec<u8> = vals
            .iter()
            .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
            .collect();
        let f32s: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        let steps: Vec<u8> = 7i64.to_le_bytes().to_vec();
        let all_f32 = file(&[("w", Dtype::F32, vec![2, 2], f32s.clone())]);
        assert!(
            upcast_floats_to_f32(&all_f32, path).unwrap().is_none(),
            "nothing to do for f32 files"
        );

        let mixed = file(&[
            ("a", Dtype::F16, vec![4], f16),
            ("b", Dtype::BF16, vec![2, 2], bf16),
            ("c", Dtype::F32, vec![4], f32s),
            ("n", Dtype::I64, vec![], steps.clone()),
        ]);
        let out = upcast_floats_to_f32(&mixed, path).unwrap().expect("rewritten");
        let st = SafeTensors::deserialize(&out).unwrap();
        for name in ["a", "b", "c"] {
            assert_eq!(st.tensor(name).unwrap().dtype(), Dtype::F32, "{name}");
        }
        let n = st.tensor("n").unwrap();
        assert_eq!(
            (n.dtype(), n.data()),
            (Dtype::I64, steps.as_slice()),
            "integers are left alone"
        );
        let back = parse_safetensors(&out, path).unwrap();
        assert_eq!(back["b"].shape, vec![2, 2]);
        for (name, tol) in [("a", 1e-3), ("b", 8e-3), ("c", 0.0)] {
            for (got, want) in back[name].data.iter().zip(vals) {
                assert!((got - want).abs() <= tol * want.abs(), "{name}: {got} vs {want}");
            }
        }
        assert!(upcast_floats_to_f32(b"not a safetensors file", path).is_err());
    }
}
