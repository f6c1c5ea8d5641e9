//! Wire messages → feature frames. Every rejection has a reason (counted and rate-limit logged by the
//! daemon); nothing malformed reaches the policy.

use riptide_msgs::ros::{Float32MultiArray, Header, Image, JointState, PoseStamped, TwistStamped};

use crate::pipeline::input::{InputType, ResolvedInput};

/// Why a message was rejected (a metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reject {
    /// Not decodable as the configured message type (truncated, garbage, wrong type).
    Malformed,
    /// Image encoding not rgb8/bgr8/mono8, or inconsistent step/size.
    Encoding,
    /// Wrong image size (resizing disabled) or wrong vector length.
    Shape,
    /// NaN or ±Inf in the values.
    NonFinite,
    /// Older than the newest frame already received.
    OutOfOrder,
}

impl Reject {
    pub fn label(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Encoding => "encoding",
            Self::Shape => "shape",
            Self::NonFinite => "non_finite",
            Self::OutOfOrder => "out_of_order",
        }
    }

    pub const ALL: [Reject; 5] = [
        Self::Malformed,
        Self::Encoding,
        Self::Shape,
        Self::NonFinite,
        Self::OutOfOrder,
    ];
}

/// A decoded frame: the values and the header stamp, if the message carried a non-zero one.
#[derive(Debug)]
pub struct Decoded {
    pub values: Vec<f32>,
    pub stamp_s: Option<f64>,
}

fn stamp(h: &Header) -> Option<f64> {
    let s = h.stamp.as_secs_f64();
    (s > 0.0).then_some(s)
}

/// Decode `payload` for `input`; `Err((reason, detail))` on rejection.
pub fn decode(input: &ResolvedInput, payload: &[u8]) -> Result<Decoded, (Reject, String)> {
    let malformed = |e: riptide_msgs::MsgError| (Reject::Malformed, e.to_string());
    let dim: usize = input.shape.iter().product();
    let (values, stamp_s) = match input.msg_type {
        InputType::Image => {
            let img: Image = riptide_msgs::decode(payload).map_err(malformed)?;
            img.validate().map_err(|e| (Reject::Encoding, e.to_string()))?;
            let s = stamp(&img.header);
            (image_to_chw(&img, &input.shape, input.resize)?, s)
        }
        InputType::Float32MultiArray => {
            let m: Float32MultiArray = riptide_msgs::decode(payload).map_err(malformed)?;
            (m.data, None)
        }
        InputType::JointState => {
            let m: JointState = riptide_msgs::decode(payload).map_err(malformed)?;
            let s = stamp(&m.header);
            (m.position.iter().map(|v| *v as f32).collect(), s)
        }
        InputType::PoseStamped => {
            let m: PoseStamped = riptide_msgs::decode(payload).map_err(malformed)?;
            let (p, q) = (&m.pose.position, &m.pose.orientation);
            (
                vec![p.x, p.y, p.z, q.x, q.y, q.z, q.w]
                    .into_iter()
                    .map(|v| v as f32)
                    .collect(),
                stamp(&m.header),
            )
        }
        InputType::TwistStamped => {
            let m: TwistStamped = riptide_msgs::decode(payload).map_err(malformed)?;
            let (l, a) = (&m.twist.linear, &m.twist.angular);
            (
                vec![l.x, l.y, l.z, a.x, a.y, a.z]
                    .into_iter()
                    .map(|v| v as f32)
                    .collect(),
                stamp(&m.header),
            )
        }
    };
    if values.len() != dim {
        return Err((
            Reject::Shape,
            format!("{} values, the policy's {} takes {dim}", values.len(), input.feature),
        ));
    }
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err((Reject::NonFinite, format!("value {i} is {}", values[i])));
    }
    Ok(Decoded { values, stamp_s })
}

