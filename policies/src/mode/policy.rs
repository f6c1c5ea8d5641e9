//! `MoDEPolicy`: normalisation, the EDM-preconditioned denoiser run through the shared sampler loop,
//! expert caching, and the riptide checkpoint format (model.safetensors + riptide.json).

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;
use serde_json::{json, Value};

use super::model::{edm_scalings, exponential_sigmas, top_k, MoDE, MoDEConfig};
use crate::error::PolicyError;
use crate::matmul::{matmul, ExactMatmul};
use crate::normalize::FeatureNorm;
use crate::pipeline::{self, KindModel, SampleJob, Sampled};
use crate::policy::{Policy, SampleRequest, StepHook, WaveRow};
use crate::sampler::{to_device, to_host, Denoiser};
use crate::schedule::{NoiseSchedule, SigmaStep};
use crate::spec::{ActionChunk, FeatureKind, InputFeature, ObservationWindow, PolicyKind, PolicySpec};
use crate::tensor::{read_safetensors, write_safetensors, HostTensor};
use crate::train::data::FeatureStats;

/// Top-k experts of one layer fused into one SwiGLU MLP (MoDE's `FusedMLPV2`). The projections and
/// the gates are kept as two matrices, [proj_1 … proj_k] and [gate_1 … gate_k], so both products come
/// out contiguous (a split of one wide product is a strided view, slow to iterate on the CPU).
#[derive(Debug, Clone)]
struct FusedMlp<B: Backend> {
    /// [D, k·4D] each, and [k·4D] biases.
    w_proj: Tensor<B, 2>,
    b_proj: Tensor<B, 1>,
    w_gate: Tensor<B, 2>,
    b_gate: Tensor<B, 1>,
    /// [k·4D, D]: each expert's output rows scaled by its routing weight.
    w_out: Tensor<B, 2>,
}

impl<B: ExactMatmul> FusedMlp<B> {
    fn new(block: &super::model::Block<B>, selected: &[(usize, f32)]) -> Self {
        let (mut p, mut g, mut bp, mut bg, mut out) = (vec![], vec![], vec![], vec![], vec![]);
        for &(e, w) in selected {
            let ex = &block.experts[e];
            let wp = ex.proj.weight.val();
            let device = wp.device();
            let half = wp.dims()[1] / 2;
            p.push(wp.clone().narrow(1, 0, half));
            g.push(wp.narrow(1, half, half));
            let b = match &ex.proj.bias {
                Some(b) => b.val(),
                None => Tensor::zeros([2 * half], &device),
            };
            bp.push(b.clone().narrow(0, 0, half));
            bg.push(b.narrow(0, half, half));
            out.push(ex.out.weight.val().mul_scalar(w));
        }
        Self {
            w_proj: Tensor::cat(p, 1),
            b_proj: Tensor::cat(bp, 0),
            w_gate: Tensor::cat(g, 1),
            b_gate: Tensor::cat(bg, 0),
            w_out: Tensor::cat(out, 0),
        }
    }

    fn forward(&self, h: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, t, d] = h.dims();
        let h = h.reshape([b * t, d]);
        let p = matmul(h.clone(), self.w_proj.clone()) + self.b_proj.clone().unsqueeze::<2>();
        let g = matmul(h, self.w_gate.clone()) + self.b_gate.clone().unsqueeze::<2>();
        let out = matmul(p.mul(burn::tensor::activation::silu(g)), self.w_out.clone());
        out.reshape([b, t, d])
    }
}

/// Everything about one denoising step that depends only on σ_i: the noise embedding and, per layer,
/// the chosen experts fused into one MLP and the noise term of the attention input projected through
/// Q, K and V (`c·W + b`).
#[derive(Debug, Clone)]
struct StepExperts<B: Backend> {
    c: Tensor<B, 3>,
    layers: Vec<FusedMlp<B>>,
    qkv_bias: Vec<[Tensor<B, 1>; 3]>,
    chosen: Vec<Vec<(usize, f32)>>,
}

/// Expert cache for one σ grid, keyed by step index (never by a float σ).
#[derive(Debug, Clone)]
struct ExpertCache<B: Backend> {
    /// Per layer, `diag(g)·W` for Q, K, V with g the attention norm's gain (the same at every step).
    qkv_w: Vec<[Tensor<B, 2>; 3]>,
    steps: Vec<StepExperts<B>>,
}

