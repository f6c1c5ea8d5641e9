//! Time-indexed queue of chunk points: late-point dropping, chunk switching and interpolation.
//!
//! The executor keeps one merged trajectory: a list of points sorted by absolute time (strictly increasing,
//! at least [`MIN_SPACING_S`] apart). A new chunk is first validated and stripped of points already due
//! ([`ChunkExecutor::prepare`]), then merged into the queue by the configured [`Switching`] policy
//! ([`ChunkExecutor::commit`]; [`ChunkExecutor::push_chunk`] does both).
//!
//! Whatever the policy, when a chunk arrives while the queue is being executed (its first point is at or before
//! `now`), the value the queue has *now* is pinned as an anchor point at `now`. So pushing a chunk never changes
//! the command of the current instant; the trajectory moves from there to the new chunk's first due point.
//!
//! Sampling ([`ChunkExecutor::sample`]) interpolates between the surrounding points, holds the last point after
//! the end of the queue and returns `None` before the first point or when the queue is empty.

use serde::{Deserialize, Serialize};

use crate::chunk::Chunk;
use crate::validate::ConfigError;

/// Points of the merged queue closer together than this (seconds) are merged into one.
pub const MIN_SPACING_S: f64 = 1e-9;

/// How to interpolate between queued points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Interpolation {
    /// Piecewise linear.
    #[default]
    Linear,
    /// Piecewise cubic Hermite with monotone (Fritsch–Butland, "PCHIP") tangents: C¹, passes through every
    /// point, reproduces linear trajectories exactly and, unlike Catmull-Rom or a natural spline, never overshoots
    /// the two points around it (so a step at a chunk boundary cannot make it ring past the limits, and a segment
    /// between two points inside the position limits stays inside them).
    Cubic,
}

/// How a new chunk takes over from what is already queued.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "policy", rename_all = "snake_case", deny_unknown_fields)]
pub enum Switching {
    /// The new chunk wins from its first due point onward; queued points at or after that time are discarded.
    Replace {},
    /// Like `Replace`, but over `window_s` seconds from the new chunk's first due point the output blends
    /// linearly from the old trajectory (weight 1 at the first due point) to the new one (weight 1 at the end of
    /// the window). Blended values are computed at every old and new point time inside the window.
    Crossfade {
        /// Length of the blend, seconds (0 = `Replace`).
        window_s: f64,
    },
    /// ACT-style temporal ensembling: where the new chunk overlaps the queued trajectory, each point is the
    /// weighted mean of every chunk's prediction for that time, chunk `i` (0 = oldest prediction for that time)
    /// weighted `exp(-decay * i)`. With `decay > 0` (the default, 0.01 as in ACT) the oldest prediction weighs most;
    /// `decay = 0` is a plain mean; `decay < 0` favours the newest. Queued points outside the new chunk's time span
    /// are kept unchanged.
    TemporalEnsemble {
        /// Exponential weight decay per prediction (see above).
        #[serde(default = "default_decay")]
        decay: f64,
    },
}

fn default_decay() -> f64 {
    0.01
}

impl Default for Switching {
    fn default() -> Self {
        Switching::Replace {}
    }
}

/// Executor configuration.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutorConfig {
    /// Interpolation between points (default `linear`).
    #[serde(default)]
    pub interpolation: Interpolation,
    /// Chunk switching policy (default `{ policy = "replace" }`).
    #[serde(default)]
    pub switching: Switching,
}

impl ExecutorConfig {
    /// Checks the values; the error names the bad key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self.switching {
            Switching::Replace {} => Ok(()),
            Switching::Crossfade { window_s } => {
                crate::validate::require_finite("switching.window_s", window_s)?;
                if window_s < 0.0 {
                    return Err(ConfigError::new(
                        "switching.window_s",
                        format!("must be >= 0 (got {window_s})"),
                    ));
                }
                Ok(())
            }
            Switching::TemporalEnsemble { decay } => crate::validate::require_finite("switching.decay", decay),
        }
    }
}

/// Executor counters (monotonic since construction).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ExecutorCounters {
    /// Chunks merged into the queue.
    pub chunks_accepted: u64,
    /// Chunks refused as malformed (empty, wrong dimension, non-finite, times not increasing).
    pub chunks_malformed: u64,
    /// Chunks all of whose points were already due.
    pub chunks_all_late: u64,
    /// Points merged into the queue.
    pub points_accepted: u64,
    /// Points dropped because their time had already passed when the chunk arrived.
    pub points_late: u64,
    /// Queued points discarded because a newer chunk took over their time (`Replace`, `Crossfade`).
    pub points_replaced: u64,
}

