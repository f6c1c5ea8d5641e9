//! `riptide record`: expert, DART-perturbed or DAgger episodes of a sim env (one MCAP per episode),
//! or live zenoh topics into one MCAP file.

use std::path::PathBuf;

use anyhow::Result;
use riptide_policies::DeviceSpec;

/// Records the episode of one seed into a file.
type RecordOne = Box<dyn FnMut(u64, &std::path::Path) -> Result<riptide_sim::record::EpisodeSummary>>;

/// `riptide record`: its arguments and entry point.
#[derive(clap::Args, Debug)]
pub struct RecordCmd {
    /// Expert episodes of this env.
    #[arg(long)]
    pub env: Option<String>,
    #[arg(long, default_value_t = 10)]
    pub episodes: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output folder (expert episodes) or file (live topics).
    #[arg(long)]
    pub out: PathBuf,
    /// Record camera frames too.
    #[arg(long)]
    pub render: bool,
    /// Expert episodes: keep recording this long after a success, the expert holding its goal, so
    /// the demos show arriving and stopping (an episode otherwise ends mid-motion).
    #[arg(long, default_value_t = 0.0)]
    pub hold_s: f64,
    /// Expert episodes, DART-style: execute the expert's command plus a random offset with this
    /// standard deviation (action units; one value per action dimension, comma separated, or one for
    /// all), record the expert's command. Shows the policy how the expert recovers from errors.
    #[arg(long, value_delimiter = ',')]
    pub perturb: Vec<f64>,
    /// With --perturb: how long each offset is held, seconds.
    #[arg(long, default_value_t = 0.5)]
    pub perturb_hold_s: f64,
    /// With --perturb: the fraction of hold periods that are perturbed at all.
    #[arg(long, default_value_t = 0.5)]
    pub perturb_prob: f64,
    /// Expert episodes, DAgger-style: this policy checkpoint drives the env (through the driver, as
    /// in `riptide eval`) and the file records the expert's command at every state it visits, so
    /// training on them teaches the policy to recover from its own mistakes.
    #[arg(long, conflicts_with_all = ["perturb", "hold_s"])]
    pub policy: Option<PathBuf>,
    /// With --policy: where it runs.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
    /// Live topic to record, KEY:TYPE (repeatable); `riptide` records the daemon's own topics.
    #[arg(long)]
    pub topic: Vec<String>,
    /// Live recording length (default: until Ctrl-C).
    #[arg(long)]
    pub seconds: Option<f64>,
    #[arg(long)]
    pub connect: Vec<String>,
    #[command(flatten)]
    pub ros2: crate::node::Ros2Args,
}

impl RecordCmd {
    pub fn run(self, rt: &tokio::runtime::Runtime) -> anyhow::Result<()> {
        let Self {
            env,
            episodes,
            seed,
            out,
            render,
            hold_s,
            perturb,
            perturb_hold_s,
            perturb_prob,
            policy,
            device,
            topic,
            seconds,
            connect,
            ros2,
        } = self;

        match env {
            Some(env_name) => {
                // One episode per seed into `path`: expert-driven (clean or DART-perturbed), or driven by
                // --policy and labelled by the expert (DAgger).
                let (mut record_one, kind): (RecordOne, _) = match &policy {
                    Some(ckpt) => {
                        let mut cl = crate::tools::eval::ClosedLoop::new(ckpt, device, &env_name, 0.0)?;
                        crate::tools::eval::dagger_labels_valid(cl.env.as_ref())?;
                        let label = ckpt.display().to_string();
                        let f = move |s, path: &std::path::Path| {
                            crate::tools::eval::record_dagger_episode(&mut cl, s, path, render, &label)
                        };
                        (Box::new(f), "policy-driven (expert-labelled)")
                    }
                    None => {
                        anyhow::ensure!(
                            hold_s.is_finite() && hold_s >= 0.0,
                            "--hold-s must be a finite number of seconds >= 0 (got {hold_s})"
                        );
                        let mut env = riptide_sim::make_env(&env_name)?;
                        let hold_steps = (hold_s * env.spec().fps).round() as usize;
                        let perturbation = perturbation_for(env.spec(), &perturb, perturb_hold_s, perturb_prob)?;
                        let f = move |s, path: &std::path::Path| {
                            Ok(riptide_sim::record::record_expert_episode_perturbed(
                                env.as_mut(),
                                s,
                                path,
                                render,
                                hold_steps,
                                perturbation.as_ref(),
                            )?)
                        };
                        (Box::new(f), "expert")
                    }
                };
                std::fs::create_dir_all(&out)?;
                let mut ok = 0;
                for i in 0..episodes {
                    let s = seed + i as u64;
                    let r = record_one(s, &out.join(format!("{env_name}_{s:06}.mcap")))?;
                    ok += r.success as usize;
                    eprint!("\r{}/{} episodes recorded ({} successful)", i + 1, episodes, ok);
                }
                eprintln!();
                println!("{ok}/{episodes} {kind} episodes successful → {}", out.display());
                Ok(())
            }
            None if policy.is_some() => {
                anyhow::bail!("--policy records sim episodes driven by that policy: give --env too")
            }
            None => {
                let ros2 = ros2.config().settings("record")?;
                let topics = if topic.is_empty() || topic == ["riptide"] {
                    match ros2 {
                        Some(_) => crate::episodes::default_ros_topics("riptide")?,
                        None => crate::episodes::default_topics("riptide"),
                    }
                } else {
                    topic
                        .iter()
                        .map(|t| crate::episodes::parse_topic(t))
                        .collect::<Result<_>>()?
                };
                let z = match ros2 {
                    Some(_) => crate::node::ros2::ros2_zenoh(None, &[], &connect)?,
                    None => crate::node::network::node_zenoh(connect),
                };
                rt.block_on(async {
                    let session = crate::node::Graph::open(&z, ros2.as_ref(), Default::default()).await?;
                    let stop = async {
                        match seconds {
                            Some(s) => tokio::time::sleep(std::time::Duration::from_secs_f64(s)).await,
                            None => crate::node::Shutdown::on_signal().wait().await,
                        }
                    };
                    let n = crate::episodes::record_live(&session, &topics, &out, stop).await?;
                    println!("{n} messages → {}", out.display());
                    anyhow::Ok(())
                })
            }
        }
    }
}

/// `riptide record --perturb`: one sigma per action dimension (or one for all), finite and >= 0.
fn perturbation_for(
    spec: &riptide_sim::EnvSpec,
    sigma: &[f64],
    hold_s: f64,
    probability: f64,
) -> Result<Option<riptide_sim::record::Perturbation>> {
    if sigma.is_empty() {
        return Ok(None);
    }
    let n = spec.action_dim;
    let sigma = match sigma.len() {
        1 => vec![sigma[0]; n],
        m if m == n => sigma.to_vec(),
        m => anyhow::bail!(
            "--perturb takes one value or one per action dimension: {} actions have {n}, got {m}",
            spec.name
        ),
    };
    anyhow::ensure!(
        sigma.iter().all(|s| s.is_finite() && *s >= 0.0),
        "--perturb values must be finite and >= 0 (got {sigma:?})"
    );
    anyhow::ensure!(
        hold_s.is_finite() && hold_s > 0.0,
        "--perturb-hold-s must be a positive number of seconds (got {hold_s})"
    );
    anyhow::ensure!(
        (0.0..=1.0).contains(&probability),
        "--perturb-prob must lie in [0, 1] (got {probability})"
    );
    Ok(Some(riptide_sim::record::Perturbation {
        sigma,
        hold_steps: ((hold_s * spec.fps).round() as usize).max(1),
        probability,
    }))
}
