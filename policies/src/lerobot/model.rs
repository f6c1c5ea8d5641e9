//! LeRobot's `DiffusionPolicy` on any burn backend: normalisation, observation encoding, the shared
//! sampler loop with the U-Net as denoiser, unnormalisation.

use std::collections::BTreeMap;

use burn::prelude::*;
use burn::tensor::activation::mish;

use super::config::DiffusionConfig;
use super::fused::{FusedEncoder, FusedUnet, Kernels, UnetKernels};
use super::host_unet::{host_vec as host, HostUnet};
use super::rgb::{RgbEncoder, RgbEncoderConfig};
use super::unet::{ConditionalUnet1d, ConditionalUnet1dConfig};
use crate::error::PolicyError;
use crate::normalize::FeatureNorm;
use crate::pipeline::{self, KindModel, SampleJob, Sampled};
use crate::policy::{Policy, SampleRequest, StepHook, WaveRow};
use crate::rti;
use crate::sampler::{self, to_device, to_host, Denoiser};
use crate::schedule::{NoiseSchedule, StepCoefficients};
use crate::spec::{ActionChunk, Capability, FeatureKind, ObservationWindow, PolicyKind, PolicySpec};
use crate::tensor::HostTensor;

#[derive(Module, Debug)]
pub struct DiffusionModel<B: Backend> {
    /// One encoder shared by all cameras, or one per camera (config order).
    pub rgb_encoder: Vec<RgbEncoder<B>>,
    pub unet: ConditionalUnet1d<B>,
}

impl DiffusionConfig {
    pub fn init_model<B: Backend>(&self, device: &B::Device) -> DiffusionModel<B> {
        let cams = self.cameras();
        let n_enc = if self.use_separate_rgb_encoder_per_camera {
            cams.len()
        } else {
            cams.len().min(1)
        };
        let rgb_encoder = cams
            .iter()
            .take(n_enc)
            .map(|cam| {
                RgbEncoderConfig::new(
                    [cam.shape[1], cam.shape[2]],
                    self.use_group_norm,
                    self.spatial_softmax_num_keypoints,
                )
                .with_crop_shape(self.crop_shape)
                .init(device)
            })
            .collect();
        let unet = ConditionalUnet1dConfig::new(
            self.action_dim,
            self.global_cond_dim(),
            self.down_dims.clone(),
            self.kernel_size,
            self.n_groups,
            self.diffusion_step_embed_dim,
            self.use_film_scale_modulation,
        )
        .init(device);
        DiffusionModel { rgb_encoder, unet }
    }
}

/// FiLM conditioning with the diffusion-step part folded in ahead of time.
///
/// Each residual block computes `Linear(Mish(cat(t_emb, obs)))`. Mish is element-wise, so the linear
/// map splits into a step term `W_t·Mish(t_emb)` (depends only on t: cached per timestep at load) and
/// an observation term `W_o·Mish(obs)` (one matmul per inference for all blocks together). A denoising
/// step then needs one add instead of a dozen small matmuls.
#[derive(Debug, Clone)]
struct FilmCache<B: Backend> {
    /// Concatenated observation weights of every block: [G, ΣF].
    w_obs: Tensor<B, 2>,
    /// Per timestep: step term plus every block's bias, [1, ΣF].
    step_terms: BTreeMap<usize, Tensor<B, 2>>,
    /// FiLM width of each block, in `res_blocks()` order.
    widths: Vec<usize>,
}

