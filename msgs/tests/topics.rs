//! The JSON of the episode announcements is a wire format too: pinned here byte for byte.

use riptide_msgs::topics::EpisodeEvent;

#[test]
fn episode_event_json_is_pinned() {
    let start = EpisodeEvent::Start {
        episode: 3,
        seed: 1007,
        env: "push_t".into(),
        position: vec![256.0, 128.5],
        fps: 10.0,
    };
    let end = EpisodeEvent::End {
        episode: 3,
        seed: 1007,
        success: true,
        score: 0.97,
        steps: 142,
    };
    let start_json = r#"{"event":"start","episode":3,"seed":1007,"env":"push_t","position":[256.0,128.5],"fps":10.0}"#;
    let end_json = r#"{"event":"end","episode":3,"seed":1007,"success":true,"score":0.97,"steps":142}"#;
    assert_eq!(serde_json::to_string(&start).unwrap(), start_json);
    assert_eq!(serde_json::to_string(&end).unwrap(), end_json);
    assert_eq!(serde_json::from_str::<EpisodeEvent>(start_json).unwrap(), start);
    assert_eq!(serde_json::from_str::<EpisodeEvent>(end_json).unwrap(), end);
    assert!(serde_json::from_str::<EpisodeEvent>(r#"{"event":"pause","episode":3}"#).is_err());
}