/// rgb8 / bgr8 / mono8 → [3, H, W] in [0, 1], resized (bilinear, half-pixel centres) to the policy's
/// input size when allowed.
pub fn image_to_chw(img: &Image, shape: &[usize], resize: bool) -> Result<Vec<f32>, (Reject, String)> {
    let (th, tw) = (shape[1], shape[2]);
    let (h, w) = (img.height as usize, img.width as usize);
    if (h, w) != (th, tw) && !resize {
        return Err((
            Reject::Shape,
            format!("image is {w}×{h}, the policy takes {tw}×{th} (resize is off)"),
        ));
    }
    if h == 0 || w == 0 {
        return Err((Reject::Shape, "empty image".into()));
    }
    let step = img.step as usize;
    let px = |y: usize, x: usize, c: usize| -> f32 {
        let row = &img.data[y * step..];
        let v = match img.encoding.as_str() {
            "rgb8" => row[x * 3 + c],
            "bgr8" => row[x * 3 + (2 - c)],
            _ => row[x],
        };
        v as f32 / 255.0
    };
    let mut out = vec![0f32; 3 * th * tw];
    if (h, w) == (th, tw) {
        for c in 0..3 {
            for y in 0..h {
                for x in 0..w {
                    out[(c * th + y) * tw + x] = px(y, x, c);
                }
            }
        }
        return Ok(out);
    }
    let sy = h as f32 / th as f32;
    let sx = w as f32 / tw as f32;
    for y in 0..th {
        let fy = ((y as f32 + 0.5) * sy - 0.5).clamp(0.0, (h - 1) as f32);
        let (y0, wy) = (fy.floor() as usize, fy - fy.floor());
        let y1 = (y0 + 1).min(h - 1);
        for x in 0..tw {
            let fx = ((x as f32 + 0.5) * sx - 0.5).clamp(0.0, (w - 1) as f32);
            let (x0, wx) = (fx.floor() as usize, fx - fx.floor());
            let x1 = (x0 + 1).min(w - 1);
            for c in 0..3 {
                let top = px(y0, x0, c) * (1.0 - wx) + px(y0, x1, c) * wx;
                let bot = px(y1, x0, c) * (1.0 - wx) + px(y1, x1, c) * wx;
                out[(c * th + y) * tw + x] = top * (1.0 - wy) + bot * wy;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use riptide_msgs::ros::{MultiArrayLayout, Time};

    fn input(t: InputType, shape: Vec<usize>) -> ResolvedInput {
        ResolvedInput {
            ros2_topic: None,
            feature: "f".into(),
            kind: riptide_policies::FeatureKind::State,
            shape,
            topic: "t".into(),
            msg_type: t,
            max_age_s: 1.0,
            resize: true,
        }
    }

    #[test]
    fn vectors_decode_and_bad_ones_are_rejected_by_reason() {
        let inp = input(InputType::Float32MultiArray, vec![2]);
        let ok = riptide_msgs::encode(&Float32MultiArray {
            layout: MultiArrayLayout::default(),
            data: vec![1.0, 2.0],
        })
        .unwrap();
        assert_eq!(decode(&inp, &ok).unwrap().values, vec![1.0, 2.0]);
        assert_eq!(decode(&inp, &ok[..ok.len() - 3]).unwrap_err().0, Reject::Malformed);
        assert_eq!(decode(&inp, b"garbage!").unwrap_err().0, Reject::Malformed);
        let long = riptide_msgs::encode(&Float32MultiArray {
            data: vec![1.0; 3],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(decode(&inp, &long).unwrap_err().0, Reject::Shape);
        let nan = riptide_msgs::encode(&Float32MultiArray {
            data: vec![1.0, f32::NAN],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(decode(&inp, &nan).unwrap_err().0, Reject::NonFinite);
    }

    fn image(enc: &str, w: u32, h: u32, f: impl Fn(u32, u32, u32) -> u8) -> Image {
        let bpp = Image::bytes_per_pixel(enc).unwrap();
        let mut data = Vec::new();
        for y in 0..h {
            for x in 0..w {
                for c in 0..bpp {
                    data.push(f(x, y, c));
                }
            }
        }
        Image {
            header: Header {
                stamp: Time {
                    sec: 5,
                    nanosec: 500_000_000,
                },
                frame_id: "cam".into(),
            },
            height: h,
            width: w,
            encoding: enc.into(),
            is_bigendian: 0,
            step: w * bpp,
            data,
        }
    }

    #[test]
    fn images_become_chw_in_unit_range_with_channel_order_and_stamp() {
        let mut inp = input(InputType::Image, vec![3, 2, 2]);
        let rgb = image("rgb8", 2, 2, |x, y, c| (c * 100 + y * 10 + x) as u8);
        let d = decode(&inp, &riptide_msgs::encode(&rgb).unwrap()).unwrap();
        assert_eq!(d.stamp_s, Some(5.5));
        assert_eq!(d.values[0], 0.0);
        assert!((d.values[4 + 3] - 111.0 / 255.0).abs() < 1e-6); // c=1, y=1, x=1
        let bgr = image("bgr8", 2, 2, |x, y, c| ((2 - c) * 100 + y * 10 + x) as u8);
        assert_eq!(
            decode(&inp, &riptide_msgs::encode(&bgr).unwrap()).unwrap().values,
            d.values
        );
        // A 4×4 image of constant colour resizes to the same colour.
        let big = image("rgb8", 4, 4, |_, _, c| (c * 50) as u8);
        let r = decode(&inp, &riptide_msgs::encode(&big).unwrap()).unwrap();
        assert!(r.values[8..12].iter().all(|v| (v - 100.0 / 255.0).abs() < 1e-6));
        inp.resize = false;
        assert_eq!(
            decode(&inp, &riptide_msgs::encode(&big).unwrap()).unwrap_err().0,
            Reject::Shape
        );
        let mut bad = image("rgb8", 2, 2, |_, _, _| 0);
        bad.encoding = "yuv422".into();
        assert_eq!(
            decode(&inp, &riptide_msgs::encode(&bad).unwrap()).unwrap_err().0,
            Reject::Encoding
        );
    }
}