impl<B: Backend> FilmCache<B> {
    fn new(unet: &ConditionalUnet1d<B>, timesteps: &[usize], device: &B::Device) -> Self {
        let dsed = unet.diffusion_step_encoder.dim;
        let blocks = unet.res_blocks();
        let widths: Vec<usize> = blocks.iter().map(|b| b.cond_encoder.weight.dims()[1]).collect();
        // Burn's Linear weight is [in, out]; rows 0..dsed act on the step embedding.
        let w_all = Tensor::cat(blocks.iter().map(|b| b.cond_encoder.weight.val()).collect(), 1);
        let b_all: Vec<f32> = blocks
            .iter()
            .flat_map(|b| match &b.cond_encoder.bias {
                Some(bias) => host(bias.val()),
                None => vec![0.0; b.cond_encoder.weight.dims()[1]],
            })
            .collect();
        let [rows, total] = w_all.dims();
        let w_t = host(w_all.clone().narrow(0, 0, dsed));
        let w_obs = w_all.narrow(0, dsed, rows - dsed);
        let enc = &unet.diffusion_step_encoder;
        let (fc1, fc2) = (HostLinear::of(&enc.fc1), HostLinear::of(&enc.fc2));
        let mut cache = Self {
            w_obs,
            step_terms: BTreeMap::new(),
            widths,
        };
        // On the host in f32, so the step terms are the same exact-f32 numbers on every device (no TF32
        // matmul on a GPU).
        for &t in timesteps {
            let e = super::unet::sinusoidal_embedding(t as f32, dsed);
            let temb: Vec<f32> = fc2.apply(&fc1.apply(&e, true), true);
            let term = HostLinear {
                weight: w_t.clone(),
                bias: b_all.clone(),
                d_out: total,
            }
            .apply(&temb, false);
            cache
                .step_terms
                .insert(t, Tensor::from_data(TensorData::new(term, [1, total]), device));
        }
        cache
    }

    /// Cover `timesteps` too, keeping the ones cached already (warm and cold schedules alternate).
    fn ensure(&mut self, unet: &ConditionalUnet1d<B>, timesteps: &[usize], device: &B::Device) {
        if timesteps.iter().any(|t| !self.step_terms.contains_key(t)) {
            let all: Vec<usize> = self.step_terms.keys().chain(timesteps).copied().collect();
            *self = Self::new(unet, &all, device);
        }
    }
}

/// A Linear layer's weights on the host (`weight` [in, out] row-major, as burn stores it).
struct HostLinear {
    weight: Vec<f32>,
    bias: Vec<f32>,
    d_out: usize,
}

impl HostLinear {
    fn of<B: Backend>(l: &burn::nn::Linear<B>) -> Self {
        let [_, d_out] = l.weight.dims();
        Self {
            weight: host(l.weight.val()),
            bias: l.bias.as_ref().map_or_else(|| vec![0.0; d_out], |b| host(b.val())),
            d_out,
        }
    }

    /// `bias + x·W`, then Mish if `mish`.
    fn apply(&self, x: &[f32], mish: bool) -> Vec<f32> {
        let mut out = self.bias.clone();
        for (xi, row) in x.iter().zip(self.weight.chunks_exact(self.d_out)) {
            for (o, w) in out.iter_mut().zip(row) {
                *o += xi * w;
            }
        }
        if mish {
            out.iter_mut().for_each(|v| *v = riptide_kernels::unet::mish_f32(*v));
        }
        out
    }
}

/// Observation conditioning for one inference: the observation part of every block's FiLM, [B, ΣF].
pub struct DiffusionCond<B: Backend> {
    obs_film: Tensor<B, 2>,
}

/// What [`KindModel::encode`] gives a U-Net kind: the FiLM conditioning of every sampled row and, for
/// truncated diffusion, the score head's logits per observation [B, K].
pub struct UnetCond<B: Backend> {
    film: DiffusionCond<B>,
    scores: Option<HostTensor>,
}

/// The schedules one request runs: its own and, for an RTI warm start, the re-spaced cold and warm
/// ones (FiLM cached for all of them).
pub struct UnetPlan {
    schedule: NoiseSchedule,
    cold_schedule: Option<NoiseSchedule>,
    warm_schedule: Option<NoiseSchedule>,
}

/// Each row of [B, G] repeated `k` times consecutively: [B·k, G].
fn repeat_rows<B: Backend>(x: Tensor<B, 2>, k: usize) -> Tensor<B, 2> {
    if k == 1 {
        return x;
    }
    let [b, g] = x.dims();
    x.unsqueeze_dim::<3>(1).repeat_dim(1, k).reshape([b * k, g])
}

/// riptide's one-step consistency student (`riptide.json` kind `"consistency"`): the same U-Net,
/// its output read through consistency-model boundary scalings, sampled in one step from pure noise
/// at `timesteps[0]` or refined through the rest.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ConsistencySampling {
    pub sigma_data: f64,
    /// Student timesteps, descending; the default run uses all of them.
    pub timesteps: Vec<usize>,
}