impl<B: ExactMatmul> ExpertCache<B> {
    fn new(model: &MoDE<B>, sigmas: &[f64], top: usize, device: &B::Device) -> Self {
        let steps = sigmas[..sigmas.len() - 1]
            .iter()
            .map(|&s| {
                let c = model.noise_embedding_at(s, device);
                let chosen = route(model, c.clone(), top);
                let layers = model
                    .blocks
                    .iter()
                    .zip(&chosen)
                    .map(|(b, sel)| FusedMlp::new(b, sel))
                    .collect();
                let qkv_bias = model.blocks.iter().map(|b| b.qkv_noise_bias(c.clone())).collect();
                StepExperts {
                    c,
                    layers,
                    qkv_bias,
                    chosen,
                }
            })
            .collect();
        let qkv_w = model.blocks.iter().map(|b| b.qkv_gain_folded()).collect();
        Self { qkv_w, steps }
    }
}

/// Per layer, the top-k experts (renormalised weights) the router picks for a noise embedding [1, 1, D].
fn route<B: ExactMatmul>(model: &MoDE<B>, c: Tensor<B, 3>, top: usize) -> Vec<Vec<(usize, f32)>> {
    model
        .blocks
        .iter()
        .map(|b| top_k(&b.router.probs_host(c.clone()), top))
        .collect()
}

/// How the expert layers are evaluated at inference; all three give the same actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpertPath {
    /// Per step, the top-k experts fused into one MLP, precomputed (MoDE's expert caching).
    Cached,
    /// The router runs on every call and only the chosen experts are evaluated.
    Routed,
    /// Every expert is evaluated and gated (zero weight for unchosen ones): a dense-MoE reference,
    /// what an implementation that does not exploit σ-only routing pays.
    Dense,
}

/// One inference's denoiser: D(x, σ_t) = c_skip·x + c_out·F(c_in·x, σ_t, obs), with the experts
/// either routed on every call or taken from the cache.
struct EdmDenoiser<'a, B: Backend> {
    model: &'a MoDE<B>,
    sigmas: &'a [f64],
    sigma_data: f64,
    top_k: usize,
    cache: Option<&'a ExpertCache<B>>,
    dense: bool,
    device: &'a B::Device,
}

impl<B: ExactMatmul> Denoiser<B> for EdmDenoiser<'_, B> {
    /// The observation token, [B, 1, D].
    type Cond = Tensor<B, 3>;

    fn denoise(&self, x: Tensor<B, 3>, t: usize, cond: &Self::Cond) -> Tensor<B, 3> {
        let sigma = self.sigmas[t];
        let (c_skip, c_out, c_in) = edm_scalings(sigma, self.sigma_data);
        let x_in = x.clone().mul_scalar(c_in);
        let f = match self.cache {
            Some(cache) => {
                let step = &cache.steps[t];
                self.model.forward_with(
                    x_in,
                    step.c.clone(),
                    cond.clone(),
                    |l, block, x| block.attend_folded(x, &cache.qkv_w[l], &step.qkv_bias[l]),
                    |l, _, h| step.layers[l].forward(h),
                )
            }
            None => {
                let c = self.model.noise_embedding_at(sigma, self.device);
                let (top, dense) = (self.top_k, self.dense);
                self.model.forward_with(
                    x_in,
                    c.clone(),
                    cond.clone(),
                    |_, block, x| block.attend(x, c.clone()),
                    |_, block, h| {
                        let chosen = top_k(&block.router.probs_host(c.clone()), top);
                        if dense {
                            let e = block.experts.len();
                            let mut gates = vec![0.0f32; e];
                            for (i, w) in chosen {
                                gates[i] = w;
                            }
                            block.experts_gated(h, Tensor::from_data(TensorData::new(gates, [1, e]), self.device))
                        } else {
                            block.experts_selected(h, &chosen)
                        }
                    },
                )
            }
        };
        x.mul_scalar(c_skip) + f.mul_scalar(c_out)
    }
}

/// A MoDE policy ready for inference.
pub struct MoDEPolicy<B: Backend> {
    pub config: MoDEConfig,
    pub model: MoDE<B>,
    inputs: Vec<InputFeature>,
    stats: BTreeMap<String, FeatureStats>,
    input_norms: Vec<FeatureNorm>,
    action_norm: FeatureNorm,
    path: ExpertPath,
    /// Expert caches by number of inference steps.
    caches: BTreeMap<usize, ExpertCache<B>>,
    spec: PolicySpec,
    device: B::Device,
}

