//! LeRobot's `DiffusionPolicy` on any burn backend: normalisation, observation encoding, the shared
//! sampler loop with the U-Net as denoiser, unnormalisation.

use std::collections::BTreeMap;
use std::time::Instant;

use burn::prelude::*;
use burn::tensor::activation::mish;

use super::config::DiffusionConfig;
use super::rgb::{RgbEncoder, RgbEncoderConfig};
use super::unet::{ConditionalUnet1d, ConditionalUnet1dConfig, Film};
use crate::error::PolicyError;
use crate::normalize::FeatureNorm;
use crate::policy::{
    ActionChunk, ChunkMeta, FeatureKind, ObservationWindow, Policy, PolicySpec, SampleRequest, StageTimings, StepHook,
};
use crate::rti;
use crate::sampler::{self, to_device, to_host, Denoiser, NoiseSource};
use crate::schedule::NoiseSchedule;

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
        let b_all = Tensor::cat(
            blocks
                .iter()
                .map(|b| match &b.cond_encoder.bias {
                    Some(bias) => bias.val(),
                    None => Tensor::zeros([b.cond_encoder.weight.dims()[1]], device),
                })
                .collect(),
            0,
        )
        .unsqueeze_dim::<2>(0);
        let [rows, _] = w_all.dims();
        let w_t = w_all.clone().narrow(0, 0, dsed);
        let w_obs = w_all.narrow(0, dsed, rows - dsed);
        let mut cache = Self {
            w_obs,
            step_terms: BTreeMap::new(),
            widths,
        };
        for &t in timesteps {
            let temb = mish(unet.diffusion_step_encoder.forward(t, device));
            cache.step_terms.insert(t, temb.matmul(w_t.clone()) + b_all.clone());
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

/// Observation conditioning for one inference: the observation part of every block's FiLM, [B, ΣF].
pub struct DiffusionCond<B: Backend> {
    obs_film: Tensor<B, 2>,
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
    /// Some: a consistency student (riptide kind "consistency") instead of LeRobot's sampler.
    pub consistency: Option<ConsistencySampling>,
    /// Some: truncated diffusion from anchors with a score head (riptide kind "truncated").
    pub truncated: Option<crate::truncated::TruncatedParts<B>>,
    pub model: DiffusionModel<B>,
    pub input_norms: BTreeMap<String, FeatureNorm>,
    pub action_norm: FeatureNorm,
    schedule: NoiseSchedule,
    film: FilmCache<B>,
    host_fusion: bool,
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
            kind: format!("diffusion ({})", config.schedule.kind.name()),
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
            host_fusion: false,
            spec,
            device,
        })
    }

    /// Sample as a consistency student (see [`ConsistencySampling`]).
    pub fn with_consistency(mut self, c: ConsistencySampling) -> Result<Self, PolicyError> {
        let schedule = c.schedule(&self.config, c.timesteps.len())?;
        self.film = FilmCache::new(&self.model.unet, &schedule.timesteps, &self.device);
        self.spec.kind = "consistency".into();
        self.spec.default_nfe = schedule.nfe();
        self.schedule = schedule;
        self.consistency = Some(c);
        Ok(self)
    }

    /// Predict the given action dims as offsets from the newest observed `observation.state` values
    /// (`(action index, state index)` pairs, riptide.json `relative_actions`; trained with
    /// `data.relative_actions`). Chunks still come out absolute: the state is added back.
    pub fn with_relative_actions(mut self, dims: Vec<(usize, usize)>) -> Result<Self, PolicyError> {
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
        if k > 1 && self.truncated.is_some() {
            return Err(PolicyError::Config(
                "candidates applies to diffusion and consistency sampling, not truncated diffusion".into(),
            ));
        }
        self.spec.default_candidates = k;
        Ok(self)
    }

    /// A warm start's previous chunk, re-expressed against the new window's state: its offsets were
    /// taken from the state it was made at. Without that window the warm start runs cold.
    fn rereference(&self, warm: &rti::WarmStart, reference: &[Vec<f32>]) -> rti::WarmStart {
        let mut w = warm.clone();
        let (h, d) = (self.config.horizon, self.config.action_dim);
        let Some(p) = w.previous.as_mut() else { return w };
        let old = p
            .observation
            .as_ref()
            .and_then(|o| self.spec.relative_reference(o).ok());
        match old {
            Some(old) if old.len() == reference.len() && p.actions_normalized.data.len() == old.len() * h * d => {
                let mut zero = vec![0.0f32; d];
                self.action_norm.normalize(&mut zero, 1);
                for (i, (was, now)) in old.iter().zip(reference).enumerate() {
                    let mut delta = vec![0.0f32; d];
                    for (j, &(a, _)) in self.spec.relative_actions.iter().enumerate() {
                        delta[a] = was[j] - now[j];
                    }
                    // Normalisation is affine per dim: a shift of x moves n by norm(Δ) − norm(0).
                    self.action_norm.normalize(&mut delta, 1);
                    for row in p.actions_normalized.data[i * h * d..(i + 1) * h * d].chunks_exact_mut(d) {
                        for a in 0..d {
                            row[a] += delta[a] - zero[a];
                        }
                    }
                }
            }
            _ => {
                tracing::debug!("relative actions: previous chunk without its window; cold start");
                w.previous = None;
            }
        }
        w
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
        self.spec.kind = "truncated".into();
        self.spec.default_nfe = schedule.nfe();
        self.schedule = schedule;
        self.truncated = Some(parts);
        Ok(self)
    }

    /// Truncated diffusion: every anchor noised to the truncation step, all of them denoised in one
    /// batch [B·K], the score head picks one candidate per batch item. Returns (normalised chunk, NFE).
    fn predict_truncated(
        &self,
        obs: &ObservationWindow,
        req: &SampleRequest,
        batch: usize,
        noise: &mut NoiseSource,
        hook: Option<&mut dyn StepHook>,
    ) -> Result<(Tensor<B, 3>, usize), PolicyError> {
        let parts = self.truncated.as_ref().expect("truncated policy");
        if req.warm_start.is_some() {
            return Err(PolicyError::Config(
                "RTI warm starts apply to the diffusion kind; a truncated policy already enters late from its anchors"
                    .into(),
            ));
        }
        let (h, a, k) = (self.config.horizon, self.config.action_dim, parts.sampling.n_anchors);
        let gc = self.global_conditioning(obs, batch);
        let logits = to_host(parts.score_head.forward(gc.clone()));
        let g = gc.dims()[1];
        let cond = self.condition(gc.unsqueeze_dim::<3>(1).repeat_dim(1, k).reshape([batch * k, g]));
        let eps = noise.take(
            req.initial_noise.as_ref(),
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
        let mut no_noise = |_: usize| -> Result<crate::tensor::HostTensor, PolicyError> {
            Err(PolicyError::Config(
                "truncated diffusion samples with DDIM (no step noise)".into(),
            ))
        };
        let schedule = &self.schedule;
        let (x, nfe) = sampler::sample(self, &cond, schedule, 0..schedule.nfe(), x, &mut no_noise, hook)?;
        let cands = to_host(x);
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(noise.seed ^ 0x5C0E);
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
        if let (Some(n), Some(_)) = (n, &self.truncated) {
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

    /// Run the element-wise tails of the U-Net's conv blocks in host memory (CPU backends only: see
    /// [`super::unet::HostGroupNorm`]). Results agree with the tensor path to float rounding.
    pub fn set_host_fusion(&mut self, on: bool) {
        self.host_fusion = on;
        self.model.unet.set_host_fusion(on);
    }

    pub fn host_fusion(&self) -> bool {
        self.host_fusion
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
                let feats = self.model.rgb_encoder[0].forward(stacked.reshape([b * s * n, c, h, w]));
                let d = feats.dims()[1];
                per_frame.push(feats.reshape([b, s, n * d]));
            } else {
                for (enc, img) in self.model.rgb_encoder.iter().cycle().zip(imgs) {
                    let [b, s, c, h, w] = img.dims();
                    let feats = enc.forward(img.reshape([b * s, c, h, w]));
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
        DiffusionCond {
            obs_film: mish(global_cond).matmul(self.film.w_obs.clone()),
        }
    }
}

impl<B: Backend> Denoiser<B> for DiffusionPolicy<B> {
    type Cond = DiffusionCond<B>;

    fn denoise(&self, x: Tensor<B, 3>, t: usize, cond: &Self::Cond) -> Tensor<B, 3> {
        let all = cond.obs_film.clone() + self.film.step_terms[&t].clone();
        let mut offset = 0;
        let films: Vec<Film<B>> = if self.host_fusion {
            // One transfer for all blocks; each block reads its columns.
            let [rows, total] = all.dims();
            let host = all.into_data().into_vec::<f32>().expect("f32 FiLM");
            self.film
                .widths
                .iter()
                .map(|&w| {
                    let mut v = Vec::with_capacity(rows * w);
                    for r in 0..rows {
                        v.extend_from_slice(&host[r * total + offset..r * total + offset + w]);
                    }
                    offset += w;
                    Film::Host(std::sync::Arc::new(v), rows, w)
                })
                .collect()
        } else {
            self.film
                .widths
                .iter()
                .map(|&w| {
                    let f = all.clone().narrow(1, offset, w);
                    offset += w;
                    Film::Device(f)
                })
                .collect()
        };
        self.model.unet.forward_with_film(x, &films)
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
        let t0 = Instant::now();
        let batch = obs.validate(&self.spec)?;
        let reference = self.spec.relative_reference(obs)?;
        let rereferenced = match &req.warm_start {
            Some(w) if !reference.is_empty() => Some(self.rereference(w, &reference)),
            _ => None,
        };
        let warm_start = rereferenced.as_ref().or(req.warm_start.as_ref());
        let schedule = self.schedule_for(req.num_inference_steps)?;
        self.film.ensure(&self.model.unet, &schedule.timesteps, &self.device);
        let seed = req.seed.unwrap_or_else(rand::random);
        let mut noise = NoiseSource::new(seed);
        // A truncated policy's default is always 1; an explicit request must fit.
        let k = self
            .spec
            .candidates_for(req.candidates, req.warm_start.is_none() && hook.is_none())?;
        if k > 1 && (self.truncated.is_some() || req.warm_start.is_some() || hook.is_some()) {
            return Err(PolicyError::Config(
                "candidates > 1 (consensus sampling) works with cold-start diffusion sampling only: not with \
                 RTI warm starts, guidance hooks or truncated diffusion"
                    .into(),
            ));
        }
        let shape = [batch * k, self.config.horizon, self.config.action_dim];
        // A warm-start request draws (or falls back to) its own start sample in `rti::denoise`.
        let x_t = match req.warm_start {
            None if self.truncated.is_none() => Some(noise.take(req.initial_noise.as_ref(), shape, "initial noise")?),
            _ => None,
        };
        let mut timings = StageTimings {
            preprocess_s: t0.elapsed().as_secs_f64(),
            ..Default::default()
        };

        let t1 = Instant::now();
        let gc = self.global_conditioning(obs, batch);
        let gc = match k {
            1 => gc,
            _ => {
                let g = gc.dims()[1];
                gc.unsqueeze_dim::<3>(1).repeat_dim(1, k).reshape([batch * k, g])
            }
        };
        let cond = self.condition(gc);
        timings.encode_s = t1.elapsed().as_secs_f64();

        let t2 = Instant::now();
        let (x, nfe, warm_started) = match (warm_start, x_t) {
            _ if self.truncated.is_some() => {
                let (x, nfe) = self.predict_truncated(obs, req, batch, &mut noise, hook)?;
                (x, nfe, false)
            }
            (Some(warm), _) => {
                // Re-spaced schedules for cold starts and warm passes, FiLM cached for their timesteps;
                // invalid step counts fall through to `rti::denoise`, whose validation names them.
                let cold_schedule = match warm.config.cold_steps {
                    Some(n) if n != schedule.nfe() => Some(self.schedule_for(Some(n))?),
                    _ => None,
                };
                let tail = schedule.nfe().saturating_sub(warm.config.start_step);
                let warm_schedule = match warm.config.warm_steps {
                    Some(w) if (1..tail).contains(&w) => Some(NoiseSchedule::ddim_at(
                        schedule.config.clone(),
                        warm.config.warm_timesteps(&schedule.timesteps),
                    )?),
                    _ => None,
                };
                for s in cold_schedule.iter().chain(&warm_schedule) {
                    self.film.ensure(&self.model.unet, &s.timesteps, &self.device);
                }
                let ctx = rti::WarmContext {
                    spec: &self.spec,
                    norms: &self.input_norms,
                    obs,
                    shape,
                    started: t0,
                    cold_schedule: cold_schedule.as_ref(),
                    warm_schedule: warm_schedule.as_ref(),
                };
                let out = rti::denoise(self, &cond, &schedule, &self.device, warm, ctx, req, &mut noise, hook)?;
                (out.x, out.nfe, matches!(out.start, rti::Start::Warm { .. }))
            }
            (None, x_t) => {
                let x = to_device::<B, 3>(&x_t.expect("cold start sample"), &self.device);
                let mut step_noise =
                    |k: usize| noise.take(req.step_noise.get(&k), shape, &format!("noise for step {k}"));
                let (x, nfe) = sampler::sample(self, &cond, &schedule, 0..schedule.nfe(), x, &mut step_noise, hook)?;
                (x, nfe, false)
            }
        };
        let mut normalized = to_host(x);
        if k > 1 {
            let exec = self.spec.exec_start..self.spec.exec_start + self.spec.n_action_steps;
            normalized = crate::consensus::select_medoids(&normalized, k, exec).0;
        }
        timings.denoise_s = t2.elapsed().as_secs_f64();

        let t3 = Instant::now();
        let mut actions = normalized.clone();
        if let Some(warm) = &req.warm_start {
            rti::discrete_to_unit(&mut actions, &warm.config.discrete);
        }
        self.action_norm.unnormalize(&mut actions.data, 1);
        let per_row = self.config.horizon * self.config.action_dim;
        for (rows, r) in actions.data.chunks_exact_mut(per_row).zip(&reference) {
            self.spec.add_reference(rows, r);
        }
        timings.postprocess_s = t3.elapsed().as_secs_f64();
        Ok(ActionChunk {
            actions,
            actions_normalized: normalized,
            exec_start: self.spec.exec_start,
            n_exec: self.spec.n_action_steps,
            meta: ChunkMeta {
                kind: self.spec.kind.clone(),
                nfe,
                seed,
                warm_started,
                timings,
            },
        })
    }
}
