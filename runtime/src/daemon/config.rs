//! Daemon configuration: a TOML file (unknown keys are errors that name the key) plus command-line
//! overrides, validated against the checkpoint before anything starts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use riptide_drivers::DriverConfig;
use riptide_msgs::topics;
use riptide_policies::{DeviceSpec, FeatureKind, PolicySpec};
use serde::Deserialize;

use crate::node::{Ros2Config, Topic, ZenohConfig};
pub use crate::pipeline::input::{InputConfig, InputType, ResolvedInput};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// LeRobot pretrained_model/ directory.
    pub checkpoint: PathBuf,
    #[serde(default = "default_device")]
    pub device: String,
    /// Control rate of the dataset the policy was trained on (LeRobot's config.json has none).
    pub fps: Option<f64>,
    /// Replaces `riptide` in every topic.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Actions due before now + this are dropped from a published chunk.
    #[serde(default)]
    pub exec_latency_ms: f64,
    /// Override the checkpoint's number of denoising steps (fewer = faster, coarser).
    #[serde(default)]
    pub inference_steps: Option<usize>,
    /// Consensus sampling: chunks sampled per inference, the medoid executed
    /// (`riptide_policies::consensus`); absent = the checkpoint's default (riptide.json `sampling`).
    #[serde(default)]
    pub candidates: Option<usize>,
    /// Take time from `<namespace>/clock` (simulated, e.g. `riptide sim --lockstep`) instead of the wall clock.
    #[serde(default)]
    pub use_sim_time: bool,
    /// Inferences run at start-up before the first real chunk (excluded from statistics).
    #[serde(default = "default_warmup")]
    pub warmup: usize,
    #[serde(default)]
    pub zenoh: ZenohConfig,
    #[serde(default)]
    pub trigger: TriggerConfig,
    /// Per input feature (by its LeRobot name); features not listed use the defaults.
    #[serde(default)]
    pub inputs: BTreeMap<String, InputConfig>,
    #[serde(default)]
    pub output: OutputConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// RTI warm starts: each chunk continues the previous one from `rti.start_step` (see
    /// `riptide_policies::rti::RtiConfig`); absent = every chunk starts from noise.
    #[serde(default)]
    pub rti: Option<riptide_policies::rti::RtiConfig>,
    /// Lockstep simulated time with a hosted driver (evaluation against `riptide sim --lockstep`).
    #[serde(default)]
    pub lockstep: Option<LockstepSection>,
    /// EADP guidance by the hosted drone driver's controller model (`crate::pipeline::guidance`); applies where
    /// the daemon hosts the driver in-process (lockstep). Absent = no guidance.
    #[serde(default)]
    pub eadp: Option<riptide_drivers::EadpConfig>,
    /// Answer remote inference queries on `<namespace>/infer` (live mode; `crate::daemon::remote`).
    #[serde(default = "default_true")]
    pub remote_inference: bool,
    /// How long a window waits for the other robots' windows to share its batched inference (a wave),
    /// milliseconds; never past its own deadline. 0 = run what is due at once.
    #[serde(default = "default_batch_window_ms")]
    pub batch_window_ms: f64,
    #[serde(default)]
    pub worker: WorkerSection,
    /// Several robots served by one daemon (`[[robot]]` tables); none = one robot from the top level.
    #[serde(default, rename = "robot")]
    pub robots: Vec<RobotSection>,
    /// ROS 2 mode (rmw_zenoh): node `riptide_daemon` unless `node_name` says otherwise.
    #[serde(default)]
    pub ros2: Ros2Config,
    /// On GPU devices: `fused` (riptide's kernels, the default) or `burn` (burn's, op by op).
    #[serde(default)]
    pub kernels: Option<String>,
    /// Numeric precision: `f32` (exact f32 on every device), the only value.
    #[serde(default)]
    pub precision: Option<String>,
    /// Compiled kernels and autotune results across restarts: a directory, or `off`
    /// (default `$XDG_CACHE_HOME/riptide/kernels`). The warm-up fills it.
    #[serde(default)]
    pub kernel_cache: Option<String>,
    /// Whether the file had a `[zenoh]` table (ROS 2 mode then keeps it instead of joining rmw_zenohd).
    #[serde(skip)]
    pub zenoh_explicit: bool,
}

