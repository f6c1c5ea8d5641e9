//! What a loaded policy is: its kind (a type with its capabilities stated once), its inputs and its
//! windows. Callers build observation windows and decide what to request from these facts alone.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::PolicyError;
use crate::tensor::HostTensor;

/// The family a policy belongs to: which sampler it runs and what a request may ask of it.
///
/// Serialised (serde, [`PolicyKind::as_str`], `Display`) as the strings riptide has always written in
/// `riptide.json`, chunk metadata and JSON reports. To add a kind (e.g. the planned `composite`): add a
/// variant, its name in [`PolicyKind::as_str`] / [`PolicyKind::ALL`] and its row in
/// [`PolicyKind::capabilities`]; every check that asks the kind follows, and the compiler lists the
/// loaders and trainers that must learn it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PolicyKind {
    /// LeRobot's Diffusion Policy: a U-Net denoiser under a DDPM or DDIM scheduler.
    Diffusion,
    /// A consistency student distilled from a diffusion teacher: the same U-Net, one or a few steps.
    Consistency,
    /// Truncated diffusion from k-means anchors with a score head ([`crate::truncated`]).
    Truncated,
    /// Mixture-of-denoising-experts transformer with EDM preconditioning ([`crate::mode`]).
    Mode,
}

/// What a request may ask of a policy kind, beyond a plain cold-start chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// Consensus sampling: K chunks per observation, the medoid kept ([`crate::consensus`]).
    pub candidates: bool,
    /// RTI warm starts from the previous chunk ([`crate::rti`]).
    pub warm_starts: bool,
    /// A [`crate::StepHook`] between denoising steps (guidance, inpainting).
    pub step_hooks: bool,
    /// Actions predicted as offsets from the observed state (`relative_actions`).
    pub relative_actions: bool,
}

/// One entry of [`Capabilities`], for checks and the errors that name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    Candidates,
    WarmStarts,
    StepHooks,
    RelativeActions,
}

impl Capability {
    /// How errors name it.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Candidates => "consensus sampling (candidates > 1)",
            Self::WarmStarts => "RTI warm starts",
            Self::StepHooks => "step hooks (guidance)",
            Self::RelativeActions => "relative actions",
        }
    }
}

impl Capabilities {
    pub fn has(self, c: Capability) -> bool {
        match c {
            Capability::Candidates => self.candidates,
            Capability::WarmStarts => self.warm_starts,
            Capability::StepHooks => self.step_hooks,
            Capability::RelativeActions => self.relative_actions,
        }
    }
}

impl PolicyKind {
    /// Every kind, in the order errors list them.
    pub const ALL: [PolicyKind; 4] = [Self::Diffusion, Self::Consistency, Self::Truncated, Self::Mode];

    /// The name written in `riptide.json`, chunk metadata and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Diffusion => "diffusion",
            Self::Consistency => "consistency",
            Self::Truncated => "truncated",
            Self::Mode => "mode",
        }
    }

    /// The one table of what each kind can do. Truncated diffusion enters late from its anchors and
    /// picks among them with its score head, so warm starts and consensus do not apply; MoDE samples
    /// deterministically from pure noise and is trained on absolute actions.
    pub fn capabilities(self) -> Capabilities {
        let (candidates, warm_starts, step_hooks, relative_actions) = match self {
            Self::Diffusion | Self::Consistency => (true, true, true, true),
            Self::Truncated => (false, false, true, true),
            Self::Mode => (false, false, true, false),
        };
        Capabilities {
            candidates,
            warm_starts,
            step_hooks,
            relative_actions,
        }
    }

    pub fn supports(self, c: Capability) -> bool {
        self.capabilities().has(c)
    }

    /// The kinds that support `c`, for error messages: "diffusion, consistency".
    pub fn supporting(c: Capability) -> String {
        let names: Vec<&str> = Self::ALL.iter().filter(|k| k.supports(c)).map(|k| k.as_str()).collect();
        names.join(", ")
    }

    /// `Ok` when the kind supports `c`; otherwise a config error naming the kind and the kinds that do.
    pub fn require(self, c: Capability) -> Result<(), PolicyError> {
        if self.supports(c) {
            return Ok(());
        }
        Err(PolicyError::Config(format!(
            "{} applies to {} policies; this is a {self} policy",
            c.describe(),
            Self::supporting(c)
        )))
    }
}

impl fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PolicyKind {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| {
            let all: Vec<&str> = Self::ALL.iter().map(|k| k.as_str()).collect();
            PolicyError::Config(format!("unknown policy kind {s:?}: expected one of {}", all.join(", ")))
        })
    }
}

impl PartialEq<str> for PolicyKind {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for PolicyKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// What a policy consumes, per feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum FeatureKind {
    /// Robot state vector (`observation.state`).
    State,
    /// Environment state vector (`observation.environment_state`).
    Env,
    /// RGB image, [3, H, W] in [0, 1].
    Visual,
}