/// Why a chunk was not merged.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ChunkRejected {
    /// The chunk has no points.
    #[error("chunk has no points")]
    Empty,
    /// A point has the wrong number of values.
    #[error("point {point} has {got} values, expected {expected}")]
    DimensionMismatch {
        /// Index of the point in the chunk.
        point: usize,
        /// The driver's dimension.
        expected: usize,
        /// The point's dimension.
        got: usize,
    },
    /// A point's time or a position value is NaN or infinite.
    #[error("point {point} has a non-finite time or position")]
    NonFinite {
        /// Index of the point in the chunk.
        point: usize,
    },
    /// Point times are not strictly increasing.
    #[error("point {point} is not later than the point before it")]
    NotIncreasing {
        /// Index of the point in the chunk.
        point: usize,
    },
    /// Every point was already due.
    #[error("all {points} points were already due")]
    AllLate {
        /// Number of points in the chunk.
        points: usize,
    },
    /// The first due point jumps away from the running trajectory by more than the safety envelope's
    /// `max_jump` and the envelope rejects violations (set by [`crate::Driver::on_chunk`]).
    #[error("first due point jumps more than max_jump from the running trajectory")]
    Jump,
}

/// A validated chunk with its late points dropped, ready for [`ChunkExecutor::commit`].
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedChunk {
    points: Vec<Point>,
    now_s: f64,
    late: usize,
}

impl PreparedChunk {
    /// Absolute time of the first due point.
    pub fn first_time_s(&self) -> f64 {
        self.points[0].t
    }

    /// Position of the first due point.
    pub fn first_position(&self) -> &[f64] {
        &self.points[0].pos
    }

    /// Number of due points.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Always false: a prepared chunk has at least one point.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Points dropped as late.
    pub fn late_points(&self) -> usize {
        self.late
    }
}

/// What one push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushReport {
    /// Points of the chunk merged into the queue.
    pub accepted_points: usize,
    /// Points of the chunk dropped as already due.
    pub late_points: usize,
    /// Previously queued points discarded by the switch.
    pub replaced_points: usize,
}

#[derive(Debug, Clone, PartialEq)]
struct Point {
    t: f64,
    pos: Vec<f64>,
    /// Sum of ensembling weights of the predictions merged into this point (1 for a single prediction).
    weight: f64,
}

/// Cap on stored ensembling weight sums (they grow geometrically for `decay < 0`).
const MAX_WEIGHT: f64 = 1e300;

/// The time-indexed point queue.
#[derive(Debug, Clone)]
pub struct ChunkExecutor {
    config: ExecutorConfig,
    dim: usize,
    points: Vec<Point>,
    counters: ExecutorCounters,
}

