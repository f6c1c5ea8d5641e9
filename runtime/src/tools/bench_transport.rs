//! `riptide bench-transport`: what the zenoh path adds to inference. A publisher sends camera + state
//! frames at a fixed rate to an in-process daemon (its own zenoh session, triggered on each camera
//! frame); a subscriber receives the chunks. Per chunk:
//!
//! overhead = chunk received − observation stamp − inference time (from the chunk's metadata),
//!
//! i.e. zenoh in, decoding (and resizing), window assembly, hand-off to and from the inference thread,
//! encoding and zenoh out. The observation stamp is the window's newest common time (the state's receive
//! time, taken just before the camera frame is sent), so the figure errs on the high side.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use riptide_msgs::ros::{ChunkMeta, Float32MultiArray, Header, Image, Time};
use riptide_policies::{FeatureKind, PolicySpec};
use serde::Serialize;
use tokio::sync::oneshot;
use zenoh::Wait;

use crate::daemon::config::{DaemonConfig, TriggerMode};
use crate::daemon::run;
use crate::node::now_s;

/// What to measure.
#[derive(Debug, Clone)]
pub struct TransportBench {
    pub checkpoint: std::path::PathBuf,
    pub device: String,
    pub fps: f64,
    /// Rate at which the publisher sends a camera + state frame.
    pub rate_hz: f64,
    pub seconds: f64,
    /// Camera frame size sent (the daemon resizes to the checkpoint's input); default: the checkpoint's.
    pub image_wh: Option<(u32, u32)>,
    /// Publish camera frames from a zenoh shared-memory buffer (both sessions with SHM enabled).
    pub shm: bool,
    pub port: u16,
    /// Denoising steps (default: the checkpoint's); fewer leaves more CPU to the transport on small machines.
    pub steps: Option<usize>,
}