#[derive(Debug, Clone, Serialize)]
pub struct InputFeature {
    pub name: String,
    pub kind: FeatureKind,
    /// Shape of one frame, e.g. [2] or [3, 96, 96].
    pub shape: Vec<usize>,
}

/// Static facts about a loaded policy that callers need to build windows and schedule chunks.
#[derive(Debug, Clone, Serialize)]
pub struct PolicySpec {
    pub kind: PolicyKind,
    /// The inference scheduler's name where the kind has a choice of them ("DDPM", "DDIM" for
    /// diffusion); shown next to the kind ([`PolicySpec::label`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<String>,
    pub inputs: Vec<InputFeature>,
    pub action_dim: usize,
    pub n_obs_steps: usize,
    pub horizon: usize,
    /// Index of the first executable action in the horizon (n_obs_steps − 1 for LeRobot DP).
    pub exec_start: usize,
    pub n_action_steps: usize,
    /// Denoiser evaluations of a default (cold) inference.
    pub default_nfe: usize,
    /// Chunks sampled per cold-start inference unless a request says otherwise (consensus sampling,
    /// [`crate::consensus`]; riptide.json `"sampling": {"candidates": K}`); 1 = one sample.
    pub default_candidates: usize,
    pub num_parameters: usize,
    pub backend: String,
    /// `(action index, observation.state index)`: that action is predicted as an offset from the newest
    /// observed state value and returned absolute (the state added back); empty = absolute actions.
    pub relative_actions: Vec<(usize, usize)>,
}

impl PolicySpec {
    /// The kind with its scheduler, for people: "diffusion (DDIM)", "truncated".
    pub fn label(&self) -> String {
        match &self.scheduler {
            Some(s) => format!("{} ({s})", self.kind),
            None => self.kind.to_string(),
        }
    }

    /// Chunks an inference samples: the request's count (checked), else the checkpoint's default where
    /// consensus sampling applies (`plain`: a cold start without a step hook), else one.
    pub fn candidates_for(&self, requested: Option<usize>, plain: bool) -> Result<usize, PolicyError> {
        match requested {
            Some(_) => crate::consensus::candidates(requested),
            None if plain => Ok(self.default_candidates),
            None => Ok(1),
        }
    }

    /// The newest observed `observation.state[s]` of each batch row, for each relative pair:
    /// `[batch][pair]`. Empty rows when the policy predicts absolute actions.
    pub fn relative_reference(&self, obs: &ObservationWindow) -> Result<Vec<Vec<f32>>, PolicyError> {
        if self.relative_actions.is_empty() {
            return Ok(Vec::new());
        }
        let t = obs.features.get("observation.state").ok_or_else(|| {
            PolicyError::Input("relative actions need \"observation.state\" in the observation window".into())
        })?;
        let (b, n, d) = match t.shape[..] {
            [b, n, d] if n > 0 => (b, n, d),
            _ => {
                return Err(PolicyError::Input(format!(
                    "observation.state has shape {:?}, expected [batch, n_obs_steps, dim]",
                    t.shape
                )))
            }
        };
        Ok((0..b)
            .map(|i| {
                let newest = &t.data[(i * n + n - 1) * d..(i * n + n) * d];
                self.relative_actions.iter().map(|&(_, s)| newest[s]).collect()
            })
            .collect())
    }

    /// Turn offsets into absolute actions: [`add_reference`] with this policy's pairs.
    pub fn add_reference(&self, rows: &mut [f32], reference: &[f32]) {
        add_reference(&self.relative_actions, self.action_dim, rows, reference)
    }
}

/// Add one batch row's reference (see [`PolicySpec::relative_reference`]) to the `relative` dims of every
/// action (`action_dim` values) in `rows`.
pub fn add_reference(relative: &[(usize, usize)], action_dim: usize, rows: &mut [f32], reference: &[f32]) {
    for action in rows.chunks_exact_mut(action_dim) {
        for (&(a, _), r) in relative.iter().zip(reference) {
            action[a] += r;
        }
    }
}

/// `n_obs_steps` frames of named features, batched: each tensor is [batch, n_obs_steps, ...frame].
#[derive(Debug, Clone, Default)]
pub struct ObservationWindow {
    pub features: BTreeMap<String, HostTensor>,
}