impl ChunkExecutor {
    /// An empty executor for positions of dimension `dim`.
    pub fn new(config: ExecutorConfig, dim: usize) -> Result<Self, ConfigError> {
        config.validate()?;
        if dim == 0 {
            return Err(ConfigError::new("dim", "must be >= 1"));
        }
        Ok(ChunkExecutor {
            config,
            dim,
            points: Vec::new(),
            counters: ExecutorCounters::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ExecutorConfig {
        &self.config
    }

    /// Position dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Counters since construction.
    pub fn counters(&self) -> ExecutorCounters {
        self.counters
    }

    /// Number of queued points (including up to two already-passed points kept for interpolation).
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Forgets every queued point.
    pub fn clear(&mut self) {
        self.points.clear();
    }

    /// Absolute time of the last queued point.
    pub fn queue_end_s(&self) -> Option<f64> {
        self.points.last().map(|p| p.t)
    }

    /// Seconds of commands still queued after `now_s` (0 when empty or drained).
    pub fn queued_s(&self, now_s: f64) -> f64 {
        match self.points.last() {
            Some(p) => (p.t - now_s).max(0.0),
            None => 0.0,
        }
    }

    /// Validates `chunk` and drops its points already due at `now_s` (time < `now_s`), counting them.
    pub fn prepare(&mut self, chunk: &Chunk, now_s: f64) -> Result<PreparedChunk, ChunkRejected> {
        let result = self.validate(chunk, now_s);
        match &result {
            Ok(prepared) => self.counters.points_late += prepared.late as u64,
            Err(ChunkRejected::AllLate { points }) => {
                self.counters.points_late += *points as u64;
                self.counters.chunks_all_late += 1;
            }
            Err(_) => self.counters.chunks_malformed += 1,
        }
        result
    }

    fn validate(&self, chunk: &Chunk, now_s: f64) -> Result<PreparedChunk, ChunkRejected> {
        if chunk.points.is_empty() {
            return Err(ChunkRejected::Empty);
        }
        let mut points = Vec::with_capacity(chunk.points.len());
        let mut late = 0;
        let mut previous = f64::NEG_INFINITY;
        for (i, p) in chunk.points.iter().enumerate() {
            if p.position.len() != self.dim {
                return Err(ChunkRejected::DimensionMismatch {
                    point: i,
                    expected: self.dim,
                    got: p.position.len(),
                });
            }
            let t = chunk.t0_s + p.time_from_start_s;
            if !t.is_finite() || p.position.iter().any(|x| !x.is_finite()) {
                return Err(ChunkRejected::NonFinite { point: i });
            }
            if t - previous < MIN_SPACING_S {
                return Err(ChunkRejected::NotIncreasing { point: i });
            }
            previous = t;
            if t < now_s {
                late += 1;
            } else {
                points.push(Point {
                    t,
                    pos: p.position.clone(),
                    weight: 1.0,
                });
            }
        }
        if points.is_empty() {
            return Err(ChunkRejected::AllLate { points: late });
        }
        Ok(PreparedChunk { points, now_s, late })
    }

    /// Merges a prepared chunk into the queue by the configured switching policy.
    pub fn commit(&mut self, chunk: PreparedChunk) -> PushReport {
        let now = chunk.now_s;
        self.prune(now);
        let old = std::mem::take(&mut self.points);
        let new = chunk.points;
        let accepted = new.len();
        let interp = self.config.interpolation;
        let (merged, replaced) = if old.is_empty() {
            (new, 0)
        } else {
            match self.config.switching {
                Switching::Replace {} => merge_crossfade(&old, new, 0.0, now, interp),
                Switching::Crossfade { window_s } => merge_crossfade(&old, new, window_s, now, interp),
                Switching::TemporalEnsemble { decay } => (merge_ensemble(&old, new, decay, now, interp), 0),
            }
        };
        self.points = merged;
        self.counters.chunks_accepted += 1;
        self.counters.points_accepted += accepted as u64;
        self.counters.points_replaced += replaced as u64;
        PushReport {
            accepted_points: accepted,
            late_points: chunk.late,
            replaced_points: replaced,
        }
    }

    /// [`prepare`](Self::prepare) then [`commit`](Self::commit).
    pub fn push_chunk(&mut self, chunk: &Chunk, now_s: f64) -> Result<PushReport, ChunkRejected> {
        let prepared = self.prepare(chunk, now_s)?;
        Ok(self.commit(prepared))
    }

    /// The interpolated position at `now_s`; forgets points no longer needed. `None` before the first point or
    /// when empty; the last point after the end of the queue.
    pub fn sample(&mut self, now_s: f64) -> Option<Vec<f64>> {
        self.prune(now_s);
        eval(&self.points, now_s, self.config.interpolation)
    }

    /// The interpolated position at `t_s` without changing the queue.
    pub fn value_at(&self, t_s: f64) -> Option<Vec<f64>> {
        eval(&self.points, t_s, self.config.interpolation)
    }

    /// Drops points that can no longer influence a sample at or after `now_s`: keeps the last two points at or
    /// before `now_s` (the current segment's start and its left neighbour, which the cubic tangent needs).
    fn prune(&mut self, now_s: f64) {
        let passed = self.points.partition_point(|p| p.t <= now_s);
        let drop = passed.saturating_sub(2);
        if drop > 0 {
            self.points.drain(..drop);
        }
    }
}

/// Anchor point at `now` holding the old trajectory's current value. Needed when the last kept old point (before
/// the new chunk's first due point `ts`) is already in the past: interpolating straight from it to `ts` would
/// change the command of the current instant.
fn anchor(old: &[Point], kept: usize, now: f64, ts: f64, interp: Interpolation) -> Option<Point> {
    let last_kept = old[..kept].last()?;
    if !now.is_finite() || last_kept.t >= now - MIN_SPACING_S || ts - now < MIN_SPACING_S {
        return None;
    }
    Some(Point {
        t: now,
        pos: eval(old, now, interp)?,
        weight: weight_at(old, now),
    })
}

/// `Replace` (window 0) and `Crossfade`. Returns the merged points and the number of old points discarded.
fn merge_crossfade(
    old: &[Point],
    new: Vec<Point>,
    window_s: f64,
    now: f64,
    interp: Interpolation,
) -> (Vec<Point>, usize) {
    let ts = new[0].t;
    let te = new[new.len() - 1].t;
    let split = old.partition_point(|p| p.t < ts - MIN_SPACING_S);
    let replaced = old.len() - split;
    let mut out: Vec<Point> = old[..split].to_vec();
    out.extend(anchor(old, split, now, ts, interp));
    // Blend only when something before the new chunk is being (or has been) executed.
    if window_s <= 0.0 || split == 0 {
        out.extend(new);
        return (out, replaced);
    }
    let tw = ts + window_s;
    // Old point times inside the window, and the window's end, so the blend completes exactly at `tw`.
    let mut old_times: Vec<f64> = old[split..]
        .iter()
        .map(|p| p.t)
        .filter(|&t| t < tw - MIN_SPACING_S && t <= te)
        .collect();
    if tw < te {
        old_times.push(tw);
    }
    let times = merge_times(old_times.into_iter(), new.iter().map(|p| p.t));
    for t in times {
        let alpha = ((t - ts) / window_s).clamp(0.0, 1.0);
        let new_value = eval(&new, t, interp).expect("t inside the new chunk");
        let pos = if alpha >= 1.0 {
            new_value
        } else {
            let old_value = eval(old, t, interp).expect("old queue starts before the new chunk");
            lerp(&old_value, &new_value, alpha)
        };
        out.push(Point { t, pos, weight: 1.0 });
    }
    (out, replaced)
}

/// `TemporalEnsemble`.
fn merge_ensemble(old: &[Point], new: Vec<Point>, decay: f64, now: f64, interp: Interpolation) -> Vec<Point> {
    let ts = new[0].t;
    let te = new[new.len() - 1].t;
    let (old_first, old_last) = (old[0].t, old[old.len() - 1].t);
    // r = exp(-decay). With n earlier predictions summing to W = (1 - r^n) / (1 - r), the new one weighs
    // r^n = 1 - W (1 - r); as a ratio to W: rho = 1/W - (1 - r). (decay = 0: r^n = 1, W = n.)
    let r = (-decay).exp();
    let mut out: Vec<Point> = Vec::with_capacity(old.len() + new.len() + 1);
    let split = old.partition_point(|p| p.t < ts - MIN_SPACING_S);
    out.extend_from_slice(&old[..split]);
    out.extend(anchor(old, split, now, ts, interp));
    let times = merge_times(old[split..].iter().map(|p| p.t), new.iter().map(|p| p.t));
    for t in times {
        let in_old = t >= old_first - MIN_SPACING_S && t <= old_last + MIN_SPACING_S;
        let in_new = t >= ts && t <= te;
        let point = if in_old && in_new {
            let old_value = eval(old, t, interp).unwrap_or_else(|| old[0].pos.clone());
            let new_value = eval(&new, t, interp).expect("t inside the new chunk");
            let w = weight_at(old, t).clamp(f64::MIN_POSITIVE, MAX_WEIGHT);
            let rho = (1.0 / w - (1.0 - r)).max(0.0);
            let beta = if rho.is_finite() { rho / (1.0 + rho) } else { 1.0 };
            let new_weight = (w * (1.0 + rho)).min(MAX_WEIGHT);
            Point {
                t,
                pos: lerp(&old_value, &new_value, beta),
                weight: new_weight,
            }
        } else if in_new {
            Point {
                t,
                pos: eval(&new, t, interp).expect("t inside the new chunk"),
                weight: 1.0,
            }
        } else {
            // Only old times reach here (every new time is in_new).
            let i = old.partition_point(|p| p.t < t);
            old[i.min(old.len() - 1)].clone()
        };
        out.push(point);
    }
    out
}

/// Sorted union of two sorted time lists; a time of `b` within [`MIN_SPACING_S`] of one of `a` replaces it.
fn merge_times(a: impl Iterator<Item = f64>, b: impl Iterator<Item = f64>) -> Vec<f64> {
    let b: Vec<f64> = b.collect();
    let mut out: Vec<f64> = Vec::with_capacity(b.len());
    let mut a = a
        .filter(|t| !b.iter().any(|u| (t - u).abs() < MIN_SPACING_S))
        .peekable();
    for &u in &b {
        while let Some(&t) = a.peek() {
            if t < u {
                out.push(t);
                a.next();
            } else {
                break;
            }
        }
        out.push(u);
    }
    out.extend(a);
    out
}

/// Convex combination `(1 - s) a + s b`, written so it cannot overflow for finite inputs.
fn lerp(a: &[f64], b: &[f64], s: f64) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| (1.0 - s) * x + s * y).collect()
}

/// Ensembling weight sum at `t`, linear between points (held outside).
fn weight_at(points: &[Point], t: f64) -> f64 {
    let Some(first) = points.first() else { return 0.0 };
    if t.is_nan() || t <= first.t {
        return first.weight;
    }
    let last = &points[points.len() - 1];
    if t >= last.t {
        return last.weight;
    }
    let i = points.partition_point(|p| p.t <= t) - 1;
    let (a, b) = (&points[i], &points[i + 1]);
    let s = (t - a.t) / (b.t - a.t);
    (1.0 - s) * a.weight + s * b.weight
}

/// The interpolated value of a point list at `t`.
fn eval(points: &[Point], t: f64, interp: Interpolation) -> Option<Vec<f64>> {
    let first = points.first()?;
    if t.is_nan() || t < first.t {
        return None;
    }
    let last = &points[points.len() - 1];
    if t >= last.t {
        return Some(last.pos.clone());
    }
    let i = points.partition_point(|p| p.t <= t) - 1;
    let (a, b) = (&points[i], &points[i + 1]);
    if t == a.t {
        return Some(a.pos.clone());
    }
    let h = b.t - a.t;
    let s = (t - a.t) / h;
    match interp {
        Interpolation::Linear => Some(lerp(&a.pos, &b.pos, s)),
        Interpolation::Cubic => {
            let s2 = s * s;
            let s3 = s2 * s;
            let h00 = 2.0 * s3 - 3.0 * s2 + 1.0;
            let h10 = s3 - 2.0 * s2 + s;
            let h01 = -2.0 * s3 + 3.0 * s2;
            let h11 = s3 - s2;
            Some(
                (0..a.pos.len())
                    .map(|d| {
                        let (ma, mb) = (tangent(points, i, d), tangent(points, i + 1, d));
                        h00 * a.pos[d] + h10 * h * ma + h01 * b.pos[d] + h11 * h * mb
                    })
                    .collect(),
            )
        }
    }
}

/// Fritsch–Butland monotone tangent at point `k`, dimension `d`: zero at a local extremum, otherwise the weighted
/// harmonic mean of the neighbouring secant slopes; one-sided secant at the ends. Equal slopes give that slope,
/// so linear trajectories are reproduced exactly.
fn tangent(points: &[Point], k: usize, d: usize) -> f64 {
    let n = points.len();
    let secant = |j: usize| (points[j + 1].pos[d] - points[j].pos[d]) / (points[j + 1].t - points[j].t);
    if n < 2 {
        return 0.0;
    }
    if k == 0 {
        return finite_or_zero(secant(0));
    }
    if k == n - 1 {
        return finite_or_zero(secant(n - 2));
    }
    let (d0, d1) = (secant(k - 1), secant(k));
    if d0 == d1 {
        return finite_or_zero(d0);
    }
    if d0 * d1 <= 0.0 {
        return 0.0;
    }
    let h0 = points[k].t - points[k - 1].t;
    let h1 = points[k + 1].t - points[k].t;
    let w0 = 2.0 * h1 + h0;
    let w1 = h1 + 2.0 * h0;
    finite_or_zero((w0 + w1) / (w0 / d0 + w1 / d1))
}

/// Tangents of trajectories with values near `f64::MAX` can overflow; a flat tangent keeps the value finite.
fn finite_or_zero(x: f64) -> f64 {
    if x.is_finite() {
        x
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(interpolation: Interpolation, switching: Switching) -> ChunkExecutor {
        ChunkExecutor::new(
            ExecutorConfig {
                interpolation,
                switching,
            },
            1,
        )
        .unwrap()
    }

    fn chunk1(t0: f64, times: &[f64], values: &[f64]) -> Chunk {
        Chunk {
            t0_s: t0,
            points: times
                .iter()
                .zip(values)
                .map(|(&t, &v)| crate::chunk::ChunkPoint {
                    time_from_start_s: t,
                    position: vec![v],
                })
                .collect(),
        }
    }

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
    }

    #[test]
    fn both_interpolators_reproduce_a_linear_trajectory_at_arbitrary_times() {
        // Non-uniform spacing, two dimensions with different slopes.
        let times = [0.0, 0.013, 0.05, 0.051, 0.2, 0.37, 0.9, 1.0];
        let f = |t: f64| [3.0 - 2.5 * t, 0.25 + 7.0 * t];
        for interp in [Interpolation::Linear, Interpolation::Cubic] {
            let mut e = ChunkExecutor::new(
                ExecutorConfig {
                    interpolation: interp,
                    switching: Switching::default(),
                },
                2,
            )
            .unwrap();
            let chunk = Chunk {
                t0_s: 10.0,
                points: times
                    .iter()
                    .map(|&t| crate::chunk::ChunkPoint {
                        time_from_start_s: t,
                        position: f(t).to_vec(),
                    })
                    .collect(),
            };
            e.push_chunk(&chunk, 10.0).unwrap();
            for k in 0..=997 {
                let t = k as f64 * 0.001003;
                let got = e.value_at(10.0 + t).unwrap();
                let want = f(t);
                for d in 0..2 {
                    assert!(
                        close(got[d], want[d], 1e-9),
                        "{interp:?} t={t} d={d}: {} vs {}",
                        got[d],
                        want[d]
                    );
                }
            }
        }
    }

    #[test]
    fn cubic_passes_through_the_points_and_does_not_overshoot() {
        let times: Vec<f64> = (0..12).map(|i| i as f64 * 0.1 + (i % 3) as f64 * 0.013).collect();
        let values: Vec<f64> = times
            .iter()
            .map(|t| (7.0 * t).sin() + if *t > 0.6 { 2.0 } else { 0.0 })
            .collect();
        let mut e = exec(Interpolation::Cubic, Switching::default());
        e.push_chunk(&chunk1(5.0, &times, &values), 5.0).unwrap();
        for (t, v) in times.iter().zip(&values) {
            assert_eq!(e.value_at(5.0 + t).unwrap()[0], *v);
        }
        for w in 0..times.len() - 1 {
            let (lo, hi) = (values[w].min(values[w + 1]), values[w].max(values[w + 1]));
            for k in 1..50 {
                let t = times[w] + (times[w + 1] - times[w]) * k as f64 / 50.0;
                let v = e.value_at(5.0 + t).unwrap()[0];
                assert!(
                    v >= lo - 1e-12 && v <= hi + 1e-12,
                    "overshoot at {t}: {v} not in [{lo}, {hi}]"
                );
            }
        }
    }

    #[test]
    fn sample_is_none_before_the_first_point_and_holds_after_the_last() {
        let mut e = exec(Interpolation::Linear, Switching::default());
        assert_eq!(e.sample(0.0), None);
        e.push_chunk(&chunk1(1.0, &[0.0, 0.1], &[1.0, 2.0]), 0.5).unwrap();
        assert_eq!(e.sample(0.99), None);
        assert_eq!(e.sample(1.0), Some(vec![1.0]));
        assert!(close(e.sample(1.05).unwrap()[0], 1.5, 1e-12));
        assert_eq!(e.sample(1.1), Some(vec![2.0]));
        assert_eq!(e.sample(100.0), Some(vec![2.0]));
    }

    #[test]
    fn late_points_are_dropped_and_counted() {
        let mut e = exec(Interpolation::Linear, Switching::default());
        let r = e
            .push_chunk(&chunk1(1.0, &[0.0, 0.1, 0.2, 0.3], &[0.0, 1.0, 2.0, 3.0]), 1.15)
            .unwrap();
        assert_eq!(
            r,
            PushReport {
                accepted_points: 2,
                late_points: 2,
                replaced_points: 0
            }
        );
        assert_eq!(e.sample(1.15), None, "the first kept point is due at 1.2");
        assert_eq!(e.sample(1.2), Some(vec![2.0]));
        let err = e.push_chunk(&chunk1(0.0, &[0.0, 0.1], &[5.0, 6.0]), 1.25).unwrap_err();
        assert_eq!(err, ChunkRejected::AllLate { points: 2 });
        let c = e.counters();
        assert_eq!(
            (c.points_late, c.chunks_all_late, c.chunks_accepted, c.points_accepted),
            (4, 1, 1, 2)
        );
    }

    #[test]
    fn malformed_chunks_are_rejected() {
        let mut e = exec(Interpolation::Linear, Switching::default());
        assert_eq!(e.push_chunk(&chunk1(0.0, &[], &[]), 0.0), Err(ChunkRejected::Empty));
        assert_eq!(
            e.push_chunk(&chunk1(0.0, &[0.0, 0.1], &[0.0, f64::NAN]), 0.0),
            Err(ChunkRejected::NonFinite { point: 1 })
        );
        assert_eq!(
            e.push_chunk(&chunk1(f64::INFINITY, &[0.0], &[0.0]), 0.0),
            Err(ChunkRejected::NonFinite { point: 0 })
        );
        assert_eq!(
            e.push_chunk(&chunk1(0.0, &[0.1, 0.1], &[0.0, 1.0]), 0.0),
            Err(ChunkRejected::NotIncreasing { point: 1 })
        );
        let wrong = Chunk {
            t0_s: 0.0,
            points: vec![crate::chunk::ChunkPoint {
                time_from_start_s: 0.0,
                position: vec![],
            }],
        };
        assert_eq!(
            e.push_chunk(&wrong, 0.0),
            Err(ChunkRejected::DimensionMismatch {
                point: 0,
                expected: 1,
                got: 0
            })
        );
        assert_eq!(e.counters().chunks_malformed, 5);
        assert!(e.is_empty());
    }

    #[test]
    fn replace_discards_older_future_points() {
        let mut e = exec(Interpolation::Linear, Switching::Replace {});
        let times: Vec<f64> = (0..10).map(|i| i as f64 * 0.1).collect();
        e.push_chunk(&chunk1(0.0, &times, &[0.0; 10]), 0.0).unwrap();
        // New chunk due from 0.5 at value 1; pushed at 0.45 (anchor at 0.45 keeps the current value).
        let r = e.push_chunk(&chunk1(0.5, &[0.0, 0.1, 0.2], &[1.0; 3]), 0.45).unwrap();
        assert_eq!(r.replaced_points, 5, "old points at 0.5..0.9 are discarded");
        assert_eq!(e.value_at(0.45), Some(vec![0.0]), "value at push time unchanged");
        assert_eq!(e.value_at(0.5), Some(vec![1.0]));
        assert_eq!(e.value_at(0.8), Some(vec![1.0]));
        assert_eq!(
            e.value_at(0.95),
            Some(vec![1.0]),
            "old points after the new chunk's end are gone too"
        );
        assert!(close(e.queue_end_s().unwrap(), 0.7, 1e-12));
        assert_eq!(e.counters().points_replaced, 5);
    }

    #[test]
    fn crossfade_is_continuous_and_blends_over_the_window() {
        let window = 0.4;
        let mut e = exec(Interpolation::Linear, Switching::Crossfade { window_s: window });
        let times: Vec<f64> = (0..20).map(|i| i as f64 * 0.1).collect();
        e.push_chunk(&chunk1(0.0, &times, &[0.0; 20]), 0.0).unwrap();
        e.push_chunk(&chunk1(0.5, &times, &[1.0; 20]), 0.5).unwrap();
        assert_eq!(e.value_at(0.5), Some(vec![0.0]), "blend starts from the old trajectory");
        assert!(
            close(e.value_at(0.7).unwrap()[0], 0.5, 1e-12),
            "halfway through the window"
        );
        assert!(close(e.value_at(0.9).unwrap()[0], 1.0, 1e-12));
        assert_eq!(e.value_at(1.5), Some(vec![1.0]));
        // A 1 ms control loop never steps by more than the blend slope allows: |new - old| / window * dt.
        let dt = 0.001;
        let mut prev = e.sample(0.5).unwrap()[0];
        let mut max_step: f64 = 0.0;
        for k in 1..1000 {
            let v = e.sample(0.5 + k as f64 * dt).unwrap()[0];
            max_step = max_step.max((v - prev).abs());
            prev = v;
        }
        assert!(max_step <= 1.0 / window * dt * (1.0 + 1e-9), "max step {max_step}");
        // Replace steps 1.0 over one 0.1 s point interval: 10/s, 4x the crossfade's 2.5/s.
        let mut r = exec(Interpolation::Linear, Switching::Replace {});
        r.push_chunk(&chunk1(0.0, &times, &[0.0; 20]), 0.0).unwrap();
        r.push_chunk(&chunk1(0.5, &times, &[1.0; 20]), 0.4).unwrap();
        let step = r.value_at(0.45 + dt).unwrap()[0] - r.value_at(0.45).unwrap()[0];
        assert!(step > 3.0 * max_step, "replace step {step} vs crossfade {max_step}");
    }

    #[test]
    fn crossfade_blends_at_old_point_times_inside_the_window() {
        // Old ramps 0 → 1 over 1 s with points every 0.1 s; new chunk is sparse (2 points 1 s apart).
        let window = 0.5;
        let mut e = exec(Interpolation::Linear, Switching::Crossfade { window_s: window });
        let times: Vec<f64> = (0..=10).map(|i| i as f64 * 0.1).collect();
        let values: Vec<f64> = times.clone();
        e.push_chunk(&chunk1(0.0, &times, &values), 0.0).unwrap();
        e.push_chunk(&chunk1(0.2, &[0.0, 1.0], &[5.0, 5.0]), 0.2).unwrap();
        for t in [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.7 + 1e-6] {
            let alpha = ((t - 0.2) / window).min(1.0);
            let want = (1.0 - alpha) * t.min(1.0) + alpha * 5.0;
            assert!(close(e.value_at(t).unwrap()[0], want, 1e-12), "t={t}");
        }
    }

    #[test]
    fn ensemble_of_two_constant_chunks_is_the_weighted_mean() {
        for decay in [0.01, 0.0, 0.5, -0.3] {
            let mut e = exec(Interpolation::Linear, Switching::TemporalEnsemble { decay });
            let times: Vec<f64> = (0..10).map(|i| i as f64 * 0.1).collect();
            e.push_chunk(&chunk1(0.0, &times, &[2.0; 10]), 0.0).unwrap();
            e.push_chunk(&chunk1(0.3, &times, &[6.0; 10]), 0.3).unwrap();
            let w1 = (-decay).exp();
            let want = (2.0 + w1 * 6.0) / (1.0 + w1);
            for t in [0.3, 0.45, 0.9] {
                assert!(close(e.value_at(t).unwrap()[0], want, 1e-12), "decay {decay} t {t}");
            }
            assert_eq!(
                e.value_at(1.05),
                Some(vec![6.0]),
                "after the old chunk's end only the new one"
            );
            assert_eq!(
                e.value_at(0.2),
                Some(vec![2.0]),
                "before the new chunk only the old one"
            );
            // A third chunk weighs exp(-2 decay).
            e.push_chunk(&chunk1(0.4, &times, &[-1.0; 10]), 0.4).unwrap();
            let w2 = (-2.0 * decay).exp();
            let want3 = (2.0 + w1 * 6.0 - w2) / (1.0 + w1 + w2);
            assert!(
                close(e.value_at(0.6).unwrap()[0], want3, 1e-12),
                "decay {decay}: 3 chunks"
            );
        }
    }

    #[test]
    fn ensemble_oldest_prediction_weighs_most_by_default() {
        let mut e = exec(Interpolation::Linear, Switching::default());
        e.config.switching = Switching::TemporalEnsemble { decay: default_decay() };
        e.push_chunk(&chunk1(0.0, &[0.0, 1.0], &[0.0, 0.0]), 0.0).unwrap();
        e.push_chunk(&chunk1(0.0, &[0.0, 1.0], &[1.0, 1.0]), 0.0).unwrap();
        assert!(e.value_at(0.5).unwrap()[0] < 0.5);
    }

    #[test]
    fn queued_seconds() {
        let mut e = exec(Interpolation::Linear, Switching::default());
        assert_eq!(e.queued_s(3.0), 0.0);
        e.push_chunk(&chunk1(1.0, &[0.0, 0.5, 1.0], &[0.0, 1.0, 2.0]), 1.0)
            .unwrap();
        assert!(close(e.queued_s(1.0), 1.0, 1e-12));
        assert!(close(e.queued_s(1.75), 0.25, 1e-12));
        assert_eq!(e.queued_s(2.5), 0.0);
        assert!(
            close(e.queued_s(0.5), 1.5, 1e-12),
            "before the first point everything is queued"
        );
    }

    #[test]
    fn pushing_after_the_queue_ran_dry_starts_from_the_held_value() {
        let mut e = exec(Interpolation::Linear, Switching::Replace {});
        e.push_chunk(&chunk1(0.0, &[0.0, 0.1], &[0.0, 1.0]), 0.0).unwrap();
        assert_eq!(e.sample(5.0), Some(vec![1.0]));
        e.push_chunk(&chunk1(5.3, &[0.0, 0.1], &[4.0, 4.0]), 5.0).unwrap();
        assert_eq!(e.sample(5.0), Some(vec![1.0]), "no jump at push time");
        assert!(
            close(e.sample(5.15).unwrap()[0], 2.5, 1e-12),
            "ramp from the anchor to the first due point"
        );
        assert_eq!(e.sample(5.3), Some(vec![4.0]));
    }

    #[test]
    fn pruning_keeps_what_interpolation_needs() {
        let mut e = exec(Interpolation::Cubic, Switching::default());
        let times: Vec<f64> = (0..100).map(|i| i as f64 * 0.01).collect();
        let values: Vec<f64> = times.iter().map(|t| t * t).collect();
        e.push_chunk(&chunk1(0.0, &times, &values), 0.0).unwrap();
        let full = e.clone();
        for k in 0..1000 {
            let t = k as f64 * 0.00099;
            assert_eq!(e.sample(t), full.value_at(t), "t={t}");
        }
        assert!(e.len() < 5);
    }
}