impl ConsistencySampling {
    /// `n` timesteps evenly spaced from the first one down (n = 1: one step).
    pub fn timesteps_for(&self, n: usize) -> Vec<usize> {
        if n == self.timesteps.len() {
            return self.timesteps.clone();
        }
        let t0 = self.timesteps.first().copied().unwrap_or(0);
        let mut ts: Vec<usize> = (0..n).map(|i| t0 * (n - i) / n).collect();
        ts.dedup();
        ts
    }

    fn schedule(&self, config: &DiffusionConfig, n: usize) -> Result<NoiseSchedule, PolicyError> {
        NoiseSchedule::consistency(config.schedule.clone(), self.timesteps_for(n), self.sigma_data)
    }
}

pub struct DiffusionPolicy<B: Backend> {
    pub config: DiffusionConfig,
    /// The consistency student's sampling (Some exactly when the kind is [`PolicyKind::Consistency`]).
    pub consistency: Option<ConsistencySampling>,
    /// Anchors and score head (Some exactly when the kind is [`PolicyKind::Truncated`]).
    pub truncated: Option<crate::truncated::TruncatedParts<B>>,
    pub model: DiffusionModel<B>,
    pub input_norms: BTreeMap<String, FeatureNorm>,
    pub action_norm: FeatureNorm,
    schedule: NoiseSchedule,
    film: FilmCache<B>,
    /// The U-Net's host pass (CPU backends), when enabled.
    host_unet: Option<HostUnet>,
    /// The U-Net pass and sampler update as the backend's own kernels (cube backends), when enabled.
    fused: Option<Box<dyn FusedUnet<B>>>,
    /// The RGB encoders as the backend's own kernels, one per `model.rgb_encoder` (or none).
    fused_encoders: Vec<Box<dyn FusedEncoder<B>>>,
    /// The truncated kind's score head on the host in f32 (fc1, fc2), on the fused path: plain f32 where
    /// a device matmul could run in TF32, at the same one readback per chunk as the logits it replaces.
    host_score_head: Option<[HostLinear; 2]>,
    spec: PolicySpec,
    device: B::Device,
}

impl<B: Backend> DiffusionPolicy<B> {
    pub fn new(
        config: DiffusionConfig,
        model: DiffusionModel<B>,
        input_norms: BTreeMap<String, FeatureNorm>,
        action_norm: FeatureNorm,
        backend_name: &str,
        device: B::Device,
    ) -> Result<Self, PolicyError> {
        let schedule = NoiseSchedule::new(config.schedule.clone(), config.num_inference_steps)?;
        let film = FilmCache::new(&model.unet, &schedule.timesteps, &device);
        let spec = PolicySpec {
            kind: PolicyKind::Diffusion,
            scheduler: Some(config.schedule.kind.name().to_string()),
            inputs: config.inputs.clone(),
            action_dim: config.action_dim,
            n_obs_steps: config.n_obs_steps,
            horizon: config.horizon,
            exec_start: config.n_obs_steps - 1,
            n_action_steps: config.n_action_steps,
            default_nfe: schedule.nfe(),
            default_candidates: 1,
            num_parameters: model.num_params(),
            backend: backend_name.to_string(),
            relative_actions: Vec::new(),
        };
        Ok(Self {
            config,
            consistency: None,
            truncated: None,
            model,
            input_norms,
            action_norm,
            schedule,
            film,
            host_unet: None,
            fused: None,
            fused_encoders: Vec::new(),
            host_score_head: None,
            spec,
            device,
        })
    }

    /// Sample as a consistency student (see [`ConsistencySampling`]).
    pub fn with_consistency(mut self, c: ConsistencySampling) -> Result<Self, PolicyError> {
        let schedule = c.schedule(&self.config, c.timesteps.len())?;
        self.film = FilmCache::new(&self.model.unet, &schedule.timesteps, &self.device);
        self.spec.kind = PolicyKind::Consistency;
        self.spec.scheduler = None;
        self.spec.default_nfe = schedule.nfe();
        self.schedule = schedule;
        self.consistency = Some(c);
        Ok(self)
    }

