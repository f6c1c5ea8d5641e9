//! A tiny headless software rasteriser: filled circles, convex polygons and thick lines on an RGB8
//! canvas, sampled at pixel centres (no anti-aliasing, so frames are byte-identical across runs).

/// An RGB8 image, row-major HWC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

impl RgbImage {
    /// A `width`×`height` image filled with `color`.
    pub fn new(width: u32, height: u32, color: [u8; 3]) -> Self {
        let mut data = Vec::with_capacity(width as usize * height as usize * 3);
        for _ in 0..width as usize * height as usize {
            data.extend_from_slice(&color);
        }
        Self { width, height, data }
    }

    /// The pixel at column `x`, row `y`.
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = (y as usize * self.width as usize + x as usize) * 3;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }

    fn put(&mut self, x: i64, y: i64, color: [u8; 3]) {
        if x < 0 || y < 0 || x >= self.width as i64 || y >= self.height as i64 {
            return;
        }
        let i = (y as usize * self.width as usize + x as usize) * 3;
        self.data[i..i + 3].copy_from_slice(&color);
    }

    /// Rows and columns whose pixel centres may lie in the box, clipped to the image.
    fn span(&self, min_x: f64, max_x: f64, min_y: f64, max_y: f64) -> Option<(i64, i64, i64, i64)> {
        if !(min_x.is_finite() && max_x.is_finite() && min_y.is_finite() && max_y.is_finite()) {
            return None;
        }
        let x0 = (min_x - 0.5).floor().max(0.0) as i64;
        let x1 = (max_x - 0.5).ceil().min(self.width as f64 - 1.0) as i64;
        let y0 = (min_y - 0.5).floor().max(0.0) as i64;
        let y1 = (max_y - 0.5).ceil().min(self.height as f64 - 1.0) as i64;
        (x0 <= x1 && y0 <= y1).then_some((x0, x1, y0, y1))
    }

    /// Fills the disc of radius `r` (pixels) centred at (`cx`, `cy`) (pixel coordinates, x right, y down).
    pub fn fill_circle(&mut self, cx: f64, cy: f64, r: f64, color: [u8; 3]) {
        let Some((x0, x1, y0, y1)) = self.span(cx - r, cx + r, cy - r, cy + r) else {
            return;
        };
        let r2 = r * r;
        for y in y0..=y1 {
            let dy = y as f64 + 0.5 - cy;
            for x in x0..=x1 {
                let dx = x as f64 + 0.5 - cx;
                if dx * dx + dy * dy <= r2 {
                    self.put(x, y, color);
                }
            }
        }
    }

    /// Fills a convex polygon (either winding) given in pixel coordinates.
    pub fn fill_convex(&mut self, pts: &[[f64; 2]], color: [u8; 3]) {
        if pts.len() < 3 {
            return;
        }
        let (mut min_x, mut max_x, mut min_y, mut max_y) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for p in pts {
            min_x = min_x.min(p[0]);
            max_x = max_x.max(p[0]);
            min_y = min_y.min(p[1]);
            max_y = max_y.max(p[1]);
        }
        let Some((x0, x1, y0, y1)) = self.span(min_x, max_x, min_y, max_y) else {
            return;
        };
        let n = pts.len();
        for y in y0..=y1 {
            let py = y as f64 + 0.5;
            for x in x0..=x1 {
                let px = x as f64 + 0.5;
                let (mut pos, mut neg) = (false, false);
                for i in 0..n {
                    let a = pts[i];
                    let b = pts[(i + 1) % n];
                    let c = (b[0] - a[0]) * (py - a[1]) - (b[1] - a[1]) * (px - a[0]);
                    if c > 0.0 {
                        pos = true;
                    } else if c < 0.0 {
                        neg = true;
                    }
                }
                if !(pos && neg) {
                    self.put(x, y, color);
                }
            }
        }
    }

    /// Draws a segment of width `w` pixels with round caps.
    pub fn thick_line(&mut self, a: [f64; 2], b: [f64; 2], w: f64, color: [u8; 3]) {
        let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
        let len = (dx * dx + dy * dy).sqrt();
        let h = w / 2.0;
        if len > 1e-9 {
            let (nx, ny) = (-dy / len * h, dx / len * h);
            self.fill_convex(
                &[
                    [a[0] + nx, a[1] + ny],
                    [b[0] + nx, b[1] + ny],
                    [b[0] - nx, b[1] - ny],
                    [a[0] - nx, a[1] - ny],
                ],
                color,
            );
        }
        self.fill_circle(a[0], a[1], h, color);
        self.fill_circle(b[0], b[1], h, color);
    }
}

/// Maps a world rectangle onto the canvas (world y up → image y down unless `y_down`).
#[derive(Debug, Clone, Copy)]
pub struct View {
    pub x_min: f64,
    pub y_min: f64,
    /// Pixels per world unit.
    pub scale: f64,
    pub height_px: f64,
    pub y_down: bool,
}

impl View {
    /// A view of the square [`lo`, `hi`]² on an `size_px` square image.
    pub fn square(lo: f64, hi: f64, size_px: usize, y_down: bool) -> Self {
        Self {
            x_min: lo,
            y_min: lo,
            scale: size_px as f64 / (hi - lo),
            height_px: size_px as f64,
            y_down,
        }
    }

    pub fn px(&self, p: [f64; 2]) -> [f64; 2] {
        let x = (p[0] - self.x_min) * self.scale;
        let y = (p[1] - self.y_min) * self.scale;
        [x, if self.y_down { y } else { self.height_px - y }]
    }

    pub fn len(&self, l: f64) -> f64 {
        l * self.scale
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_cover_expected_pixels() {
        let mut img = RgbImage::new(10, 10, [0, 0, 0]);
        img.fill_circle(5.0, 5.0, 2.0, [255, 0, 0]);
        assert_eq!(img.pixel(5, 5), [255, 0, 0]);
        assert_eq!(img.pixel(0, 0), [0, 0, 0]);
        img.fill_convex(&[[0.0, 0.0], [3.0, 0.0], [3.0, 3.0], [0.0, 3.0]], [0, 255, 0]);
        assert_eq!(img.pixel(1, 1), [0, 255, 0]);
        assert_eq!(img.pixel(3, 3), [0, 0, 0]);
        img.thick_line([0.0, 9.5], [10.0, 9.5], 1.0, [0, 0, 255]);
        assert_eq!(img.pixel(7, 9), [0, 0, 255]);
        // Off-canvas and NaN shapes are ignored.
        img.fill_circle(f64::NAN, 1.0, 3.0, [1, 1, 1]);
        img.fill_circle(-100.0, -100.0, 3.0, [1, 1, 1]);
    }
}
