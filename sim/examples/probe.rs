use riptide_sim::arm_reach::ArmReach;
use riptide_sim::quadrotor::Quadrotor;
use riptide_sim::Env;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seed: u64 = args[2].parse().unwrap();
    match args[1].as_str() {
        "arm" => {
            let mut env = ArmReach::new();
            env.reset(seed);
            println!("{:?}", env.observe(false).env_state);
            while !env.done() {
                let a = env.expert_action();
                let o = env.step_no_render(&a);
                println!(
                    "{} a={:.2?} q={:.2?} tip={:.3?} coll={}",
                    env.steps(),
                    a,
                    o.state,
                    env.tip(),
                    env.collided()
                );
            }
        }
        _ => {
            let mut env = Quadrotor::new();
            env.reset(seed);
            println!("{:?}", env.observe(false).env_state);
            while !env.done() {
                let a = env.expert_action();
                let o = env.step_no_render(&a);
                println!(
                    "{} a={:.2?} s={:.2?} vis={} crash={}",
                    env.steps(),
                    a,
                    o.state,
                    env.visited(),
                    env.crashed()
                );
            }
        }
    }
}