    /// Predict the given action dims as offsets from the newest observed `observation.state` values
    /// (`(action index, state index)` pairs, riptide.json `relative_actions`; trained with
    /// `data.relative_actions`). Chunks still come out absolute: the state is added back.
    pub fn with_relative_actions(mut self, dims: Vec<(usize, usize)>) -> Result<Self, PolicyError> {
        if !dims.is_empty() {
            self.spec.kind.require(Capability::RelativeActions)?;
        }
        let state_dim = self
            .spec
            .inputs
            .iter()
            .find(|f| f.name == "observation.state")
            .map(|f| f.shape.iter().product::<usize>());
        for &(a, s) in &dims {
            if a >= self.config.action_dim || state_dim.is_none_or(|d| s >= d) {
                return Err(PolicyError::Config(format!(
                    "relative_actions: [{a}, {s}] is out of range (actions have {} values, observation.state {:?})",
                    self.config.action_dim, state_dim
                )));
            }
        }
        self.spec.relative_actions = dims;
        Ok(self)
    }

    /// Sample `k` chunks per cold-start inference by default and keep their medoid ([`crate::consensus`]).
    pub fn with_default_candidates(mut self, k: usize) -> Result<Self, PolicyError> {
        let k = crate::consensus::candidates(Some(k))?;
        if k > 1 {
            self.spec.kind.require(Capability::Candidates)?;
        }
        self.spec.default_candidates = k;
        Ok(self)
    }

    /// Sample as truncated diffusion (see [`crate::truncated`]).
    pub fn with_truncated(mut self, parts: crate::truncated::TruncatedParts<B>) -> Result<Self, PolicyError> {
        let schedule = NoiseSchedule::ddim_at(
            crate::schedule::ScheduleConfig {
                prediction_type: crate::schedule::PredictionType::Sample,
                ..self.config.schedule.clone()
            },
            parts.sampling.timesteps.clone(),
        )?;
        if parts.anchors.shape != [parts.sampling.n_anchors, self.config.horizon, self.config.action_dim] {
            return Err(PolicyError::Config(format!(
                "truncated: anchors have shape {:?}, the policy needs [{}, {}, {}]",
                parts.anchors.shape, parts.sampling.n_anchors, self.config.horizon, self.config.action_dim
            )));
        }
        self.film = FilmCache::new(&self.model.unet, &schedule.timesteps, &self.device);
        self.spec.kind = PolicyKind::Truncated;
        self.spec.scheduler = None;
        self.spec.default_nfe = schedule.nfe();
        self.schedule = schedule;
        self.truncated = Some(parts);
        Ok(self)
    }

    /// Truncated diffusion: every anchor noised to the truncation step, all of them denoised in one
    /// batch [B·K], the score head picks one candidate per batch item. Returns (normalised chunk, NFE).
    fn sample_truncated(
        &self,
        parts: &crate::truncated::TruncatedParts<B>,
        cond: &UnetCond<B>,
        job: SampleJob<'_>,
        hook: Option<&mut dyn StepHook>,
    ) -> Result<(Tensor<B, 3>, usize), PolicyError> {
        let (batch, h, a, k) = (
            job.batch,
            self.config.horizon,
            self.config.action_dim,
            parts.sampling.n_anchors,
        );
        let logits = cond
            .scores
            .as_ref()
            .ok_or_else(|| PolicyError::Config("truncated diffusion needs the score head's logits".into()))?;
        let eps = job.noise.take(
            job.req.initial_noise.as_ref(),
            [batch * k, h, a],
            "initial noise (one per anchor)",
        )?;
        let (sa, sb) = self.schedule_coeffs(parts.sampling.trunc_timestep);
        let per = h * a;
        let mut x0 = eps.data;
        for (i, v) in x0.iter_mut().enumerate() {
            let anchor = parts.anchors.data[(i / per) % k * per + i % per];
            *v = (sa * anchor + sb * *v).clamp(-1.0, 1.0);
        }
        let x = Tensor::<B, 3>::from_data(TensorData::new(x0, [batch * k, h, a]), &self.device);
        let mut no_noise = |_: usize| -> Result<HostTensor, PolicyError> {
            Err(PolicyError::Config(
                "truncated diffusion samples with DDIM (no step noise)".into(),
            ))
        };
        let schedule = &self.schedule;
        let (x, nfe) = sampler::sample(self, &cond.film, schedule, 0..schedule.nfe(), x, &mut no_noise, hook)?;
        let cands = to_host(x);
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(job.noise.seed ^ 0x5C0E);
        let mut out = Vec::with_capacity(batch * per);
        for bi in 0..batch {
            let l = &logits.data[bi * k..(bi + 1) * k];
            let pick = match parts.sampling.select {
                crate::truncated::ModeSelect::Argmax => (0..k).max_by(|&i, &j| l[i].total_cmp(&l[j])).unwrap_or(0),
                crate::truncated::ModeSelect::Sample => {
                    let m = l.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                    let w: Vec<f64> = l.iter().map(|v| ((v - m) as f64).exp()).collect();
                    let mut r = rand::Rng::random_range(&mut rng, 0.0..w.iter().sum::<f64>());
                    let mut pick = k - 1;
                    for (i, wi) in w.iter().enumerate() {
                        r -= wi;
                        if r <= 0.0 {
                            pick = i;
                            break;
                        }
                    }
                    pick
                }
            };
            let row = bi * k + pick;
            out.extend_from_slice(&cands.data[row * per..(row + 1) * per]);
        }
        Ok((
            Tensor::from_data(TensorData::new(out, [batch, h, a]), &self.device),
            nfe,
        ))
    }

