//! Writes a contact sheet of rendered frames of one expert episode: `sheet ENV SEED OUT.png`.
use riptide_sim::{make_env, run_expert_episode};

fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
        }
    }
    !c
}

fn png(w: u32, h: u32, rgb: &[u8]) -> Vec<u8> {
    let mut raw = Vec::new();
    for y in 0..h as usize {
        raw.push(0);
        raw.extend_from_slice(&rgb[y * w as usize * 3..(y + 1) * w as usize * 3]);
    }
    let mut z = vec![0x78, 0x01];
    for (i, chunk) in raw.chunks(65535).enumerate() {
        let last = (i + 1) * 65535 >= raw.len();
        z.push(last as u8);
        z.extend_from_slice(&(chunk.len() as u16).to_le_bytes());
        z.extend_from_slice(&(!(chunk.len() as u16)).to_le_bytes());
        z.extend_from_slice(chunk);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &x in &raw {
        a = (a + x as u32) % 65521;
        b = (b + a) % 65521;
    }
    z.extend_from_slice(&((b << 16) | a).to_be_bytes());
    let mut out = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    let mut chunk = |ty: &[u8], data: &[u8]| {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut c = ty.to_vec();
        c.extend_from_slice(data);
        out.extend_from_slice(&c);
        out.extend_from_slice(&crc32(&c).to_be_bytes());
    };
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(b"IHDR", &ihdr);
    chunk(b"IDAT", &z);
    chunk(b"IEND", &[]);
    out
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mut env = make_env(&args[1]).unwrap();
    let ep = run_expert_episode(env.as_mut(), args[2].parse().unwrap(), true);
    println!("success {} score {:.3} steps {}", ep.success, ep.score, ep.steps);
    let n = ep.observations.len();
    let cols = 6usize;
    let rows = 3usize;
    let (fw, fh) = (96usize, 96usize);
    let mut sheet = vec![0u8; cols * rows * fw * fh * 3];
    for k in 0..cols * rows {
        let idx = (k * (n - 1)) / (cols * rows - 1);
        let img = ep.observations[idx].image.as_ref().unwrap();
        let (cx, cy) = (k % cols, k / cols);
        for y in 0..fh {
            for x in 0..fw {
                let src = (y * fw + x) * 3;
                let dst = ((cy * fh + y) * cols * fw + cx * fw + x) * 3;
                sheet[dst..dst + 3].copy_from_slice(&img.data[src..src + 3]);
            }
        }
    }
    std::fs::write(&args[3], png((cols * fw) as u32, (rows * fh) as u32, &sheet)).unwrap();
}
