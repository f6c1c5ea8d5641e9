//! Lockstep: the daemon's pipeline on the sim's clock, with the driver hosted in-process (`[lockstep]`
//! in the config; `riptide demo` and `riptide sim --lockstep` use it over zenoh, and `riptide eval`,
//! `replay --closed-loop` and `record --policy` through an in-process transport).
//!
//! [`Lockstep`] is transport-free: it takes episode starts and the encoded observation frames exactly
//! as they arrive on the wire. When every input has a frame stamped t_k, the hosted driver decides
//! whether a new chunk is needed (its queue has run out); if so the pipeline runs (the sim waits for
//! it), then the driver's command for t_k is the step's output. Decoding, the observation window,
//! the pipeline (seed rule, warm starts, guidance), chunk timing and the driver are the live path's;
//! only the clock and the trigger differ, so an evaluation is reproducible and runs as fast as the CPU
//! allows. Nothing here reads the wall clock except for latency statistics.

use std::sync::{mpsc, Arc};
use std::time::Instant;

use anyhow::{anyhow, Result};
use riptide_drivers::{Driver, DriverConfig};
use riptide_msgs::ros::{ChunkMeta, JointState, StringMsg};
use riptide_msgs::topics;
use riptide_policies::PolicySpec;

use crate::daemon::config::{DaemonConfig, LockstepSection, Resolved};
use crate::daemon::setup::{load_pipeline, sampling_of, Running};
use crate::node::{Graph, Metrics, Publisher, RosType, Shutdown, Subscription};
use crate::pipeline::chunk::time_chunk;
use crate::pipeline::decode::decode;
use crate::pipeline::input::ResolvedInput;
use crate::pipeline::window::{Frame, TimedWindow, WindowBuilder};
use crate::pipeline::{chunk_meta, Inference, MetaTimings, Pipeline, Sampling, SeedRule, StreamId};
use crate::simnode::{joint_state, EpisodeEvent};

/// Lockstep settings.
#[derive(Debug, Clone)]
pub struct LockstepConfig {
    /// Control period (1 / fps of the policy's data).
    pub dt_s: f64,
    /// Simulated inference delay: actions due before t_obs + delay are dropped and the previous chunk
    /// keeps running meanwhile (Chi's latency compensation).
    pub delay_s: f64,
    /// Infer when less than this much of the current chunk is left (seconds of simulated time). The
    /// default, 0, infers when the queue has run out (one chunk of n_action_steps at a time).
    pub queue_threshold_s: f64,
    pub driver: DriverConfig,
}

/// What the lockstep runs accumulated (all episodes).
#[derive(Debug, Clone, Default)]
pub struct LockstepStats {
    /// Wall-clock inference latencies.
    pub inference_s: Vec<f64>,
    pub nfe_total: u64,
    pub warm_starts: u64,
    /// Every chunk's full-horizon actions (batch 0) with the observation time they came from.
    pub chunks: Vec<(f64, Vec<Vec<f32>>)>,
    /// With EADP: the controller model's tracking cost of each chunk as sampled (batch 0, the
    /// executed part; `scale = 0` measures unguided chunks with the same model).
    pub eadp_costs: Vec<f64>,
}

/// The output of one control step.
#[derive(Debug, Clone)]
pub struct Step {
    pub t_s: f64,
    /// The driver's command for `t_s`.
    pub command: Vec<f64>,
    /// Metadata of the chunk inferred at this step, if one was.
    pub chunk: Option<ChunkMeta>,
}