    /// `(√ᾱ_t, √(1−ᾱ_t))` of the training schedule (the truncated schedule carries its ᾱ table).
    fn schedule_coeffs(&self, t: usize) -> (f32, f32) {
        let ac = &self.schedule.alphas_cumprod;
        let a = ac[t.min(ac.len() - 1)];
        (a.sqrt(), (1.0 - a).sqrt())
    }

    /// The schedule of a request for `n` steps.
    fn schedule_for(&self, n: Option<usize>) -> Result<NoiseSchedule, PolicyError> {
        if let (Some(n), PolicyKind::Truncated) = (n, self.spec.kind) {
            if n != self.schedule.nfe() {
                return Err(PolicyError::Config(format!(
                    "a truncated-diffusion policy runs its {} trained steps; num_inference_steps = {n} is not supported",
                    self.schedule.nfe()
                )));
            }
        }
        match (n, &self.consistency) {
            (Some(n), _) if n == self.schedule.nfe() => Ok(self.schedule.clone()),
            (None, _) => Ok(self.schedule.clone()),
            (Some(0), Some(_)) => Err(PolicyError::Config("num_inference_steps must be ≥ 1".into())),
            (Some(n), Some(c)) => c.schedule(&self.config, n),
            (Some(n), None) => NoiseSchedule::new(self.config.schedule.clone(), n),
        }
    }

    /// Run the U-Net's inference passes in host memory (CPU backends only: see [`HostUnet`]), from a
    /// copy of its weights taken now. Results agree with the tensor path to float rounding.
    pub fn set_host_fusion(&mut self, on: bool) {
        self.host_unet = on.then(|| super::host_unet::host_unet(&self.model.unet));
    }

    pub fn host_fusion(&self) -> bool {
        self.host_unet.is_some()
    }

