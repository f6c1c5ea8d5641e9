//! Remote inference: the daemon answers zenoh queries on `<ns>/infer` (`riptide_msgs::topics::INFER`)
//! with one cold-start inference on the caller's observations, run by the same worker as the robot's
//! chunks. A query never touches a robot's stream (its warm starts, seeds or windows), and a bad query
//! gets an error reply that says what is wrong, never a crash.
//!
//! Query payload: a safetensors file laid out as `riptide infer --inputs` takes it: every observation
//! feature `[1, n_obs_steps, ...]` under its LeRobot name, optional `noise` `[candidates, horizon,
//! action_dim]` and `noise.step.K`, and optionally `seed` (an unsigned integer) in `__metadata__`.
//! Reply: a safetensors file with `action` `[1, horizon, action_dim]` and `action.executed`, and the
//! chunk metadata (`riptide_msgs::ros::ChunkMeta` as JSON) under `__metadata__["chunk_meta"]`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, Result};
use riptide_msgs::ros::ChunkMeta;
use riptide_policies::{ActionChunk, ObservationWindow, PolicySpec, SampleRequest};
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use crate::node::{RateLimitedLog, RobotMetrics};
use crate::pipeline::tensors::request_from_tensors;
use crate::pipeline::worker::{Query, QueryHandle, MAX_QUEUED_QUERIES};
use crate::pipeline::StreamId;

/// Queries larger than this are refused unread (a PushT-size image window is ~0.2 MB).
pub const MAX_QUERY_BYTES: usize = 64 << 20;

/// The metadata key of the reply's chunk metadata.
pub const CHUNK_META_KEY: &str = "chunk_meta";

/// Why a query got an error reply (the `result` label of `remote_queries_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The payload is not a window this policy takes.
    Malformed,
    /// The worker's query queue is full.
    Busy,
    /// The policy refused or failed the inference.
    Inference,
    /// The daemon is shutting down.
    Stopped,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Busy => "busy",
            Self::Inference => "inference",
            Self::Stopped => "stopped",
        }
    }
}

/// The window and request a query's payload holds, or a message naming what is wrong with it.
pub fn parse_query(spec: &PolicySpec, payload: &[u8]) -> Result<(ObservationWindow, SampleRequest), String> {
    let layout = || {
        let features: Vec<String> = spec
            .inputs
            .iter()
            .map(|f| {
                let dims: Vec<String> = f.shape.iter().map(|d| d.to_string()).collect();
                format!("{} [1, {}, {}]", f.name, spec.n_obs_steps, dims.join(", "))
            })
            .collect();
        format!(
            "send a safetensors file with {} (optional: noise, noise.step.K; metadata seed)",
            features.join(", ")
        )
    };
    if payload.is_empty() {
        return Err(format!("the query has no payload: {}", layout()));
    }
    if payload.len() > MAX_QUERY_BYTES {
        return Err(format!(
            "the query payload is {} bytes, over the {MAX_QUERY_BYTES}-byte limit",
            payload.len()
        ));
    }
    let (_, header) = safetensors::SafeTensors::read_metadata(payload)
        .map_err(|e| format!("the query payload is not a safetensors file ({e}): {}", layout()))?;
    let seed = match header.metadata().as_ref().and_then(|m| m.get("seed")) {
        Some(s) => Some(
            s.trim()
                .parse::<u64>()
                .map_err(|_| format!("metadata seed = {s:?}: expected an unsigned integer"))?,
        ),
        None => None,
    };
    let tensors =
        riptide_policies::tensor::parse_safetensors(payload, Path::new("query payload")).map_err(|e| e.to_string())?;
    let (window, req) = request_from_tensors(spec, tensors, seed).map_err(|e| format!("{e:#}"))?;
    let batch = window.validate(spec).map_err(|e| e.to_string())?;
    if batch != 1 {
        return Err(format!(
            "the query holds {batch} observations: remote inference takes one per query (batch 1); send one \
             query per observation"
        ));
    }
    Ok((window, req))
}

/// The reply's payload: `action`, `action.executed` and the chunk metadata as JSON.
pub fn reply_payload(chunk: &ActionChunk, meta: &ChunkMeta) -> Result<Vec<u8>, String> {
    let mut tensors = BTreeMap::new();
    tensors.insert("action".to_string(), chunk.actions.clone());
    tensors.insert("action.executed".to_string(), chunk.executable());
    let json = serde_json::to_string(meta).map_err(|e| e.to_string())?;
    let metadata = HashMap::from([(CHUNK_META_KEY.to_string(), json)]);
    riptide_policies::tensor::safetensors_bytes_with(&tensors, Some(metadata))
}

/// What answering a query needs.
#[derive(Clone)]
struct Answerer {
    worker: QueryHandle,
    stream: StreamId,
    spec: PolicySpec,
    metrics: RobotMetrics,
    log: Arc<RateLimitedLog>,
    count: Arc<AtomicU64>,
}

