use riptide_sim::push_t::{self, PushT};
use riptide_sim::Env;
fn main() {
    let mut env = PushT::new();
    for k in 0..16 {
        let a = k as f64 * std::f64::consts::TAU / 16.0;
        let block = [256.0, 256.0, 0.3 * k as f64];
        let agent = [256.0 + 180.0 * a.cos(), 256.0 + 180.0 * a.sin()];
        env.reset_to(k, agent, block);
        let target = [256.0 - 600.0 * a.cos(), 256.0 - 600.0 * a.sin()];
        let mut worst = (0.0f64, 0usize, [0.0; 3], [0.0; 2]);
        for i in 0..40 {
            env.step_no_render(&target);
            let pen = push_t::PUSHER_RADIUS_PX - push_t::t_signed_distance(&env.block_pose(), env.agent());
            if pen > worst.0 {
                worst = (pen, i, env.block_pose(), env.agent());
            }
        }
        println!(
            "dir {k}: worst pen {:.2} at step {} block {:.1?} agent {:.1?}",
            worst.0, worst.1, worst.2, worst.3
        );
    }
}