impl ObservationWindow {
    /// The features `names` of `windows` with their rows stacked in order (a wave's batch). Frame shapes
    /// must agree (windows checked against one policy do).
    pub fn concat<'a>(
        windows: impl IntoIterator<Item = &'a ObservationWindow>,
        names: &[&str],
    ) -> Result<ObservationWindow, PolicyError> {
        let mut out = ObservationWindow::default();
        for w in windows {
            for name in names {
                let t = w
                    .features
                    .get(*name)
                    .ok_or_else(|| PolicyError::Input(format!("cannot batch windows: one lacks {name:?}")))?;
                match out.features.get_mut(*name) {
                    None => {
                        out.features.insert(name.to_string(), t.clone());
                    }
                    Some(acc) if acc.shape.len() == t.shape.len() && acc.shape[1..] == t.shape[1..] => {
                        acc.shape[0] += t.shape[0];
                        acc.data.extend_from_slice(&t.data);
                    }
                    Some(acc) => {
                        return Err(PolicyError::Input(format!(
                            "cannot batch windows: {name:?} has shapes {:?} and {:?}",
                            acc.shape, t.shape
                        )))
                    }
                }
            }
        }
        Ok(out)
    }

    /// Check names, shapes, batch agreement and finiteness against the policy's inputs; returns the batch size.
    pub fn validate(&self, spec: &PolicySpec) -> Result<usize, PolicyError> {
        let mut batch = None;
        for f in &spec.inputs {
            let t = self.features.get(&f.name).ok_or_else(|| {
                PolicyError::Input(format!(
                    "observation window lacks feature {:?} (the policy needs: {})",
                    f.name,
                    spec.inputs
                        .iter()
                        .map(|i| i.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
            let mut want = vec![t.shape.first().copied().unwrap_or(0), spec.n_obs_steps];
            want.extend(&f.shape);
            if t.shape.len() != want.len() || t.shape[1..] != want[1..] {
                return Err(PolicyError::Input(format!(
                    "feature {:?} has shape {:?}; expected [batch, {}, {}]",
                    f.name,
                    t.shape,
                    spec.n_obs_steps,
                    f.shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
                )));
            }
            if let Some(i) = t.first_non_finite() {
                return Err(PolicyError::Input(format!(
                    "feature {:?} holds a non-finite value ({}) at flat index {i}",
                    f.name, t.data[i]
                )));
            }
            match batch {
                None => batch = Some(t.shape[0]),
                Some(b) if b != t.shape[0] => {
                    return Err(PolicyError::Input(format!(
                        "feature {:?} has batch {} but other features have batch {b}",
                        f.name, t.shape[0]
                    )))
                }
                _ => {}
            }
        }
        match batch {
            Some(0) | None => Err(PolicyError::Input("empty observation batch".into())),
            Some(b) => Ok(b),
        }
    }
}

/// Wall time of each stage of one inference, seconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct StageTimings {
    pub preprocess_s: f64,
    pub encode_s: f64,
    pub denoise_s: f64,
    pub postprocess_s: f64,
}

impl StageTimings {
    pub fn total_s(&self) -> f64 {
        self.preprocess_s + self.encode_s + self.denoise_s + self.postprocess_s
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ChunkMeta {
    pub kind: PolicyKind,
    /// Denoiser evaluations used.
    pub nfe: usize,
    pub seed: u64,
    pub warm_started: bool,
    pub timings: StageTimings,
}

/// A predicted action chunk.
#[derive(Debug, Clone)]
pub struct ActionChunk {
    /// Unnormalised actions, [batch, horizon, action_dim].
    pub actions: HostTensor,
    /// Normalised actions as the sampler produced them (what RTI warm starts reuse).
    pub actions_normalized: HostTensor,
    /// The executable slice is `actions[:, exec_start .. exec_start + n_exec]`.
    pub exec_start: usize,
    pub n_exec: usize,
    pub meta: ChunkMeta,
}

impl ActionChunk {
    /// The actions meant for execution, [batch, n_exec, action_dim].
    pub fn executable(&self) -> HostTensor {
        self.actions.narrow(1, self.exec_start, self.n_exec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_serialise_to_their_names_and_parse_back() {
        for kind in PolicyKind::ALL {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert_eq!(serde_json::from_str::<PolicyKind>(&json).unwrap(), kind);
            assert_eq!(kind.as_str().parse::<PolicyKind>().unwrap(), kind);
            assert_eq!(kind, kind.as_str());
            assert_eq!(kind.to_string(), kind.as_str());
        }
        let e = "composite".parse::<PolicyKind>().unwrap_err().to_string();
        assert!(
            e.contains("composite") && e.contains("diffusion, consistency, truncated, mode"),
            "{e}"
        );
    }

    #[test]
    fn capabilities_are_one_table() {
        use Capability::*;
        assert_eq!(PolicyKind::supporting(Candidates), "diffusion, consistency");
        assert_eq!(PolicyKind::supporting(WarmStarts), "diffusion, consistency");
        assert_eq!(
            PolicyKind::supporting(StepHooks),
            "diffusion, consistency, truncated, mode"
        );
        assert_eq!(
            PolicyKind::supporting(RelativeActions),
            "diffusion, consistency, truncated"
        );
        assert!(PolicyKind::Diffusion.require(Candidates).is_ok());
        let e = PolicyKind::Truncated.require(Candidates).unwrap_err().to_string();
        assert!(e.contains("consensus sampling") && e.contains("truncated"), "{e}");
    }
}