    /// Run the U-Net passes and sampler updates as the backend's fused kernels ([`UnetKernels`]) with
    /// [`Kernels::Fused`], or burn's ops with [`Kernels::Burn`]. Backends without fused kernels, and nets
    /// the device's limits do not fit (logged), keep burn's ops; the backend's name says which kernels
    /// run. Returns whether the fused path is on.
    pub fn set_kernels(&mut self, kernels: Kernels) -> Result<bool, PolicyError>
    where
        B: UnetKernels,
    {
        // A net the device's limits (or the fused programs) do not fit: burn's kernels still run it.
        let fallback = |what: &str, e: &dyn std::fmt::Display| {
            tracing::warn!("fused {what} kernels unavailable, running burn's: {e}");
        };
        self.fused = None;
        self.fused_encoders = Vec::new();
        self.host_score_head = None;
        if kernels == Kernels::Fused {
            self.fused = match B::fused_unet(
                &super::host_unet::host_unet(&self.model.unet),
                self.config.horizon,
                self.config.action_dim,
                self.film.widths.iter().sum(),
                &self.device,
            ) {
                Ok(f) => f,
                Err(e) => {
                    fallback("U-Net", &e);
                    None
                }
            };
            let cams = self.config.cameras();
            let mut encoders = Vec::new();
            for (enc, cam) in self.model.rgb_encoder.iter().zip(&cams) {
                let program = super::fused::encoder::compile(enc, [cam.shape[1], cam.shape[2]]);
                match program
                    .map_err(PolicyError::Config)
                    .and_then(|p| B::fused_encoder(p, &self.device))
                {
                    Ok(Some(f)) => encoders.push(f),
                    Ok(None) => break,
                    Err(e) => {
                        fallback("RGB encoder", &e);
                        break;
                    }
                }
            }
            // All encoders fused, or none: one path per policy.
            if encoders.len() == self.model.rgb_encoder.len() {
                self.fused_encoders = encoders;
            }
        }
        self.host_score_head = match (&self.fused, &self.truncated) {
            (Some(_), Some(parts)) => Some([
                HostLinear::of(&parts.score_head.fc1),
                HostLinear::of(&parts.score_head.fc2),
            ]),
            _ => None,
        };
        let fused = self.fused.is_some() && self.fused_encoders.len() == self.model.rgb_encoder.len();
        let label = match (fused, self.fused.is_some()) {
            (true, _) => "fused kernels",
            (false, true) => "fused U-Net kernels, burn's encoder kernels",
            (false, false) => "burn kernels",
        };
        self.spec.backend = format!("{}, {label}", self.spec.backend);
        Ok(self.fused.is_some())
    }

    /// Features of images `[N, 3, H, W]` by encoder `i`: its fused kernels when enabled.
    fn encode_images(&self, i: usize, x: Tensor<B, 4>) -> Tensor<B, 2> {
        match self.fused_encoders.get(i) {
            Some(f) => f.forward(x),
            None => self.model.rgb_encoder[i].forward(x),
        }
    }

    /// Whether the fused encoders can take a batch of `batch` observation windows.
    fn check_images(&self, batch: usize) -> Result<(), PolicyError> {
        let cams = self.config.cameras().len();
        let per_encoder = if self.model.rgb_encoder.len() == 1 { cams } else { 1 };
        for f in &self.fused_encoders {
            f.check_images(batch * self.config.n_obs_steps * per_encoder)?;
        }
        Ok(())
    }

    pub fn fused_kernels(&self) -> bool {
        self.fused.is_some()
    }

    pub fn schedule(&self) -> &NoiseSchedule {
        &self.schedule
    }

    /// Normalise one feature's window [B, To, ...] on the host and move it to the device.
    fn normalized<const D: usize>(&self, obs: &ObservationWindow, name: &str) -> Tensor<B, D> {
        let t = &obs.features[name];
        let mut data = t.data.clone();
        if let Some(n) = self.input_norms.get(name) {
            // Vectors: channels are the last dim; images [.., 3, H, W]: per-channel over H·W.
            let inner = if t.shape.len() == 5 { t.shape[3] * t.shape[4] } else { 1 };
            n.normalize(&mut data, inner);
        }
        Tensor::from_data(TensorData::new(data, t.shape.clone()), &self.device)
    }

    /// LeRobot's `_prepare_global_conditioning`: per frame [state, camera features…, env], time-major.
    pub fn global_conditioning(&self, obs: &ObservationWindow, batch: usize) -> Tensor<B, 2> {
        let to = self.config.n_obs_steps;
        let mut per_frame: Vec<Tensor<B, 3>> = Vec::new();
        if let Some(f) = self.config.feature(FeatureKind::State) {
            per_frame.push(self.normalized::<3>(obs, &f.name));
        }
        let cams = self.config.cameras();
        if !cams.is_empty() {
            let imgs: Vec<Tensor<B, 5>> = cams.iter().map(|c| self.normalized::<5>(obs, &c.name)).collect();
            if self.model.rgb_encoder.len() == 1 && cams.len() > 1 {
                // Shared encoder: "b s n c h w -> (b s n) c h w" in one batch.
                let stacked: Tensor<B, 6> = Tensor::stack(imgs, 2);
                let [b, s, n, c, h, w] = stacked.dims();
                let feats = self.encode_images(0, stacked.reshape([b * s * n, c, h, w]));
                let d = feats.dims()[1];
                per_frame.push(feats.reshape([b, s, n * d]));
            } else {
                let n_enc = self.model.rgb_encoder.len();
                for (i, img) in imgs.into_iter().enumerate() {
                    let [b, s, c, h, w] = img.dims();
                    let feats = self.encode_images(i % n_enc, img.reshape([b * s, c, h, w]));
                    let d = feats.dims()[1];
                    per_frame.push(feats.reshape([b, s, d]));
                }
            }
        }
        if let Some(f) = self.config.feature(FeatureKind::Env) {
            per_frame.push(self.normalized::<3>(obs, &f.name));
        }
        let cond = Tensor::cat(per_frame, 2);
        let d = cond.dims()[2];
        cond.reshape([batch, to * d])
    }