/// Declare the queryable on `key` and answer every query on its own task until the session closes;
/// queries run with the sampling settings of the worker's `stream` (the robot whose key it is).
pub async fn serve(
    session: &zenoh::Session,
    key: String,
    (worker, stream): (QueryHandle, StreamId),
    spec: PolicySpec,
    metrics: RobotMetrics,
    log: Arc<RateLimitedLog>,
    tasks: &mut JoinSet<()>,
) -> Result<()> {
    let queryable = session
        .declare_queryable(key.clone())
        .await
        .map_err(|e| anyhow!("remote inference queryable {key}: {e}"))?;
    tracing::info!("answering remote inference queries on {key}");
    let answerer = Answerer {
        worker,
        stream,
        spec,
        metrics,
        log,
        count: Arc::default(),
    };
    tasks.spawn(async move {
        while let Ok(query) = queryable.recv_async().await {
            tokio::spawn(answerer.clone().answer(query));
        }
    });
    Ok(())
}

impl Answerer {
    async fn answer(self, query: zenoh::query::Query) {
        let t0 = Instant::now();
        let bytes = query.payload().map(|p| p.to_bytes().into_owned()).unwrap_or_default();
        let outcome = self.infer(&bytes, t0).await;
        let label = match &outcome {
            Ok(_) => "ok",
            Err((why, _)) => why.label(),
        };
        self.metrics.inc("remote_queries_total", &[("result", label)]);
        let sent = match outcome {
            Ok(payload) => query.reply(query.key_expr().clone(), payload).await,
            Err((why, message)) => {
                self.log.warn(&format!("remote:{}", why.label()), || {
                    format!("remote inference query on {} refused: {message}", query.key_expr())
                });
                query.reply_err(message).await
            }
        };
        if let Err(e) = sent {
            self.log.warn("remote:reply", || {
                format!("cannot reply to a remote inference query: {e}")
            });
        }
    }

    /// Parse, run on the worker, and encode the reply.
    async fn infer(&self, bytes: &[u8], t0: Instant) -> Result<Vec<u8>, (Refusal, String)> {
        let (window, request) = parse_query(&self.spec, bytes).map_err(|m| (Refusal::Malformed, m))?;
        let decode_s = t0.elapsed().as_secs_f64();
        let (tx, rx) = oneshot::channel();
        let query = Query {
            stream: self.stream,
            window,
            request,
            reply: tx,
        };
        if !self.worker.submit(query) {
            return Err((
                Refusal::Busy,
                format!("the daemon has {MAX_QUEUED_QUERIES} queries waiting (or is stopping): try again later"),
            ));
        }
        let (chunk, inference_s) = match rx.await {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => return Err((Refusal::Inference, e.to_string())),
            Err(_) => return Err((Refusal::Stopped, "the daemon stopped before answering".to_string())),
        };
        let meta = ChunkMeta {
            inference_id: self.count.fetch_add(1, Ordering::Relaxed),
            policy_kind: chunk.meta.kind.to_string(),
            nfe: chunk.meta.nfe as u32,
            warm_started: chunk.meta.warm_started,
            seed: chunk.meta.seed,
            decode_s,
            inference_s,
            total_s: t0.elapsed().as_secs_f64(),
            ..Default::default()
        };
        reply_payload(&chunk, &meta).map_err(|e| (Refusal::Inference, format!("cannot encode the reply: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use riptide_policies::{FeatureKind, HostTensor, InputFeature, PolicyKind};

    fn spec() -> PolicySpec {
        PolicySpec {
            kind: PolicyKind::Diffusion,
            scheduler: Some("DDIM".into()),
            inputs: vec![InputFeature {
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

    fn payload(batch: usize, values: &[f32], seed: Option<&str>) -> Vec<u8> {
        let t = HostTensor {
            shape: vec![batch, 2, 2],
            data: values.iter().copied().cycle().take(batch * 4).collect(),
        };
        let tensors = BTreeMap::from([("observation.state".to_string(), t)]);
        let meta = seed.map(|s| HashMap::from([("seed".to_string(), s.to_string())]));
        riptide_policies::tensor::safetensors_bytes_with(&tensors, meta).unwrap()
    }

    #[test]
    fn a_well_formed_query_gives_its_window_and_seed() {
        let (window, req) = parse_query(&spec(), &payload(1, &[0.5, -0.5], Some("42"))).unwrap();
        assert_eq!(window.features["observation.state"].shape, vec![1, 2, 2]);
        assert_eq!(req.seed, Some(42));
        let (_, req) = parse_query(&spec(), &payload(1, &[0.5], None)).unwrap();
        assert_eq!(req.seed, None);
    }

    #[test]
    fn bad_queries_are_refused_with_what_is_wrong() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (Vec::new(), "no payload"),
            (b"not a safetensors file".to_vec(), "not a safetensors file"),
            (payload(2, &[0.0], None), "batch 1"),
            (payload(1, &[f32::NAN], None), "non-finite"),
            (payload(1, &[0.0], Some("-3")), "metadata seed"),
        ];
        for (bytes, want) in cases {
            let err = parse_query(&spec(), &bytes).unwrap_err();
            assert!(err.contains(want), "{want:?} not in {err:?}");
        }
        let other = BTreeMap::from([(
            "observation.image".to_string(),
            HostTensor {
                shape: vec![1, 2, 2],
                data: vec![0.0; 4],
            },
        )]);
        let bytes = riptide_policies::tensor::safetensors_bytes(&other).unwrap();
        let err = parse_query(&spec(), &bytes).unwrap_err();
        assert!(err.contains("observation.state"), "{err}");
    }
}