impl<B: ExactMatmul> MoDEPolicy<B> {
    /// Wrap a network with its inputs and dataset stats ("action" plus one entry per input).
    pub fn new(
        config: MoDEConfig,
        model: MoDE<B>,
        inputs: Vec<InputFeature>,
        stats: BTreeMap<String, FeatureStats>,
        device: B::Device,
    ) -> Result<Self, PolicyError> {
        config.validate()?;
        let mut obs_dim = 0;
        for f in &inputs {
            match f.kind {
                FeatureKind::State | FeatureKind::Env if f.shape.len() == 1 => obs_dim += f.shape[0],
                _ => {
                    return Err(PolicyError::Config(format!(
                        "mode takes state vectors only; input {:?} is {:?} with shape {:?}",
                        f.name, f.kind, f.shape
                    )))
                }
            }
        }
        if obs_dim != config.obs_dim {
            return Err(PolicyError::Config(format!(
                "inputs add up to {obs_dim} values per frame but config.obs_dim = {}",
                config.obs_dim
            )));
        }
        let norm = |name: &str, mode, dim: usize| -> Result<FeatureNorm, PolicyError> {
            let st = stats
                .get(name)
                .ok_or_else(|| PolicyError::Stats(format!("no stats for {name:?}")))?;
            let n = st.norm(name, mode)?;
            if n.channels() != dim {
                return Err(PolicyError::Stats(format!(
                    "{name:?} stats have {} channels, expected {dim}",
                    n.channels()
                )));
            }
            Ok(n)
        };
        let input_norms = inputs
            .iter()
            .map(|f| norm(&f.name, config.input_norm, f.shape[0]))
            .collect::<Result<Vec<_>, _>>()?;
        let action_norm = norm("action", config.action_norm, config.action_dim)?;
        let spec = PolicySpec {
            kind: PolicyKind::Mode,
            scheduler: None,
            inputs: inputs.clone(),
            action_dim: config.action_dim,
            n_obs_steps: config.n_obs_steps,
            horizon: config.horizon,
            // Training windows start their action chunk at the oldest observed frame (LeRobot's layout).
            exec_start: config.n_obs_steps - 1,
            n_action_steps: config.n_action_steps,
            default_nfe: config.num_inference_steps,
            default_candidates: 1,
            num_parameters: model.num_params(),
            backend: std::any::type_name::<B>().to_string(),
            relative_actions: Vec::new(),
        };
        let mut p = Self {
            config,
            model,
            inputs,
            stats,
            input_norms,
            action_norm,
            path: ExpertPath::Cached,
            caches: BTreeMap::new(),
            spec,
            device,
        };
        p.ensure_cache(p.config.num_inference_steps);
        Ok(p)
    }

    /// Use (default) or bypass the expert cache; both give the same actions.
    /// What [`PolicySpec::backend`] reports (the backend's type name until a loader names the device).
    pub fn set_backend_name(&mut self, name: String) {
        self.spec.backend = name;
    }

    pub fn set_cached(&mut self, cached: bool) {
        self.path = if cached { ExpertPath::Cached } else { ExpertPath::Routed };
    }

    pub fn cached(&self) -> bool {
        self.path == ExpertPath::Cached
    }

    pub fn set_expert_path(&mut self, path: ExpertPath) {
        self.path = path;
    }

    pub fn expert_path(&self) -> ExpertPath {
        self.path
    }

    pub fn stats(&self) -> &BTreeMap<String, FeatureStats> {
        &self.stats
    }

    /// The σ grid of an n-step inference: n noise levels and the final 0.
    pub fn sigmas(&self, n: usize) -> Vec<f64> {
        exponential_sigmas(self.config.sigma_max, self.config.sigma_min, n)
    }

    fn ensure_cache(&mut self, n: usize) {
        if !self.caches.contains_key(&n) {
            let cache = ExpertCache::new(&self.model, &self.sigmas(n), self.config.top_k, &self.device);
            self.caches.insert(n, cache);
        }
    }