/// `[worker]`: how the inference thread handles policy faults (a panic in `predict`, a device error or
/// out-of-memory): each is counted, logged and followed by a reload of the policy; after this many in a
/// row (no served wave between them) the daemon exits with status 3.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerSection {
    pub max_consecutive_faults: usize,
}

impl Default for WorkerSection {
    fn default() -> Self {
        Self {
            max_consecutive_faults: 3,
        }
    }
}

/// One robot of a fleet (`[[robot]]`): its `name` is its namespace; keys not given fall back to the
/// top level's (`checkpoint`, `device`, `fps`, sampling) or to their defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RobotSection {
    pub name: String,
    pub checkpoint: Option<PathBuf>,
    #[serde(default)]
    pub inputs: BTreeMap<String, InputConfig>,
    pub output: Option<OutputConfig>,
    pub trigger: Option<TriggerConfig>,
    pub exec_latency_ms: Option<f64>,
    pub rti: Option<riptide_policies::rti::RtiConfig>,
    pub candidates: Option<usize>,
    pub lockstep: Option<LockstepSection>,
}

/// Top-level keys that belong to one robot: with `[[robot]]` tables they go in each table.
pub const PER_ROBOT_KEYS: &[&str] = &[
    "namespace",
    "inputs",
    "output",
    "trigger",
    "exec_latency_ms",
    "rti",
    "candidates",
    "lockstep",
];

fn default_batch_window_ms() -> f64 {
    2.0
}

fn default_true() -> bool {
    true
}

