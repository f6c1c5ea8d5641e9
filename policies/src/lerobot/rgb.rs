//! LeRobot's `DiffusionRgbEncoder`: center crop → ResNet18 trunk (GroupNorm or BatchNorm) →
//! SpatialSoftmax keypoints → Linear + ReLU.

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, GroupNorm, GroupNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::{relu, softmax};

#[derive(Config, Debug)]
pub struct RgbEncoderConfig {
    /// (height, width) after the center crop; None = the full image.
    pub crop_shape: Option<[usize; 2]>,
    /// Input image (height, width).
    pub image_shape: [usize; 2],
    pub use_group_norm: bool,
    pub num_keypoints: usize,
}

/// The trunk's normalisation layers: GroupNorm(C/16) in PushT-era checkpoints, BatchNorm otherwise.
#[derive(Module, Debug)]
pub enum Norm2d<B: Backend> {
    Group(GroupNorm<B>),
    Batch(BatchNorm<B>),
}

impl<B: Backend> Norm2d<B> {
    fn new(channels: usize, group: bool, device: &B::Device) -> Self {
        if group {
            Self::Group(GroupNormConfig::new(channels / 16, channels).init(device))
        } else {
            Self::Batch(BatchNormConfig::new(channels).init(device))
        }
    }

    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        match self {
            Self::Group(n) => n.forward(x),
            Self::Batch(n) => n.forward(x),
        }
    }
}

#[derive(Module, Debug)]
pub struct Downsample<B: Backend> {
    pub conv: Conv2d<B>,
    pub bn: Norm2d<B>,
}

/// torchvision's `BasicBlock`.
#[derive(Module, Debug)]
pub struct BasicBlock<B: Backend> {
    pub conv1: Conv2d<B>,
    pub bn1: Norm2d<B>,
    pub conv2: Conv2d<B>,
    pub bn2: Norm2d<B>,
    pub downsample: Option<Downsample<B>>,
}

fn conv3x3<B: Backend>(c_in: usize, c_out: usize, stride: usize, device: &B::Device) -> Conv2d<B> {
    Conv2dConfig::new([c_in, c_out], [3, 3])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_bias(false)
        .init(device)
}

impl<B: Backend> BasicBlock<B> {
    fn new(c_in: usize, c_out: usize, stride: usize, group: bool, device: &B::Device) -> Self {
        let downsample = (stride != 1 || c_in != c_out).then(|| Downsample {
            conv: Conv2dConfig::new([c_in, c_out], [1, 1])
                .with_stride([stride, stride])
                .with_bias(false)
                .init(device),
            bn: Norm2d::new(c_out, group, device),
        });
        Self {
            conv1: conv3x3(c_in, c_out, stride, device),
            bn1: Norm2d::new(c_out, group, device),
            conv2: conv3x3(c_out, c_out, 1, device),
            bn2: Norm2d::new(c_out, group, device),
            downsample,
        }
    }

    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let h = relu(self.bn1.forward(self.conv1.forward(x.clone())));
        let h = self.bn2.forward(self.conv2.forward(h));
        let identity = match &self.downsample {
            Some(d) => d.bn.forward(d.conv.forward(x)),
            None => x,
        };
        relu(h + identity)
    }
}

/// ResNet18 without avgpool/fc.
#[derive(Module, Debug)]
pub struct ResNet18Trunk<B: Backend> {
    pub conv1: Conv2d<B>,
    pub bn1: Norm2d<B>,
    pub maxpool: MaxPool2d,
    pub layer1: Vec<BasicBlock<B>>,
    pub layer2: Vec<BasicBlock<B>>,
    pub layer3: Vec<BasicBlock<B>>,
    pub layer4: Vec<BasicBlock<B>>,
}

impl<B: Backend> ResNet18Trunk<B> {
    fn new(group: bool, device: &B::Device) -> Self {
        let layer = |c_in: usize, c_out: usize, stride: usize| {
            vec![
                BasicBlock::new(c_in, c_out, stride, group, device),
                BasicBlock::new(c_out, c_out, 1, group, device),
            ]
        };
        Self {
            conv1: Conv2dConfig::new([3, 64], [7, 7])
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Explicit(3, 3, 3, 3))
                .with_bias(false)
                .init(device),
            bn1: Norm2d::new(64, group, device),
            maxpool: MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(),
            layer1: layer(64, 64, 1),
            layer2: layer(64, 128, 2),
            layer3: layer(128, 256, 2),
            layer4: layer(256, 512, 2),
        }
    }

    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let mut h = self.maxpool.forward(relu(self.bn1.forward(self.conv1.forward(x))));
        for block in self
            .layer1
            .iter()
            .chain(&self.layer2)
            .chain(&self.layer3)
            .chain(&self.layer4)
        {
            h = block.forward(h);
        }
        h
    }
}