    /// The experts (and renormalised weights) each layer uses at step `step` of an n-step inference.
    /// Routing sees only σ, so this holds for every observation.
    pub fn experts_at(&mut self, n: usize, step: usize) -> Option<Vec<Vec<(usize, f32)>>> {
        self.ensure_cache(n);
        self.caches[&n].steps.get(step).map(|s| s.chosen.clone())
    }

    /// Per batch item and layer, the experts the router picks at step `step` of an n-step inference
    /// when the noise embedding is computed per item alongside the observation (the uncached path's
    /// view, for checking that observations do not change routing).
    pub fn experts_per_item(
        &self,
        obs: &ObservationWindow,
        n: usize,
        step: usize,
    ) -> Result<Vec<Vec<Vec<usize>>>, PolicyError> {
        let batch = obs.validate(&self.spec)?;
        let sigmas = self.sigmas(n);
        let sigma = *sigmas
            .get(step)
            .filter(|_| step < n)
            .ok_or_else(|| PolicyError::Input(format!("step {step} is outside an {n}-step inference")))?;
        let c = self.model.noise_embedding(Tensor::from_data(
            TensorData::new(vec![sigma as f32; batch], [batch]),
            &self.device,
        ));
        let mut out = vec![Vec::new(); batch];
        for block in &self.model.blocks {
            let p = block.router.probs_host(c.clone());
            let e = self.config.n_experts;
            for (b, row) in p.chunks(e).enumerate() {
                out[b].push(top_k(row, self.config.top_k).into_iter().map(|(i, _)| i).collect());
            }
        }
        Ok(out)
    }

    /// The normalised observation window flattened time-major per item: [B, To·obs_dim].
    pub fn observation_rows(&self, obs: &ObservationWindow, batch: usize) -> Vec<f32> {
        let feats: Vec<(Vec<f32>, usize)> = self
            .inputs
            .iter()
            .zip(&self.input_norms)
            .map(|(f, n)| {
                let mut data = obs.features[&f.name].data.clone();
                n.normalize(&mut data, 1);
                (data, f.shape[0])
            })
            .collect();
        interleave_frames(&feats, batch, self.config.n_obs_steps)
    }

    /// Write `model.safetensors` (weights by module path, burn's [in, out] Linear layout) and
    /// `riptide.json` (kind, config, inputs, stats).
    pub fn save(&self, dir: &Path) -> Result<(), PolicyError> {
        std::fs::create_dir_all(dir).map_err(|e| PolicyError::io(dir, e))?;
        write_safetensors(&dir.join("model.safetensors"), &named_tensors(&self.model))?;
        let stats: serde_json::Map<String, Value> = self
            .stats
            .iter()
            .map(|(k, s)| {
                (
                    k.clone(),
                    json!({"mean": s.mean, "std": s.std, "min": s.min, "max": s.max, "shape": s.shape}),
                )
            })
            .collect();
        let doc = json!({
            "kind": PolicyKind::Mode,
            "format": 1,
            "config": self.config,
            "inputs": self.inputs,
            "stats": stats,
        });
        let path = dir.join("riptide.json");
        let text = serde_json::to_string_pretty(&doc).map_err(|e| PolicyError::Config(e.to_string()))?;
        std::fs::write(&path, text).map_err(|e| PolicyError::io(&path, e))
    }
}

/// Per feature data [B, To, d_f] → per item, frame by frame, the features concatenated: [B, To·Σd_f].
pub(crate) fn interleave_frames(feats: &[(Vec<f32>, usize)], batch: usize, n_obs: usize) -> Vec<f32> {
    let total: usize = feats.iter().map(|(_, d)| d).sum();
    let mut out = Vec::with_capacity(batch * n_obs * total);
    for b in 0..batch {
        for s in 0..n_obs {
            for (data, d) in feats {
                let o = (b * n_obs + s) * d;
                out.extend_from_slice(&data[o..o + d]);
            }
        }
    }
    out
}

impl<B: ExactMatmul> Policy for MoDEPolicy<B> {
    fn spec(&self) -> &PolicySpec {
        &self.spec
    }

    fn action_norm(&self) -> Option<&crate::normalize::FeatureNorm> {
        Some(&self.action_norm)
    }