/// Percentiles in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    fn of(mut v: Vec<f64>) -> Option<Self> {
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let at = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize] * 1e3;
        Some(Self {
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            max: at(1.0),
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TransportReport {
    pub checkpoint: String,
    pub image_wh: Option<(u32, u32)>,
    pub image_bytes: usize,
    pub shm: bool,
    pub rate_hz: f64,
    pub frames_sent: usize,
    pub chunks: usize,
    /// Received − observation stamp − inference.
    pub overhead_ms: Percentiles,
    /// Received − observation stamp.
    pub obs_to_chunk_ms: Percentiles,
    pub inference_ms: Percentiles,
    /// Daemon-side decode of the newest frame (includes resizing).
    pub decode_ms: Percentiles,
}

fn client_config(port: u16, shm: bool) -> Result<zenoh::Config> {
    let mut c = zenoh::Config::default();
    for (k, v) in [
        ("mode", "\"peer\"".to_string()),
        ("listen/endpoints", "[]".into()),
        ("connect/endpoints", format!("[\"tcp/127.0.0.1:{port}\"]")),
        ("scouting/multicast/enabled", "false".into()),
        ("transport/shared_memory/enabled", shm.to_string()),
    ] {
        c.insert_json5(k, &v).map_err(|e| anyhow!("zenoh config {k}: {e}"))?;
    }
    Ok(c)
}

/// Run the benchmark (needs a multi-threaded tokio runtime).
pub async fn bench_transport(b: TransportBench) -> Result<TransportReport> {
    if !(b.rate_hz > 0.0 && b.seconds > 0.0) {
        bail!("--rate-hz and --seconds must be positive");
    }
    let ns = format!("bench{}", std::process::id());
    let mut cfg = DaemonConfig::for_checkpoint(b.checkpoint.clone());
    cfg.device = b.device.clone();
    cfg.fps = Some(b.fps);
    cfg.namespace = ns.clone();
    cfg.zenoh.listen = vec![format!("tcp/127.0.0.1:{}", b.port)];
    cfg.zenoh.shared_memory = b.shm;
    cfg.trigger.mode = TriggerMode::OnFrame;
    cfg.inference_steps = b.steps;
    cfg.metrics.summary_period_s = 3600.0;

    let (spec_tx, spec_rx) = oneshot::channel::<PolicySpec>();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let daemon = tokio::spawn(run(
        cfg,
        crate::node::Shutdown::when(async move {
            let _ = stop_rx.await;
        }),
        move |r| {
            let _ = spec_tx.send(r.spec.clone());
        },
    ));
    let spec = match spec_rx.await {
        Ok(s) => s,
        Err(_) => {
            return Err(daemon
                .await?
                .err()
                .unwrap_or_else(|| anyhow!("the daemon stopped before it was ready")))
        }
    };
    let session = zenoh::open(client_config(b.port, b.shm)?)
        .await
        .map_err(|e| anyhow!("bench session: {e}"))?;
    // The daemon is ready (on_ready ran after its subscribers and liveliness token); wait until this
    // session sees the token so the first frames are not lost to discovery.
    crate::node::wait_alive(
        &session,
        &format!("{ns}/{}", riptide_msgs::topics::ALIVE_DAEMON),
        Duration::from_secs(30),
    )
    .await?;

    let chunks: Arc<Mutex<Vec<f64>>> = Arc::default();
    let metas: Arc<Mutex<Vec<ChunkMeta>>> = Arc::default();
    let c2 = chunks.clone();
    let chunk_sub = session
        .declare_subscriber(format!("{ns}/action/chunk"))
        .callback(move |_s| c2.lock().expect("lock").push(now_s()))
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let m2 = metas.clone();
    let meta_sub = session
        .declare_subscriber(format!("{ns}/action/chunk/meta"))
        .callback(move |s| {
            if let Ok(m) = riptide_msgs::decode::<ChunkMeta>(&s.payload().to_bytes()) {
                m2.lock().expect("lock").push(m);
            }
        })
        .await
        .map_err(|e| anyhow!("{e}"))?;

    let (frames, image_bytes, image_wh) = send_frames(&session, &b, &ns, &spec).await?;
    // Let the last inference land.
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop((chunk_sub, meta_sub));
    let _ = stop_tx.send(());
    daemon.await?.context("daemon")?;
    session.close().await.map_err(|e| anyhow!("{e}"))?;

    let chunks = chunks.lock().expect("lock").clone();
    let metas = metas.lock().expect("lock").clone();
    let n = chunks.len().min(metas.len());
    if n == 0 {
        bail!("no chunks arrived in {:.1} s ({frames} frames sent)", b.seconds);
    }
    let mut overhead = Vec::new();
    let mut e2e = Vec::new();
    for (t_rx, m) in chunks.iter().zip(&metas) {
        let obs_to_chunk = t_rx - m.obs_stamp.as_secs_f64();
        e2e.push(obs_to_chunk);
        overhead.push(obs_to_chunk - m.inference_s);
    }
    Ok(TransportReport {
        checkpoint: b.checkpoint.display().to_string(),
        image_wh,
        image_bytes,
        shm: b.shm,
        rate_hz: b.rate_hz,
        frames_sent: frames,
        chunks: n,
        overhead_ms: Percentiles::of(overhead).expect("n > 0"),
        obs_to_chunk_ms: Percentiles::of(e2e).expect("n > 0"),
        inference_ms: Percentiles::of(metas.iter().map(|m| m.inference_s).collect()).expect("n > 0"),
        decode_ms: Percentiles::of(metas.iter().map(|m| m.decode_s).collect()).expect("n > 0"),
    })
}

/// Publish frames for every input at `b.rate_hz` for `b.seconds`; returns (frames, image bytes, image size).
async fn send_frames(
    session: &zenoh::Session,
    b: &TransportBench,
    ns: &str,
    spec: &PolicySpec,
) -> Result<(usize, usize, Option<(u32, u32)>)> {
    // One publisher per input; the camera (if any) is sent last so it triggers on a full window.
    let mut inputs: Vec<_> = spec.inputs.clone();
    inputs.sort_by_key(|f| f.kind == FeatureKind::Visual);
    let mut pubs = Vec::new();
    for f in &inputs {
        let key = format!("{ns}/{}", f.name.replace('.', "/"));
        pubs.push(session.declare_publisher(key).await.map_err(|e| anyhow!("{e}"))?);
    }
    let provider = if b.shm {
        Some(
            zenoh::shm::ShmProviderBuilder::default_backend(64 << 20)
                .wait()
                .map_err(|e| anyhow!("shared memory provider: {e}"))?,
        )
    } else {
        None
    };
    let mut image_bytes = 0;
    let mut image_wh = None;
    let period = Duration::from_secs_f64(1.0 / b.rate_hz);
    let mut iv = tokio::time::interval(period);
    iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let t_end = Instant::now() + Duration::from_secs_f64(b.seconds);
    let mut frames = 0usize;
    let mut buf = Vec::new();
    while Instant::now() < t_end {
        iv.tick().await;
        for (f, p) in inputs.iter().zip(&pubs) {
            buf.clear();
            match f.kind {
                FeatureKind::Visual => {
                    let (w, h) = b.image_wh.unwrap_or((f.shape[2] as u32, f.shape[1] as u32));
                    let shade = (frames % 251) as u8;
                    let img = Image {
                        header: Header {
                            stamp: Time::from_secs_f64(now_s()),
                            frame_id: "camera".into(),
                        },
                        height: h,
                        width: w,
                        encoding: "rgb8".into(),
                        is_bigendian: 0,
                        step: 3 * w,
                        data: vec![shade; (3 * w * h) as usize],
                    };
                    riptide_msgs::encode_into(&img, &mut buf)?;
                    image_bytes = buf.len();
                    image_wh = Some((w, h));
                    match &provider {
                        Some(provider) => {
                            let mut sbuf = provider
                                .alloc(buf.len())
                                .with_policy::<zenoh::shm::BlockOn<zenoh::shm::GarbageCollect>>()
                                .await
                                .map_err(|e| anyhow!("shared memory allocation: {e:?}"))?;
                            sbuf[..].copy_from_slice(&buf);
                            p.put(sbuf).await.map_err(|e| anyhow!("{e}"))?;
                        }
                        None => p.put(buf.clone()).await.map_err(|e| anyhow!("{e}"))?,
                    }
                }
                _ => {
                    let n: usize = f.shape.iter().product();
                    let v = Float32MultiArray {
                        data: (0..n).map(|i| ((frames + i) % 7) as f32 * 0.1).collect(),
                        ..Default::default()
                    };
                    riptide_msgs::encode_into(&v, &mut buf)?;
                    p.put(buf.clone()).await.map_err(|e| anyhow!("{e}"))?;
                }
            }
        }
        frames += 1;
    }
    Ok((frames, image_bytes, image_wh))
}

/// `riptide bench-transport`: its arguments and entry point.
#[derive(clap::Args, Debug)]
pub struct BenchTransportCmd {
    #[arg(long)]
    pub checkpoint: PathBuf,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    #[arg(long, default_value_t = 10.0)]
    pub fps: f64,
    /// Camera + state frames per second.
    #[arg(long, default_value_t = 50.0)]
    pub rate_hz: f64,
    #[arg(long, default_value_t = 20.0)]
    pub seconds: f64,
    /// Camera frame size to send, WxH (default: the checkpoint's input size).
    #[arg(long, value_parser = parse_wh)]
    pub image: Option<(u32, u32)>,
    /// Send camera frames through zenoh shared memory.
    #[arg(long)]
    pub shm: bool,
    #[arg(long, default_value_t = 17480)]
    pub port: u16,
    /// Denoising steps (default: the checkpoint's).
    #[arg(long)]
    pub steps: Option<usize>,
}

impl BenchTransportCmd {
    pub fn run(self, rt: &tokio::runtime::Runtime) -> anyhow::Result<()> {
        let Self {
            checkpoint,
            device,
            fps,
            rate_hz,
            seconds,
            image,
            shm,
            port,
            steps,
        } = self;

        let r = rt.block_on(crate::tools::bench_transport::bench_transport(
            crate::tools::bench_transport::TransportBench {
                checkpoint,
                device,
                fps,
                rate_hz,
                seconds,
                image_wh: image,
                shm,
                port,
                steps,
            },
        ))?;
        println!("{}", serde_json::to_string(&r)?);
        Ok(())
    }
}

pub fn parse_wh(s: &str) -> std::result::Result<(u32, u32), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("{s:?}: expected WxH, e.g. 640x480"))?;
    let p = |v: &str| v.trim().parse::<u32>().map_err(|e| format!("{s:?}: {e}"));
    Ok((p(w)?, p(h)?))
}