/// Output size of the trunk for an input of `h`×`w`: conv s2, maxpool s2, then three stride-2 stages.
fn trunk_output_hw(h: usize, w: usize) -> (usize, usize) {
    let conv = |n: usize, k: usize, s: usize, p: usize| (n + 2 * p - k) / s + 1;
    let f = |n: usize| {
        let mut n = conv(n, 7, 2, 3);
        n = conv(n, 3, 2, 1);
        for _ in 0..3 {
            n = conv(n, 3, 2, 1);
        }
        n
    };
    (f(h), f(w))
}

/// Expected-coordinate keypoints: softmax over each channel's map, averaged over a [-1, 1] grid.
#[derive(Module, Debug)]
pub struct SpatialSoftmax<B: Backend> {
    pub nets: Conv2d<B>,
    /// [H·W, 2]: column 0 = x (varies along width), column 1 = y. Saved in newer checkpoints.
    pub pos_grid: Param<Tensor<B, 2>>,
    pub num_keypoints: usize,
}

pub fn spatial_softmax_grid(h: usize, w: usize) -> Vec<f32> {
    let lin = |n: usize, i: usize| {
        if n == 1 {
            -1.0
        } else {
            -1.0 + 2.0 * i as f64 / (n as f64 - 1.0)
        }
    };
    let mut g = Vec::with_capacity(h * w * 2);
    for y in 0..h {
        for x in 0..w {
            g.push(lin(w, x) as f32);
            g.push(lin(h, y) as f32);
        }
    }
    g
}

impl<B: Backend> SpatialSoftmax<B> {
    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        let f = self.nets.forward(x);
        let [n, k, h, w] = f.dims();
        let attn = softmax(f.reshape([n * k, h * w]), 1);
        let kp = attn.matmul(self.pos_grid.val());
        kp.reshape([n, k * 2])
    }
}

#[derive(Module, Debug)]
pub struct RgbEncoder<B: Backend> {
    pub backbone: ResNet18Trunk<B>,
    pub pool: SpatialSoftmax<B>,
    pub out: Linear<B>,
    /// (top, left, height, width) of the eval-time center crop, or None.
    pub crop: Option<[usize; 4]>,
}

impl RgbEncoderConfig {
    pub fn init<B: Backend>(&self, device: &B::Device) -> RgbEncoder<B> {
        let [ih, iw] = self.image_shape;
        let crop = self.crop_shape.map(|[ch, cw]| {
            // torchvision CenterCrop: int(round((H − ch)/2)), Python round = half to even.
            let off = |full: usize, c: usize| ((full as f64 - c as f64) / 2.0).round_ties_even() as usize;
            [off(ih, ch), off(iw, cw), ch, cw]
        });
        let (h, w) = match crop {
            Some([_, _, ch, cw]) => (ch, cw),
            None => (ih, iw),
        };
        let (fh, fw) = trunk_output_hw(h, w);
        let k = self.num_keypoints;
        RgbEncoder {
            backbone: ResNet18Trunk::new(self.use_group_norm, device),
            pool: SpatialSoftmax {
                nets: Conv2dConfig::new([512, k], [1, 1]).init(device),
                pos_grid: Param::from_tensor(Tensor::from_data(
                    TensorData::new(spatial_softmax_grid(fh, fw), [fh * fw, 2]),
                    device,
                )),
                num_keypoints: k,
            },
            out: LinearConfig::new(2 * k, 2 * k).init(device),
            crop,
        }
    }
}

impl<B: Backend> RgbEncoder<B> {
    /// Features per image: `x` [N, 3, H, W] (normalised) → [N, 2·num_keypoints].
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        self.forward_crop(x, self.crop)
    }

    /// [`Self::forward`] with an explicit crop (top, left, height, width): training crops at random.
    pub fn forward_crop(&self, x: Tensor<B, 4>, crop: Option<[usize; 4]>) -> Tensor<B, 2> {
        let x = match crop {
            Some([top, left, h, w]) => {
                let n = x.dims()[0];
                x.slice([0..n, 0..3, top..top + h, left..left + w])
            }
            None => x,
        };
        let kp = self.pool.forward(self.backbone.forward(x));
        relu(self.out.forward(kp))
    }
}