    /// `initial_noise`, when given, is the standard-normal draw z (x_T = σ_max·z), so supplying the
    /// draw a seed would make reproduces that seed's chunk. MoDE's steps are deterministic: no step noise.
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

/// The σ grid and schedule of one request.
pub struct ModePlan {
    n: usize,
    sigmas: Vec<f64>,
    schedule: NoiseSchedule,
}

impl<B: ExactMatmul> KindModel<B> for MoDEPolicy<B> {
    /// The observation token, [B, 1, D].
    type Cond = Tensor<B, 3>;
    type Plan = ModePlan;

    fn spec(&self) -> &PolicySpec {
        &self.spec
    }

    fn action_norm(&self) -> &FeatureNorm {
        &self.action_norm
    }

    fn plan(&mut self, req: &SampleRequest) -> Result<ModePlan, PolicyError> {
        let n = req.num_inference_steps.unwrap_or(self.config.num_inference_steps);
        if n == 0 {
            return Err(PolicyError::Input("num_inference_steps must be > 0".into()));
        }
        let sigmas = self.sigmas(n);
        let schedule = NoiseSchedule::sigma_space(&sigmas, SigmaStep::Deterministic, Some(1.0))?;
        if self.path == ExpertPath::Cached {
            self.ensure_cache(n);
        }
        Ok(ModePlan { n, sigmas, schedule })
    }

    fn encode(&self, obs: &ObservationWindow, batch: usize, candidates: usize) -> Result<Tensor<B, 3>, PolicyError> {
        let rows = self.observation_rows(obs, batch);
        let width = rows.len() / batch;
        let rows: Vec<f32> = rows
            .chunks_exact(width)
            .flat_map(|r| std::iter::repeat_n(r, candidates).flatten().copied())
            .collect();
        Ok(self.model.obs_token(Tensor::from_data(
            TensorData::new(rows, [batch * candidates, width]),
            &self.device,
        )))
    }

    fn sample(
        &self,
        plan: &ModePlan,
        cond: &Tensor<B, 3>,
        mut job: SampleJob<'_>,
        hook: Option<&mut dyn StepHook>,
    ) -> Result<Sampled<B>, PolicyError> {
        let z = job
            .start
            .take()
            .ok_or_else(|| PolicyError::Config("mode samples from noise and needs its start sample".into()))?;
        let x = to_device::<B, 3>(&z, &self.device).mul_scalar(self.config.sigma_max);
        let denoiser = EdmDenoiser {
            model: &self.model,
            sigmas: &plan.sigmas,
            sigma_data: self.config.sigma_data,
            top_k: self.config.top_k,
            cache: if self.path == ExpertPath::Cached {
                self.caches.get(&plan.n)
            } else {
                None
            },
            dense: self.path == ExpertPath::Dense,
            device: &self.device,
        };
        let (x, nfe) = pipeline::sample_all(&denoiser, cond, &plan.schedule, x, &mut job, hook)?;
        Ok(Sampled {
            x,
            nfe,
            warm_started: false,
        })
    }
}

/// Every float tensor of a module by its dotted module path, e.g. `blocks.0.experts.2.proj.weight`.
pub fn named_tensors<B: Backend, M: Module<B>>(module: &M) -> BTreeMap<String, HostTensor> {
    struct Collect {
        path: Vec<String>,
        out: BTreeMap<String, HostTensor>,
    }
    impl<B: Backend> ModuleVisitor<B> for Collect {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.out.insert(self.path.join("."), to_host(param.val()));
        }
    }
    let mut c = Collect {
        path: Vec::new(),
        out: BTreeMap::new(),
    };
    module.visit(&mut c);
    c.out
}

