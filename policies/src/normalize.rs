//! Feature normalization as LeRobot applies it (MEAN_STD, MIN_MAX, IDENTITY), with stats read from
//! either the processor safetensors files or the legacy buffers inside `model.safetensors`.
//!
//! Missing or non-finite stats for a feature that is meant to be normalised are an error: a silent
//! pass-through would feed the network values on the wrong scale and drive the robot somewhere else.

use std::collections::BTreeMap;

use crate::error::PolicyError;
use crate::tensor::HostTensor;

const EPS: f32 = 1e-8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum NormMode {
    MeanStd,
    MinMax,
    Identity,
}

impl NormMode {
    pub fn parse(s: &str) -> Result<Self, PolicyError> {
        match s {
            "MEAN_STD" => Ok(Self::MeanStd),
            "MIN_MAX" => Ok(Self::MinMax),
            "IDENTITY" => Ok(Self::Identity),
            other => Err(PolicyError::Config(format!(
                "normalization mode {other:?} is not supported (MEAN_STD, MIN_MAX, IDENTITY)"
            ))),
        }
    }
}

/// Which formula family the stats came with. Legacy (≤ LeRobot 0.3) MIN_MAX adds ε to the
/// denominator; the processor pipeline replaces a zero range by ε instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatsLayout {
    Processor,
    Legacy,
}

/// Normalization of one feature, per element (vectors) or per channel (images).
#[derive(Debug, Clone)]
pub struct FeatureNorm {
    pub mode: NormMode,
    layout: StatsLayout,
    /// (mean, std) for MEAN_STD or (min, max) for MIN_MAX, one entry per channel.
    a: Vec<f32>,
    b: Vec<f32>,
}

impl FeatureNorm {
    pub fn identity() -> Self {
        Self {
            mode: NormMode::Identity,
            layout: StatsLayout::Processor,
            a: vec![],
            b: vec![],
        }
    }

    /// Number of channels the stats cover (0 for identity).
    pub fn channels(&self) -> usize {
        self.a.len()
    }

    /// Build from stats for `feature`; `stats` maps stat name ("mean", "std", "min", "max") to values.
    pub fn from_stats(
        feature: &str,
        mode: NormMode,
        stats: &BTreeMap<String, HostTensor>,
        layout: StatsLayout,
        channels: usize,
    ) -> Result<Self, PolicyError> {
        let get = |name: &str| -> Result<Vec<f32>, PolicyError> {
            let t = stats.get(name).ok_or_else(|| {
                PolicyError::Stats(format!(
                    "feature {feature:?} is normalised with {mode:?} but its {name:?} stat is missing \
                     (looked for \"{feature}.{name}\"); re-export the checkpoint with its dataset stats"
                ))
            })?;
            if let Some(i) = t.first_non_finite() {
                return Err(PolicyError::Stats(format!(
                    "feature {feature:?} stat {name:?} has a non-finite value ({}) at index {i}; \
                     the checkpoint was saved without dataset stats",
                    t.data[i]
                )));
            }
            if t.numel() != channels {
                return Err(PolicyError::Stats(format!(
                    "feature {feature:?} stat {name:?} has {} values (shape {:?}), expected {channels}",
                    t.numel(),
                    t.shape
                )));
            }
            Ok(t.data.clone())
        };
        let (a, b) = match mode {
            NormMode::Identity => return Ok(Self::identity()),
            NormMode::MeanStd => (get("mean")?, get("std")?),
            NormMode::MinMax => (get("min")?, get("max")?),
        };
        Ok(Self { mode, layout, a, b })
    }

    /// Normalise in place; `x` is laid out `[..., channels, inner]` (inner = 1 for vectors, H·W for images).
    pub fn normalize(&self, x: &mut [f32], inner: usize) {
        self.apply(x, inner, false)
    }

    /// Undo normalisation in place.
    pub fn unnormalize(&self, x: &mut [f32], inner: usize) {
        self.apply(x, inner, true)
    }

    // Same formulas and association order as LeRobot, so results agree to the last ulp or so.
    fn apply(&self, x: &mut [f32], inner: usize, inverse: bool) {
        let c = self.a.len();
        if self.mode == NormMode::Identity || c == 0 {
            return;
        }
        for (i, v) in x.iter_mut().enumerate() {
            let ch = (i / inner) % c;
            let (a, b) = (self.a[ch], self.b[ch]);
            *v = match (self.mode, self.layout, inverse) {
                (NormMode::MeanStd, _, false) => (*v - a) / (b + EPS),
                (NormMode::MeanStd, _, true) => *v * b + a,
                (NormMode::MinMax, StatsLayout::Processor, false) => {
                    let d = if b - a == 0.0 { EPS } else { b - a };
                    2.0 * (*v - a) / d - 1.0
                }
                (NormMode::MinMax, StatsLayout::Processor, true) => {
                    let d = if b - a == 0.0 { EPS } else { b - a };
                    (*v + 1.0) / 2.0 * d + a
                }
                (NormMode::MinMax, StatsLayout::Legacy, false) => (*v - a) / (b - a + EPS) * 2.0 - 1.0,
                (NormMode::MinMax, StatsLayout::Legacy, true) => (*v + 1.0) / 2.0 * (b - a) + a,
                (NormMode::Identity, _, _) => *v,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(pairs: &[(&str, Vec<f32>)]) -> BTreeMap<String, HostTensor> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), HostTensor::new(vec![v.len()], v.clone()).unwrap()))
            .collect()
    }

    #[test]
    fn min_max_maps_range_to_unit_interval_and_back() {
        let s = stats(&[("min", vec![0.0, -2.0]), ("max", vec![10.0, 2.0])]);
        let n = FeatureNorm::from_stats("action", NormMode::MinMax, &s, StatsLayout::Processor, 2).unwrap();
        let mut x = vec![0.0, -2.0, 10.0, 2.0, 5.0, 0.0];
        n.normalize(&mut x, 1);
        assert_eq!(x, vec![-1.0, -1.0, 1.0, 1.0, 0.0, 0.0]);
        n.unnormalize(&mut x, 1);
        assert_eq!(x, vec![0.0, -2.0, 10.0, 2.0, 5.0, 0.0]);
    }

    #[test]
    fn missing_or_non_finite_stats_are_errors() {
        let s = stats(&[("min", vec![0.0])]);
        let e = FeatureNorm::from_stats("action", NormMode::MinMax, &s, StatsLayout::Processor, 1).unwrap_err();
        assert!(e.to_string().contains("\"max\" stat is missing"), "{e}");
        let s = stats(&[("mean", vec![f32::INFINITY]), ("std", vec![1.0])]);
        let e = FeatureNorm::from_stats("x", NormMode::MeanStd, &s, StatsLayout::Legacy, 1).unwrap_err();
        assert!(e.to_string().contains("non-finite"), "{e}");
    }

    #[test]
    fn mean_std_per_channel_broadcasts_over_pixels() {
        let s = stats(&[("mean", vec![0.5, 0.0]), ("std", vec![0.25, 1.0])]);
        let n = FeatureNorm::from_stats("img", NormMode::MeanStd, &s, StatsLayout::Processor, 2).unwrap();
        let mut x = vec![0.75, 0.75, 3.0, 3.0];
        n.normalize(&mut x, 2);
        assert!((x[0] - 1.0).abs() < 1e-6 && (x[1] - 1.0).abs() < 1e-6);
        assert!((x[2] - 3.0).abs() < 1e-6);
    }
}
