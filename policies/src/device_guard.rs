//! Device errors that GPU runtimes raise as panics, returned as errors instead.

/// A GPU policy whose runtime panics (cubecl raises device errors as panics, on its device thread and
/// then in the caller) answers with a device error instead: the daemon's worker counts it as a device
/// fault (`oom` when the runtime ran out of memory) and reloads the policy.
pub(crate) struct DeviceGuard(pub Box<dyn crate::policy::Policy>);

impl DeviceGuard {
    fn caught<T>(
        &mut self,
        f: impl FnOnce(&mut dyn crate::policy::Policy) -> T,
    ) -> Result<T, crate::error::PolicyError> {
        let inner = self.0.as_mut();
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(inner))).map_err(|panic| {
            let why = crate::error::panic_text(panic.as_ref());
            let lower = why.to_ascii_lowercase();
            let oom = ["out of memory", "outofmemory", "out_of_memory"]
                .iter()
                .any(|k| lower.contains(k));
            // cubecl's messages can run to kilobytes (whole autotune plans): the start says what failed.
            let short: String = why.chars().take(400).collect();
            crate::error::PolicyError::Device(format!(
                "the GPU runtime failed during inference{}: {short}",
                if oom { " (out of memory)" } else { "" }
            ))
        })
    }
}

impl crate::policy::Policy for DeviceGuard {
    fn spec(&self) -> &crate::spec::PolicySpec {
        self.0.spec()
    }

    fn predict(
        &mut self,
        obs: &crate::spec::ObservationWindow,
        req: &crate::request::SampleRequest,
        hook: Option<&mut dyn crate::request::StepHook>,
    ) -> Result<crate::spec::ActionChunk, crate::error::PolicyError> {
        self.caught(|p| p.predict(obs, req, hook))?
    }

    fn predict_wave(
        &mut self,
        rows: &[crate::request::WaveRow<'_>],
    ) -> Vec<Result<crate::spec::ActionChunk, crate::error::PolicyError>> {
        self.caught(|p| p.predict_wave(rows)).unwrap_or_else(|e| {
            rows.iter()
                .map(|_| Err(crate::error::PolicyError::Device(e.to_string())))
                .collect()
        })
    }

    fn action_norm(&self) -> Option<&crate::normalize::FeatureNorm> {
        self.0.action_norm()
    }
}