/// What one incoming frame led to.
#[derive(Debug, Clone)]
pub enum Handled {
    /// Stored; the step's other frames (or an episode start) are still to come.
    Stored,
    /// Not decodable or not valid for its input (counted in `rejected_total{reason}`).
    Rejected { reason: &'static str, detail: String },
    /// Every input has this step's frame: the command.
    Step(Step),
}

/// One simulated robot of a lockstep run: its inputs and settings, observation window, hosted driver
/// and statistics.
struct Robot {
    /// Its name (the `robot` label of its metrics); empty for an unnamed robot.
    name: String,
    inputs: Vec<ResolvedInput>,
    cfg: LockstepConfig,
    /// A step whose frames are all in, waiting for the other robots' (see [`Lockstep::take_wave`]).
    pending: Option<f64>,
    /// Whether the others wait for this robot's step while it is between episodes (or has not started
    /// one yet): until a wave had to go without it.
    awaited: bool,
    builder: WindowBuilder,
    driver: Driver,
    /// Newest stamp per input, and the last step taken.
    newest: Vec<f64>,
    last_stepped: f64,
    active: bool,
    stats: LockstepStats,
}

/// The pipeline, and per robot the observation window and the hosted driver, in simulated time.
/// Robot 0 is the one the single-robot calls ([`Lockstep::frame`], ...) address; [`Lockstep::add_robot`]
/// adds more (one pipeline stream each), stepped together by [`Lockstep::step_robots`].
pub struct Lockstep {
    pipeline: Pipeline,
    robots: Vec<Robot>,
    metrics: Arc<Metrics>,
}

/// Robot `r`'s step: its simulated time and its frames of that step, encoded (one per input).
pub struct RobotStep<'a> {
    pub robot: usize,
    pub t_s: f64,
    pub frames: &'a [Vec<u8>],
}