/// Replace every float tensor of `module` by the tensor of the same path in `src`; missing,
/// unexpected and wrong-shaped names are collected and reported together.
pub fn load_named<B: Backend, M: Module<B>>(module: M, src: BTreeMap<String, HostTensor>) -> Result<M, PolicyError> {
    struct Load {
        path: Vec<String>,
        src: BTreeMap<String, HostTensor>,
        missing: Vec<String>,
        bad_shape: Vec<String>,
    }
    impl<B: Backend> ModuleMapper<B> for Load {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let (id, tensor, mapper) = param.consume();
            let name = self.path.join(".");
            let dims = tensor.dims().to_vec();
            let tensor = match self.src.remove(&name) {
                Some(t) if t.shape == dims => {
                    let grad = tensor.is_require_grad();
                    Tensor::<B, D>::from_data(TensorData::new(t.data, dims), &tensor.device()).set_require_grad(grad)
                }
                Some(t) => {
                    self.bad_shape
                        .push(format!("{name}: checkpoint {:?}, model {dims:?}", t.shape));
                    tensor
                }
                None => {
                    self.missing.push(name);
                    tensor
                }
            };
            Param::from_mapped_value(id, tensor, mapper)
        }
    }
    let mut l = Load {
        path: Vec::new(),
        src,
        missing: Vec::new(),
        bad_shape: Vec::new(),
    };
    let module = module.map(&mut l);
    let unexpected: Vec<String> = l.src.into_keys().collect();
    if l.missing.is_empty() && l.bad_shape.is_empty() && unexpected.is_empty() {
        return Ok(module);
    }
    let mut msg = Vec::new();
    for (what, list) in [
        ("missing", &l.missing),
        ("unexpected", &unexpected),
        ("wrong shape", &l.bad_shape),
    ] {
        if !list.is_empty() {
            msg.push(format!("{what} ({}): {}", list.len(), list.join(", ")));
        }
    }
    Err(PolicyError::Weights(msg.join("\n")))
}

fn parse_inputs(v: &Value) -> Result<Vec<InputFeature>, PolicyError> {
    let err = |m: String| PolicyError::Config(format!("riptide.json inputs: {m}"));
    let list = v.as_array().ok_or_else(|| err("must be a list".into()))?;
    list.iter()
        .map(|f| {
            let name = f["name"].as_str().ok_or_else(|| err(format!("{f} lacks a name")))?;
            let kind = match f["kind"].as_str() {
                Some("State") => FeatureKind::State,
                Some("Env") => FeatureKind::Env,
                Some("Visual") => FeatureKind::Visual,
                other => return Err(err(format!("{name:?} has kind {other:?}"))),
            };
            let shape = serde_json::from_value::<Vec<usize>>(f["shape"].clone())
                .map_err(|e| err(format!("{name:?} shape: {e}")))?;
            Ok(InputFeature {
                name: name.to_string(),
                kind,
                shape,
            })
        })
        .collect()
}

fn parse_stats(v: &Value) -> Result<BTreeMap<String, FeatureStats>, PolicyError> {
    let obj = v
        .as_object()
        .ok_or_else(|| PolicyError::Stats("riptide.json stats must be an object".into()))?;
    obj.iter()
        .map(|(k, s)| {
            let get = |field: &str| {
                serde_json::from_value::<Vec<f32>>(s[field].clone())
                    .map_err(|e| PolicyError::Stats(format!("{k:?} stat {field:?}: {e}")))
            };
            let shape = serde_json::from_value::<Vec<usize>>(s["shape"].clone())
                .map_err(|e| PolicyError::Stats(format!("{k:?} shape: {e}")))?;
            Ok((
                k.clone(),
                FeatureStats {
                    mean: get("mean")?,
                    std: get("std")?,
                    min: get("min")?,
                    max: get("max")?,
                    shape,
                },
            ))
        })
        .collect()
}

/// Load a policy saved by [`MoDEPolicy::save`].
pub fn load<B: ExactMatmul>(dir: &Path, device: &B::Device) -> Result<MoDEPolicy<B>, PolicyError> {
    let path = dir.join("riptide.json");
    let text = std::fs::read_to_string(&path).map_err(|e| PolicyError::io(&path, e))?;
    let doc: Value =
        serde_json::from_str(&text).map_err(|e| PolicyError::Config(format!("riptide.json is not valid JSON: {e}")))?;
    if doc["kind"].as_str() != Some(PolicyKind::Mode.as_str()) {
        return Err(PolicyError::Config(format!(
            "riptide.json has kind {}, expected \"mode\"",
            doc["kind"]
        )));
    }
    let config: MoDEConfig = serde_json::from_value(doc["config"].clone())
        .map_err(|e| PolicyError::Config(format!("riptide.json config: {e}")))?;
    config.validate()?;
    let inputs = parse_inputs(&doc["inputs"])?;
    let stats = parse_stats(&doc["stats"])?;
    let weights = read_safetensors(&dir.join("model.safetensors"))?;
    let model = load_named(config.init::<B>(device), weights)?;
    MoDEPolicy::new(config, model, inputs, stats, device.clone())
}