    /// Observation conditioning ready for the denoiser.
    pub fn condition(&self, global_cond: Tensor<B, 2>) -> DiffusionCond<B> {
        let obs_film = match &self.fused {
            Some(fused) => fused.obs_film(global_cond, &self.film.w_obs),
            None => mish(global_cond).matmul(self.film.w_obs.clone()),
        };
        DiffusionCond { obs_film }
    }
}

impl<B: Backend> Denoiser<B> for DiffusionPolicy<B> {
    type Cond = DiffusionCond<B>;

    fn denoise(&self, x: Tensor<B, 3>, t: usize, cond: &Self::Cond) -> Tensor<B, 3> {
        if let Some(fused) = &self.fused {
            return fused.pass(x, &cond.obs_film, &self.film.step_terms[&t]);
        }
        let all = cond.obs_film.clone() + self.film.step_terms[&t].clone();
        if let Some(host) = &self.host_unet {
            let [b, h, a] = x.dims();
            let [rows, total] = all.dims();
            debug_assert_eq!(rows, b);
            let films = all.into_data().into_vec::<f32>().expect("f32 FiLM");
            let xs = x.into_data().into_vec::<f32>().expect("f32 sample");
            let out = host.forward(&xs, b, h, &films, total);
            return Tensor::from_data(TensorData::new(out, [b, h, a]), &self.device);
        }
        let mut offset = 0;
        let films: Vec<Tensor<B, 2>> = self
            .film
            .widths
            .iter()
            .map(|&w| {
                let f = all.clone().narrow(1, offset, w);
                offset += w;
                f
            })
            .collect();
        self.model.unet.forward_with_film(x, &films)
    }

    fn update(
        &self,
        x: Tensor<B, 3>,
        out: Tensor<B, 3>,
        c: &StepCoefficients,
        clip: Option<f32>,
        noise: Option<Tensor<B, 3>>,
    ) -> Tensor<B, 3> {
        match &self.fused {
            Some(fused) => fused.update(x, out, c, clip, noise),
            None => sampler::step(x, out, c, clip, noise),
        }
    }
}

impl<B: Backend> Policy for DiffusionPolicy<B> {
    fn spec(&self) -> &PolicySpec {
        &self.spec
    }

    fn action_norm(&self) -> Option<&crate::normalize::FeatureNorm> {
        Some(&self.action_norm)
    }

    fn predict(
        &mut self,
        obs: &ObservationWindow,
        req: &SampleRequest,
        hook: Option<&mut dyn StepHook>,
    ) -> Result<ActionChunk, PolicyError> {
        pipeline::predict::<B, _>(self, obs, req, hook)
    }

    fn predict_wave(&mut self, rows: &[WaveRow<'_>]) -> Vec<Result<ActionChunk, PolicyError>> {
        pipeline::predict_wave::<B, _>(self, rows)
    }
}

impl<B: Backend> KindModel<B> for DiffusionPolicy<B> {
    type Cond = UnetCond<B>;
    type Plan = UnetPlan;

    fn spec(&self) -> &PolicySpec {
        &self.spec
    }

    fn action_norm(&self) -> &FeatureNorm {
        &self.action_norm
    }

