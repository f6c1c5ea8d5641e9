//! `riptide devices`: every device this build can run a policy on, by the name `--device` takes.

use riptide_policies::wgpu_device;

/// `riptide devices`: its arguments and entry point.
#[derive(clap::Args, Debug)]
pub struct DevicesCmd {}

impl DevicesCmd {
    pub fn run(self, _rt: &tokio::runtime::Runtime) -> anyhow::Result<()> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        println!(
            "{:<8} {} ({cores} threads; burn-flex)",
            "cpu",
            cpu_model().unwrap_or_else(|| "CPU".into())
        );
        match riptide_policies::backend::cuda_devices() {
            Ok(names) if names.is_empty() => println!("{:<8} (the CUDA driver sees no device)", "cuda"),
            Ok(names) => names
                .iter()
                .enumerate()
                .for_each(|(i, n)| println!("{:<8} {n} (burn-cuda)", format!("cuda:{i}"))),
            Err(why) => println!("{:<8} ({why})", "cuda"),
        }
        if !riptide_policies::WGPU_COMPILED {
            println!(
                "{:<8} (this build has no wgpu support: rebuild with `--features cuda,wgpu`)",
                "wgpu"
            );
        }
        let adapters = wgpu_device::adapters();
        if riptide_policies::WGPU_COMPILED && adapters.is_empty() {
            println!(
                "{:<8} (no adapter: install the GPU's Vulkan/Metal driver, or mesa-vulkan-drivers for the CPU one)",
                "wgpu"
            );
        }
        for (i, a) in adapters.iter().enumerate() {
            println!(
                "{:<8} {} ({}, {}; {})",
                format!("wgpu:{i}"),
                a.name,
                a.kind,
                a.api,
                a.driver
            );
        }
        Ok(())
    }
}

/// The CPU's model name (Linux: /proc/cpuinfo).
fn cpu_model() -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    text.lines().find_map(|l| {
        l.strip_prefix("model name")
            .and_then(|r| r.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    })
}
