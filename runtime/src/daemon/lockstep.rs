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
use riptide_msgs::ros::{ChunkMeta, StringMsg};
use riptide_msgs::topics;
use riptide_policies::PolicySpec;
use zenoh::Wait;

use crate::daemon::config::{DaemonConfig, LockstepSection, Resolved};
use crate::daemon::setup::{load_pipeline, Running};
use crate::node::{Metrics, Shutdown};
use crate::pipeline::chunk::time_chunk;
use crate::pipeline::decode::decode;
use crate::pipeline::input::ResolvedInput;
use crate::pipeline::window::{Frame, TimedWindow, WindowBuilder};
use crate::pipeline::{chunk_meta, Inference, MetaTimings, Pipeline, SeedRule, StreamId};
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

/// One simulated robot of a lockstep run: its observation window, hosted driver and statistics.
struct Robot {
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
    inputs: Vec<ResolvedInput>,
    cfg: LockstepConfig,
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
            inputs,
            cfg,
            robots: Vec::new(),
            metrics,
        };
        l.push_robot()?;
        Ok(l)
    }

    fn push_robot(&mut self) -> Result<()> {
        let driver = Driver::new(self.cfg.driver.clone()).map_err(|e| anyhow!("driver.{e}"))?;
        let spec = self.pipeline.spec();
        if driver.dim() != spec.action_dim {
            anyhow::bail!(
                "lockstep.driver.safety has {} dimensions but the policy's actions have {}",
                driver.dim(),
                spec.action_dim
            );
        }
        self.robots.push(Robot {
            builder: Self::builder(spec, self.cfg.dt_s),
            newest: vec![f64::NEG_INFINITY; self.inputs.len()],
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
        self.pipeline.add_stream(sampling, self.cfg.dt_s)?;
        self.push_robot()?;
        Ok(self.robots.len() - 1)
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

    pub fn inputs(&self) -> &[ResolvedInput] {
        &self.inputs
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
        let builder = Self::builder(self.pipeline.spec(), self.cfg.dt_s);
        let mut driver = Driver::new(self.cfg.driver.clone()).map_err(|e| anyhow!("driver.{e}"))?;
        driver
            .engage(position, 0.0)
            .map_err(|e| anyhow!("cannot engage at {position:?}: {e}"))?;
        self.pipeline.reset_stream(r, SeedRule::Episode(seed));
        let robot = &mut self.robots[r];
        robot.builder = builder;
        robot.driver = driver;
        robot.newest.iter_mut().for_each(|v| *v = f64::NEG_INFINITY);
        robot.last_stepped = f64::NEG_INFINITY;
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
    }

    /// Decode robot `r`'s frame of input `index` and put it in its window; the frame's stamp.
    fn store(&mut self, r: usize, index: usize, bytes: &[u8]) -> Result<std::result::Result<Option<f64>, Handled>> {
        let input = self
            .inputs
            .get(index)
            .ok_or_else(|| anyhow!("input index {index} out of range"))?;
        self.metrics.inc("messages_total", &[("feature", &input.feature)]);
        let t = Instant::now();
        let d = match decode(input, bytes) {
            Ok(d) => d,
            Err((reason, detail)) => {
                self.metrics.inc("rejected_total", &[("reason", reason.label())]);
                return Ok(Err(Handled::Rejected {
                    reason: reason.label(),
                    detail: format!("{}: {detail}", input.topic),
                }));
            }
        };
        self.metrics.decode.record(t.elapsed().as_secs_f64());
        let robot = &mut self.robots[r];
        if !robot.active {
            return Ok(Ok(None));
        }
        // Sim stamps start at 0, which a header reports as "no stamp".
        let stamp = d.stamp_s.unwrap_or(0.0);
        robot.builder.push(
            &input.feature,
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
        let threshold = self.cfg.queue_threshold_s + 1e-9;
        let need: Vec<(usize, f64)> = due
            .iter()
            .copied()
            .filter(|&(r, t)| self.robots[r].driver.queued_s(t) <= threshold)
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
        self.metrics.inference.record(inf.inference_s());
        self.metrics.inc("chunks_total", &[]);
        // Simulated delay: what would be due before the chunk could arrive is dropped.
        let spec = self.pipeline.spec();
        let deadline = tw.t_obs_s + self.cfg.delay_s - 1e-9;
        if let Some(timed) = time_chunk(chunk, spec.n_obs_steps, tw.t_obs_s, self.cfg.dt_s, deadline) {
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

enum Ev {
    Frame(usize, Vec<u8>),
    Episode(Vec<u8>),
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
        LockstepConfig {
            dt_s: resolved.dt_s,
            delay_s: section.delay_ms / 1e3,
            queue_threshold_s: section.queue_threshold_s,
            driver: section.driver.clone(),
        },
        metrics,
    )
    .map_err(|e| anyhow!("{}: {e}", cfg.checkpoint.display()))
}

/// Serve in lockstep over zenoh until `shutdown`: frames and episode events in, commands on
/// `<ns>/action` and chunk metadata out.
pub async fn run_lockstep(
    cfg: DaemonConfig,
    section: LockstepSection,
    shutdown: Shutdown,
    on_ready: impl FnOnce(&Running),
) -> Result<Arc<Metrics>> {
    let metrics = Arc::new(Metrics::default());
    let (pipeline, resolved) = load_pipeline(&cfg).await?;
    let spec = pipeline.spec().clone();
    let lockstep = lockstep_for(&cfg, &section, &resolved, pipeline, metrics.clone())?;
    let session = crate::node::network::open(&cfg.zenoh).await?;
    let (ev_tx, ev_rx) = mpsc::channel::<Ev>();
    let mut subs = Vec::new();
    for (i, input) in resolved.inputs.iter().enumerate() {
        let tx = ev_tx.clone();
        subs.push(
            session
                .declare_subscriber(input.topic.clone())
                .callback(move |s| {
                    let _ = tx.send(Ev::Frame(i, s.payload().to_bytes().into_owned()));
                })
                .await
                .map_err(|e| anyhow!("subscribing to {}: {e}", input.topic))?,
        );
    }
    subs.push(
        session
            .declare_subscriber(cfg.topic(topics::SIM_EPISODE))
            .callback(move |s| {
                let _ = ev_tx.send(Ev::Episode(s.payload().to_bytes().into_owned()));
            })
            .await
            .map_err(|e| anyhow!("{e}"))?,
    );
    let action_pub = session
        .declare_publisher(cfg.topic(topics::ACTION))
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let meta_pub = session
        .declare_publisher(resolved.meta_topic.clone())
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let alive = session
        .liveliness()
        .declare_token(resolved.alive_topic.clone())
        .await
        .map_err(|e| anyhow!("{e}"))?;
    on_ready(&Running {
        metrics: metrics.clone(),
        spec,
    });
    tracing::info!(
        "lockstep: {} inputs, hosted driver, commands on {}",
        resolved.inputs.len(),
        cfg.topic(topics::ACTION)
    );
    let stop = shutdown.clone();
    let m = metrics.clone();
    let thread = std::thread::Builder::new()
        .name("riptide-lockstep".into())
        .spawn(move || serve(lockstep, ev_rx, &stop, &m, &action_pub, &meta_pub))?;
    shutdown.wait().await;
    let r = tokio::task::spawn_blocking(move || thread.join())
        .await?
        .map_err(|_| anyhow!("the lockstep thread panicked"))?;
    drop(subs);
    drop(alive);
    session
        .close()
        .await
        .map_err(|e| anyhow!("closing the zenoh session: {e}"))?;
    r?;
    Ok(metrics)
}

/// The zenoh transport's loop: events from the subscribers into [`Lockstep`], its steps out.
fn serve(
    mut lockstep: Lockstep,
    events: mpsc::Receiver<Ev>,
    stop: &Shutdown,
    metrics: &Metrics,
    action_pub: &zenoh::pubsub::Publisher<'_>,
    meta_pub: &zenoh::pubsub::Publisher<'_>,
) -> Result<()> {
    while !stop.is_triggered() {
        let ev = match events.recv_timeout(std::time::Duration::from_millis(100)) {
            Ok(ev) => ev,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        match ev {
            Ev::Episode(bytes) => {
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
                        lockstep.start_episode(seed, &position)?;
                        tracing::debug!("episode {episode} (seed {seed}) starts");
                    }
                    Some(EpisodeEvent::End { .. }) => lockstep.end_episode(),
                    None => metrics.inc("rejected_total", &[("reason", "episode_event")]),
                }
            }
            Ev::Frame(i, bytes) => match lockstep.frame(i, &bytes)? {
                Handled::Stored => {}
                Handled::Rejected { detail, .. } => tracing::debug!("rejected {detail}"),
                Handled::Step(step) => {
                    let js = joint_state(step.t_s, step.command.iter().copied());
                    action_pub
                        .put(riptide_msgs::encode(&js)?)
                        .wait()
                        .map_err(|e| anyhow!("{e}"))?;
                    if let Some(meta) = step.chunk {
                        let _ = meta_pub.put(riptide_msgs::encode(&meta)?).wait();
                    }
                }
            },
        }
    }
    Ok(())
}