    /// The request's schedule; for a warm start also the re-spaced cold and warm schedules. Invalid
    /// step counts fall through to `rti::denoise`, whose validation names them.
    fn plan(&mut self, req: &SampleRequest) -> Result<UnetPlan, PolicyError> {
        let schedule = self.schedule_for(req.num_inference_steps)?;
        self.film.ensure(&self.model.unet, &schedule.timesteps, &self.device);
        let (mut cold_schedule, mut warm_schedule) = (None, None);
        if let Some(warm) = &req.warm_start {
            cold_schedule = match warm.config.cold_steps {
                Some(n) if n != schedule.nfe() => Some(self.schedule_for(Some(n))?),
                _ => None,
            };
            let tail = schedule.nfe().saturating_sub(warm.config.start_step);
            warm_schedule = match warm.config.warm_steps {
                Some(w) if (1..tail).contains(&w) => Some(NoiseSchedule::ddim_at(
                    schedule.config.clone(),
                    warm.config.warm_timesteps(&schedule.timesteps),
                )?),
                _ => None,
            };
            for s in cold_schedule.iter().chain(&warm_schedule) {
                self.film.ensure(&self.model.unet, &s.timesteps, &self.device);
            }
        }
        Ok(UnetPlan {
            schedule,
            cold_schedule,
            warm_schedule,
        })
    }

    /// A truncated policy picks each observation's anchor with one random stream for the whole batch.
    fn batches_rows(&self) -> bool {
        self.spec.kind != PolicyKind::Truncated
    }

    /// A truncated policy starts from its anchors, not from noise of the chunk's shape.
    fn draws_start_noise(&self) -> bool {
        self.spec.kind != PolicyKind::Truncated
    }

    fn encode(&self, obs: &ObservationWindow, batch: usize, candidates: usize) -> Result<UnetCond<B>, PolicyError> {
        self.check_images(batch)?;
        let gc = self.global_conditioning(obs, batch);
        match (&self.truncated, self.spec.kind) {
            (Some(parts), PolicyKind::Truncated) => Ok(UnetCond {
                scores: Some(match &self.host_score_head {
                    Some([fc1, fc2]) => {
                        let gc = to_host(gc.clone());
                        let g = gc.shape[1];
                        let logits: Vec<f32> = gc
                            .data
                            .chunks_exact(g.max(1))
                            .flat_map(|row| fc2.apply(&fc1.apply(row, true), false))
                            .collect();
                        HostTensor::new(vec![gc.shape[0], fc2.d_out], logits)?
                    }
                    None => to_host(parts.score_head.forward(gc.clone())),
                }),
                film: self.condition(repeat_rows(gc, parts.sampling.n_anchors)),
            }),
            _ => Ok(UnetCond {
                film: self.condition(repeat_rows(gc, candidates)),
                scores: None,
            }),
        }
    }

    fn sample(
        &self,
        plan: &UnetPlan,
        cond: &UnetCond<B>,
        mut job: SampleJob<'_>,
        hook: Option<&mut dyn StepHook>,
    ) -> Result<Sampled<B>, PolicyError> {
        if let Some(fused) = &self.fused {
            fused.check_rows(cond.film.obs_film.dims()[0])?;
        }
        if let (Some(parts), PolicyKind::Truncated) = (&self.truncated, self.spec.kind) {
            let (x, nfe) = self.sample_truncated(parts, cond, job, hook)?;
            return Ok(Sampled {
                x,
                nfe,
                warm_started: false,
            });
        }
        if let Some(warm) = job.warm_start {
            let ctx = rti::WarmContext {
                spec: &self.spec,
                norms: &self.input_norms,
                obs: job.obs,
                shape: job.shape,
                started: job.started,
                cold_schedule: plan.cold_schedule.as_ref(),
                warm_schedule: plan.warm_schedule.as_ref(),
            };
            let out = rti::denoise(
                self,
                &cond.film,
                &plan.schedule,
                &self.device,
                warm,
                ctx,
                job.req,
                job.noise,
                hook,
            )?;
            return Ok(Sampled {
                x: out.x,
                nfe: out.nfe,
                warm_started: matches!(out.start, rti::Start::Warm { .. }),
            });
        }
        let start = job
            .start
            .take()
            .ok_or_else(|| PolicyError::Config("a cold start needs its start sample".into()))?;
        let x = to_device::<B, 3>(&start, &self.device);
        let (x, nfe) = pipeline::sample_all(self, &cond.film, &plan.schedule, x, &mut job, hook)?;
        Ok(Sampled {
            x,
            nfe,
            warm_started: false,
        })
    }
}