fn default_device() -> String {
    "cpu".into()
}
fn default_namespace() -> String {
    "riptide".into()
}
fn default_warmup() -> usize {
    3
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TriggerMode {
    /// Infer at a fixed rate.
    Rate,
    /// Infer when a driver reports less than `queue_threshold_s` of commands queued.
    OnDemand,
    /// Infer on every new frame of `trigger.feature` (default: the first camera), if no inference
    /// is in flight: lowest obs→chunk latency, for cameras that set the pace.
    OnFrame,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TriggerConfig {
    pub mode: TriggerMode,
    /// Rate for `mode = "rate"`; default: fps / n_action_steps (one chunk per executed slice).
    pub rate_hz: Option<f64>,
    pub queue_threshold_s: f64,
    /// For `mode = "on_frame"`: the input feature whose frames trigger inference.
    pub feature: Option<String>,
}

impl Default for TriggerConfig {
    fn default() -> Self {
        Self {
            mode: TriggerMode::Rate,
            rate_hz: None,
            queue_threshold_s: 0.2,
            feature: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OutputType {
    JointTrajectory,
    MultiDofJointTrajectory,
}

impl OutputType {
    /// The ROS 2 message type of the chunks.
    pub fn ros_type(self) -> crate::node::RosType {
        match self {
            Self::JointTrajectory => crate::node::RosType::of::<riptide_msgs::ros::JointTrajectory>(),
            Self::MultiDofJointTrajectory => crate::node::RosType::of::<riptide_msgs::ros::MultiDOFJointTrajectory>(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    pub topic: Option<String>,
    /// The chunk topic's ROS 2 name in ROS 2 mode (default `/` + topic); metadata goes on it + `/meta`.
    pub ros2_topic: Option<String>,
    #[serde(rename = "type")]
    pub msg_type: OutputType,
    /// Joint names for JointTrajectory (default: a0, a1, …).
    pub joint_names: Vec<String>,
}

impl Default for OutputConfig {
    fn default() -> Self {
        Self {
            topic: None,
            ros2_topic: None,
            msg_type: OutputType::JointTrajectory,
            joint_names: vec![],
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Prometheus text endpoint, e.g. "127.0.0.1:9464" (off when absent).
    pub listen: Option<String>,
    pub summary_period_s: f64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: None,
            summary_period_s: 10.0,
        }
    }
}

/// `[lockstep]`: run in the sim's time with an in-process driver.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockstepSection {
    /// Simulated inference delay (actions due before t_obs + delay are dropped).
    #[serde(default)]
    pub delay_ms: f64,
    /// Infer when less than this much of the chunk is left, seconds of simulated time.
    #[serde(default)]
    pub queue_threshold_s: f64,
    /// The hosted driver: executor, safety envelope, supervisor.
    pub driver: DriverConfig,
}

impl DaemonConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut cfg = Self::from_toml(&text).map_err(|e| anyhow::anyhow!("{}: {e:#}", path.display()))?;
        cfg.zenoh_explicit = text.parse::<toml::Table>().is_ok_and(|t| t.contains_key("zenoh"));
        let dir = path.parent().unwrap_or(Path::new(""));
        let checkpoints =
            std::iter::once(&mut cfg.checkpoint).chain(cfg.robots.iter_mut().filter_map(|r| r.checkpoint.as_mut()));
        for c in checkpoints {
            if c.is_relative() {
                *c = dir.join(&*c);
            }
        }
        Ok(cfg)
    }

    /// Parse a config's text: unknown keys, and per-robot keys at the top level beside `[[robot]]`
    /// tables, are errors that name the key.
    pub fn from_toml(text: &str) -> Result<Self> {
        let table: toml::Table = toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))?;
        if table.contains_key("robot") {
            if let Some(key) = PER_ROBOT_KEYS.iter().find(|k| table.contains_key(**k)) {
                bail!(
                    "`{key}` is set at the top level and the config has [[robot]] tables: it belongs to one robot, so \
                     set it in each [[robot]] table (a robot's `name` is its namespace)"
                );
            }
        }
        let cfg: Self = toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))?;
        cfg.robot_configs()?;
        Ok(cfg)
    }

    /// One config per robot: the top level itself without `[[robot]]` tables, else the top level with
    /// each table's keys (its `name` as the namespace). Names must be distinct and valid namespaces.
    pub fn robot_configs(&self) -> Result<Vec<DaemonConfig>> {
        if self.robots.is_empty() {
            return Ok(vec![self.clone()]);
        }
        let mut seen = std::collections::BTreeSet::new();
        let mut out = Vec::new();
        for r in &self.robots {
            topics::validate_namespace(&r.name).map_err(|e| anyhow::anyhow!("[[robot]] name: {e}"))?;
            if !seen.insert(r.name.trim_end_matches('/')) {
                bail!(
                    "[[robot]] name = {:?} is given twice: every robot needs its own name",
                    r.name
                );
            }
            let mut c = self.clone();
            c.robots.clear();
            c.namespace = r.name.clone();
            if let Some(cp) = &r.checkpoint {
                c.checkpoint = cp.clone();
            }
            c.inputs = r.inputs.clone();
            c.output = r.output.clone().unwrap_or_default();
            c.trigger = r.trigger.clone().unwrap_or_default();
            c.exec_latency_ms = r.exec_latency_ms.unwrap_or_default();
            c.rti = r.rti.clone();
            c.candidates = r.candidates;
            c.lockstep = r.lockstep.clone();
            out.push(c);
        }
        Ok(out)
    }

    /// The batch window ([`Self::batch_window_ms`]) checked.
    pub fn batch_window(&self) -> Result<std::time::Duration> {
        match self.batch_window_ms {
            ms if ms >= 0.0 && ms.is_finite() && ms <= 1000.0 => Ok(std::time::Duration::from_secs_f64(ms / 1e3)),
            ms => bail!("batch_window_ms = {ms} must be between 0 and 1000"),
        }
    }

    /// A config with every default, for `riptide run --checkpoint DIR`.
    pub fn for_checkpoint(checkpoint: PathBuf) -> Self {
        toml::from_str::<Self>(&format!("checkpoint = {:?}", checkpoint.display().to_string())).expect("defaults parse")
    }

    /// `kernels`, `precision` and `kernel_cache`, checked.
    pub fn gpu(&self) -> Result<crate::tools::gpu::GpuArgs> {
        let or = |v: &Option<String>, default: &str| v.clone().unwrap_or_else(|| default.to_string());
        Ok(crate::tools::gpu::GpuArgs {
            kernels: or(&self.kernels, "fused")
                .parse()
                .map_err(|e| anyhow::anyhow!("kernels: {e}"))?,
            precision: or(&self.precision, "f32")
                .parse()
                .map_err(|e| anyhow::anyhow!("precision: {e}"))?,
            kernel_cache: self
                .kernel_cache
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(|e| anyhow::anyhow!("kernel_cache: {e}"))?,
        })
    }

    pub fn device(&self) -> Result<DeviceSpec> {
        self.device.parse().map_err(|e| anyhow::anyhow!("device: {e}"))
    }

    /// `riptide/...` with the namespace applied.
    pub fn topic(&self, rest: &str) -> String {
        format!("{}/{rest}", self.namespace.trim_end_matches('/'))
    }

    /// Resolve every input against the checkpoint: a missing or mistyped mapping is an error now,
    /// not at the first frame.
    pub fn resolve(&self, spec: &PolicySpec) -> Result<Resolved> {
        self.gpu()?;
        let fps = match self.fps {
            Some(f) if f > 0.0 && f.is_finite() => f,
            Some(f) => bail!("fps = {f} must be a positive number"),
            None => bail!(
                "fps is required: the control rate of the dataset the policy was trained on \
                 (LeRobot's config.json does not record it); set `fps = 10` in the config or pass --fps"
            ),
        };
        self.check_sampling(spec)?;
        self.check_namespace()?;
        let inputs = self.resolve_inputs(spec)?;
        let rate_hz = match self.trigger.rate_hz {
            Some(r) if r > 0.0 && r.is_finite() => r,
            Some(r) => bail!("trigger.rate_hz = {r} must be a positive number"),
            None => fps / spec.n_action_steps as f64,
        };
        let trigger_feature = match &self.trigger.feature {
            Some(f) if spec.inputs.iter().any(|i| &i.name == f) => f.clone(),
            Some(f) => bail!(
                "trigger.feature = {f:?} is not an input of the checkpoint (it takes: {})",
                spec.inputs
                    .iter()
                    .map(|f| f.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => spec
                .inputs
                .iter()
                .find(|f| f.kind == FeatureKind::Visual)
                .or(spec.inputs.first())
                .map(|f| f.name.clone())
                .unwrap_or_default(),
        };
        if self.trigger.feature.is_some() && self.trigger.mode != TriggerMode::OnFrame {
            bail!("trigger.feature is only used with trigger.mode = \"on_frame\"; remove it or set the mode");
        }
        if !self.output.joint_names.is_empty() && self.output.joint_names.len() != spec.action_dim {
            bail!(
                "output.joint_names has {} names but the policy's actions have {} dimensions",
                self.output.joint_names.len(),
                spec.action_dim
            );
        }
        if self.output.msg_type == OutputType::MultiDofJointTrajectory && !(3..=4).contains(&spec.action_dim) {
            bail!("output.type = \"multi_dof_joint_trajectory\" needs [x, y, z] or [x, y, z, yaw] actions; the policy has {}", spec.action_dim);
        }
        let chunk_topic = self
            .output
            .topic
            .clone()
            .unwrap_or_else(|| self.topic(topics::ACTION_CHUNK));
        let chunk = Topic::with_ros_name(chunk_topic.clone(), self.output.ros2_topic.clone());
        refuse_controller_topic(&chunk)?;
        Ok(Resolved {
            fps,
            dt_s: 1.0 / fps,
            rate_hz,
            trigger_feature,
            inputs,
            meta_topic: topics::chunk_meta_key(&chunk_topic),
            chunk_ros2_topic: self.output.ros2_topic.clone(),
            chunk_topic,
            queue_topic: self.topic(topics::DRIVER_QUEUE),
            alive_topic: self.topic(topics::ALIVE_DAEMON),
            joint_names: if self.output.joint_names.is_empty() {
                (0..spec.action_dim).map(|i| format!("a{i}")).collect()
            } else {
                self.output.joint_names.clone()
            },
        })
    }

    /// `[rti]`, `candidates` and `[eadp]` against the checkpoint and each other.
    fn check_sampling(&self, spec: &PolicySpec) -> Result<()> {
        if let Some(rti) = &self.rti {
            rti.validate(spec, self.inference_steps.unwrap_or(spec.default_nfe))?;
        }
        if let Some(k) = self.candidates {
            riptide_policies::consensus::candidates(Some(k)).map_err(|e| anyhow::anyhow!("{e}"))?;
            if k > 1 && (self.rti.is_some() || self.eadp.is_some()) {
                bail!(
                    "candidates = {k}: consensus sampling draws every chunk from noise; it cannot be combined \
                     with [rti] warm starts or [eadp] guidance (remove one of them)"
                );
            }
            if k > 1 && !spec.kind.capabilities().candidates {
                bail!(
                    "candidates = {k}: consensus sampling applies to {} policies; this checkpoint is kind \"{}\" \
                     (remove `candidates`)",
                    riptide_policies::PolicyKind::supporting(riptide_policies::Capability::Candidates),
                    spec.kind
                );
            }
        }
        if let Some(e) = &self.eadp {
            riptide_drivers::EadpGuidance::new(e.clone()).map_err(|e| anyhow::anyhow!("eadp.{e}"))?;
            crate::pipeline::guidance::EadpHook::check_spec(spec).map_err(|e| anyhow::anyhow!("eadp: {e}"))?;
            if self.lockstep.is_none() {
                bail!(
                    "eadp: guidance needs the drone driver hosted in the daemon ([lockstep]); a separate \
                     driver node cannot be asked for its tracking cost between denoising steps"
                );
            }
        }
        Ok(())
    }

    fn check_namespace(&self) -> Result<()> {
        if !self
            .namespace
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-/".contains(c))
            || self.namespace.is_empty()
        {
            bail!(
                "namespace = {:?} must be a non-empty key prefix of letters, digits, '_', '-', '/'",
                self.namespace
            );
        }
        Ok(())
    }

    /// Every input of the checkpoint with its topic, message type and staleness gate.
    fn resolve_inputs(&self, spec: &PolicySpec) -> Result<Vec<ResolvedInput>> {
        for name in self.inputs.keys() {
            if !spec.inputs.iter().any(|f| &f.name == name) {
                bail!(
                    "[inputs.\"{name}\"] does not match any input of the checkpoint (it takes: {})",
                    spec.inputs
                        .iter()
                        .map(|f| f.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        let mut inputs = Vec::new();
        for f in &spec.inputs {
            let c = self.inputs.get(&f.name);
            let default_type = match f.kind {
                FeatureKind::Visual => InputType::Image,
                FeatureKind::State | FeatureKind::Env => InputType::Float32MultiArray,
            };
            let msg_type = c.and_then(|c| c.msg_type).unwrap_or(default_type);
            let dim: usize = f.shape.iter().product();
            match (f.kind, msg_type) {
                (FeatureKind::Visual, InputType::Image) => {}
                (FeatureKind::Visual, t) => bail!(
                    "[inputs.\"{}\"] type = {t:?}: an image feature needs type = \"image\"",
                    f.name
                ),
                (_, InputType::Image) => bail!(
                    "[inputs.\"{}\"] type = \"image\" but the feature is a vector of {dim}",
                    f.name
                ),
                (_, InputType::PoseStamped) if dim != 7 => {
                    bail!(
                        "[inputs.\"{}\"] pose_stamped gives 7 values (x y z qx qy qz qw) but the feature has {dim}",
                        f.name
                    )
                }
                (_, InputType::TwistStamped) if dim != 6 => {
                    bail!(
                        "[inputs.\"{}\"] twist_stamped gives 6 values but the feature has {dim}",
                        f.name
                    )
                }
                _ => {}
            }
            let topic = c
                .and_then(|c| c.topic.clone())
                .unwrap_or_else(|| self.topic(&f.name.replace('.', "/")));
            let max_age_ms = c.and_then(|c| c.max_age_ms).unwrap_or(500.0);
            if max_age_ms.is_nan() || max_age_ms <= 0.0 {
                bail!("[inputs.\"{}\"] max_age_ms must be > 0", f.name);
            }
            inputs.push(ResolvedInput {
                feature: f.name.clone(),
                kind: f.kind,
                shape: f.shape.clone(),
                topic,
                ros2_topic: c.and_then(|c| c.ros2_topic.clone()),
                msg_type,
                max_age_s: max_age_ms / 1e3,
                resize: c.map(|c| c.resize).unwrap_or(true),
            });
        }
        Ok(inputs)
    }
}

/// Chunks reach a ros2_control controller only through `riptide drive` (`backend.type = "jtc"`), whose safety
/// envelope checks them: a daemon output on a controller's command topic is refused.
fn refuse_controller_topic(chunk: &Topic) -> Result<()> {
    let ros_name = chunk.ros_name.clone().unwrap_or_else(|| format!("/{}", chunk.key));
    if ros_name.trim_end_matches('/').ends_with("/joint_trajectory") {
        bail!(
            "output topic {ros_name:?} is a ros2_control JointTrajectoryController's command topic: the daemon never \
             commands a controller itself. Publish chunks on riptide's chunk topic and run `riptide drive` with \
             [backend] type = \"jtc\", whose safety envelope (limits, max jump, NaN guard) sits between them"
        );
    }
    Ok(())
}

/// Everything the daemon derives from config + checkpoint.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub fps: f64,
    pub dt_s: f64,
    pub rate_hz: f64,
    /// The feature whose frames trigger inference in `on_frame` mode.
    pub trigger_feature: String,
    pub inputs: Vec<ResolvedInput>,
    pub chunk_topic: String,
    /// The chunk topic's configured ROS 2 name (`output.ros2_topic`).
    pub chunk_ros2_topic: Option<String>,
    pub meta_topic: String,
    pub queue_topic: String,
    pub alive_topic: String,
    pub joint_names: Vec<String>,
}

impl Resolved {
    /// The chunk topic as the daemon declares it (with `output.ros2_topic`).
    pub fn chunk_declared(&self) -> Topic {
        Topic::with_ros_name(self.chunk_topic.clone(), self.chunk_ros2_topic.clone())
    }

    /// The metadata topic: the chunk topic's + `/meta`, on ROS 2 names too.
    pub fn meta_declared(&self) -> Topic {
        Topic::with_ros_name(
            self.meta_topic.clone(),
            self.chunk_ros2_topic.as_deref().map(topics::chunk_meta_key),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> PolicySpec {
        PolicySpec {
            kind: riptide_policies::PolicyKind::Diffusion,
            scheduler: Some("DDIM".into()),
            inputs: vec![riptide_policies::InputFeature {
                name: "observation.state".into(),
                kind: FeatureKind::State,
                shape: vec![2],
            }],
            action_dim: 2,
            n_obs_steps: 2,
            horizon: 16,
            exec_start: 1,
            n_action_steps: 8,
            default_nfe: 10,
            default_candidates: 1,
            num_parameters: 0,
            backend: "cpu".into(),
            relative_actions: Vec::new(),
        }
    }

    #[test]
    fn chunks_never_go_straight_to_a_controller_and_ros2_topics_parse() {
        let base = "checkpoint = \"x\"\nfps = 10\n";
        for output in [
            "[output]\ntopic = \"arm_controller/joint_trajectory\"\n",
            "[output]\nros2_topic = \"/joint_trajectory_controller/joint_trajectory\"\n",
        ] {
            let cfg = DaemonConfig::from_toml(&format!("{base}{output}")).unwrap();
            let e = cfg.resolve(&spec()).unwrap_err().to_string();
            assert!(e.contains("controller") && e.contains("jtc"), "{e}");
        }
        let cfg = DaemonConfig::from_toml(&format!(
            "{base}[ros2]\nenabled = true\ndomain_id = 3\n[output]\nros2_topic = \"/arm/chunk\"\n\
             [inputs.\"observation.state\"]\nros2_topic = \"/arm/state\"\n"
        ))
        .unwrap();
        let r = cfg.resolve(&spec()).unwrap();
        assert_eq!(r.inputs[0].declared().ros_name().unwrap(), "/arm/state");
        assert_eq!(r.chunk_declared().ros_name().unwrap(), "/arm/chunk");
        assert_eq!(r.meta_declared().ros_name().unwrap(), "/arm/chunk/meta");
        assert_eq!(r.meta_declared().key, "riptide/action/chunk/meta");
        let e = DaemonConfig::from_toml(&format!("{base}[ros2]\nenabld = true\n")).unwrap_err();
        assert!(e.to_string().contains("enabld"), "{e}");
    }

    #[test]
    fn rti_table_parses_and_is_checked_against_the_schedule() {
        let cfg: DaemonConfig =
            toml::from_str("checkpoint = \"x\"\nfps = 10\n[rti]\nstart_step = 8\njump_threshold = 0.5\n").unwrap();
        assert_eq!(cfg.rti.as_ref().unwrap().start_step, 8);
        cfg.resolve(&spec()).unwrap();
        // Beyond the schedule's steps (here overridden to 4): an error naming rti and start_step.
        let mut bad = cfg.clone();
        bad.inference_steps = Some(4);
        let e = bad.resolve(&spec()).unwrap_err().to_string();
        assert!(e.contains("rti") && e.contains("start_step"), "{e}");
        // A typo inside the table names the key.
        let e = toml::from_str::<DaemonConfig>("checkpoint = \"x\"\n[rti]\nstart_stepp = 8\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("start_stepp"), "{e}");
    }

    #[test]
    fn candidates_are_range_checked_and_exclude_warm_starts() {
        let base = "checkpoint = \"x\"\nfps = 10\n";
        let cfg: DaemonConfig = toml::from_str(&format!("{base}candidates = 8\n")).unwrap();
        assert_eq!(cfg.candidates, Some(8));
        cfg.resolve(&spec()).unwrap();
        let zero: DaemonConfig = toml::from_str(&format!("{base}candidates = 0\n")).unwrap();
        let e = zero.resolve(&spec()).unwrap_err().to_string();
        assert!(e.contains("candidates = 0"), "{e}");
        let warm: DaemonConfig = toml::from_str(&format!("{base}candidates = 4\n[rti]\nstart_step = 8\n")).unwrap();
        let e = warm.resolve(&spec()).unwrap_err().to_string();
        assert!(e.contains("candidates") && e.contains("[rti]"), "{e}");
        let truncated = PolicySpec {
            kind: riptide_policies::PolicyKind::Truncated,
            ..spec()
        };
        let e = cfg.resolve(&truncated).unwrap_err().to_string();
        assert!(e.contains("candidates = 8") && e.contains("truncated"), "{e}");
    }

    #[test]
    fn robot_tables_give_one_config_per_robot_under_its_name() {
        let text = r#"
checkpoint = "shared"
fps = 10
batch_window_ms = 3

[[robot]]
name = "arm1"
exec_latency_ms = 20
candidates = 4
[robot.inputs."observation.state"]
max_age_ms = 300

[[robot]]
name = "arm2"
checkpoint = "other"
[robot.trigger]
rate_hz = 5
"#;
        let cfg = DaemonConfig::from_toml(text).unwrap();
        assert_eq!(cfg.batch_window().unwrap(), std::time::Duration::from_millis(3));
        let robots = cfg.robot_configs().unwrap();
        assert_eq!(robots.len(), 2);
        assert_eq!(robots[0].namespace, "arm1");
        assert_eq!(robots[0].topic(topics::OBSERVATION_STATE), "arm1/observation/state");
        assert_eq!(robots[0].checkpoint, PathBuf::from("shared"));
        assert_eq!((robots[0].exec_latency_ms, robots[0].candidates), (20.0, Some(4)));
        assert!(robots[0].inputs.contains_key("observation.state"));
        assert_eq!(robots[1].checkpoint, PathBuf::from("other"));
        assert_eq!(robots[1].trigger.rate_hz, Some(5.0));
        assert_eq!((robots[1].exec_latency_ms, robots[1].candidates), (0.0, None));
        assert!(robots.iter().all(|r| r.robots.is_empty() && r.fps == Some(10.0)));
        // No tables: the top level is the one robot.
        let one = DaemonConfig::for_checkpoint("x".into()).robot_configs().unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].namespace, "riptide");
    }

    #[test]
    fn robot_tables_refuse_top_level_robot_keys_duplicates_and_bad_names() {
        let with = |top: &str, tables: &str| DaemonConfig::from_toml(&format!("checkpoint = \"x\"\n{top}\n{tables}"));
        let two = "[[robot]]\nname = \"a\"\n[[robot]]\nname = \"b\"\n";
        for (top, key) in [
            ("namespace = \"n\"", "namespace"),
            ("exec_latency_ms = 5", "exec_latency_ms"),
            ("candidates = 2", "candidates"),
            ("[inputs.\"observation.state\"]\nmax_age_ms = 100", "inputs"),
            ("[trigger]\nrate_hz = 2", "trigger"),
        ] {
            let e = format!("{:#}", with(top, two).unwrap_err());
            assert!(e.contains(&format!("`{key}`")) && e.contains("[[robot]]"), "{key}: {e}");
        }
        let e = format!(
            "{:#}",
            with("", "[[robot]]\nname = \"a\"\n[[robot]]\nname = \"a\"\n").unwrap_err()
        );
        assert!(e.contains("\"a\" is given twice"), "{e}");
        let e = format!("{:#}", with("", "[[robot]]\nname = \"arm 1\"\n").unwrap_err());
        assert!(e.contains("[[robot]] name") && e.contains("whitespace"), "{e}");
        let e = format!("{:#}", with("", "[[robot]]\nname = \"a\"\nspeed = 3\n").unwrap_err());
        assert!(e.contains("speed"), "{e}");
        let e = format!(
            "{:#}",
            with("batch_window_ms = -1", two).unwrap().batch_window().unwrap_err()
        );
        assert!(e.contains("batch_window_ms"), "{e}");
    }
}