impl Lockstep {
    /// `inputs` as resolved against the pipeline's policy (their order is the frame index).
    pub fn new(
        pipeline: Pipeline,
        inputs: Vec<ResolvedInput>,
        cfg: LockstepConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Self> {
        let mut l = Self {
            pipeline,
            robots: Vec::new(),
            metrics,
        };
        l.push_robot(String::new(), inputs, cfg)?;
        Ok(l)
    }

    fn push_robot(&mut self, name: String, inputs: Vec<ResolvedInput>, cfg: LockstepConfig) -> Result<()> {
        let driver = Driver::new(cfg.driver.clone()).map_err(|e| anyhow!("driver.{e}"))?;
        let spec = self.pipeline.spec();
        if driver.dim() != spec.action_dim {
            anyhow::bail!(
                "lockstep.driver.safety has {} dimensions but the policy's actions have {}",
                driver.dim(),
                spec.action_dim
            );
        }
        self.robots.push(Robot {
            name,
            builder: Self::builder(spec, cfg.dt_s),
            newest: vec![f64::NEG_INFINITY; inputs.len()],
            inputs,
            cfg,
            pending: None,
            awaited: true,
            driver,
            last_stepped: f64::NEG_INFINITY,
            active: false,
            stats: LockstepStats::default(),
        });
        Ok(())
    }

    /// Another simulated robot on the same policy, sampling as the first (its own stream: seeds,
    /// warm starts). Returns its index.
    pub fn add_robot(&mut self) -> Result<usize> {
        let sampling = self.pipeline.sampling().clone();
        let (inputs, cfg) = (self.robots[0].inputs.clone(), self.robots[0].cfg.clone());
        self.add_robot_with(String::new(), sampling, inputs, cfg)
    }

    /// Another simulated robot on the same policy with its own name (its metrics' `robot` label),
    /// sampling settings, inputs and lockstep settings. Returns its index.
    pub fn add_robot_with(
        &mut self,
        name: String,
        sampling: Sampling,
        inputs: Vec<ResolvedInput>,
        cfg: LockstepConfig,
    ) -> Result<usize> {
        self.pipeline.add_stream(sampling, cfg.dt_s)?;
        self.push_robot(name, inputs, cfg)?;
        Ok(self.robots.len() - 1)
    }

    /// Name robot `r` (its metrics' `robot` label).
    pub fn set_name(&mut self, r: usize, name: &str) {
        self.robots[r].name = name.to_string();
    }

    /// `labels` with robot `r`'s name first (none for an unnamed robot).
    pub(crate) fn count(&self, r: usize, counter: &str, labels: &[(&str, &str)]) {
        let name = &self.robots[r].name;
        let mut with: Vec<(&str, &str)> = Vec::with_capacity(labels.len() + 1);
        if !name.is_empty() {
            with.push(("robot", name));
        }
        with.extend_from_slice(labels);
        self.metrics.inc(counter, &with);
    }

    fn builder(spec: &PolicySpec, dt_s: f64) -> WindowBuilder {
        // Staleness cannot happen in lockstep (every frame is on the grid); keep the gate generous.
        WindowBuilder::new(
            spec.n_obs_steps,
            dt_s,
            spec.inputs.iter().map(|f| (f.name.clone(), f.shape.clone(), 1e9)),
        )
    }

    pub fn spec(&self) -> &PolicySpec {
        self.pipeline.spec()
    }

    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// Robot 0's inputs.
    pub fn inputs(&self) -> &[ResolvedInput] {
        &self.robots[0].inputs
    }

    pub fn driver(&self) -> &Driver {
        &self.robots[0].driver
    }

    /// Simulated robots (1 unless [`Lockstep::add_robot`] added more).
    pub fn robots(&self) -> usize {
        self.robots.len()
    }

    /// What robot 0's runs accumulated.
    pub fn stats(&self) -> &LockstepStats {
        &self.robots[0].stats
    }

    /// What robot `r`'s runs accumulated.
    pub fn stats_of(&self, r: usize) -> &LockstepStats {
        &self.robots[r].stats
    }

    /// An episode starts: clear the window, engage the driver at the device's `position` at t = 0,
    /// and restart the seed rule and warm starts from `seed`.
    pub fn start_episode(&mut self, seed: u64, position: &[f64]) -> Result<()> {
        self.start_episode_of(0, seed, position)
    }

    /// [`Lockstep::start_episode`] of robot `r`.
    pub fn start_episode_of(&mut self, r: usize, seed: u64, position: &[f64]) -> Result<()> {
        let cfg = &self.robots[r].cfg;
        let builder = Self::builder(self.pipeline.spec(), cfg.dt_s);
        let mut driver = Driver::new(cfg.driver.clone()).map_err(|e| anyhow!("driver.{e}"))?;
        driver
            .engage(position, 0.0)
            .map_err(|e| anyhow!("cannot engage at {position:?}: {e}"))?;
        self.pipeline.reset_stream(r, SeedRule::Episode(seed));
        let robot = &mut self.robots[r];
        robot.builder = builder;
        robot.driver = driver;
        robot.newest.iter_mut().for_each(|v| *v = f64::NEG_INFINITY);
        robot.last_stepped = f64::NEG_INFINITY;
        robot.pending = None;
        robot.awaited = true;
        robot.active = true;
        Ok(())
    }

    /// The episode ended: frames are ignored until the next start.
    pub fn end_episode(&mut self) {
        self.end_episode_of(0);
    }

    /// [`Lockstep::end_episode`] of robot `r`.
    pub fn end_episode_of(&mut self, r: usize) {
        self.robots[r].active = false;
        self.robots[r].pending = None;
    }

    /// Decode robot `r`'s frame of input `index` and put it in its window; the frame's stamp.
    fn store(&mut self, r: usize, index: usize, bytes: &[u8]) -> Result<std::result::Result<Option<f64>, Handled>> {
        let input = self.robots[r]
            .inputs
            .get(index)
            .ok_or_else(|| anyhow!("input index {index} out of range"))?;
        self.count(r, "messages_total", &[("feature", &input.feature)]);
        let t = Instant::now();
        let d = match decode(input, bytes) {
            Ok(d) => d,
            Err((reason, detail)) => {
                self.count(r, "rejected_total", &[("reason", reason.label())]);
                return Ok(Err(Handled::Rejected {
                    reason: reason.label(),
                    detail: format!("{}: {detail}", input.topic),
                }));
            }
        };
        self.metrics.decode.record(t.elapsed().as_secs_f64());
        let feature = input.feature.clone();
        let robot = &mut self.robots[r];
        if !robot.active {
            return Ok(Ok(None));
        }
        // Sim stamps start at 0, which a header reports as "no stamp".
        let stamp = d.stamp_s.unwrap_or(0.0);
        robot.builder.push(
            &feature,
            Frame {
                stamp_s: stamp,
                data: Arc::new(d.values),
            },
        );
        robot.newest[index] = robot.newest[index].max(stamp);
        Ok(Ok(Some(stamp)))
    }

    /// One encoded frame of input `index` (its position in [`Lockstep::inputs`]) of robot 0, as received.
    pub fn frame(&mut self, index: usize, bytes: &[u8]) -> Result<Handled> {
        match self.store(0, index, bytes)? {
            Err(rejected) => return Ok(rejected),
            Ok(None) => return Ok(Handled::Stored),
            Ok(Some(_)) => {}
        }
        let robot = &mut self.robots[0];
        let common = robot.newest.iter().cloned().fold(f64::INFINITY, f64::min);
        if common.is_finite() && common > robot.last_stepped + 1e-9 {
            robot.last_stepped = common;
            let mut steps = self.step_due(&[(0, common)])?;
            return Ok(Handled::Step(steps.remove(0)));
        }
        Ok(Handled::Stored)
    }

    /// One encoded frame of robot `r`'s input `index`, as received, for waves ([`Lockstep::take_wave`]):
    /// when it completes the robot's step, the step waits for the other robots'. Never steps.
    pub fn frame_of(&mut self, r: usize, index: usize, bytes: &[u8]) -> Result<Handled> {
        match self.store(r, index, bytes)? {
            Err(rejected) => return Ok(rejected),
            Ok(None) => return Ok(Handled::Stored),
            Ok(Some(_)) => {}
        }
        let robot = &mut self.robots[r];
        let common = robot.newest.iter().cloned().fold(f64::INFINITY, f64::min);
        if common.is_finite() && common > robot.last_stepped + 1e-9 {
            robot.pending = Some(common);
        }
        Ok(Handled::Stored)
    }

    /// Whether a robot's step waits for the others' ([`Lockstep::take_wave`]).
    pub fn has_pending(&self) -> bool {
        self.robots.iter().any(|r| r.pending.is_some())
    }

    /// The step of every robot whose frames are in, once every robot has its step in (a robot between
    /// episodes, or before its first, is waited for too, so robots that start together stay in phase),
    /// or now with `force`: a robot that went silent must not hold the others, and is not waited for
    /// again until its next episode starts. The robots whose driver needs a chunk infer as one wave.
    /// Returns (robot, its step), in robot order.
    pub fn take_wave(&mut self, force: bool) -> Result<Vec<(usize, Step)>> {
        let waiting = self
            .robots
            .iter()
            .any(|r| r.pending.is_none() && (r.active || r.awaited));
        if !self.has_pending() || (waiting && !force) {
            return Ok(Vec::new());
        }
        for r in self.robots.iter_mut().filter(|r| r.pending.is_none()) {
            r.awaited = false;
        }
        let due: Vec<(usize, f64)> = self
            .robots
            .iter_mut()
            .enumerate()
            .filter_map(|(i, r)| {
                let t = r.pending.take()?;
                r.last_stepped = t;
                Some((i, t))
            })
            .collect();
        let steps = self.step_due(&due)?;
        Ok(due.iter().map(|d| d.0).zip(steps).collect())
    }

    /// One control step of several robots at once: each robot's frames of its step in, its command out
    /// (in order). The robots whose driver needs a new chunk at this step infer together, as one wave.
    pub fn step_robots(&mut self, robots: &[RobotStep<'_>]) -> Result<Vec<Step>> {
        for r in robots {
            for (i, bytes) in r.frames.iter().enumerate() {
                if let Err(Handled::Rejected { reason, detail }) = self.store(r.robot, i, bytes)? {
                    anyhow::bail!("robot {}: {reason}: {detail}", r.robot);
                }
            }
            self.robots[r.robot].last_stepped = r.t_s;
        }
        let due: Vec<(usize, f64)> = robots.iter().map(|r| (r.robot, r.t_s)).collect();
        self.step_due(&due)
    }

    /// The commands of robots `due` at their times (after their frames were pushed); the robots whose
    /// driver's queue ran low infer first, in one wave.
    fn step_due(&mut self, due: &[(usize, f64)]) -> Result<Vec<Step>> {
        let need: Vec<(usize, f64)> = due
            .iter()
            .copied()
            .filter(|&(r, t)| self.robots[r].driver.queued_s(t) <= self.robots[r].cfg.queue_threshold_s + 1e-9)
            .collect();
        let mut metas = self.infer(&need)?.into_iter();
        due.iter()
            .map(|&(r, t_s)| {
                let chunk = need.iter().any(|n| n.0 == r).then(|| metas.next()).flatten();
                let cmd = self.robots[r].driver.step(t_s);
                let p = cmd.position().ok_or_else(|| {
                    anyhow!(
                        "the driver has no command at t = {t_s:.3} ({:?})",
                        self.robots[r].driver.state()
                    )
                })?;
                Ok(Step {
                    t_s,
                    command: p.to_vec(),
                    chunk,
                })
            })
            .collect()
    }

    /// One wave: the windows of robots `need` at their times, inferred together; each chunk goes to
    /// its robot's driver.
    fn infer(&mut self, need: &[(usize, f64)]) -> Result<Vec<ChunkMeta>> {
        if need.is_empty() {
            return Ok(Vec::new());
        }
        let t = Instant::now();
        let windows = need
            .iter()
            .map(|&(r, t_s)| {
                let tw = self.robots[r]
                    .builder
                    .build(t_s)
                    .map_err(|e| anyhow!("window at t = {t_s:.3}: {e}"))?;
                // Robots are added with one pipeline stream each, in order: robot r is stream r.
                Ok((r as StreamId, tw))
            })
            .collect::<Result<Vec<_>>>()?;
        let window_s = t.elapsed().as_secs_f64() / need.len() as f64;
        let refs: Vec<(StreamId, &TimedWindow)> = windows.iter().map(|(s, w)| (*s, w)).collect();
        let results = self.pipeline.infer_wave(&refs);
        self.metrics.inc("waves_total", &[]);
        for _ in &refs {
            self.metrics.inc("wave_rows_total", &[]);
        }
        let mut metas = Vec::with_capacity(need.len());
        for ((&(r, t_s), (_, tw)), inf) in need.iter().zip(&windows).zip(results) {
            metas.push(self.deliver(r, t_s, tw, &inf?, window_s));
        }
        Ok(metas)
    }

    /// Record robot `r`'s chunk and hand it to its driver (after the simulated delay).
    fn deliver(&mut self, r: usize, t_s: f64, tw: &TimedWindow, inf: &Inference, window_s: f64) -> ChunkMeta {
        let chunk = &inf.chunk;
        let robot = &mut self.robots[r];
        let s = &mut robot.stats;
        s.inference_s.push(inf.inference_s());
        s.nfe_total += chunk.meta.nfe as u64;
        s.warm_starts += chunk.meta.warm_started as u64;
        s.eadp_costs.extend(inf.eadp_cost);
        let (d, h) = (chunk.actions.shape[2], chunk.actions.shape[1]);
        s.chunks.push((
            tw.t_obs_s,
            (0..h)
                .map(|i| chunk.actions.data[i * d..(i + 1) * d].to_vec())
                .collect(),
        ));
        let (delay_s, dt_s) = (robot.cfg.delay_s, robot.cfg.dt_s);
        self.metrics.inference.record(inf.inference_s());
        self.count(r, "chunks_total", &[]);
        let robot = &mut self.robots[r];
        // Simulated delay: what would be due before the chunk could arrive is dropped.
        let spec = self.pipeline.spec();
        let deadline = tw.t_obs_s + delay_s - 1e-9;
        if let Some(timed) = time_chunk(chunk, spec.n_obs_steps, tw.t_obs_s, dt_s, deadline) {
            if let Err(e) = robot.driver.on_chunk(&timed.driver_chunk(), t_s) {
                tracing::debug!("chunk rejected by the driver: {e}");
            }
        }
        let decode_s = self.metrics.decode.percentile(50.0).unwrap_or(0.0);
        chunk_meta(
            inf,
            MetaTimings {
                decode_s,
                window_s,
                publish_s: 0.0,
                total_s: window_s + inf.inference_s(),
            },
        )
    }
}

/// A robot's events, by its index in its [`Lockstep`].
enum Ev {
    Frame(usize, usize, Vec<u8>),
    Episode(usize, Vec<u8>),
}

/// How long the robots whose step is in wait for one that went silent before they step without it
/// (wall clock; a wave's composition never changes a CPU result, only its batching).
const WAVE_STALL: std::time::Duration = std::time::Duration::from_secs(1);

/// A robot's lockstep settings from its `[lockstep]` section and resolved config.
fn lockstep_config(section: &LockstepSection, resolved: &Resolved) -> LockstepConfig {
    LockstepConfig {
        dt_s: resolved.dt_s,
        delay_s: section.delay_ms / 1e3,
        queue_threshold_s: section.queue_threshold_s,
        driver: section.driver.clone(),
    }
}

/// The pipeline of a lockstep daemon: loaded on its own thread (a GPU context lives there).
pub fn lockstep_for(
    cfg: &DaemonConfig,
    section: &LockstepSection,
    resolved: &Resolved,
    pipeline: Pipeline,
    metrics: Arc<Metrics>,
) -> Result<Lockstep> {
    Lockstep::new(
        pipeline,
        resolved.inputs.clone(),
        lockstep_config(section, resolved),
        metrics,
    )
    .map_err(|e| anyhow!("{}: {e}", cfg.checkpoint.display()))
}

/// The robots of one checkpoint and device: one [`Lockstep`] (one pipeline, one thread).
struct Group {
    key: (std::path::PathBuf, String),
    lockstep: Lockstep,
    /// Each robot's config and resolution, in the group's robot order.
    robots: Vec<(DaemonConfig, Resolved)>,
}

/// One [`Group`] per distinct checkpoint and device, robots added in config order.
async fn groups(configs: Vec<DaemonConfig>, metrics: &Arc<Metrics>) -> Result<Vec<Group>> {
    let mut groups: Vec<Group> = Vec::new();
    for rc in configs {
        let section = rc
            .lockstep
            .clone()
            .ok_or_else(|| anyhow!("robot {}: no [lockstep]", rc.namespace))?;
        let name = rc.namespace.trim_end_matches('/').to_string();
        let key = (rc.checkpoint.clone(), rc.device.clone());
        match groups.iter_mut().find(|g| g.key == key) {
            Some(g) => {
                let resolved = rc.resolve(g.lockstep.spec())?;
                let cfg = lockstep_config(&section, &resolved);
                g.lockstep
                    .add_robot_with(name, sampling_of(&rc), resolved.inputs.clone(), cfg)
                    .map_err(|e| anyhow!("robot {}: {e}", rc.namespace))?;
                g.robots.push((rc, resolved));
            }
            None => {
                let (pipeline, resolved) = load_pipeline(&rc).await?;
                let mut lockstep = lockstep_for(&rc, &section, &resolved, pipeline, metrics.clone())?;
                lockstep.set_name(0, &name);
                groups.push(Group {
                    key,
                    lockstep,
                    robots: vec![(rc, resolved)],
                });
            }
        }
    }
    Ok(groups)
}

/// A robot's zenoh endpoints: its command and chunk-metadata publishers.
type Publishers = (Publisher, Publisher);

/// Subscribe robot `local` of a group to its inputs and episode events, and declare its publishers
/// and liveliness token.
async fn declare_robot(
    session: &Graph,
    (rc, resolved): &(DaemonConfig, Resolved),
    (local, tx): (usize, &mpsc::Sender<Ev>),
    subs: &mut Vec<Subscription>,
    tokens: &mut Vec<zenoh::liveliness::LivelinessToken>,
) -> Result<Publishers> {
    for (i, input) in resolved.inputs.iter().enumerate() {
        let tx = tx.clone();
        subs.push(
            session.subscribe(input.declared(), &input.msg_type.ros_type(), move |s| {
                let _ = tx.send(Ev::Frame(local, i, s.payload().to_bytes().into_owned()));
            })?,
        );
    }
    let tx = tx.clone();
    subs.push(
        session.subscribe(rc.topic(topics::SIM_EPISODE), &RosType::of::<StringMsg>(), move |s| {
            let _ = tx.send(Ev::Episode(local, s.payload().to_bytes().into_owned()));
        })?,
    );
    let action = session.publisher(rc.topic(topics::ACTION), &RosType::of::<JointState>())?;
    let meta = session.publisher(resolved.meta_declared(), &RosType::of::<ChunkMeta>())?;
    tokens.push(
        session
            .liveliness()
            .declare_token(resolved.alive_topic.clone())
            .await
            .map_err(|e| anyhow!("{e}"))?,
    );
    Ok((action, meta))
}

/// Serve in lockstep over zenoh until `shutdown`: per robot (`configs`, one per `[[robot]]` table or
/// the top level), frames and episode events in, commands on `<ns>/action` and chunk metadata out.
/// Robots of one checkpoint and device share a pipeline and step in waves.
pub async fn run_lockstep(
    cfg: DaemonConfig,
    configs: Vec<DaemonConfig>,
    shutdown: Shutdown,
    on_ready: impl FnOnce(&Running),
) -> Result<Arc<Metrics>> {
    let metrics = Arc::new(Metrics::default());
    let groups = groups(configs, &metrics).await?;
    let spec = groups[0].lockstep.spec().clone();
    let ros2 = cfg.ros2.settings("daemon")?;
    let session = Graph::open(&cfg.zenoh, ros2.as_ref(), metrics.clone()).await?;
    let mut subs = Vec::new();
    let mut tokens = Vec::new();
    let mut threads = Vec::new();
    let robots: usize = groups.iter().map(|g| g.robots.len()).sum();
    let n_groups = groups.len();
    for g in groups {
        let (ev_tx, ev_rx) = mpsc::channel::<Ev>();
        let mut pubs = Vec::new();
        for (local, robot) in g.robots.iter().enumerate() {
            pubs.push(declare_robot(&session, robot, (local, &ev_tx), &mut subs, &mut tokens).await?);
        }
        let stop = shutdown.clone();
        let lockstep = g.lockstep;
        threads.push(
            std::thread::Builder::new()
                .name("riptide-lockstep".into())
                .spawn(move || serve(lockstep, ev_rx, &stop, &pubs))?,
        );
    }
    on_ready(&Running {
        metrics: metrics.clone(),
        spec,
    });
    tracing::info!("lockstep: {robots} robot(s) on {n_groups} pipeline(s), hosted drivers");
    shutdown.wait().await;
    let mut first_err = None;
    for t in threads {
        let r = tokio::task::spawn_blocking(move || t.join())
            .await?
            .map_err(|_| anyhow!("a lockstep thread panicked"))
            .and_then(|r| r);
        if let Err(e) = r {
            first_err.get_or_insert(e);
        }
    }
    drop(subs);
    drop(tokens);
    session
        .session()
        .close()
        .await
        .map_err(|e| anyhow!("closing the zenoh session: {e}"))?;
    match first_err {
        Some(e) => Err(e),
        None => Ok(metrics),
    }
}

/// The zenoh transport's loop: events from the subscribers into [`Lockstep`], its waves' steps out.
fn serve(mut lockstep: Lockstep, events: mpsc::Receiver<Ev>, stop: &Shutdown, pubs: &[Publishers]) -> Result<()> {
    let mut waiting_since: Option<Instant> = None;
    while !stop.is_triggered() {
        match events.recv_timeout(std::time::Duration::from_millis(20)) {
            Ok(Ev::Episode(r, bytes)) => {
                let parsed = riptide_msgs::decode::<StringMsg>(&bytes)
                    .ok()
                    .and_then(|s| serde_json::from_str::<EpisodeEvent>(&s.data).ok());
                match parsed {
                    Some(EpisodeEvent::Start {
                        seed,
                        position,
                        episode,
                        ..
                    }) => {
                        lockstep.start_episode_of(r, seed, &position)?;
                        tracing::debug!("robot {r}: episode {episode} (seed {seed}) starts");
                    }
                    Some(EpisodeEvent::End { .. }) => lockstep.end_episode_of(r),
                    None => lockstep.count(r, "rejected_total", &[("reason", "episode_event")]),
                }
            }
            Ok(Ev::Frame(r, i, bytes)) => {
                if let Handled::Rejected { detail, .. } = lockstep.frame_of(r, i, &bytes)? {
                    tracing::debug!("rejected {detail}");
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        let stalled = waiting_since.is_some_and(|t| t.elapsed() >= WAVE_STALL);
        let steps = lockstep.take_wave(stalled)?;
        if stalled && !steps.is_empty() {
            tracing::warn!(
                "lockstep: a robot's step did not come within {WAVE_STALL:?}; stepping the others without it"
            );
            lockstep.count(0, "lockstep_stalled_waves_total", &[]);
        }
        for (r, step) in steps {
            let js = joint_state(step.t_s, step.command.iter().copied());
            pubs[r].0.put(riptide_msgs::encode(&js)?)?;
            if let Some(meta) = step.chunk {
                let _ = pubs[r].1.put(riptide_msgs::encode(&meta)?);
            }
        }
        waiting_since = match lockstep.has_pending() {
            true => waiting_since.or_else(|| Some(Instant::now())),
            false => None,
        };
    }
    Ok(())
}
