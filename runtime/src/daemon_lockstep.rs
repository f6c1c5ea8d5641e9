//! The daemon in lockstep simulated time with the driver hosted in-process (`[lockstep]` in the
//! config; `riptide demo` and `riptide sim --lockstep` use it). When every input has a frame stamped
//! t_k, the hosted driver decides whether a new chunk is needed (its queue has run out); if so the
//! policy runs (the sim waits for it), then the driver's command for t_k goes out on `<ns>/action`.
//! Observation → policy → chunk → driver is the same code as the live path; only the clock is the
//! sim's, so an evaluation is reproducible and runs as fast as the CPU allows.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Instant;

use anyhow::{anyhow, Result};
use riptide_drivers::DriverConfig;
use riptide_msgs::ros::{ChunkMeta, StringMsg, Time};
use riptide_policies::{load_policy, PolicySpec};
use serde::Deserialize;
use zenoh::Wait;

use crate::config::DaemonConfig;
use crate::daemon::{zenoh_config, Running};
use crate::decode::decode;
use crate::lockstep::{LockstepConfig, Stepper};
use crate::metrics::Metrics;
use crate::simnode::{joint_state, EpisodeEvent};

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

enum Ev {
    Frame(usize, Vec<u8>),
    Episode(Vec<u8>),
}

/// Serve in lockstep until `shutdown` completes.
pub async fn run_lockstep(
    cfg: DaemonConfig,
    section: LockstepSection,
    shutdown: impl Future<Output = ()>,
    on_ready: impl FnOnce(&Running),
) -> Result<Arc<Metrics>> {
    let device = cfg.device()?;
    let checkpoint = cfg.checkpoint.clone();
    let (ev_tx, ev_rx) = mpsc::channel::<Ev>();
    let (spec_tx, spec_rx) = tokio::sync::oneshot::channel::<Result<PolicySpec>>();
    let (stepper_tx, stepper_rx) = mpsc::channel::<Stepper>();
    let lcfg = section.clone();
    let fps = cfg.fps;
    let sampling = crate::lockstep::Sampling {
        inference_steps: cfg.inference_steps,
        rti: cfg.rti.clone(),
        eadp: cfg.eadp.clone(),
        candidates: cfg.candidates,
    };
    // The policy lives on its own thread (a GPU context would too).
    std::thread::Builder::new()
        .name("riptide-lockstep-load".into())
        .spawn(move || {
            let r = (|| -> Result<Stepper> {
                let policy = load_policy(&checkpoint, device)?;
                let fps = fps.ok_or_else(|| anyhow!("fps is required"))?;
                Stepper::new(
                    policy,
                    LockstepConfig {
                        dt_s: 1.0 / fps,
                        delay_s: lcfg.delay_ms / 1e3,
                        queue_threshold_s: lcfg.queue_threshold_s,
                        driver: lcfg.driver,
                        sampling,
                    },
                )
            })();
            match r {
                Ok(s) => {
                    let _ = spec_tx.send(Ok(s.spec().clone()));
                    let _ = stepper_tx.send(s);
                }
                Err(e) => {
                    let _ = spec_tx.send(Err(e));
                }
            }
        })?;
    let spec = spec_rx.await.map_err(|_| anyhow!("the policy thread died"))??;
    let mut stepper = stepper_rx.recv().map_err(|_| anyhow!("the policy thread died"))?;
    let resolved = Arc::new(cfg.resolve(&spec)?);
    if stepper.driver().dim() != spec.action_dim {
        anyhow::bail!(
            "lockstep.driver.safety has {} dimensions but the policy's actions have {}",
            stepper.driver().dim(),
            spec.action_dim
        );
    }
    let session = zenoh::open(zenoh_config(&cfg)?)
        .await
        .map_err(|e| anyhow!("cannot open the zenoh session: {e}"))?;
    let metrics = Arc::new(Metrics::default());
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
    {
        let tx = ev_tx.clone();
        subs.push(
            session
                .declare_subscriber(cfg.topic("sim/episode"))
                .callback(move |s| {
                    let _ = tx.send(Ev::Episode(s.payload().to_bytes().into_owned()));
                })
                .await
                .map_err(|e| anyhow!("{e}"))?,
        );
    }
    let action_pub = session
        .declare_publisher(cfg.topic("action"))
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
        spec: spec.clone(),
    });
    tracing::info!(
        "lockstep: {} inputs, hosted driver, commands on {}",
        resolved.inputs.len(),
        cfg.topic("action")
    );

    let stop = Arc::new(AtomicBool::new(false));
    let (stop2, m, r2) = (stop.clone(), metrics.clone(), resolved.clone());
    let thread = std::thread::Builder::new()
        .name("riptide-lockstep".into())
        .spawn(move || -> Result<()> {
            let n = r2.inputs.len();
            let mut newest = vec![f64::NEG_INFINITY; n];
            let mut last_stepped = f64::NEG_INFINITY;
            let mut active = false;
            let mut id = 0u64;
            while !stop2.load(Ordering::Acquire) {
                let ev = match ev_rx.recv_timeout(std::time::Duration::from_millis(100)) {
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
                                stepper.reset(seed, &position, 0.0)?;
                                newest.iter_mut().for_each(|v| *v = f64::NEG_INFINITY);
                                last_stepped = f64::NEG_INFINITY;
                                active = true;
                                tracing::debug!("episode {episode} (seed {seed}) starts");
                            }
                            Some(EpisodeEvent::End { .. }) => active = false,
                            None => m.inc("rejected_total", Some(("reason", "episode_event"))),
                        }
                    }
                    Ev::Frame(i, bytes) => {
                        let input = &r2.inputs[i];
                        m.inc("messages_total", Some(("feature", &input.feature)));
                        let t = Instant::now();
                        let d = match decode(input, &bytes) {
                            Ok(d) => d,
                            Err((reason, detail)) => {
                                m.inc("rejected_total", Some(("reason", reason.label())));
                                tracing::debug!("rejected {}: {detail}", input.topic);
                                continue;
                            }
                        };
                        m.decode.record(t.elapsed().as_secs_f64());
                        if !active {
                            continue;
                        }
                        // Sim stamps start at 0, which a header reports as "no stamp".
                        let stamp = d.stamp_s.unwrap_or(0.0);
                        stepper.push(&input.feature, stamp, d.values);
                        newest[i] = newest[i].max(stamp);
                        let common = newest.iter().cloned().fold(f64::INFINITY, f64::min);
                        if common.is_finite() && common > last_stepped + 1e-9 {
                            last_stepped = common;
                            let (cmd, rep) = stepper.step(common)?;
                            let stamp = Time::from_secs_f64(common);
                            let js = joint_state(common, cmd);
                            action_pub
                                .put(riptide_msgs::encode(&js)?)
                                .wait()
                                .map_err(|e| anyhow!("{e}"))?;
                            if rep.inferred {
                                m.inference.record(rep.inference_s);
                                m.inc("chunks_total", None);
                                let meta = ChunkMeta {
                                    inference_id: id,
                                    policy_kind: stepper.spec().kind.to_string(),
                                    nfe: rep.nfe as u32,
                                    warm_started: false,
                                    seed: 0,
                                    obs_stamp: stamp,
                                    inference_s: rep.inference_s,
                                    ..Default::default()
                                };
                                id += 1;
                                let _ = meta_pub.put(riptide_msgs::encode(&meta)?).wait();
                            }
                        }
                    }
                }
            }
            Ok(())
        })?;
    shutdown.await;
    stop.store(true, Ordering::Release);
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
