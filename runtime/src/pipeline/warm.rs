//! What a caller of the policy keeps between chunks for RTI warm starts: the previous chunk's
//! normalised actions, the vector features of its window and its observation time. The shift is
//! the number of control periods between the two windows' newest frames, which is the number of
//! actions executed since the previous chunk when one action runs per period.

use riptide_policies::rti::{PreviousChunk, RtiConfig, WarmStart};
use riptide_policies::{ActionChunk, ObservationWindow, SampleRequest};

/// Per-stream warm-start memory (one per daemon or lockstep episode).
#[derive(Debug, Clone)]
pub struct WarmStarter {
    config: RtiConfig,
    dt_s: f64,
    previous: Option<(PreviousChunk, f64)>,
}

impl WarmStarter {
    pub fn new(config: RtiConfig, dt_s: f64) -> Self {
        Self {
            config,
            dt_s,
            previous: None,
        }
    }

    /// Forget the previous chunk (new episode, re-engage): the next request runs cold.
    pub fn reset(&mut self) {
        self.previous = None;
    }

    /// Control periods from the previous chunk's observation to `t_obs_s` (negative gaps count as 0).
    pub fn shift_to(&self, t_obs_s: f64) -> Option<usize> {
        self.previous
            .as_ref()
            .map(|(_, t_prev)| ((t_obs_s - t_prev) / self.dt_s).round().max(0.0) as usize)
    }

    /// `req` with the warm start set for an observation at `t_obs_s`.
    pub fn request(&self, mut req: SampleRequest, t_obs_s: f64) -> SampleRequest {
        let previous = self.previous.as_ref().map(|(p, _)| PreviousChunk {
            shift: self.shift_to(t_obs_s).unwrap_or(0),
            ..p.clone()
        });
        req.warm_start = Some(WarmStart {
            config: self.config.clone(),
            previous,
        });
        req
    }

    /// Remember `chunk`, made from `window` observed at `t_obs_s`, for the next request.
    pub fn record(&mut self, chunk: &ActionChunk, window: &ObservationWindow, t_obs_s: f64) {
        self.previous = Some((PreviousChunk::new(chunk.actions_normalized.clone(), window), t_obs_s));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shift_counts_control_periods_between_observations() {
        let mut w = WarmStarter::new(RtiConfig::new(8), 0.1);
        assert_eq!(w.shift_to(1.0), None);
        let req = w.request(SampleRequest::default(), 1.0);
        assert!(
            req.warm_start.as_ref().unwrap().previous.is_none(),
            "no chunk yet: cold"
        );
        let chunk = ActionChunk {
            actions: riptide_policies::HostTensor::zeros(vec![1, 16, 2]),
            actions_normalized: riptide_policies::HostTensor::zeros(vec![1, 16, 2]),
            exec_start: 1,
            n_exec: 8,
            meta: riptide_policies::ChunkMeta {
                kind: riptide_policies::PolicyKind::Diffusion,
                nfe: 10,
                seed: 0,
                warm_started: false,
                timings: Default::default(),
            },
        };
        w.record(&chunk, &ObservationWindow::default(), 1.0);
        // 8 periods of 0.1 s, with the ns quantisation of message stamps.
        assert_eq!(w.shift_to(1.8000000001), Some(8));
        assert_eq!(w.shift_to(1.2999999), Some(3));
        assert_eq!(w.shift_to(0.5), Some(0));
        let req = w.request(SampleRequest::default(), 1.3);
        assert_eq!(req.warm_start.unwrap().previous.unwrap().shift, 3);
        w.reset();
        assert_eq!(w.shift_to(1.3), None);
    }
}
